"""Processing one shard: plan its work, parse what changed, ask the model, land every table's rows.

The contract every shard keeps: each of its documents ends in exactly one
`documents` row, processed, failed or skipped. Work whose fingerprint already
landed is skipped (pipeline/state/incremental.py). The shard's files are
written as it ends; they count only once the run's manifest lists them
(pipeline/run/finish.py).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from datetime import UTC, datetime

from pipeline.core import progress
from pipeline.core.documents import DocumentRef
from pipeline.core.faults import crash_point
from pipeline.land.store import open_store
from pipeline.land.tables import DocumentRow
from pipeline.parse.workers import ParseJob, get_parse_pool
from pipeline.run.ahead import parse_ahead_of
from pipeline.run.context import RunContext
from pipeline.run.counts import ShardReport
from pipeline.run.documents import document_errors, document_row, finish_parsing, settle_without_work, start_document
from pipeline.run.extraction import extract_pending
from pipeline.run.plan import PlannedDocument, Shard
from pipeline.run.work import ParsedShard, ShardWork
from pipeline.state.incremental import DocumentPlan, load_parsed, plan_documents

logger = logging.getLogger(__name__)


def process_shard(context: RunContext, shard: Shard) -> ShardReport:
    """Parse, chunk, extract, ground and land one shard of documents, skipping work already landed.

    With `[parsing] ahead` the shard may have been parsed in the background while the one before it
    was with the model (pipeline/run/ahead.py); once its own parsing is done, the next one starts.
    """
    ahead = parse_ahead_of(context.run_id)
    parsed = ahead.take(shard) if ahead is not None else None
    if parsed is None:
        parsed = parse_shard(context, shard)
    else:
        parsed.work.report.shards_parsed_ahead = 1
    if ahead is not None:
        ahead.begin()
    return model_and_land(parsed, shard)


def parse_shard(context: RunContext, shard: Shard) -> ParsedShard:
    """Plan the shard's work, read and parse what changed, land texts and chunks, route the chunks."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    work = ShardWork(context=context, report=ShardReport(shard_index=shard.index, worker=worker))
    settings = context.settings
    _known_contents(context, shard)
    fresh = [planned.ref for planned in shard.documents if planned.duplicate_of is None]
    plans = plan_documents(context.state, fresh, context.tasks, context.model_sha256, settings)
    _load_reusable(work, fresh, plans)
    pool = get_parse_pool(settings.parsing)
    # Documents handed to the parsing processes, oldest first; at most two per process at a time
    # (their bytes wait in memory), finished in listing order.
    parsing: deque[tuple[DocumentRef, DocumentRow, DocumentPlan | None, ParseJob]] = deque()
    window = 2 * max(1, settings.parsing.processes)
    rows: list[DocumentRow] = []
    # The shard's documents, and the members of each container right after it (with their bytes).
    todo: deque[tuple[PlannedDocument, bytes | None]] = deque((planned, None) for planned in shard.documents)
    while todo:
        planned, member = todo.popleft()
        ref = planned.ref
        row = document_row(work, ref)
        rows.append(row)
        plan = plans.get(ref.uri)
        if settle_without_work(work, planned, plan, row):
            continue
        with document_errors(work, ref, row, plan):
            job = start_document(work, context.sources[ref.source], ref, row, plan, pool, member)
            if job is not None:
                parsing.append((ref, row, plan, job))
        if work.children:
            children, work.children = work.children, []
            refs = [child.ref for child, _ in children if child.ref.sha256]
            plans.update(plan_documents(context.state, refs, context.tasks, context.model_sha256, settings))
            todo.extendleft(reversed(children))
        while len(parsing) >= window:
            finish_parsing(work, *parsing.popleft())
    while parsing:
        finish_parsing(work, *parsing.popleft())
    return ParsedShard(shard, work, rows)


def model_and_land(parsed: ParsedShard, shard: Shard) -> ShardReport:
    """The model over the parsed shard's routed chunks, then rules, reduce, and its files landed.

    `shard` is the one being processed (a retry may carry a later attempt than the one parsed).
    """
    work, rows = parsed.work, parsed.rows
    # Without parsing ahead, parsing is done for the whole shard before the model starts: the two
    # never share the cores. With it, the next shard parses meanwhile on cores of its own.
    extract_pending(work)
    for row in rows:
        row.processed_at = datetime.now(UTC)
        work.rows.documents.append(row)
        progress.document_done(row.uri, row.status)
    _land(work, shard, rows)
    logger.info("%s", describe(work.report, len(shard.documents)))
    return work.report


def describe(report: ShardReport, listed: int) -> str:
    """One log line for a finished shard: its documents, failures by reason, seconds per stage."""
    failures = ", ".join(f"{reason} {n}" for reason, n in sorted(report.document_failures.items()))
    stages = ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in report.stage_seconds.items())
    return (
        f"shard {report.shard_index}: {listed} listed, {report.processed} processed, {report.failed} failed"
        + (f" ({failures})" if failures else "")
        + f", {report.skipped} skipped; {report.pages} pages, {report.answers} model answers"
        + (f" ({report.answers_failed} failed)" if report.answers_failed else "")
        + (f" ({report.answers_partial} partial)" if report.answers_partial else "")
        + (f" ({report.answers_asked_again} asked again after a loop)" if report.answers_asked_again else "")
        + f", {report.findings} findings"
        + (f"; model slots {report.slot_fill:.0%} full" if report.slot_fill is not None else "")
        + ("; parsed ahead" if report.shards_parsed_ahead else "")
        + f"; seconds: {stages or 'none'}"
    )


def _known_contents(context: RunContext, shard: Shard) -> None:
    """Give refs listed without a content hash the one their URI had when last read at the same version."""
    unhashed: dict[str, dict[str, str]] = {}
    for planned in shard.documents:
        ref = planned.ref
        if ref.sha256 is None and ref.problem is None:
            unhashed.setdefault(ref.source, {})[ref.uri] = ref.version
    for source, versions in unhashed.items():
        known = context.state.known_contents(source, versions)
        for planned in shard.documents:
            if planned.ref.source == source and planned.ref.uri in known:
                planned.ref = planned.ref.model_copy(update={"sha256": known[planned.ref.uri]})


def _load_reusable(work: ShardWork, refs: list[DocumentRef], plans: dict[str, DocumentPlan]) -> None:
    """Read back, in one go, the landed parses of the shard's documents that only need model work."""
    wanted = [
        ref.sha256
        for ref in refs
        if ref.sha256 and (plan := plans.get(ref.uri)) is not None and plan.parse_done and not plan.unchanged
    ]
    if wanted:
        started = time.perf_counter()
        settings = work.context.settings
        work.reusable = load_parsed(open_store(settings), wanted, settings)
        work.time("parse", time.perf_counter() - started)


def _land(work: ShardWork, shard: Shard, rows: list[DocumentRow]) -> None:
    """Write the shard's files (one per table with rows) and record the documents as seen."""
    context = work.context
    started = time.perf_counter()
    run_date = context.started_at.date()
    lake = context.lake
    for table, table_rows in work.rows.tables():
        work.report.files.append(lake.write(table, table_rows, context.run_id, shard.part, run_date))
        crash_point("land")
    context.state.record_seen(  # what the connectors listed; a container's members live and go with it
        context.run_id,
        [
            (
                r.source,
                r.uri,
                r.version,
                r.content_sha256,
                r.size_bytes,
                r.message if r.status == "failed" else None,
                r.reason if r.status == "failed" else None,
            )
            for r in rows
            if r.parent_uri is None
        ],
    )
    work.time("land", time.perf_counter() - started)
