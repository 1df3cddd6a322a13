"""The local-folder connector and the connector registry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from connectors.local import LocalFolderConfig
from connectors.registry import make_connector, resolve_sources, validate_sources
from pipeline.core.errors import ConfigError
from pipeline.core.settings import load_settings


def _tree(root: Path) -> None:
    (root / "a").mkdir()
    (root / "a" / "one.pdf").write_bytes(b"%PDF-1.4 one")
    (root / "a" / "two.txt").write_text("two")
    (root / "b.txt").write_text("bee")
    (root / "skip.tmp").write_text("tmp")


def test_lists_recursively_with_identity(tmp_path: Path) -> None:
    _tree(tmp_path)
    refs = list(make_connector("docs", {"path": str(tmp_path)}).list())
    assert [r.name for r in refs] == [
        "b.txt",
        "skip.tmp",
        "one.pdf",
        "two.txt",
    ]  # a folder's files, then its sub-folders
    one = refs[2]
    assert one.uri == (tmp_path / "a" / "one.pdf").as_uri()
    assert one.size == len(b"%PDF-1.4 one")
    assert one.sha256 == hashlib.sha256(b"%PDF-1.4 one").hexdigest()
    assert one.modified_at is not None and one.version.startswith("mtime:")
    assert one.source == "docs"


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    _tree(tmp_path)
    options = {"path": str(tmp_path), "include": ["**/*.txt", "**/*.pdf"], "exclude": ["a/*.txt"]}
    names = [r.name for r in make_connector("docs", options).list()]
    assert names == ["b.txt", "one.pdf"]


def test_read_returns_the_bytes(tmp_path: Path) -> None:
    _tree(tmp_path)
    connector = make_connector("docs", {"path": str(tmp_path)})
    ref = next(r for r in connector.list() if r.name == "one.pdf")
    assert connector.read(ref) == b"%PDF-1.4 one"


def test_unknown_connector_unknown_key_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown connector 'ftp'"):
        make_connector("x", {"connector": "ftp", "path": str(tmp_path)})
    with pytest.raises(ConfigError, match="does not exist"):
        make_connector("x", {"path": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match=r"source 'x' \(local\): includes: Extra inputs are not permitted"):
        make_connector("x", {"path": str(tmp_path), "includes": ["*.pdf"]})


def test_sources_resolve_from_names_or_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(sources={"contracts": {"path": str(tmp_path)}})
    resolved = resolve_sources(["contracts", str(tmp_path)], settings)
    assert resolved["contracts"].config == LocalFolderConfig(path=str(tmp_path))
    assert resolved[str(tmp_path.resolve())].config == LocalFolderConfig(path=str(tmp_path.resolve()))
    with pytest.raises(ConfigError, match="neither a configured source"):
        resolve_sources(["nowhere"], settings)


def test_a_typo_in_a_configured_source_fails_before_any_run(tmp_path: Path) -> None:
    config = tmp_path / "assay.toml"
    config.write_text(f'[sources.contracts]\nconnector = "local"\npath = "{tmp_path}"\nexlude = ["*.tmp"]\n')
    settings = load_settings(config)  # the core does not read a connector's keys...
    with pytest.raises(ConfigError, match="source 'contracts' \\(local\\): exlude"):
        validate_sources(settings)  # ...its connector does, before the run starts


def test_assay_sources_lists_each_source_masks_secrets_and_fails_on_an_unreachable_one(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from assay.cli import cli

    _tree(tmp_path)
    database = tmp_path / "docs.sqlite"
    config = tmp_path / "assay.toml"
    config.write_text(
        f'[sources.share]\npath = "{tmp_path / "a"}"\n'
        f'[sources.records]\nconnector = "sql"\nurl = "sqlite:///{database}"\ntable = "missing"\n'
        '[sources.warehouse]\nconnector = "sql"\ntable = "docs"\n'
        'url = "postgresql+psycopg://assay:hunter2-secret@127.0.0.1:9/docs"\n'  # nothing listens on port 9
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "sources", "--json"])
    assert result.exit_code == 1  # one source cannot be listed (a refused connection is tried again: logged on stderr)
    found = {entry["source"]: entry for entry in json.loads(result.stdout)}
    assert found["share"]["status"] == "ok" and "one.pdf" in found["share"]["detail"]
    assert found["records"]["status"] == "error" and "cannot list missing" in found["records"]["detail"]
    assert found["warehouse"]["status"] == "error" and "cannot connect" in found["warehouse"]["detail"]
    assert "hunter2-secret" not in result.output and found["warehouse"]["settings"]["url"] == "**********"
    plain = CliRunner().invoke(cli, ["--config", str(config), "sources", "--no-check"])
    assert plain.exit_code == 0 and "not checked" in plain.output
