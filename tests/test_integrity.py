"""What `assay verify` said "verified" to before, and catches now: a tampered catalog, a redefined view, an
edited finding with its manifest re-hashed, a lake emptied or cut back, a forged or spliced commit.
Real runs (`patterns_only`, no model), real Parquet and DuckDB, real Ed25519 signatures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from assay.cli import cli
from pipeline.core.hashing import sha256_bytes
from pipeline.land.ledger import Ledger
from pipeline.land.signing import Signer, canonical_bytes
from pipeline.land.store import local_store
from tests.jobrunner import NO_MODEL, run
from tests.support import nightly_source


def _verify(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), "verify", "--json", *args])


def _report(data_dir: Path, *args: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(_verify(data_dir, *args).output)
    return report


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with two nights, hence two signed manifests; each test works on a copy."""
    tmp = tmp_path_factory.mktemp("integrity")
    source = nightly_source(tmp)
    run(tmp / "data", source, NO_MODEL)
    (source / "more.txt").write_text("Call (555) 123-4567, signed 01/02/2026.")
    run(tmp / "data", source, NO_MODEL)
    return tmp / "data"


@pytest.fixture
def data_dir(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy  # the state store (with its recorded heads) travels with it: a SQLite file inside


def test_an_untouched_lake_verifies_with_signatures_and_views(data_dir: Path) -> None:
    result = _verify(data_dir)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["manifests"] == 2 and not report["signatures"] and not report["views"]
    manifests = Ledger(local_store(data_dir / "lake")).manifests()
    assert [m.name for m in manifests] == ["00000001.json", "00000002.json"]
    document = json.loads((data_dir / "lake" / manifests[-1].relative).read_text())
    assert document["signature"]["algorithm"] == "ed25519" and document["sql_sha256"]
    head = report["head_sha256"]
    assert _verify(data_dir, "--expect-head", str(head)).exit_code == 0
    pinned = _verify(data_dir, "--expect-head", "0" * 64)
    assert pinned.exit_code == 1 and "expected 000000" in pinned.output


def test_a_flipped_byte_in_the_catalog_is_caught(data_dir: Path) -> None:
    catalog = data_dir / "warehouse.duckdb"
    data = bytearray(catalog.read_bytes())
    data[len(data) // 3] ^= 0xFF
    catalog.write_bytes(bytes(data))
    report = _report(data_dir)
    assert not report["ok"] and report["views"], report


def test_a_redefined_view_that_hides_findings_is_caught(data_dir: Path) -> None:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), config={"file_search_path": str(data_dir)}) as con:
        sql = str(con.execute("select sql from duckdb_views() where view_name = 'findings'").fetchone()[0])  # type: ignore[index]
        con.execute(sql.rstrip(";").replace("CREATE VIEW", "CREATE OR REPLACE VIEW") + " WHERE field <> 'dates'")
    assert _count(data_dir) < _count_all(data_dir)  # the analyst would now see fewer findings...
    report = _report(data_dir)
    assert (
        not report["ok"] and "view findings is not the committed definition" in report["views"]
    )  # ...and verify says so


def _count(data_dir: Path) -> int:
    result = CliRunner().invoke(
        cli, ["--data-dir", str(data_dir), "query", "--format", "json", "select count(*) as n from findings"]
    )
    return int(json.loads(result.output)[0]["n"])


def _count_all(data_dir: Path) -> int:
    lake = data_dir / "lake"
    return sum(pq.read_table(p).num_rows for p in lake.glob("findings/*/*.parquet"))


def test_an_edited_finding_with_its_manifest_rehashed_is_caught(data_dir: Path) -> None:
    lake = data_dir / "lake"
    ledger = Ledger(local_store(lake))
    head = ledger.manifests()[-1]
    entry = next(e for e in head.files if e.table == "findings" and e.rows > 0)
    table = pq.read_table(lake / entry.path)
    values = table.column("value").to_pylist()
    values[0] = "forged"
    forged = table.set_column(table.schema.get_field_index("value"), "value", pa.array(values))
    (lake / entry.path).unlink()
    pq.write_table(forged, lake / entry.path, compression="zstd")
    raw = (lake / entry.path).read_bytes()
    manifest_path = lake / head.relative
    document = json.loads(manifest_path.read_text())
    for listed in document["files"]:
        if listed["path"] == entry.path:
            listed.update(sha256=sha256_bytes(raw), bytes=len(raw))  # the file list now matches the edit...
    manifest_path.write_bytes(json.dumps(document, indent=1, sort_keys=True).encode())
    report = _report(data_dir)
    assert not report["changed"]  # ...so the hashes alone would pass; the signature does not
    assert any("signature does not match" in s for s in report["signatures"])
    assert not report["ok"]


def test_a_lake_emptied_or_cut_back_is_caught(data_dir: Path) -> None:
    lake = data_dir / "lake"
    ledger = Ledger(local_store(lake))
    newest = ledger.manifests()[-1]
    for entry in newest.files:  # the newest commit and its files deleted together: the chain still holds
        (lake / entry.path).unlink()
    (lake / newest.relative).unlink()
    report = _report(data_dir)
    assert not report["broken_links"] and not report["removed"]
    assert any("was committed, and is not in the lake" in a for a in report["anchors"])
    shutil.rmtree(lake)
    (lake / "_manifests").mkdir(parents=True)
    emptied = _report(data_dir)
    assert emptied["manifests"] == 0 and not emptied["ok"]
    assert "the lake holds no manifest, while runs were committed to it" in emptied["anchors"]


def test_a_forged_commit_is_caught_signed_or_not(data_dir: Path) -> None:
    lake = data_dir / "lake"
    head = Ledger(local_store(lake)).manifests()[-1]
    forged = {
        "format": "assay-manifest/1",
        "sequence": head.sequence + 1,
        "commit_id": "forged",
        "kind": "review",
        "run_id": None,
        "created_at": "2026-12-02T00:00:00+00:00",
        "previous_sha256": head.sha256,
        "files": [],
    }
    path = lake / "_manifests" / f"{head.sequence + 1:08d}.json"
    path.write_bytes(canonical_bytes(forged))
    assert any("not signed" in s for s in _report(data_dir)["signatures"])
    stranger = Signer(Ed25519PrivateKey.generate())
    path.write_bytes(json.dumps(stranger.sign(forged), indent=1, sort_keys=True).encode())
    report = _report(data_dir)
    assert any("which is not trusted here" in s for s in report["signatures"])
    assert not report["ok"]


def test_unsigned_manifests_of_a_lake_begun_before_signing_are_accepted_only_when_said(data_dir: Path) -> None:
    lake = data_dir / "lake"
    for manifest in Ledger(local_store(lake)).manifests():
        path = lake / manifest.relative
        path.write_bytes(canonical_bytes(json.loads(path.read_text())))  # as an older Assay wrote them
    assert not _report(data_dir)["ok"]  # the chain links now break too: the bytes changed
    # (a real legacy lake's chain was made from its unsigned bytes; accepting it is what the flag is for)
    report = _report(data_dir, "--legacy-unsigned", "2")
    assert not report["signatures"]
