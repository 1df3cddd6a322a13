"""Nightly runs: only new work is done, deletions are flagged, crashes lose and duplicate nothing,
and two runs never share a lake. Real model, real parser, real Parquet, the SQLite state store
(tests/test_state_store.py runs the store itself on PostgreSQL too)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipeline.core.errors import RunInProgress
from pipeline.core.settings import load_settings
from pipeline.core.tasks import BUILTIN_TASK_DIR
from pipeline.land import warehouse
from pipeline.land.ledger import verify
from pipeline.land.store import open_store
from pipeline.state.incremental import load_parsed
from pipeline.state.store import StateStore, default_url
from tests.conftest import NIGHTLY_BAD, NIGHTLY_GOOD, ROOT, nightly_source
from tests.jobrunner import run


def _query(data_dir: Path, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with warehouse.connect_read_only(data_dir / "warehouse.duckdb") as con:
        return con.execute(sql).fetchall()


def _count(data_dir: Path, table: str) -> int:
    return int(_query(data_dir, f"select count(*) from {table}")[0][0])


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A data directory after one full run; tests copy it and run again."""
    root = tmp_path_factory.mktemp("nightly")
    source = nightly_source(root)
    data_dir = root / "data"
    summary = run(data_dir, source)
    assert summary.processed == len(NIGHTLY_GOOD) and summary.failed == len(NIGHTLY_BAD)
    return data_dir, source


