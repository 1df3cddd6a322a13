"""The `include` / `exclude` globs every listing connector takes, matched one way for all of them."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence


def matches(relative: str, patterns: Sequence[str]) -> bool:
    """Whether a path under the source's root matches a glob (`**/` also matches at the root)."""
    return any(
        fnmatch.fnmatch(relative, p) or (p.startswith("**/") and fnmatch.fnmatch(relative, p[3:])) for p in patterns
    )


def selected(relative: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Matched by an `include` glob and by no `exclude` glob."""
    return matches(relative, include) and not matches(relative, exclude)
