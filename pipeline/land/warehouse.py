"""The DuckDB warehouse: views and macros over the lake, created from sql/*.sql.

Only the job writes it, at the end of a run (one DuckDB file takes one
writer); analysts and `assay query` open it read-only. Rebuilding is
idempotent (`CREATE OR REPLACE`). The views point at the lake by absolute
path or s3:// URL, so a moved data folder needs `assay warehouse` (or the
next run) to re-point them. Over an S3 lake, Assay's own connections read
through pyarrow (pipeline/lake_store.py); another DuckDB client needs the
httpfs extension and an S3 secret for that store (docs/operations.md).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from string import Template
from typing import Any

import duckdb

from pipeline.core.settings import Settings
from pipeline.land.lake import FileEntry, Lake
from pipeline.land.store import DUCKDB_CONFIG, LakeStore, as_store, open_store
from pipeline.land.tables import TABLES


def sql_dir() -> Path:
    """sql/ in a source checkout, or its copy inside the installed package."""
    package = Path(__file__).resolve().parent.parent  # pipeline/
    for candidate in (package.parent / "sql", package / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the sql/ folder of Assay is missing from this installation")


def sql_files() -> list[Path]:
    return sorted(sql_dir().glob("*.sql"))


def ensure_every_table_has_a_file(lake: Lake, run_id: str, run_date: date) -> list[FileEntry]:
    """A view over a glob that matches nothing fails; an empty file with the schema fixes that."""
    return [
        lake.write(table, [], run_id=run_id, part="schema", run_date=run_date)
        for table in TABLES
        if not lake.has_files(table)
    ]


def build(warehouse_path: Path, lake: LakeStore | Path) -> None:
    """Create or replace every view and macro in the warehouse file."""
    store = as_store(lake)
    warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    root = store.url.replace("'", "''")
    with store.connect(str(warehouse_path)) as con:
        for path in sql_files():
            statement = Template(path.read_text(encoding="utf-8")).substitute(lake=root)
            con.execute(statement)


def connect_read_only(warehouse_path: Path, lake: LakeStore | None = None) -> duckdb.DuckDBPyConnection:
    """The warehouse, read-only; pass the lake's store when it is on S3 (its views read s3:// paths)."""
    if not warehouse_path.exists():
        raise FileNotFoundError(f"no warehouse at {warehouse_path}: run `assay run` first")
    if lake is not None:
        return lake.connect(str(warehouse_path), read_only=True)
    return duckdb.connect(str(warehouse_path), read_only=True, config=dict(DUCKDB_CONFIG))


def read_only(settings: Settings) -> duckdb.DuckDBPyConnection:
    """The warehouse of these settings, read-only, able to read their lake wherever it is."""
    return connect_read_only(settings.warehouse_path, open_store(settings))


# -- the questions the CLI asks the warehouse ------------------------------------------------------


def rows_of(cursor: duckdb.DuckDBPyConnection) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and rows of an executed statement."""
    return [d[0] for d in cursor.description or []], cursor.fetchall()


def recent_runs(con: duckdb.DuckDBPyConnection, limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The newest runs with their counts (view `run_summary`)."""
    return rows_of(
        con.execute(
            "select run_id, status, strftime(started_at, '%Y-%m-%d %H:%M') as started, duration_s as secs,"
            ' documents_in as "in", documents_processed as processed, documents_failed as failed,'
            ' documents_skipped as skipped, chunks, findings, pages_per_second as "pages/s"'
            " from run_summary limit ?",
            [limit],
        )
    )


def finding_with_text(con: duckdb.DuckDBPyConnection, finding_id: str) -> dict[str, Any] | None:
    """A finding's row (its newest landing) and its document's canonical text (`document_text`)."""
    columns, rows = rows_of(
        con.execute(
            "select f.*, t.text as document_text from findings f"
            " left join (select distinct content_sha256, text_sha256, text from texts) t"
            " on t.content_sha256 = f.content_sha256 and t.text_sha256 = f.text_sha256"
            " where f.finding_id = ? order by f.created_at desc limit 1",
            [finding_id],
        )
    )
    return dict(zip(columns, rows[0], strict=True)) if rows else None


def example_finding(con: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    """A finding of this run worth showing: grounded, most confident first."""
    row = con.execute(
        "select finding_id from findings where run_id = ? and grounding_status <> 'ungrounded'"
        " order by confidence desc limit 1",
        [run_id],
    ).fetchone()
    return str(row[0]) if row else None
