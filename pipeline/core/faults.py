"""Fault injection for the crash-safety tests, in one place.

`ASSAY_CRASH_AT=<point>` kills the process with SIGKILL when it reaches that
point: parse, extract, mid-write, land, before-manifest, after-manifest
(tests/test_incremental.py). Unset, it does nothing.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("ASSAY_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
