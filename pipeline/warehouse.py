"""The DuckDB warehouse: views and macros over the lake, created from sql/*.sql.

Only the job writes it, at the end of a run (one DuckDB file takes one
writer); analysts and `assay query` open it read-only. Rebuilding is
idempotent (`CREATE OR REPLACE`). The views point at the lake by absolute
path, so a moved data folder needs `assay warehouse` (or the next run) to
re-point them.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from string import Template

import duckdb

from pipeline.lake import TABLES, Lake, WrittenFile


def sql_dir() -> Path:
    """sql/ in a source checkout, or its copy inside the installed package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "sql", here / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the sql/ folder of Assay is missing from this installation")


def sql_files() -> list[Path]:
    return sorted(sql_dir().glob("*.sql"))


def ensure_every_table_has_a_file(lake: Lake, run_id: str, run_date: date) -> list[WrittenFile]:
    """A view over a glob that matches nothing fails; an empty file with the schema fixes that."""
    return [
        lake.write(table, [], run_id=run_id, part="schema", run_date=run_date)
        for table in TABLES
        if not lake.has_files(table)
    ]


def build(warehouse_path: Path, lake_root: Path) -> None:
    """Create or replace every view and macro in the warehouse file."""
    warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    lake = str(lake_root.resolve()).replace("'", "''")
    with duckdb.connect(str(warehouse_path)) as con:
        for path in sql_files():
            statement = Template(path.read_text(encoding="utf-8")).substitute(lake=lake)
            con.execute(statement)


def connect_read_only(warehouse_path: Path) -> duckdb.DuckDBPyConnection:
    if not warehouse_path.exists():
        raise FileNotFoundError(f"no warehouse at {warehouse_path}: run `assay run` first")
    return duckdb.connect(str(warehouse_path), read_only=True)
