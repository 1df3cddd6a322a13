"""Docs that tests keep honest: the data dictionary lists exactly the lake's columns."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pipeline.land.tables import SCHEMAS
from tests.support import ROOT


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


def test_readme_starts_with_the_two_commands_and_every_make_target_it_names_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    head = readme[:1500]
    assert "make demo" in head and "make test" in head
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE))
    named = set(re.findall(r"\bmake ([a-z][a-z-]*)", readme))
    assert named and named <= targets, named - targets


def test_every_assay_command_the_readme_shows_exists() -> None:
    import click

    from assay.cli import cli

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = set(re.findall(r"^\.venv/bin/assay (?:--[a-z-]+ \S+ )*([a-z]+)", readme, flags=re.MULTILINE))
    assert isinstance(cli, click.Group)
    commands = set(cli.list_commands(click.Context(cli)))
    assert shown and shown <= commands, shown - commands


def test_the_cli_reference_is_the_commands_own_help() -> None:
    from assay.reference import render

    documented = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert documented == render(), "docs/cli.md is stale: run `make docs-cli`"


def test_every_module_the_architecture_names_exists() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:pipeline|connectors|flows|assay|tests|bench)/[A-Za-z0-9_/.]+)`", text))
    assert len(named) > 20
    missing = sorted(path for path in named if not (ROOT / path.rstrip("/")).exists())
    assert not missing, missing


def test_the_operations_guide_shows_every_setting_and_its_example_loads(tmp_path: Path) -> None:
    """Every settings key (top level and nested sections) is in the example config, and it is valid."""
    from pipeline.core.settings import Settings, load_settings

    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    parsed = tomllib.loads(example)
    shown = set(parsed) | {"state_url"}  # state_url is shown in its own section (a password in it)
    assert shown == set(Settings.model_fields)
    for section in ("parsing", "chunking", "model", "lake_store", "lake_mirror"):
        model = Settings.model_fields[section].annotation
        assert model is not None
        fields = next(a for a in getattr(model, "__args__", (model,)) if a is not type(None)).model_fields
        block = example.split(f"[{section}]", 1)[1].split("\n[", 1)[0]
        # set, or shown in a comment (a model path, the S3 keys): each key is named in its section
        missing = {name for name in fields if not re.search(rf"\b{name}\b", block)}
        assert not missing, (section, missing)
    config = tmp_path / "assay.toml"
    config.write_text(example, encoding="utf-8")
    settings = load_settings(config)
    assert settings.lake_store is not None and settings.lake_store.url.startswith("s3://")


def test_the_documentation_site_builds_offline_in_strict_mode(tmp_path: Path) -> None:
    import subprocess
    import sys

    mkdocs = Path(sys.executable).parent / "mkdocs"
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    pages = list((tmp_path / "site").glob("*.html"))
    assert {"index.html", "analysts.html", "cli.html", "data-dictionary.html"} <= {p.name for p in pages}
    fetched = {
        url for page in pages for url in re.findall(r'(?:src|<link[^>]*href)="(https?://[^"]+)"', page.read_text())
    }
    assert not fetched, fetched  # no script or stylesheet from the network


def test_every_test_the_security_guide_names_exists() -> None:
    """docs/security.md names the test behind each promise: each one is there, by file and name."""
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    named = re.findall(r"`(tests/[a-z_]+\.py)(?:::([a-z0-9_]+))?`((?:, `[a-z0-9_]+`)*)", text)
    assert len(named) >= 30
    missing = []
    for path, first, more in named:
        source = (ROOT / path).read_text(encoding="utf-8") if (ROOT / path).is_file() else ""
        if not source:
            missing.append(path)
        for name in [first, *re.findall(r"`([a-z0-9_]+)`", more)]:
            if name and f"def {name}(" not in source:
                missing.append(f"{path}::{name}")
    assert missing == []
