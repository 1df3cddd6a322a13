"""The lake's tables: one typed row class per table, and the Arrow schema each one declares.

A table is declared once, here: its columns are the row class's fields, in
order, and each column's Arrow type follows from the field's type (`str` is a
string, `int` an int64, `float` a float64, `bool` a boolean, `Timestamp` a UTC
microsecond timestamp; `Int32`, `LargeStr` and `Int32List` say so where the
Arrow type is narrower or wider). Every column may be null in the files; a field
without `| None` is one that Assay always fills. docs/data-dictionary.md
documents every column (tests/test_docs.py keeps the two in step), and each
row is built in one place (named in its class's docstring).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Union

import pyarrow as pa

LargeStr = Annotated[str, pa.large_string()]
Int32 = Annotated[int, pa.int32()]
Int32List = Annotated[list[int], pa.list_(pa.int32())]
Timestamp = Annotated[datetime, pa.timestamp("us", tz="UTC")]

_PLAIN: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    list[str]: pa.list_(pa.string()),
}


@dataclass(kw_only=True, slots=True)
class RunRow:
    """One run: its settings, versions, model and counts (built by pipeline/run/finish.py)."""

    TABLE: ClassVar[str] = "runs"

    run_id: str
    flow_run_id: str | None = None
    status: str
    started_at: Timestamp
    finished_at: Timestamp
    duration_s: float
    sources: str
    listing: str | None = None  # JSON: per source, listed in full or changes since a cursor, and why
    tasks: str
    config: str
    versions: str
    host: str
    model_name: str
    model_sha256: str
    model_quantization: str | None = None
    model_n_params: int | None = None
    llm_runtime: str | None = None
    documents_in: int
    documents_children: int | None = None  # found inside archives and e-mails (null in runs before containers)
    documents_processed: int
    documents_failed: int
    documents_skipped: int
    documents_unchanged: int
    documents_deleted: int
    pages: int
    chunks: int
    answers: int
    answers_failed: int
    answers_partial: int | None = None  # null in runs before partial answers were kept
    findings: int
    pages_per_second: float
    stage_seconds: str
    previous_manifest_sha256: str | None = None


@dataclass(kw_only=True, slots=True)
class TaskRow:
    """A task's definition as a run used it (built by pipeline/run/finish.py)."""

    TABLE: ClassVar[str] = "tasks"

    run_id: str
    task: str
    task_version: str
    definition: LargeStr
    schema_sha256: str
    prompt_template: LargeStr | None = None
    prompt_sha256: str | None = None


@dataclass(kw_only=True, slots=True)
class DocumentRow:
    """What one run did with one listed document (built by pipeline/run/documents.py, filled in as it goes)."""

    TABLE: ClassVar[str] = "documents"

    run_id: str
    source: str
    uri: str
    version: str
    size_bytes: int
    modified_at: Timestamp | None = None
    content_sha256: str | None = None
    parent_uri: str | None = None
    filetype: str | None = None
    status: str = "failed"
    reason: str | None = None
    message: str | None = None
    duplicate_of: str | None = None
    text_sha256: str | None = None
    text_chars: int | None = None
    pages: int | None = None
    ocr_pages: int | None = None
    ocr_confidence: float | None = None  # the lowest mean word confidence among the OCR'd pages
    chunks: int = 0
    chunks_extracted: int = 0
    findings: int = 0
    parser: str | None = None
    parser_version: str | None = None
    parse_seconds: float | None = None
    model_tokens: int | None = None
    processed_at: Timestamp | None = None


@dataclass(kw_only=True, slots=True)
class TextRow:
    """A document's canonical text (built by pipeline/run/documents.py)."""

    TABLE: ClassVar[str] = "texts"

    run_id: str
    content_sha256: str
    text_sha256: str
    text: LargeStr
    page_spans: str


@dataclass(kw_only=True, slots=True)
class ChunkRow:
    """One chunk of a canonical text (built by pipeline/run/documents.py)."""

    TABLE: ClassVar[str] = "chunks"

    run_id: str
    chunk_id: str
    content_sha256: str
    ordinal: Int32
    char_start: int
    char_end: int
    pages: Int32List
    text: LargeStr
    placement: str
    chunking: str


@dataclass(kw_only=True, slots=True)
class AnswerRow:
    """One model answer for one chunk and task (built by pipeline/extract/findings.py)."""

    TABLE: ClassVar[str] = "answers"

    run_id: str
    answer_id: str
    chunk_id: str
    content_sha256: str
    task: str
    task_version: str
    status: str = "ok"
    reason: str | None = None
    message: str | None = None
    raw_output: LargeStr
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    prompt_sha256: str | None = None
    schema_sha256: str
    model_sha256: str
    sampling: str
    fingerprint: str
    created_at: Timestamp


@dataclass(kw_only=True, slots=True)
class FindingRow:
    """One extracted value with its evidence and lineage, from the model or a rule (pipeline/extract/findings.py)."""

    TABLE: ClassVar[str] = "findings"

    run_id: str
    flow_run_id: str | None = None
    finding_id: str
    answer_id: str | None = None
    task: str
    task_version: str
    field: str
    item_index: Int32
    value: str
    value_json: str
    evidence_quote: str | None = None
    evidence_text: str | None = None
    evidence_start: int | None = None
    evidence_end: int | None = None
    evidence_page: Int32 | None = None
    grounding_status: str
    grounding_score: float
    grounded_on: str | None = None
    confidence: float | None = None
    method: str
    rule: str | None = None
    chunk_id: str | None = None
    chunk_start: int | None = None
    chunk_end: int | None = None
    content_sha256: str
    document_uri: str
    document_version: str
    text_sha256: str
    parser: str
    parser_version: str
    chunking: str
    prompt_sha256: str | None = None
    schema_sha256: str
    model_name: str | None = None
    model_sha256: str | None = None
    model_quantization: str | None = None
    llm_runtime: str | None = None
    sampling: str | None = None
    seed: int | None = None
    fingerprint: str
    created_at: Timestamp


