"""One document's way through a shard, up to the model: skipped, failed, reused, or read and parsed.

Each listed document gets one `DocumentRow`, which ends as processed, failed or
skipped. A document is skipped as a duplicate of an earlier URI with the same
bytes, or as unchanged since its last run; failed again without being read
when the same bytes failed in a way they would fail again; otherwise its
landed parse is reused, or its bytes are read (through the one retry policy)
and handed to the parsing processes. Once parsed, its text and chunks are
landed and its chunks routed, task by task, to wait for the model.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

from pipeline.core.connector import Connector
from pipeline.core.documents import CHILD_SEPARATOR, Chunk, DocumentRef, ListingProblem, PageSpan, ParsedDocument
from pipeline.core.errors import DocumentError, Reason, TransientError
from pipeline.core.faults import crash_point
from pipeline.core.hashing import canonical_json, sha256_bytes
from pipeline.core.retry import ATTEMPTS, call_with_retry
from pipeline.core.secrets import redact
from pipeline.core.tasks import Task
from pipeline.extract.routing import route
from pipeline.land.tables import ChunkRow, DocumentRow, RoutingRow, TextRow
from pipeline.parse.chunking import chunking_key
from pipeline.parse.containers import Expansion, expand
from pipeline.parse.workers import ParseJob, ParsePool
from pipeline.run.plan import PlannedDocument
from pipeline.run.work import Extraction, Pending, ShardWork
from pipeline.state.incremental import (
    REMEMBERED_FAILURES,
    DocumentPlan,
    extract_fingerprints,
    failed_fingerprint,
    parse_fingerprint,
)
from pipeline.state.store import WorkMark

logger = logging.getLogger(__name__)


def document_row(work: ShardWork, ref: DocumentRef) -> DocumentRow:
    """The document's row, failed until something better is known."""
    return DocumentRow(
        run_id=work.context.run_id,
        source=ref.source,
        uri=ref.uri,
        version=ref.version,
        size_bytes=ref.size,
        modified_at=ref.modified_at,
        content_sha256=ref.sha256,
        parent_uri=ref.parent_uri,
    )


def settle_without_work(work: ShardWork, planned: PlannedDocument, plan: DocumentPlan | None, row: DocumentRow) -> bool:
    """Skip or fail the document at once when it needs no reading (True), else leave it to be processed."""
    report = work.report
    if planned.duplicate_of is not None:
        row.status, row.reason = "skipped", Reason.DUPLICATE_CONTENT.value
        row.duplicate_of = planned.duplicate_of
        row.message = f"same bytes as {planned.duplicate_of}; its results apply"
        report.skipped += 1
    elif plan is not None and plan.failed_before is not None:
        reason, failed_in = plan.failed_before
        row.status, row.reason = "failed", reason
        row.message = (
            f"not retried: the same bytes failed as {reason} in run {failed_in} under the same parser "
            "settings and limits (change the file or the settings, or run with --retry-failed)"
        )
        work.failure("document", reason, row.message, planned.ref, content_sha256=planned.ref.sha256)
        report.failed += 1
    elif plan is not None and plan.unchanged:
        row.status, row.reason = "skipped", Reason.UNCHANGED.value
        row.message = "unchanged since its last run: nothing to parse or extract"
        report.skipped += 1
        report.unchanged += 1
    else:
        return False
    return True


