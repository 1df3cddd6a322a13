"""The lake: append-only Parquet files, one per table per shard per run.

Layout (hive-partitioned by run date, so DuckDB prunes by date):

    <lake>/<table>/run_date=YYYY-MM-DD/<run_id>-<part>.parquet

where <lake> is `<data_dir>/lake` or an S3 prefix (pipeline/land/store.py).
A reader (or a crash) never sees half a file, and files are never rewritten.
The tables and their Arrow schemas are declared in pipeline/land/tables.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.faults import crash_point
from pipeline.core.hashing import sha256_bytes
from pipeline.land.store import LakeStore, as_store
from pipeline.land.tables import LakeRow, to_arrow


@dataclass(frozen=True)
class FileEntry:
    """One lake file as its manifest lists it."""

    path: str  # relative to the lake root, with forward slashes
    sha256: str
    bytes: int
    rows: int
    table: str


class Lake:
    """Writes Parquet files into the lake (a folder or an S3 prefix); never rewrites one."""

    def __init__(self, store: LakeStore | Path) -> None:
        self.store = as_store(store)

    def write(self, table: str, rows: Sequence[LakeRow], run_id: str, part: str, run_date: date) -> FileEntry:
        """Write one file and return its manifest entry (SHA-256, size and rows taken from the bytes written)."""
        arrow_table = to_arrow(table, rows)
        buffer = pa.BufferOutputStream()
        pq.write_table(arrow_table, buffer, compression="zstd")
        data = buffer.getvalue().to_pybytes()
        relative = f"{table}/run_date={run_date.isoformat()}/{run_id}-{part}.parquet"
        # test hook: die with a temporary file on disk
        self.store.put(relative, data, before_visible=lambda: crash_point("mid-write"))
        return FileEntry(
            path=relative, sha256=sha256_bytes(data), bytes=len(data), rows=arrow_table.num_rows, table=table
        )

    def has_files(self, table: str) -> bool:
        return any(relative.endswith(".parquet") for relative in self.store.files(table))
