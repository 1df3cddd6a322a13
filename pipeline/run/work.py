"""One shard's work in progress: the rows it gathers for each lake table, its counts, what waits for the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pipeline.core.documents import Chunk, DocumentRef, ParsedDocument
from pipeline.core.secrets import redact
from pipeline.core.tasks import Task
from pipeline.land.tables import (
    AnswerRow,
    ChunkRow,
    DocumentRow,
    DocumentValueRow,
    FailureRow,
    FindingRow,
    LakeRow,
    RoutingRow,
    TextRow,
)
from pipeline.run.context import RunContext
from pipeline.run.counts import ShardReport
from pipeline.run.plan import PlannedDocument, Shard


@dataclass
class ShardRows:
    """The rows a shard lands, one list per table it writes."""

    documents: list[DocumentRow] = field(default_factory=list)
    texts: list[TextRow] = field(default_factory=list)
    chunks: list[ChunkRow] = field(default_factory=list)
    answers: list[AnswerRow] = field(default_factory=list)
    findings: list[FindingRow] = field(default_factory=list)
    routing: list[RoutingRow] = field(default_factory=list)
    document_values: list[DocumentValueRow] = field(default_factory=list)
    failures: list[FailureRow] = field(default_factory=list)

    def tables(self) -> list[tuple[str, Sequence[LakeRow]]]:
        """(table, rows) of every table that has rows, in the order they land."""
        gathered: list[tuple[str, Sequence[LakeRow]]] = [
            ("documents", self.documents),
            ("texts", self.texts),
            ("chunks", self.chunks),
            ("answers", self.answers),
            ("findings", self.findings),
            ("routing", self.routing),
            ("document_values", self.document_values),
            ("failures", self.failures),
        ]
        return [(table, rows) for table, rows in gathered if rows]


@dataclass(frozen=True)
class Extraction:
    """One document waiting for one task: its routed chunks' answers, its rules, then its reduce."""

    ref: DocumentRef
    document: ParsedDocument
    chunks: list[Chunk]
    task: Task
    row: DocumentRow


@dataclass(frozen=True)
class Pending:
    """One chunk of an extraction waiting for the model."""

    extraction: Extraction
    chunk: Chunk


@dataclass
class ShardWork:
    """Rows and counts gathered while a shard is processed."""

    context: RunContext
    report: ShardReport
    rows: ShardRows = field(default_factory=ShardRows)
    extractions: list[Extraction] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    # content SHA-256 -> the landed parse of a document that only needs model work
    reusable: dict[str, tuple[ParsedDocument, list[Chunk]]] = field(default_factory=dict)
    # documents found inside a container just read, with their bytes, to be processed next
    children: list[tuple[PlannedDocument, bytes]] = field(default_factory=list)

    def time(self, stage: str, seconds: float) -> None:
        self.report.time(stage, seconds)

    def failure(
        self,
        stage: Literal["document", "extract"],
        reason: str,
        message: str,
        ref: DocumentRef | None = None,
        *,
        content_sha256: str | None = None,
        chunk_id: str | None = None,
        task: str | None = None,
        raw_output: str | None = None,
    ) -> None:
        """Count a failure by its reason and record it (table `failures`)."""
        self.report.failure(stage, reason)
        self.rows.failures.append(
            FailureRow(
                run_id=self.context.run_id,
                stage=stage,
                reason=reason,
                message=redact(message),
                source=ref.source if ref else None,
                uri=ref.uri if ref else None,
                content_sha256=content_sha256,
                chunk_id=chunk_id,
                task=task,
                raw_output=raw_output,
                created_at=datetime.now(UTC),
            )
        )


@dataclass
class ParsedShard:
    """A shard read and parsed, its chunks routed and waiting for the model (pipeline/run/shard.py)."""

    shard: Shard
    work: ShardWork
    rows: list[DocumentRow]  # one per listed document and container member, in order
