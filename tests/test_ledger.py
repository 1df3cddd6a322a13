"""Tamper evidence: every change to the lake after the fact is caught by `assay verify`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from assay.cli import cli
from connectors.registry import resolve_sources
from pipeline.core.settings import load_settings
from pipeline.land.ledger import Ledger, verify
from pipeline.run.local import run_locally
from pipeline.run.summary import RunSummary
from tests.support import document

# Documents that fail fast (no model work): the ledger tests need real runs, not real findings.
QUICK = ["unstructured__empty.txt", "pdfplumber__empty.pdf", "unstructured__password.pdf"]


def _run(data_dir: Path, source: Path) -> RunSummary:
    settings = load_settings(data_dir=data_dir)
    return run_locally(settings, resolve_sources([str(source)], settings))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake with two real runs, hence two chained manifests."""
    root = tmp_path_factory.mktemp("ledger")
    source = root / "in"
    source.mkdir()
    for name in QUICK:
        shutil.copy(document(name), source / name)
    data_dir = root / "data"
    _run(data_dir, source)
    _run(data_dir, source)
    return data_dir


@pytest.fixture
def lake(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy / "lake"


def _parquet_files(lake: Path) -> list[Path]:
    return sorted(p for p in lake.rglob("*.parquet") if "_manifests" not in p.parts)


def test_an_untouched_lake_verifies(lake: Path) -> None:
    report = verify(lake)
    assert report.ok, report
    assert report.manifests == 2
    assert report.files_checked == len(_parquet_files(lake))
    manifests = Ledger(lake).manifests()
    assert manifests[0].previous_sha256 is None
    assert manifests[1].previous_sha256 == manifests[0].sha256
    assert {m.kind for m in manifests} == {"run"}


def test_one_changed_byte_is_caught(lake: Path) -> None:
    target = next(p for p in _parquet_files(lake) if p.parts[-3] == "documents")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    report = verify(lake)
    assert not report.ok
    assert report.changed == [target.relative_to(lake).as_posix()]


def test_a_deleted_file_is_caught(lake: Path) -> None:
    target = _parquet_files(lake)[0]
    target.unlink()
    report = verify(lake)
    assert report.removed == [target.relative_to(lake).as_posix()] and not report.ok


def test_an_added_file_is_caught(lake: Path) -> None:
    original = next(p for p in _parquet_files(lake) if p.parts[-3] == "findings")
    extra = original.with_name("20990101T000000Z-forged-00000.parquet")
    shutil.copy(original, extra)
    report = verify(lake)
    assert report.added == [extra.relative_to(lake).as_posix()] and not report.ok


def test_an_edited_manifest_breaks_the_chain(lake: Path) -> None:
    first = lake / Ledger(lake).manifests()[0].relative
    document = json.loads(first.read_text())
    document["files"] = document["files"][1:]  # hide a file from the record...
    first.write_text(json.dumps(document, indent=1, sort_keys=True))
    report = verify(lake)
    assert not report.ok
    assert report.broken_links  # ...the next manifest's link no longer matches
    assert report.added  # and the hidden file is now unaccounted for


def test_a_removed_manifest_is_a_gap(lake: Path) -> None:
    (lake / Ledger(lake).manifests()[0].relative).unlink()
    report = verify(lake)
    assert not report.ok and report.broken_links and report.added


def test_a_spliced_in_manifest_is_caught(lake: Path) -> None:
    """A forged manifest inserted between two real ones (renumbered to fit) cannot carry both links."""
    manifests = Ledger(lake).manifests()
    forged = json.loads((lake / manifests[0].relative).read_text())
    forged.update(sequence=2, commit_id="forged", previous_sha256=manifests[0].sha256, files=[])
    second = json.loads((lake / manifests[1].relative).read_text())
    second["sequence"] = 3
    (lake / manifests[1].relative).unlink()
    (lake / "_manifests" / "00000003-renumbered.json").write_text(json.dumps(second, indent=1, sort_keys=True))
    (lake / "_manifests" / "00000002-forged.json").write_text(json.dumps(forged, indent=1, sort_keys=True))
    report = verify(lake)
    assert not report.ok
    assert any("00000003-renumbered" in link for link in report.broken_links)


def test_verify_command_exit_codes(lake: Path) -> None:
    data_dir = str(lake.parent)
    ok = CliRunner().invoke(cli, ["--data-dir", data_dir, "verify"])
    assert ok.exit_code == 0, ok.output
    assert "head manifest SHA-256" in ok.output
    _parquet_files(lake)[0].unlink()
    broken = CliRunner().invoke(cli, ["--data-dir", data_dir, "verify"])
    assert broken.exit_code == 1
    assert "removed:" in broken.output and "FAILED" in broken.output


def test_manifests_view_lists_the_chain(lake: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "--data-dir",
            str(lake.parent),
            "query",
            "--format",
            "json",
            "select sequence, kind, previous_sha256 from manifests order by sequence",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["sequence"] for r in rows] == [1, 2]
    assert rows[0]["previous_sha256"] is None and rows[1]["previous_sha256"]
