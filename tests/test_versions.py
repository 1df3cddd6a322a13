"""Extraction code is versioned by hand (pipeline/extract/versions.py): a change without a bump fails here."""

from __future__ import annotations

import textwrap
from types import ModuleType

import pytest

from pipeline.core.settings import Settings
from pipeline.core.tasks import find_task
from pipeline.extract import routing, rules, versions
from pipeline.state.incremental import extract_fingerprint, parse_fingerprint


@pytest.mark.parametrize(
    ("module", "history", "constant"),
    [(routing, versions.ROUTING_VERSIONS, "ROUTING_VERSION"), (rules, versions.RULES_VERSIONS, "RULES_VERSION")],
)
def test_the_code_in_force_is_the_code_of_the_newest_version(
    module: ModuleType, history: dict[int, str], constant: str
) -> None:
    digest = versions.code_digest(module)
    newest = max(history)
    assert digest == history[newest], (
        f"{module.__name__} changed since {constant} {newest}: what it decides may differ, so landed extraction "
        f'work must not be reused. Add `{newest + 1}: "{digest}"` to the history in pipeline/extract/versions.py.'
    )
    assert len(set(history.values())) == len(history), "two versions with the same code"
    assert getattr(versions, constant) == newest


def test_the_digest_ignores_comments_docstrings_and_layout_but_not_code() -> None:
    digest_of = versions.code_digest_of_source

    base = digest_of('"""Doc."""\n\ndef f(x):\n    """Doc."""\n    return x + 1\n')
    assert digest_of("# a comment\ndef f(x):\n    return (x\n            + 1)  # why\n") == base
    assert digest_of(textwrap.dedent('def f(x):\n    """Other words."""\n    return x + 1\n')) == base
    assert digest_of("def f(x):\n    return x + 2\n") != base


def test_a_version_bump_changes_every_extraction_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.state import incremental

    settings = Settings()
    task = find_task("nda_key_terms")
    parse_fp = parse_fingerprint("0" * 64, settings)
    before = extract_fingerprint(parse_fp, task, "1" * 64, settings)
    assert extract_fingerprint(parse_fp, task, "1" * 64, settings) == before  # stable
    monkeypatch.setattr(incremental, "EXTRACTION_CODE_VERSION", "routing-2.rules-1")
    assert extract_fingerprint(parse_fp, task, "1" * 64, settings) != before
