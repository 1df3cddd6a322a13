"""The warehouse an analyst opens: it moves with its data, reads committed files only, never blocks a run,
and says what to run when it does not describe the lake beside it. Real runs (the task `patterns_only`,
no model), real DuckDB, a second process holding the warehouse open."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from assay.cli import cli
from pipeline.land import warehouse
from pipeline.land.store import local_store
from pipeline.land.warehouse import STORAGE_VERSION, WarehouseError
from tests.jobrunner import NO_MODEL, run
from tests.support import ROOT, nightly_source


def _count(data_dir: Path, sql: str) -> int:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "query", "--format", "csv", sql])
    assert result.exit_code == 0, result.output
    return int(result.output.splitlines()[1])


@pytest.fixture
def landed_night(tmp_path: Path) -> tuple[Path, Path]:
    """(source, data directory) after one night."""
    source = nightly_source(tmp_path)
    data_dir = tmp_path / "data"
    run(data_dir, source, NO_MODEL)
    return source, data_dir


def test_the_views_name_the_lake_relative_to_the_warehouse(landed_night: tuple[Path, Path]) -> None:
    _, data_dir = landed_night
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        definitions = [r[0] for r in con.execute("select sql from duckdb_views() where not internal").fetchall()]
        tags = con.execute("select tags from duckdb_databases() where database_name = 'warehouse'").fetchone()
    assert any("'lake/findings/run_date=" in sql for sql in definitions)
    assert not any(str(data_dir) in sql for sql in definitions)  # no absolute path anywhere
    assert not any(re.search(r"'[^']*\*[^']*'", sql) for sql in definitions)  # no glob: listed files only
    assert tags is not None and tags[0]["storage_version"] == STORAGE_VERSION + "+"


def test_a_copied_data_folder_reads_its_own_lake(landed_night: tuple[Path, Path], tmp_path: Path) -> None:
    source, data_dir = landed_night
    copy = tmp_path / "copy-of-data"
    shutil.copytree(data_dir, copy)
    findings = _count(copy, "select count(*) from findings")
    assert findings > 0
    (source / "more.txt").write_text("Call (555) 123-4567 before 01/02/2026.")
    run(data_dir, source, NO_MODEL)  # the original moves on...
    assert _count(data_dir, "select count(*) from findings") > findings
    shutil.rmtree(data_dir / "lake")  # ...and even loses its lake: the copy reads its own
    assert _count(copy, "select count(*) from findings") == findings


def test_a_moved_data_folder_still_answers_and_a_plain_duckdb_client_reads_it_from_there(
    landed_night: tuple[Path, Path], tmp_path: Path
) -> None:
    _, data_dir = landed_night
    moved = tmp_path / "elsewhere" / "Données d'audit 2026"  # a name with a space, an accent and a quote
    shutil.move(data_dir, moved)
    runs = CliRunner().invoke(cli, ["--data-dir", str(moved), "runs"])
    assert runs.exit_code == 0 and "completed" in runs.output, runs.output
    findings = _count(moved, "select count(*) from findings")
    # The plain duckdb package, as an analyst would use it: from the data folder, or naming it.
    code = "import duckdb; con = duckdb.connect('warehouse.duckdb', read_only=True); "
    code += "print(con.execute('select count(*) from findings').fetchone()[0])"
    from_there = subprocess.run([sys.executable, "-c", code], cwd=moved, capture_output=True, text=True)
    assert from_there.stdout.strip() == str(findings), from_there.stderr
    con = duckdb.connect(str(moved / "warehouse.duckdb"), read_only=True, config={"file_search_path": str(moved)})
    assert con.execute("select count(*) from findings").fetchone() == (findings,)
    con.close()


def test_an_analyst_holding_the_warehouse_open_does_not_block_a_run(landed_night: tuple[Path, Path]) -> None:
    source, data_dir = landed_night
    before = _count(data_dir, "select count(*) from runs")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"con = duckdb.connect({str(data_dir / 'warehouse.duckdb')!r}, read_only=True,"
            f" config={{'file_search_path': {str(data_dir)!r}}})\n"
            "print(con.execute('select count(*) from runs').fetchone()[0], flush=True)\n"
            "sys.stdin.readline()\n"  # hold it open until told
            "print(con.execute('select count(*) from runs').fetchone()[0], flush=True)\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert int(holder.stdout.readline()) == before
        (source / "more.txt").write_text("Call (555) 123-4567.")
        summary = run(data_dir, source, NO_MODEL)
        assert summary.status == "completed" and summary.warnings == []
        assert _count(data_dir, "select count(*) from runs") == before + 1  # a new session sees the new run
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert int(holder.stdout.readline()) == before  # the open session kept its consistent, older view
    finally:
        holder.kill()
        holder.wait()


def test_only_committed_files_are_visible(landed_night: tuple[Path, Path], tmp_path: Path) -> None:
    source, data_dir = landed_night
    findings = _count(data_dir, "select count(*) from findings")
    lake = data_dir / "lake"
    committed = next(lake.glob("findings/run_date=*/*.parquet"))
    shutil.copy(committed, committed.with_name("stray-copy.parquet"))  # someone copies a file in by hand
    (source / "more.txt").write_text("Call (555) 123-4567.")
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.jobrunner", str(data_dir), str(source), *NO_MODEL],
        cwd=ROOT,
        env=dict(os.environ, ASSAY_CRASH_AT="before-manifest"),  # its files are written, not committed
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    assert len(list(lake.glob("findings/run_date=*/*.parquet"))) == 3  # committed, stray, the crashed run's
    assert _count(data_dir, "select count(*) from findings") == findings
    assert _count(data_dir, "select count(*) - count(distinct finding_id) from findings") == 0
    rebuilt = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "warehouse"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert _count(data_dir, "select count(*) from findings") == findings  # still: the views list files


def test_a_warehouse_that_does_not_describe_its_lake_says_what_to_run(
    landed_night: tuple[Path, Path], tmp_path: Path
) -> None:
    source, data_dir = landed_night
    stale = tmp_path / "stale.duckdb"
    shutil.copy(data_dir / "warehouse.duckdb", stale)
    run(data_dir, source, NO_MODEL)
    shutil.copy(stale, data_dir / "warehouse.duckdb")  # the catalog of one commit ago
    store = local_store(data_dir / "lake")
    with warehouse.connect_read_only(data_dir / "warehouse.duckdb", store) as con:  # it still opens...
        assert warehouse.check(con, store, data_dir / "warehouse.duckdb") == (
            "the warehouse is 1 commit(s) behind the lake: run `assay warehouse` to see them"
        )  # ...with a warning

    other = tmp_path / "other"
    run(other / "data", nightly_source(other), NO_MODEL)
    shutil.copy(data_dir / "warehouse.duckdb", other / "data" / "warehouse.duckdb")  # another lake's catalog
    result = CliRunner().invoke(cli, ["--data-dir", str(other / "data"), "runs"])
    assert result.exit_code == 1
    assert "describes another lake" in result.output and "run `assay warehouse`" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(WarehouseError):
        warehouse.connect_read_only(other / "data" / "warehouse.duckdb", local_store(other / "data" / "lake"))
    fixed = CliRunner().invoke(cli, ["--data-dir", str(other / "data"), "warehouse"])
    assert fixed.exit_code == 0
    assert CliRunner().invoke(cli, ["--data-dir", str(other / "data"), "runs"]).exit_code == 0


def test_rebuilding_an_up_to_date_warehouse_writes_nothing(landed_night: tuple[Path, Path]) -> None:
    _, data_dir = landed_night
    path = data_dir / "warehouse.duckdb"
    before = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert warehouse.build(path, local_store(data_dir / "lake")) is False
    assert path.stat().st_mtime_ns == before


def test_a_missing_lake_file_is_explained(landed_night: tuple[Path, Path]) -> None:
    _, data_dir = landed_night
    next((data_dir / "lake").glob("findings/run_date=*/*.parquet")).unlink()
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "query", "select count(*) from findings"])
    assert result.exit_code == 1
    assert "not there" in result.output and "assay verify" in result.output and "Traceback" not in result.output
