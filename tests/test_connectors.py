"""The local-folder connector and the connector registry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from connectors.registry import make_connector, resolve_sources
from pipeline.errors import ConfigError
from pipeline.settings import SourceSettings, load_settings


def _tree(root: Path) -> None:
    (root / "a").mkdir()
    (root / "a" / "one.pdf").write_bytes(b"%PDF-1.4 one")
    (root / "a" / "two.txt").write_text("two")
    (root / "b.txt").write_text("bee")
    (root / "skip.tmp").write_text("tmp")


def test_lists_recursively_with_identity(tmp_path: Path) -> None:
    _tree(tmp_path)
    refs = list(make_connector("docs", SourceSettings(path=str(tmp_path))).list())
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
    settings = SourceSettings(path=str(tmp_path), include=["**/*.txt", "**/*.pdf"], exclude=["a/*.txt"])
    names = [r.name for r in make_connector("docs", settings).list()]
    assert names == ["b.txt", "one.pdf"]


def test_read_returns_the_bytes(tmp_path: Path) -> None:
    _tree(tmp_path)
    connector = make_connector("docs", SourceSettings(path=str(tmp_path)))
    ref = next(r for r in connector.list() if r.name == "one.pdf")
    assert connector.read(ref) == b"%PDF-1.4 one"


def test_unknown_connector_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown connector"):
        make_connector("x", SourceSettings(connector="ftp", path=str(tmp_path)))
    with pytest.raises(ConfigError, match="does not exist"):
        make_connector("x", SourceSettings(path=str(tmp_path / "missing")))


def test_sources_resolve_from_names_or_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(sources={"contracts": {"path": str(tmp_path)}})
    resolved = resolve_sources(["contracts", str(tmp_path)], settings)
    assert resolved["contracts"].path == str(tmp_path)
    assert resolved[str(tmp_path.resolve())].connector == "local"
    with pytest.raises(ConfigError, match="neither a configured source"):
        resolve_sources(["nowhere"], settings)
