"""Nightly runs, on a local lake and on an S3-compatible one (moto's server on loopback): only new work is
done, deletions are flagged, crashes lose and duplicate nothing, two runs never share a lake.

The real parser, Parquet, DuckDB and the SQLite state store (tests/test_state_store.py runs the store on
PostgreSQL too). Most runs use the task `patterns_only` (tests/fixtures/tasks), whose routing sends
nothing to the model: what is tested here surrounds the model, and runs in seconds. One test asks the
real model, to prove an unchanged night asks it nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from assay.cli import cli
from pipeline.core.errors import RunInProgress
from pipeline.core.settings import load_settings
from pipeline.core.tasks import find_task
from pipeline.land.ledger import Ledger, VerifyReport, verify
from pipeline.land.store import LakeStore, open_store
from pipeline.state.incremental import load_parsed
from pipeline.state.store import StateStore, default_url
from tests.jobrunner import NO_MODEL, TEST_TASKS, run
from tests.support import NIGHTLY_BAD, NIGHTLY_GOOD, ROOT, S3Bucket, nightly_source


@dataclass(frozen=True)
class Night:
    """A source folder and a data directory whose lake is a local folder or an S3 prefix."""

    source: Path
    data_dir: Path
    s3: S3Bucket | None = None

    @property
    def store(self) -> LakeStore:
        return open_store(load_settings(data_dir=self.data_dir))

    def verify(self) -> VerifyReport:
        return verify(self.store)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """Through the CLI, as an analyst would (over an S3 lake, the views read s3:// paths)."""
        result = CliRunner().invoke(cli, ["--data-dir", str(self.data_dir), "query", "--format", "json", sql])
        assert result.exit_code == 0, result.output
        rows: list[dict[str, Any]] = json.loads(result.output)
        return rows

    def count(self, sql: str) -> int:
        return int(self.rows(sql)[0]["n"])


@pytest.fixture(params=["local", "s3"])
def night(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Night]:
    """The nightly estate (two documents that process, one that fails), with the lake local or on S3."""
    s3: S3Bucket | None = None
    if request.param == "s3":
        s3 = request.getfixturevalue("s3")
        monkeypatch.setenv("ASSAY_LAKE_STORE", json.dumps(s3.store_settings("lake")))
    yield Night(nightly_source(tmp_path), tmp_path / "data", s3)


@pytest.fixture
def local_night(tmp_path: Path) -> Night:
    return Night(nightly_source(tmp_path), tmp_path / "data")


def test_an_unchanged_rerun_does_no_work_and_adds_no_results(night: Night) -> None:
    first = run(night.data_dir, night.source, NO_MODEL)
    assert first.processed == len(NIGHTLY_GOOD) and first.failed == len(NIGHTLY_BAD) and first.findings > 0
    messages = {
        Path(str(r["document_uri"])).name: r["message"]
        for r in night.rows("select document_uri, message from documents where status = 'processed'")
    }  # the UTF-16 file's encoding was guessed, and its row says so; the HTML parsed without a word
    assert "the parser warned: EncodingDetectionWarning" in messages["unstructured__fake-text-utf-16-be.txt"]
    assert messages["docling__kvp_data_example.html"] is None
    tables = ("texts", "chunks", "findings", "document_values", "routing")
    before = {t: night.count(f"select count(*) as n from {t}") for t in tables}

    again = run(night.data_dir, night.source, NO_MODEL)
    assert again.processed == 0 and again.chunks == 0 and again.findings == 0
    assert again.unchanged == len(NIGHTLY_GOOD) and again.skipped == len(NIGHTLY_GOOD)
    assert again.stage_seconds.get("parse", 0.0) == 0.0
    assert again.documents_in == again.documents
    assert {t: night.count(f"select count(*) as n from {t}") for t in tables} == before
    assert night.verify().ok

    if night.s3 is not None:  # everything landed on the store, in the lake's layout, and nothing locally
        assert not (night.data_dir / "lake").exists()
        manifests = Ledger(night.store).manifests()
        listed = {f"lake/{entry.path}" for m in manifests for entry in m.files} | {
            f"lake/{m.relative}" for m in manifests
        }
        assert night.s3.keys("lake/") == listed
        views = night.rows("select sql from duckdb_views() where view_name = 'findings'")
        assert f"s3://{night.s3.bucket}/lake/findings/" in str(views[0]["sql"])


@pytest.mark.slow
def test_an_unchanged_rerun_asks_the_model_nothing(local_night: Night) -> None:
    """The real model: the first night asks it about each document, the second about none."""
    first = run(local_night.data_dir, local_night.source)  # key_terms, one chunk per document
    assert first.answers == len(NIGHTLY_GOOD)
    again = run(local_night.data_dir, local_night.source)
    assert again.answers == 0 and again.unchanged == len(NIGHTLY_GOOD)
    assert all(again.stage_seconds.get(stage, 0.0) == 0.0 for stage in ("extract", "prefill", "decode", "sample"))
    assert local_night.count("select count(*) as n from answers") == first.answers


def test_changing_one_task_re_extracts_that_task_only_without_parsing(night: Night, tmp_path: Path) -> None:
    run(night.data_dir, night.source, NO_MODEL)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    text = (TEST_TASKS / "patterns_only.yaml").read_text()
    (tasks / "patterns_only.yaml").write_text(text.replace("Nothing to do", "Still nothing to do"))
    changed = run(night.data_dir, night.source, NO_MODEL, task_dir=tasks)
    assert changed.processed == len(NIGHTLY_GOOD) and changed.findings > 0
    run_id = changed.run_id
    # The processed documents reused their parse, read back from the lake (the failed one fails again).
    assert night.count(f"select count(*) as n from documents where run_id = '{run_id}' and parse_seconds > 0") == 0
    assert night.count(f"select count(*) as n from texts where run_id = '{run_id}'") == 0
    assert night.count(f"select count(*) as n from chunks where run_id = '{run_id}'") == 0
    versions = night.rows(f"select distinct task_version from findings where run_id = '{run_id}'")
    assert [v["task_version"] for v in versions] == [find_task("patterns_only", [tasks]).version]
    assert night.verify().ok


def test_tampering_with_a_landed_file_is_caught(night: Night) -> None:
    run(night.data_dir, night.source, NO_MODEL)
    store = night.store
    target = next(path for path in store.data_files() if path.startswith("findings/"))
    data = bytearray(store.read_bytes(target))
    data[len(data) // 2] ^= 0x01
    if night.s3 is not None:
        night.s3.client.put_object(Bucket=night.s3.bucket, Key=f"lake/{target}", Body=bytes(data))
    else:
        Path(store.path(target)).write_bytes(bytes(data))
    assert night.verify().changed == [target]
    failed = CliRunner().invoke(cli, ["--data-dir", str(night.data_dir), "verify"])
    assert failed.exit_code == 1 and "changed" in failed.output


def test_a_file_that_failed_is_not_parsed_again_until_asked(local_night: Night) -> None:
    night = local_night
    run(night.data_dir, night.source, NO_MODEL)
    summary = run(night.data_dir, night.source, NO_MODEL)
    assert summary.failed == len(NIGHTLY_BAD) and summary.document_failures == {"empty_file": len(NIGHTLY_BAD)}
    (row,) = night.rows(
        f"select status, reason, message from document_versions where run_id = '{summary.run_id}' and status = 'failed'"
    )
    assert (row["status"], row["reason"]) == ("failed", "empty_file")
    assert row["message"].startswith("not retried: the same bytes failed")
    failures = night.rows(f"select reason from failures where run_id = '{summary.run_id}'")
    assert failures == [{"reason": "empty_file"}]  # the run still accounts for it, with its reason

    retried = run(night.data_dir, night.source, NO_MODEL, retry_failed=True)
    assert retried.failed == len(NIGHTLY_BAD) and retried.document_failures == {"empty_file": len(NIGHTLY_BAD)}
    (again,) = night.rows(
        f"select message from document_versions where run_id = '{retried.run_id}' and status = 'failed'"
    )
    assert not again["message"].startswith("not retried")  # the parser's own message: it was tried again


def test_changing_one_file_processes_that_file_only(local_night: Night) -> None:
    night = local_night
    run(night.data_dir, night.source, NO_MODEL)
    changed = night.source / NIGHTLY_GOOD[0]
    changed.write_bytes(changed.read_bytes() + "\nAddendum signed in Zurich.\n".encode("utf-16-be"))
    summary = run(night.data_dir, night.source, NO_MODEL)
    assert summary.processed == 1 and summary.unchanged == len(NIGHTLY_GOOD) - 1
    processed = night.rows(
        f"select document_uri from document_versions where run_id = '{summary.run_id}' and status = 'processed'"
    )
    assert [p["document_uri"].rsplit("/", 1)[-1] for p in processed] == [NIGHTLY_GOOD[0]]


def test_landed_parses_are_read_back_together_as_they_were_landed(local_night: Night) -> None:
    night = local_night
    run(night.data_dir, night.source, NO_MODEL)
    settings = load_settings(data_dir=night.data_dir)
    landed = [(r["content_sha256"], r["text"]) for r in night.rows("select content_sha256, text from texts order by 1")]
    assert len(landed) == len(NIGHTLY_GOOD)
    found = load_parsed(open_store(settings), [sha for sha, _ in landed] + ["0" * 64], settings)
    assert sorted(found) == [sha for sha, _ in landed]  # an unknown content is simply not found
    for sha, text in landed:
        document, chunks = found[sha]
        assert document.text == text and document.content_sha256 == sha
        assert [c.ordinal for c in chunks] == list(range(len(chunks)))
        assert all(document.text[c.start : c.end] == c.text for c in chunks)


def test_the_same_bytes_at_a_new_uri_are_not_parsed_again(local_night: Night) -> None:
    night = local_night
    run(night.data_dir, night.source, NO_MODEL)
    shutil.copy(night.source / NIGHTLY_GOOD[1], night.source / ("copy-of-" + NIGHTLY_GOOD[1]))
    summary = run(night.data_dir, night.source, NO_MODEL)
    assert summary.processed == 0 and summary.findings == 0
    (row,) = night.rows(
        f"select content_sha256, reason from document_versions where run_id = '{summary.run_id}'"
        " and document_uri like '%copy-of-%'"
    )
    assert row["reason"] == "unchanged"
    assert night.count(f"select count(*) as n from findings where content_sha256 = '{row['content_sha256']}'") > 0


def test_a_deleted_document_is_marked_and_its_findings_stay_flagged(local_night: Night) -> None:
    night = local_night
    run(night.data_dir, night.source, NO_MODEL)
    gone = night.source / NIGHTLY_GOOD[1]
    keep = gone.read_bytes()
    gone.unlink()
    assert run(night.data_dir, night.source, NO_MODEL).deleted == 0  # a changes-only listing cannot see it
    summary = run(night.data_dir, night.source, NO_MODEL, full_listing=True)
    assert summary.deleted == 1
    uri = gone.resolve().as_uri()
    assert night.rows(f"select deleted from documents where document_uri = '{uri}'") == [{"deleted": True}]
    flagged = night.rows(
        "select count(*) as n, bool_and(document_deleted) as flagged from findings_evidence"
        f" where document_uri = '{uri}'"
    )
    assert flagged[0]["n"] > 0 and flagged[0]["flagged"] is True
    gone.write_bytes(keep)  # it comes back: no longer flagged
    run(night.data_dir, night.source, NO_MODEL)
    assert night.rows(f"select deleted from documents where document_uri = '{uri}'") == [{"deleted": False}]


def test_a_second_run_on_the_same_data_exits_with_a_clear_message(local_night: Night) -> None:
    night = local_night
    run(night.data_dir, night.source, NO_MODEL)
    store = StateStore(default_url(night.data_dir))
    store.locks.acquire("lake", "someone-else", timedelta(minutes=2))  # held, and its heartbeat is fresh
    try:
        with pytest.raises(RunInProgress, match=r"someone-else .* holds the lake lock .* last heartbeat was 0 s ago"):
            run(night.data_dir, night.source, NO_MODEL)
    finally:
        store.locks.release("lake", "someone-else")
    assert night.verify().ok


STALE_AFTER_S = 1.0  # how long a dead run's lock holds the next one off (120 s by default)

CRASHES = [
    *(("local", point) for point in ("parse", "extract", "mid-write", "land", "before-manifest", "after-manifest")),
    # On S3 an object appears whole or not at all: no moment "mid-write"; parsing and extracting are the same.
    *(("s3", point) for point in ("land", "before-manifest", "after-manifest")),
]


@pytest.mark.slow  # a job in a process it kills, then the next night
@pytest.mark.parametrize(("night", "point"), CRASHES, indirect=["night"])
def test_a_crash_at_any_point_loses_and_duplicates_nothing(night: Night, point: str) -> None:
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.jobrunner", str(night.data_dir), str(night.source), *NO_MODEL],
        cwd=ROOT,
        env=dict(os.environ, ASSAY_CRASH_AT=point),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert crashed.returncode == -9, crashed.stderr[-2000:]  # killed by SIGKILL where asked
    store = night.store
    left = set(store.data_files())

    time.sleep(STALE_AFTER_S + 0.5)  # the killed run's heartbeat stops: its lock goes stale
    summary = run(night.data_dir, night.source, NO_MODEL, locks={"stale_after_s": STALE_AFTER_S})  # the next night
    assert night.verify().ok, night.verify()
    assert not any(".tmp" in path for path in store.files()), "a partial file is visible"
    assert summary.documents_in == summary.documents
    processed = night.rows(
        "select document_uri, count(*) as n from document_versions where status = 'processed' group by document_uri"
    )
    assert sorted(Path(str(r["document_uri"])).name for r in processed) == sorted(NIGHTLY_GOOD)
    assert all(r["n"] == 1 for r in processed), processed  # every document processed exactly once
    assert night.count("select count(*) - count(distinct finding_id) as n from findings") == 0
    runs = night.count("select count(*) as n from runs")
    quarantined = {path.split("/", 1)[1] for path in night.store.quarantined_files()}
    if point == "after-manifest":
        assert summary.unchanged == len(NIGHTLY_GOOD) and runs == 2  # the crashed run had landed
        assert not quarantined
    else:
        assert summary.processed == len(NIGHTLY_GOOD) and runs == 1  # its work was rolled back and redone
        assert quarantined == left  # what it left is moved out of the lake, not lost