@dataclass(kw_only=True, slots=True)
class RoutingRow:
    """Whether one chunk went to the model for one task, and why (built by pipeline/run/documents.py)."""

    TABLE: ClassVar[str] = "routing"

    run_id: str
    content_sha256: str
    task: str
    task_version: str
    chunk_id: str
    ordinal: Int32
    routed: bool
    reason: str


@dataclass(kw_only=True, slots=True)
class DocumentValueRow:
    """One reduced value of a field of a document for a task (built by pipeline/reduce/values.py)."""

    TABLE: ClassVar[str] = "document_values"

    value_id: str
    run_id: str
    content_sha256: str
    document_uri: str
    task: str
    task_version: str
    field: str
    kind: str
    item_index: Int32
    value: str | None = None
    normalised: str | None = None
    status: str
    support: Int32
    score: float
    methods: str | None = None
    confidence: float | None = None
    finding_id: str | None = None
    finding_ids: list[str]
    evidence_text: str | None = None
    evidence_start: int | None = None
    evidence_end: int | None = None
    evidence_page: Int32 | None = None
    alternatives: str
    conventions: str | None = None
    ranker_sha256: str | None = None  # the learned ranker that chose it (None: the hand order)
    ranker_probability: float | None = None
    created_at: Timestamp


@dataclass(kw_only=True, slots=True)
class ReviewDecisionRow:
    """A reviewer's decision on a finding or a value (built by pipeline/audit/review.py)."""

    TABLE: ClassVar[str] = "review_decisions"

    decision_id: str
    finding_id: str | None = None  # a decision on a finding (`assay review FINDING_ID`)...
    value_id: str | None = None  # ...or on a document's value (`assay review --from SHEET`)
    decision: str
    corrected_value: str | None = None
    reviewer: str
    comment: str | None = None
    decided_at: Timestamp


@dataclass(kw_only=True, slots=True)
class ReplayRow:
    """The outcome of replaying one finding (built by pipeline/audit/replay.py)."""

    TABLE: ClassVar[str] = "replays"

    replay_id: str
    run_id: str | None = None
    finding_id: str
    answer_id: str | None = None
    status: str
    reproduced: bool | None = None
    raw_identical: bool | None = None
    original_value: str | None = None
    replayed_value: str | None = None
    message: str
    model_sha256: str | None = None
    llm_runtime: str | None = None
    replayed_at: Timestamp


@dataclass(kw_only=True, slots=True)
class DeletionRow:
    """A document its source no longer lists (built by pipeline/run/finish.py)."""

    TABLE: ClassVar[str] = "deletions"

    run_id: str
    source: str
    uri: str
    content_sha256: str | None = None
    deleted_at: Timestamp


@dataclass(kw_only=True, slots=True)
class FailureRow:
    """Why a document or a model answer failed (built by pipeline/run/work.py)."""

    TABLE: ClassVar[str] = "failures"

    run_id: str
    stage: str
    reason: str
    message: str
    source: str | None = None
    uri: str | None = None
    content_sha256: str | None = None
    chunk_id: str | None = None
    task: str | None = None
    raw_output: LargeStr | None = None
    created_at: Timestamp


LakeRow = Union[  # noqa: UP007 (a runtime alias)
    RunRow,
    TaskRow,
    DocumentRow,
    TextRow,
    ChunkRow,
    AnswerRow,
    FindingRow,
    RoutingRow,
    DocumentValueRow,
    ReviewDecisionRow,
    ReplayRow,
    DeletionRow,
    FailureRow,
]
ROW_TYPES: tuple[type[LakeRow], ...] = typing.get_args(LakeRow)


def _arrow_type(hint: Any) -> pa.DataType:
    if typing.get_origin(hint) in (Union, types.UnionType):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _arrow_type(inner)
    if typing.get_origin(hint) is Annotated:
        annotated: pa.DataType = typing.get_args(hint)[1]
        return annotated
    return _PLAIN[hint]


def schema_of(row_type: type[LakeRow]) -> pa.Schema:
    """The Arrow schema a row class declares: its fields, in order, with their types."""
    hints = typing.get_type_hints(row_type, include_extras=True)
    return pa.schema([(f.name, _arrow_type(hints[f.name])) for f in dataclasses.fields(row_type)])


SCHEMAS: dict[str, pa.Schema] = {row_type.TABLE: schema_of(row_type) for row_type in ROW_TYPES}
TABLES: tuple[str, ...] = tuple(SCHEMAS)


def to_arrow(table: str, rows: typing.Sequence[LakeRow]) -> pa.Table:
    """Rows of one table as an Arrow table with its schema."""
    schema = SCHEMAS[table]
    for row in rows[:1]:
        if row.TABLE != table:
            raise TypeError(f"a {type(row).__name__} is not a row of {table}")
    return pa.table({name: [getattr(row, name) for row in rows] for name in schema.names}, schema=schema)
