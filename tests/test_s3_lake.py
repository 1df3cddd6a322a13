"""The lake on an S3-compatible store instead of a local folder (moto's S3 server on loopback).

A run writes its Parquet files and manifests to s3://bucket/prefix in the
lake's layout and nothing to <data_dir>/lake; the DuckDB catalog, `assay
query` and `assay verify` read them there; incremental runs and crash
recovery work against the store as they do against a folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from assay.cli import cli
from pipeline.core.settings import load_settings
from pipeline.core.tasks import BUILTIN_TASK_DIR
from pipeline.land.ledger import Ledger, verify
from pipeline.land.store import open_store
from tests.conftest import NIGHTLY_BAD, NIGHTLY_GOOD, ROOT, S3Bucket, nightly_source
from tests.jobrunner import run


def _query(data_dir: Path, sql: str) -> list[dict[str, object]]:
    """Through the CLI, as an analyst would: the warehouse's views read the S3 lake."""
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "query", "--format", "json", sql])
    assert result.exit_code == 0, result.output
    rows: list[dict[str, object]] = json.loads(result.output)
    return rows


def test_a_run_lands_on_s3_and_is_queried_reused_and_verified_there(
    s3: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSAY_LAKE_STORE", json.dumps(s3.store_settings("nightly/lake")))
    source = nightly_source(tmp_path)
    data_dir = tmp_path / "data"

    first = run(data_dir, source)
    assert first.processed == len(NIGHTLY_GOOD) and first.failed == len(NIGHTLY_BAD) and first.findings > 0
    assert not (data_dir / "lake").exists()  # nothing landed locally
    keys = s3.keys("nightly/lake/")
    manifests = Ledger(open_store(load_settings(data_dir=data_dir))).manifests()
    listed = {f"nightly/lake/{entry.path}" for m in manifests for entry in m.files}
    listed |= {f"nightly/lake/{m.relative}" for m in manifests}
    assert keys == listed  # the same layout as a local lake, every object in a manifest, nothing else
    assert any(k.startswith("nightly/lake/findings/run_date=") and k.endswith(".parquet") for k in keys)

    # The catalog (a local DuckDB file) reads the findings from S3.
    findings = _query(data_dir, f"select count(*) as n from findings where run_id = '{first.run_id}'")
    assert findings == [{"n": first.findings}]
    views = _query(data_dir, "select view_name, sql from duckdb_views() where view_name = 'findings'")
    assert f"s3://{s3.bucket}/nightly/lake/findings/" in str(views[0]["sql"])

    # Unchanged: no parsing, no model work, no new results.
    again = run(data_dir, source)
    assert again.processed == 0 and again.answers == 0 and again.unchanged == len(NIGHTLY_GOOD)

    # A changed task re-extracts from the chunks read back from S3, without parsing.
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    text = (BUILTIN_TASK_DIR / "key_terms.yaml").read_text()
    (tasks / "key_terms.yaml").write_text(text.replace("Read the text", "Read the document"))
    changed = run(data_dir, source, task_dir=tasks)
    assert changed.processed == len(NIGHTLY_GOOD) and changed.answers == len(NIGHTLY_GOOD)
    reparsed = _query(
        data_dir,
        f"select count(*) as n from documents where run_id = '{changed.run_id}' and status = 'processed'"
        " and parse_seconds > 0",
    )
    assert reparsed == [{"n": 0}]
    assert _query(data_dir, f"select count(*) as n from texts where run_id = '{changed.run_id}'") == [{"n": 0}]

    verified = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "verify"])
    assert verified.exit_code == 0, verified.output
    assert "manifests: 3" in verified.output

    # Tampering with an object on the store is caught like tampering with a file.
    target = next(k for k in s3.keys("nightly/lake/findings/") if k.endswith(".parquet"))
    body = s3.client.get_object(Bucket=s3.bucket, Key=target)["Body"].read()
    s3.client.put_object(Bucket=s3.bucket, Key=target, Body=body[:-1] + bytes([body[-1] ^ 1]))
    report = verify(open_store(load_settings(data_dir=data_dir)))
    assert report.changed == [target.removeprefix("nightly/lake/")] and not report.ok
    failed = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "verify"])
    assert failed.exit_code == 1 and "changed" in failed.output


@pytest.mark.parametrize("point", ["land", "before-manifest", "after-manifest"])
def test_a_crash_while_landing_on_s3_loses_and_duplicates_nothing(
    point: str, s3: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSAY_LAKE_STORE", json.dumps(s3.store_settings("lake")))
    source = nightly_source(tmp_path)
    data_dir = tmp_path / "data"
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.jobrunner", str(data_dir), str(source)],
        cwd=ROOT,
        env=dict(os.environ, ASSAY_CRASH_AT=point),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert crashed.returncode == -9, crashed.stderr[-2000:]  # killed by SIGKILL where asked
    left = {k for k in s3.keys("lake/") if k.endswith(".parquet")}
    assert left  # the killed run had put objects on the store

    summary = run(data_dir, source)  # the next night
    store = open_store(load_settings(data_dir=data_dir))
    assert verify(store).ok, verify(store)
    quarantined = s3.keys("lake/_quarantine/")
    if point == "after-manifest":
        assert not quarantined and summary.unchanged == len(NIGHTLY_GOOD)  # the crashed run had landed
    else:
        # What the killed run put on the store but never committed is moved out of the lake, not lost.
        assert {k.split("/", 3)[3] for k in quarantined} == {k.removeprefix("lake/") for k in left}
        assert summary.processed == len(NIGHTLY_GOOD)
    assert summary.documents_in == summary.processed + summary.failed + summary.skipped
    processed = _query(
        data_dir, "select uri, count(*) as n from document_versions where status = 'processed' group by uri"
    )
    assert sorted(Path(str(r["uri"])).name for r in processed) == sorted(NIGHTLY_GOOD)
    assert all(r["n"] == 1 for r in processed), processed  # every document processed exactly once
    assert _query(data_dir, "select count(*) - count(distinct finding_id) as n from findings") == [{"n": 0}]