@contextmanager
def document_errors(work: ShardWork, ref: DocumentRef, row: DocumentRow, plan: DocumentPlan | None) -> Iterator[None]:
    """A document that fails is recorded with its reason, and the shard goes on.

    A failure that the same bytes would meet again (REMEMBERED_FAILURES) is remembered with the
    run's other work, so later runs do not parse the file again until it or the settings change.
    """
    try:
        yield
    except DocumentError as exc:
        row.filetype = row.filetype or exc.filetype
        _failed(work, ref, row, exc.reason, redact(str(exc)))
        content = ref.sha256 or row.content_sha256  # listed with the ref, or known once its bytes were read
        if exc.reason in REMEMBERED_FAILURES and content:
            settings = work.context.settings
            failed_fp = plan.failed_fp if plan else failed_fingerprint(parse_fingerprint(content, settings), settings)
            work.report.done.append(WorkMark(failed_fp, "failed", content, exc.reason.value))
    except Exception as exc:  # a bug or an unforeseen library error: record it, go on
        logger.exception("internal error on %s", ref.uri)
        message = redact(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")[:4000]
        _failed(work, ref, row, Reason.INTERNAL_ERROR, message)


def _failed(work: ShardWork, ref: DocumentRef, row: DocumentRow, reason: Reason, message: str) -> None:
    row.status, row.reason, row.message = "failed", reason.value, message
    work.failure("document", reason.value, message, ref, content_sha256=row.content_sha256)
    work.report.failed += 1


def start_document(
    work: ShardWork,
    connector: Connector,
    ref: DocumentRef,
    row: DocumentRow,
    plan: DocumentPlan | None,
    pool: ParsePool,
    member: bytes | None = None,
) -> ParseJob | None:
    """Reuse an earlier parse (and queue the model work still to do), or read the bytes and start parsing.

    `member`: the bytes of a document found inside a container (they come from there, not the connector).
    A container's members are queued on `work.children`; an archive ends here, an e-mail is parsed too.
    """
    settings = work.context.settings
    if ref.problem is not None:  # listed, but its connector could not or would not read it
        raise DocumentError(Reason(ref.problem.reason), ref.problem.message)
    if ref.size > settings.max_file_bytes:
        raise DocumentError(Reason.TOO_LARGE, f"{ref.size} bytes exceeds max_file_bytes={settings.max_file_bytes}")
    reused = work.reusable.pop(ref.sha256, None) if ref.sha256 else None
    if reused is not None and plan is not None:
        document, chunks = reused
        row.content_sha256 = document.content_sha256
        row.filetype, row.parser, row.parser_version = document.filetype, document.parser, document.parser_version
        row.parse_seconds = 0.0
        queue_model_work(work, ref, row, document, chunks, plan.extract_fps)
        return None
    started = time.perf_counter()
    data = member if member is not None else _read(connector, ref)
    row.content_sha256 = sha256_bytes(data)
    expansion = expand(data, ref.name, settings.containers, ref.depth)
    if expansion is not None:
        row.filetype = expansion.kind
        work.children.extend(child_documents(ref, expansion))
        work.report.children += len(expansion.members)
        if not expansion.parse_self:
            settle_archive(work, ref, row, len(expansion.members))
            work.time("parse", time.perf_counter() - started)
            return None
    job = pool.submit(data, ref.name, row.content_sha256, settings.parser_strategy, settings.chunking)
    work.time("parse", time.perf_counter() - started)
    return job


def _read(connector: Connector, ref: DocumentRef) -> bytes:
    try:
        return call_with_retry(connector.read, ref)
    except TransientError as exc:  # still failing after every retry: this night cannot read it; the next one tries
        raise DocumentError(Reason.READ_ERROR, f"gave up after {ATTEMPTS} attempts: {exc}") from exc


def child_documents(parent: DocumentRef, expansion: Expansion) -> list[tuple[PlannedDocument, bytes]]:
    """A container's members as documents of their own, each with its parent's lineage."""
    children = []
    for member in expansion.members:
        problem = None
        if member.problem is not None:
            problem = ListingProblem(reason=member.problem[0].value, message=f"{member.problem[1]}: {member.path}")
        ref = DocumentRef(
            source=parent.source,
            uri=f"{parent.uri}{CHILD_SEPARATOR}{quote(member.path)}",
            version=parent.version,
            size=len(member.data),
            modified_at=parent.modified_at,
            sha256=sha256_bytes(member.data) if problem is None else None,
            problem=problem,
            parent_uri=parent.uri,
            depth=parent.depth + 1,
        )
        children.append((PlannedDocument(ref=ref), member.data))
    return children


def settle_archive(work: ShardWork, ref: DocumentRef, row: DocumentRow, members: int) -> None:
    """An archive is done once its members are queued: it has no text of its own to extract from."""
    settings, context = work.context.settings, work.context
    row.status, row.parser, row.parse_seconds = "processed", "assay.containers", 0.0
    row.message = f"an archive of {members} documents, each its own row (parent_uri = this URI)"
    work.report.processed += 1
    content = row.content_sha256 or ""
    parse_fp = parse_fingerprint(content, settings)
    work.report.done.append(WorkMark(parse_fp, "parse", content, None))
    for task, fingerprint in extract_fingerprints(parse_fp, context.tasks, context.model_sha256, settings).items():
        work.report.done.append(WorkMark(fingerprint, "extract", content, task))


def finish_parsing(
    work: ShardWork, ref: DocumentRef, row: DocumentRow, plan: DocumentPlan | None, job: ParseJob
) -> None:
    """Wait for one document's parse, land its text and chunks, and queue its model work."""
    context = work.context
    with document_errors(work, ref, row, plan):
        waited = time.perf_counter()
        try:
            document, chunks = job.result()
            row.filetype, row.parser, row.parser_version = document.filetype, document.parser, document.parser_version
            if job.warnings:  # parsed, but the parser had to guess (a text encoding, say): the row says so
                row.message = f"parsed; the parser warned: {'; '.join(job.warnings)}"[:2000]
                logger.warning("%s: %s", ref.uri, row.message)
        finally:
            # The run's wall time spent waiting for parsers (parsing in parallel counts once), and
            # the document's own time from its bytes handed over to its chunks back.
            now = time.perf_counter()
            work.time("parse", now - waited)
            row.parse_seconds = now - job.submitted_at
        crash_point("parse")
        parse_fp = parse_fingerprint(document.content_sha256, context.settings)
        extract_fps = extract_fingerprints(parse_fp, context.tasks, context.model_sha256, context.settings)
        land_text_and_chunks(work, document, chunks)
        work.report.done.append(WorkMark(parse_fp, "parse", document.content_sha256, None))
        queue_model_work(work, ref, row, document, chunks, extract_fps)


def land_text_and_chunks(work: ShardWork, document: ParsedDocument, chunks: list[Chunk]) -> None:
    run_id = work.context.run_id
    work.rows.texts.append(
        TextRow(
            run_id=run_id,
            content_sha256=document.content_sha256,
            text_sha256=document.text_sha256,
            text=document.text,
            page_spans=canonical_json([_span(span) for span in document.element_spans]),
        )
    )
    key = chunking_key(work.context.settings.chunking)
    work.rows.chunks.extend(
        ChunkRow(
            run_id=run_id,
            chunk_id=chunk.chunk_id,
            content_sha256=chunk.content_sha256,
            ordinal=chunk.ordinal,
            char_start=chunk.start,
            char_end=chunk.end,
            pages=list(chunk.pages),
            text=chunk.text,
            placement=chunk.placement,
            chunking=key,
        )
        for chunk in chunks
    )


def queue_model_work(
    work: ShardWork,
    ref: DocumentRef,
    row: DocumentRow,
    document: ParsedDocument,
    chunks: list[Chunk],
    extract_fps: dict[str, str],
) -> None:
    """Route the document's chunks for each task still to do; the model runs once the shard is parsed."""
    settings = work.context.settings
    row.text_sha256, row.text_chars = document.text_sha256, len(document.text)
    row.pages, row.chunks, row.model_tokens = document.page_count, len(chunks), 0
    row.ocr_pages = document.ocr_pages
    row.ocr_confidence = document.ocr_confidence
    work.report.pages += document.page_count or 1
    work.report.chunks += len(chunks)

    started = time.perf_counter()
    for task in work.context.tasks:
        if task.name not in extract_fps:
            continue
        decisions = route(task, chunks, settings.routing, settings.max_chunks_per_document)
        work.rows.routing.extend(_routing_row(work, document, task, d.chunk, d.routed, d.reason) for d in decisions)
        routed = [d.chunk for d in decisions if d.routed]
        row.chunks_extracted += len(routed)
        work.report.chunks_routed += len(routed)
        work.report.chunks_not_routed += len(chunks) - len(routed)
        extraction = Extraction(ref, document, chunks, task, row)
        work.extractions.append(extraction)
        work.pending.extend(Pending(extraction, chunk) for chunk in routed)
        work.report.done.append(WorkMark(extract_fps[task.name], "extract", document.content_sha256, task.name))
    work.time("route", time.perf_counter() - started)
    work.report.processed += 1
    row.status = "processed"


def _routing_row(
    work: ShardWork, document: ParsedDocument, task: Task, chunk: Chunk, routed: bool, reason: str
) -> RoutingRow:
    return RoutingRow(
        run_id=work.context.run_id,
        content_sha256=document.content_sha256,
        task=task.name,
        task_version=task.version,
        chunk_id=chunk.chunk_id,
        ordinal=chunk.ordinal,
        routed=routed,
        reason=reason,
    )


def _span(span: PageSpan) -> dict[str, object]:
    """A page span as `texts.page_spans` holds it: the OCR fields only where OCR read the range (so the
    spans of everything else read as they did before OCR confidences were recorded)."""
    return span.model_dump(exclude=set() if span.ocr else {"ocr_confidence", "ocr_rotated"})
