"""The lake: append-only Parquet files, one per table per shard per run.

Layout (hive-partitioned by run date, so DuckDB prunes by date):

    <lake>/<table>/run_date=YYYY-MM-DD/<run_id>-<part>.parquet

where <lake> is `<data_dir>/lake` or an S3 prefix (pipeline/lake_store.py).
A reader (or a crash) never sees half a file, and files are never rewritten.
The Arrow schema of each table is declared here and documented column by
column in docs/data-dictionary.md (a test keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.faults import crash_point
from pipeline.hashing import sha256_bytes
from pipeline.lake_store import LakeStore, as_store

_ts = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "runs": pa.schema(
        [
            ("run_id", pa.string()),
            ("flow_run_id", pa.string()),
            ("status", pa.string()),
            ("started_at", _ts),
            ("finished_at", _ts),
            ("duration_s", pa.float64()),
            ("sources", pa.string()),
            ("tasks", pa.string()),
            ("config", pa.string()),
            ("versions", pa.string()),
            ("host", pa.string()),
            ("model_name", pa.string()),
            ("model_sha256", pa.string()),
            ("model_quantization", pa.string()),
            ("model_n_params", pa.int64()),
            ("llm_runtime", pa.string()),
            ("documents_in", pa.int64()),
            ("documents_processed", pa.int64()),
            ("documents_failed", pa.int64()),
            ("documents_skipped", pa.int64()),
            ("documents_unchanged", pa.int64()),
            ("documents_deleted", pa.int64()),
            ("pages", pa.int64()),
            ("chunks", pa.int64()),
            ("answers", pa.int64()),
            ("answers_failed", pa.int64()),
            ("findings", pa.int64()),
            ("pages_per_second", pa.float64()),
            ("stage_seconds", pa.string()),
            ("previous_manifest_sha256", pa.string()),
        ]
    ),
    "tasks": pa.schema(
        [
            ("run_id", pa.string()),
            ("task", pa.string()),
            ("task_version", pa.string()),
            ("definition", pa.large_string()),
            ("schema_sha256", pa.string()),
            ("prompt_template", pa.large_string()),
            ("prompt_sha256", pa.string()),
        ]
    ),
    "documents": pa.schema(
        [
            ("run_id", pa.string()),
            ("source", pa.string()),
            ("uri", pa.string()),
            ("version", pa.string()),
            ("size_bytes", pa.int64()),
            ("modified_at", _ts),
            ("content_sha256", pa.string()),
            ("filetype", pa.string()),
            ("status", pa.string()),
            ("reason", pa.string()),
            ("message", pa.string()),
            ("duplicate_of", pa.string()),
            ("text_sha256", pa.string()),
            ("text_chars", pa.int64()),
            ("pages", pa.int64()),
            ("chunks", pa.int64()),
            ("chunks_extracted", pa.int64()),
            ("findings", pa.int64()),
            ("parser", pa.string()),
            ("parser_version", pa.string()),
            ("parse_seconds", pa.float64()),
            ("model_tokens", pa.int64()),
            ("processed_at", _ts),
        ]
    ),
    "texts": pa.schema(
        [
            ("run_id", pa.string()),
            ("content_sha256", pa.string()),
            ("text_sha256", pa.string()),
            ("text", pa.large_string()),
            ("page_spans", pa.string()),
        ]
    ),
    "chunks": pa.schema(
        [
            ("run_id", pa.string()),
            ("chunk_id", pa.string()),
            ("content_sha256", pa.string()),
            ("ordinal", pa.int32()),
            ("char_start", pa.int64()),
            ("char_end", pa.int64()),
            ("pages", pa.list_(pa.int32())),
            ("text", pa.large_string()),
            ("placement", pa.string()),
            ("chunking", pa.string()),
        ]
    ),
    "answers": pa.schema(
        [
            ("run_id", pa.string()),
            ("answer_id", pa.string()),
            ("chunk_id", pa.string()),
            ("content_sha256", pa.string()),
            ("task", pa.string()),
            ("task_version", pa.string()),
            ("status", pa.string()),
            ("reason", pa.string()),
            ("message", pa.string()),
            ("raw_output", pa.large_string()),
            ("finish_reason", pa.string()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("seconds", pa.float64()),
            ("prompt_sha256", pa.string()),
            ("schema_sha256", pa.string()),
            ("model_sha256", pa.string()),
            ("sampling", pa.string()),
            ("fingerprint", pa.string()),
            ("created_at", _ts),
        ]
    ),
    "findings": pa.schema(
        [
            ("run_id", pa.string()),
            ("flow_run_id", pa.string()),
            ("finding_id", pa.string()),
            ("answer_id", pa.string()),
            ("task", pa.string()),
            ("task_version", pa.string()),
            ("field", pa.string()),
            ("item_index", pa.int32()),
            ("value", pa.string()),
            ("value_json", pa.string()),
            ("evidence_quote", pa.string()),
            ("evidence_text", pa.string()),
            ("evidence_start", pa.int64()),
            ("evidence_end", pa.int64()),
            ("evidence_page", pa.int32()),
            ("grounding_status", pa.string()),
            ("grounding_score", pa.float64()),
            ("grounded_on", pa.string()),
            ("confidence", pa.float64()),
            ("method", pa.string()),
            ("rule", pa.string()),
            ("chunk_id", pa.string()),
            ("chunk_start", pa.int64()),
            ("chunk_end", pa.int64()),
            ("content_sha256", pa.string()),
            ("document_uri", pa.string()),
            ("document_version", pa.string()),
            ("text_sha256", pa.string()),
            ("parser", pa.string()),
            ("parser_version", pa.string()),
            ("chunking", pa.string()),
            ("prompt_sha256", pa.string()),
            ("schema_sha256", pa.string()),
            ("model_name", pa.string()),
            ("model_sha256", pa.string()),
            ("model_quantization", pa.string()),
            ("llm_runtime", pa.string()),
            ("sampling", pa.string()),
            ("seed", pa.int64()),
            ("fingerprint", pa.string()),
            ("created_at", _ts),
        ]
    ),
    "routing": pa.schema(
        [
            ("run_id", pa.string()),
            ("content_sha256", pa.string()),
            ("task", pa.string()),
            ("task_version", pa.string()),
            ("chunk_id", pa.string()),
            ("ordinal", pa.int32()),
            ("routed", pa.bool_()),
            ("reason", pa.string()),
        ]
    ),
    "document_values": pa.schema(
        [
            ("run_id", pa.string()),
            ("content_sha256", pa.string()),
            ("document_uri", pa.string()),
            ("task", pa.string()),
            ("task_version", pa.string()),
            ("field", pa.string()),
            ("kind", pa.string()),
            ("item_index", pa.int32()),
            ("value", pa.string()),
            ("normalised", pa.string()),
            ("status", pa.string()),
            ("support", pa.int32()),
            ("score", pa.float64()),
            ("methods", pa.string()),
            ("confidence", pa.float64()),
            ("finding_id", pa.string()),
            ("finding_ids", pa.list_(pa.string())),
            ("evidence_text", pa.string()),
            ("evidence_start", pa.int64()),
            ("evidence_end", pa.int64()),
            ("evidence_page", pa.int32()),
            ("alternatives", pa.string()),
            ("created_at", _ts),
        ]
    ),
    "review_decisions": pa.schema(
        [
            ("decision_id", pa.string()),
            ("finding_id", pa.string()),
            ("decision", pa.string()),
            ("corrected_value", pa.string()),
            ("reviewer", pa.string()),
            ("comment", pa.string()),
            ("decided_at", _ts),
        ]
    ),
    "replays": pa.schema(
        [
            ("replay_id", pa.string()),
            ("run_id", pa.string()),
            ("finding_id", pa.string()),
            ("answer_id", pa.string()),
            ("status", pa.string()),
            ("reproduced", pa.bool_()),
            ("raw_identical", pa.bool_()),
            ("original_value", pa.string()),
            ("replayed_value", pa.string()),
            ("message", pa.string()),
            ("model_sha256", pa.string()),
            ("llm_runtime", pa.string()),
            ("replayed_at", _ts),
        ]
    ),
    "deletions": pa.schema(
        [
            ("run_id", pa.string()),
            ("source", pa.string()),
            ("uri", pa.string()),
            ("content_sha256", pa.string()),
            ("deleted_at", _ts),
        ]
    ),
    "failures": pa.schema(
        [
            ("run_id", pa.string()),
            ("stage", pa.string()),
            ("reason", pa.string()),
            ("message", pa.string()),
            ("source", pa.string()),
            ("uri", pa.string()),
            ("content_sha256", pa.string()),
            ("chunk_id", pa.string()),
            ("task", pa.string()),
            ("raw_output", pa.large_string()),
            ("created_at", _ts),
        ]
    ),
}

TABLES = tuple(SCHEMAS)


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

    def write(self, table: str, rows: list[dict[str, Any]], run_id: str, part: str, run_date: date) -> FileEntry:
        """Write one file and return its manifest entry (SHA-256, size and rows taken from the bytes written)."""
        arrow_table = pa.Table.from_pylist(rows, schema=SCHEMAS[table])
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
