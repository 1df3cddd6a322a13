"""Answers and findings as lake rows: the one place an `AnswerRow` and a `FindingRow` are built.

A finding comes from a model answer (a value of a valid answer, grounded
through its evidence quote) or from a rule (a pattern match, grounded by
construction); both carry the same lineage: the document and its text, the
parser and chunking, the task and its schema, and for the model, the prompt,
model file and sampling settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.core.documents import Chunk, DocumentRef, ParsedDocument
from pipeline.core.hashing import canonical_json, fingerprint, short_id
from pipeline.core.settings import ModelSettings
from pipeline.core.tasks import Task
from pipeline.extract.answers import ExtractedValue, ReadAnswer
from pipeline.extract.engine import Generation, ModelIdentity, sampling_settings, task_decoding
from pipeline.extract.grounding import GroundingStatus
from pipeline.extract.rules import RuleMatch
from pipeline.extract.versions import EXTRACTION_CODE_VERSION
from pipeline.land.tables import AnswerRow, FindingRow


@dataclass(frozen=True)
class TaskLineage:
    """What every answer of one task in one run shares: computed once per task, not per answer."""

    run_id: str
    flow_run_id: str | None
    task: Task
    chunking: str  # the chunking settings as one string (pipeline/parse/chunking.py)
    sampling: dict[str, Any]
    sampling_json: str
    seed: int
    prompt_sha256: str | None = None  # None when no chunk of the task went to the model
    model: ModelIdentity | None = None  # None likewise

    @classmethod
    def of(
        cls,
        run_id: str,
        flow_run_id: str | None,
        task: Task,
        chunking: str,
        model_settings: ModelSettings,
        prompt_sha256: str | None = None,
        model: ModelIdentity | None = None,
        asked_again: bool = False,
    ) -> TaskLineage:
        sampling = sampling_settings(task_decoding(task, model_settings))
        if asked_again:  # the second try of an answer that looped (task `retry_loops`)
            assert task.retry_loops is not None, f"task {task.name} does not ask looping answers again"
            dry = model_settings.model_copy(update={"dry_multiplier": task.retry_loops.dry_multiplier})
            sampling["dry"] = sampling_settings(dry)["dry"]
            sampling["asked_again"] = "repetition"
        return cls(
            run_id,
            flow_run_id,
            task,
            chunking,
            sampling,
            canonical_json(sampling),
            model_settings.seed,
            prompt_sha256,
            model,
        )


def answer_fingerprint(lineage: TaskLineage, document: ParsedDocument, chunk: Chunk) -> str:
    """Everything that can change one answer (docs/architecture.md, "Identity and fingerprints")."""
    task = lineage.task
    return fingerprint(
        document.content_sha256,
        document.parser,
        document.parser_version,
        lineage.chunking,
        chunk.ordinal,
        task.name,
        task.version,
        lineage.prompt_sha256,
        task.schema_sha256,
        lineage.model.sha256 if lineage.model else None,
        lineage.sampling,
    )


def answer_row(
    lineage: TaskLineage,
    document: ParsedDocument,
    chunk: Chunk,
    generation: Generation,
    seconds: float,
    answer: ReadAnswer,
) -> AnswerRow:
    """One model answer as landed: ok, partial or failed (each keeps its raw output)."""
    failure = answer.failure
    assert lineage.model is not None, "an answer needs the model's identity"
    answer_fp = answer_fingerprint(lineage, document, chunk)
    return AnswerRow(
        run_id=lineage.run_id,
        answer_id=short_id(answer_fp),
        chunk_id=chunk.chunk_id,
        content_sha256=document.content_sha256,
        task=lineage.task.name,
        task_version=lineage.task.version,
        status=answer.status,
        reason=failure.reason.value if failure else None,
        message=str(failure) if failure else None,
        raw_output=generation.text,
        finish_reason=generation.finish_reason,
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=generation.completion_tokens,
        seconds=seconds,
        prompt_sha256=lineage.prompt_sha256,
        schema_sha256=lineage.task.schema_sha256,
        model_sha256=lineage.model.sha256,
        sampling=lineage.sampling_json,
        fingerprint=answer_fp,
        created_at=datetime.now(UTC),
    )


def model_findings(
    lineage: TaskLineage,
    ref: DocumentRef,
    document: ParsedDocument,
    chunk: Chunk,
    answer: AnswerRow,
    values: list[ExtractedValue],
) -> list[FindingRow]:
    """The findings of one valid answer, each with its grounding."""
    model = lineage.model
    assert model is not None
    now = datetime.now(UTC)
    rows = []
    for value in values:
        grounding = value.grounding
        rows.append(
            _finding(
                lineage,
                ref,
                document,
                finding_id=short_id(answer.fingerprint, value.field, value.item_index),
                field=value.field,
                item_index=value.item_index,
                value=value.value,
                quote=value.evidence,
                start=grounding.start,
                end=grounding.end,
                status=grounding.status,
                score=grounding.score,
                grounded_on=value.grounded_on,
                confidence=value.confidence,
                chunk=chunk,
                method="model",
                rule=None,
                answer_id=answer.answer_id,
                fingerprint=answer.fingerprint,
                created_at=now,
            )
        )
    return rows


def rule_findings(
    lineage: TaskLineage, ref: DocumentRef, document: ParsedDocument, chunks: list[Chunk], matches: list[RuleMatch]
) -> list[FindingRow]:
    """The findings of a task's rules over a document's text: grounded by construction, exact."""
    now = datetime.now(UTC)
    task = lineage.task
    rows = []
    for match in matches:
        chunk = next((c for c in chunks if c.start <= match.start < c.end), None)
        rule_fp = fingerprint(
            document.content_sha256,
            task.name,
            task.version,
            EXTRACTION_CODE_VERSION,
            match.rule,
            match.start,
            match.end,
        )
        rows.append(
            _finding(
                lineage,
                ref,
                document,
                finding_id=short_id(rule_fp, match.field),
                field=match.field,
                item_index=0,
                value=match.value,
                quote=document.text[match.start : match.end],
                start=match.start,
                end=match.end,
                status=GroundingStatus.EXACT,
                score=100.0,
                grounded_on="rule",
                confidence=None,
                chunk=chunk,
                method="rule",
                rule=match.rule,
                answer_id=None,
                fingerprint=rule_fp,
                created_at=now,
            )
        )
    return rows


def _finding(
    lineage: TaskLineage,
    ref: DocumentRef,
    document: ParsedDocument,
    *,
    finding_id: str,
    field: str,
    item_index: int,
    value: Any,
    quote: str | None,
    start: int | None,
    end: int | None,
    status: GroundingStatus,
    score: float,
    grounded_on: str | None,
    confidence: float | None,
    chunk: Chunk | None,
    method: str,
    rule: str | None,
    answer_id: str | None,
    fingerprint: str,
    created_at: datetime,
) -> FindingRow:
    verified = status is not GroundingStatus.UNGROUNDED
    model = lineage.model if method == "model" else None
    return FindingRow(
        run_id=lineage.run_id,
        flow_run_id=lineage.flow_run_id,
        finding_id=finding_id,
        answer_id=answer_id,
        task=lineage.task.name,
        task_version=lineage.task.version,
        field=field,
        item_index=item_index,
        value=value if isinstance(value, str) else json.dumps(value),
        value_json=json.dumps(value, ensure_ascii=False),
        evidence_quote=quote,
        evidence_text=document.text[start:end] if verified and start is not None else None,
        evidence_start=start,
        evidence_end=end,
        evidence_page=document.page_at(start) if start is not None else None,
        grounding_status=status.value,
        grounding_score=score,
        grounded_on=grounded_on,
        confidence=confidence,
        method=method,
        rule=rule,
        chunk_id=chunk.chunk_id if chunk else None,
        chunk_start=chunk.start if chunk else None,
        chunk_end=chunk.end if chunk else None,
        content_sha256=document.content_sha256,
        document_uri=ref.uri,
        document_version=ref.version,
        text_sha256=document.text_sha256,
        parser=document.parser,
        parser_version=document.parser_version,
        chunking=lineage.chunking,
        prompt_sha256=lineage.prompt_sha256 if model else None,
        schema_sha256=lineage.task.schema_sha256,
        model_name=model.name if model else None,
        model_sha256=model.sha256 if model else None,
        model_quantization=model.quantization if model else None,
        llm_runtime=model.runtime if model else None,
        sampling=lineage.sampling_json if model else None,
        seed=lineage.seed if model else None,
        fingerprint=fingerprint,
        created_at=created_at,
    )
