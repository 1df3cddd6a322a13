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

import duckdb

from pipeline.lake import TABLES, FileEntry, Lake
from pipeline.lake_store import DUCKDB_CONFIG, LakeStore, as_store, open_store
from pipeline.settings import Settings


def sql_dir() -> Path:
    """sql/ in a source checkout, or its copy inside the installed package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "sql", here / "sql"):
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
