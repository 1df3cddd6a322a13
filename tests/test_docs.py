"""Docs that tests keep honest: the data dictionary lists exactly the lake's columns."""

from __future__ import annotations

import re

from pipeline.lake import SCHEMAS
from tests.conftest import ROOT


def _documented_columns() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "data-dictionary.md").read_text(encoding="utf-8")
    text = text.split("## Lake tables", 1)[1].split("\n## ", 1)[0]  # the lake tables part only
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    documented: dict[str, set[str]] = {}
    for section in sections:
        table = section.split()[0]
        documented[table] = set(re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.MULTILINE))
    return documented


def test_every_lake_column_is_documented_and_nothing_else() -> None:
    documented = _documented_columns()
    assert set(documented) == set(SCHEMAS)
    for table, schema in SCHEMAS.items():
        assert documented[table] == set(schema.names), table


def test_every_state_store_column_is_documented() -> None:
    from pipeline.state.schema import metadata

    text = (ROOT / "docs" / "data-dictionary.md").read_text(encoding="utf-8")
    sections = re.split(r"^#### state\.", text, flags=re.MULTILINE)[1:]
    documented = {
        section.split()[0]: set(re.findall(r"^\| `([a-z0-9_]+)` \|", section.split("\n## ")[0], flags=re.MULTILINE))
        for section in sections
    }
    assert documented == {name: set(table.columns.keys()) for name, table in metadata.tables.items()}


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    head = readme[:1500]
    assert "make demo" in head and "make test" in head
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