@pytest.fixture
def estate(first: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    data_dir, source = first
    shutil.copytree(data_dir, tmp_path / "data")
    shutil.copytree(source, tmp_path / "in")
    # the state store holds absolute source paths: keep the copy's sources at the same URIs
    return tmp_path / "data", source


def test_an_unchanged_rerun_does_no_parsing_no_model_work_and_adds_no_results(estate: tuple[Path, Path]) -> None:
    data_dir, source = estate
    before = {t: _count(data_dir, t) for t in ("texts", "chunks", "answers", "findings")}
    summary = run(data_dir, source)
    assert summary.processed == 0
    assert summary.unchanged == len(NIGHTLY_GOOD) and summary.skipped == len(NIGHTLY_GOOD)
    assert summary.answers == 0 and summary.chunks == 0
    assert all(summary.stage_seconds.get(stage, 0.0) == 0.0 for stage in ("extract", "prefill", "decode", "sample"))
    assert summary.documents_in == summary.processed + summary.failed + summary.skipped
    after = {t: _count(data_dir, t) for t in ("texts", "chunks", "answers", "findings")}
    assert after == before
    assert verify(data_dir / "lake").ok


def test_a_file_that_failed_is_not_parsed_again_until_asked(estate: tuple[Path, Path]) -> None:
    data_dir, source = estate
    summary = run(data_dir, source)
    assert summary.failed == len(NIGHTLY_BAD) and summary.document_failures == {"empty_file": len(NIGHTLY_BAD)}
    (row,) = _query(
        data_dir,
        f"select status, reason, message from document_versions where run_id = '{summary.run_id}'"
        " and status = 'failed'",
    )
    assert row[:2] == ("failed", "empty_file") and row[2].startswith("not retried: the same bytes failed")
    failures = _query(data_dir, f"select reason from failures where run_id = '{summary.run_id}'")
    assert failures == [("empty_file",)]  # the run still accounts for it, with its reason

    retried = run(data_dir, source, retry_failed=True)
    assert retried.failed == len(NIGHTLY_BAD) and retried.document_failures == {"empty_file": len(NIGHTLY_BAD)}
    (message,) = _query(
        data_dir, f"select message from document_versions where run_id = '{retried.run_id}' and status = 'failed'"
    )[0]
    assert not message.startswith("not retried")  # the parser's own message: it was tried again


def test_changing_one_file_processes_that_file_only(estate: tuple[Path, Path], tmp_path: Path) -> None:
    data_dir, source = estate
    changed = source / NIGHTLY_GOOD[0]
    original = changed.read_bytes()
    try:
        changed.write_bytes(original + "\nAddendum signed in Zurich.\n".encode("utf-16-be"))
        summary = run(data_dir, source)
    finally:
        changed.write_bytes(original)
    assert summary.processed == 1 and summary.unchanged == len(NIGHTLY_GOOD) - 1
    run_id = summary.run_id
    processed = _query(
        data_dir, f"select uri from document_versions where run_id = '{run_id}' and status = 'processed'"
    )
    assert [p[0].rsplit("/", 1)[-1] for p in processed] == [NIGHTLY_GOOD[0]]


def test_changing_one_task_re_extracts_that_task_only_without_parsing(
    estate: tuple[Path, Path], tmp_path: Path
) -> None:
    data_dir, source = estate
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    text = (BUILTIN_TASK_DIR / "key_terms.yaml").read_text()
    (tasks / "key_terms.yaml").write_text(text.replace("Read the text", "Read the document"))
    summary = run(data_dir, source, task_dir=tasks)
    assert summary.processed == len(NIGHTLY_GOOD)
    assert summary.answers == len(NIGHTLY_GOOD)  # one chunk each (max_chunks_per_document=1), one task
    run_id = summary.run_id
    # The processed documents reused their earlier parse (the failed one is tried again, and fails again).
    reparsed = (
        f"select count(*) from documents where run_id = '{run_id}' and status = 'processed' and parse_seconds > 0"
    )
    assert _query(data_dir, reparsed)[0][0] == 0
    assert _query(data_dir, f"select count(*) from texts where run_id = '{run_id}'")[0][0] == 0
    assert _query(data_dir, f"select count(*) from chunks where run_id = '{run_id}'")[0][0] == 0
    versions = _query(data_dir, f"select distinct task_version from answers where run_id = '{run_id}'")
    assert len(versions) == 1


def test_landed_parses_are_read_back_together_as_they_were_landed(first: tuple[Path, Path]) -> None:
    data_dir, _ = first
    settings = load_settings(data_dir=data_dir)
    landed = _query(data_dir, "select content_sha256, text from texts order by 1")
    assert len(landed) == len(NIGHTLY_GOOD)
    found = load_parsed(open_store(settings), [sha for sha, _ in landed] + ["0" * 64], settings)
    assert sorted(found) == [sha for sha, _ in landed]  # an unknown content is simply not found
    for sha, text in landed:
        document, chunks = found[sha]
        assert document.text == text and document.content_sha256 == sha
        assert [c.ordinal for c in chunks] == list(range(len(chunks)))
        assert all(document.text[c.start : c.end] == c.text for c in chunks)


def test_the_same_bytes_at_a_new_uri_are_not_parsed_again(estate: tuple[Path, Path]) -> None:
    data_dir, source = estate
    copy = source / ("copy-of-" + NIGHTLY_GOOD[1])
    shutil.copy(source / NIGHTLY_GOOD[1], copy)
    try:
        summary = run(data_dir, source)
    finally:
        copy.unlink()
    assert summary.processed == 0 and summary.answers == 0
    rows = _query(
        data_dir,
        f"select content_sha256, reason from document_versions where run_id = '{summary.run_id}'"
        f" and uri like '%copy-of-%'",
    )
    sha, reason = rows[0]
    assert reason == "unchanged"
    assert _query(data_dir, f"select count(*) from findings where content_sha256 = '{sha}'")[0][0] > 0


def test_a_deleted_document_is_marked_and_its_findings_stay_flagged(estate: tuple[Path, Path]) -> None:
    data_dir, source = estate
    gone = source / NIGHTLY_GOOD[1]
    keep = gone.read_bytes()
    gone.unlink()
    try:
        summary = run(data_dir, source)
    finally:
        gone.write_bytes(keep)
    assert summary.deleted == 1
    uri = gone.resolve().as_uri()
    assert _query(data_dir, f"select deleted from documents where uri = '{uri}'") == [(True,)]
    flagged = _query(
        data_dir, f"select count(*), bool_and(document_deleted) from findings_evidence where document_uri = '{uri}'"
    )
    assert flagged[0][0] > 0 and flagged[0][1] is True
    # it comes back: no longer flagged
    summary = run(data_dir, source)
    assert _query(data_dir, f"select deleted from documents where uri = '{uri}'") == [(False,)]


def test_a_second_run_on_the_same_data_exits_with_a_clear_message(estate: tuple[Path, Path]) -> None:
    data_dir, source = estate
    store = StateStore(default_url(data_dir))
    store.acquire_lock("someone-else")  # held by this (live) process
    try:
        with pytest.raises(RunInProgress, match="someone-else"):
            run(data_dir, source)
    finally:
        store.release_lock("someone-else")
    assert verify(data_dir / "lake").ok


@pytest.mark.parametrize("point", ["parse", "extract", "mid-write", "land", "before-manifest", "after-manifest"])
def test_a_crash_at_any_point_loses_and_duplicates_nothing(point: str, tmp_path: Path) -> None:
    source = nightly_source(tmp_path)
    data_dir = tmp_path / "data"
    env = dict(os.environ, ASSAY_CRASH_AT=point)
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.jobrunner", str(data_dir), str(source)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert crashed.returncode == -9, crashed.stderr[-2000:]  # killed by SIGKILL where asked

    summary = run(data_dir, source)  # the next night
    lake = data_dir / "lake"
    assert not list(lake.rglob("*.tmp")), "a partial file is visible"
    assert verify(lake).ok, verify(lake)
    assert summary.documents_in == summary.processed + summary.failed + summary.skipped
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        processed = con.execute(
            "select uri, count(*) from document_versions where status = 'processed' group by uri"
        ).fetchall()
        duplicates = con.execute("select count(*) - count(distinct finding_id) from findings").fetchone()
        runs = con.execute("select count(*) from runs").fetchone()
    finally:
        con.close()
    assert sorted(Path(uri).name for uri, _ in processed) == sorted(NIGHTLY_GOOD)
    assert all(count == 1 for _, count in processed), processed  # every document processed exactly once
    assert duplicates == (0,)
    if point == "after-manifest":
        assert summary.unchanged == len(NIGHTLY_GOOD) and runs == (2,)  # the crashed run had landed
    else:
        assert summary.processed == len(NIGHTLY_GOOD) and runs == (1,)  # its work was rolled back and redone
