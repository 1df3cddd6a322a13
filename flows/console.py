"""What an operator sees of a run in the Prefect UI: its name, Assay's own log lines, its progress,
and how it ended (summary, failures, report link) whatever the outcome, and who is told.

Prefect-only presentation: the numbers come from the core (`RunSummary`, `ShardReport`); nothing
here changes what a run does. docs/operations.md ("Watching a night") shows what each piece looks like.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.objects import FlowRun, State
from prefect.context import FlowRunContext, TaskRunContext
from prefect.flows import Flow
from prefect.logging.handlers import APILogHandler
from prefect.runtime import deployment, flow_run

from pipeline.core.secrets import redact
from pipeline.core.settings import Settings, settings_from_parameters
from pipeline.land import queries, warehouse
from pipeline.run.counts import Counts, ShardReport
from pipeline.run.notify import notify
from pipeline.run.plan import Shard
from pipeline.run.summary import RunSummary, render_markdown

logger = logging.getLogger(__name__)

# Assay's own loggers, sent to the flow run's log in the UI (INFO and above).
ASSAY_LOGGERS = ("assay", "pipeline", "connectors", "flows")
SUMMARY_KEY = "assay-run-summary"
FAILURES_KEY = "assay-run-failures"
REPORT_KEY = "assay-run-report"
PROGRESS_KEY = "assay-run-progress"
FAILURES_SHOWN = 200  # rows of the failures table (the rest: `assay query` on the failures view)
NAMED_IN_STATE = 10  # unaccounted documents named in a Failed state's message


def run_name() -> str:
    """`<deployment>-<date>-<sources>`, e.g. `nightly-2026-12-02-contracts` (`adhoc-…` outside a deployment)."""
    parameters = flow_run.parameters or {}
    when = flow_run.scheduled_start_time or datetime.now(UTC)
    sources = "-".join(_slug(str(source)) for source in parameters.get("sources") or []) or "sources"
    return f"{deployment.name or 'adhoc'}-{when:%Y-%m-%d}-{sources[:60]}"


def _slug(source: str) -> str:
    """A source's name as a run name shows it: a path by its last part, lower case, dashes."""
    name = source.rstrip("/").rsplit("/", 1)[-1] or source
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "source"


class _ToThisFlowRun(logging.Filter):
    """Records logged outside a run context (the run's own threads: lock heartbeat, parsing pool)
    are attributed to the flow run that started them."""

    def __init__(self, flow_run_id: UUID) -> None:
        super().__init__()
        self.flow_run_id = flow_run_id

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "flow_run_id", None) is None and not (FlowRunContext.get() or TaskRunContext.get()):
            record.flow_run_id = self.flow_run_id
        return True


@contextmanager
def assay_logs_in_the_ui(level: int = logging.INFO) -> Iterator[None]:
    """For the flow run's duration, Assay's loggers reach its log in the Prefect UI.

    Prefect forwards only its own loggers unless `PREFECT_LOGGING_EXTRA_LOGGERS` names others; a logger
    that already has Prefect's API handler (that setting, deploy/) is left as it is.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        yield
        return
    handler = APILogHandler(level=level)
    handler.addFilter(_ToThisFlowRun(context.flow_run.id))
    changed: list[tuple[logging.Logger, int]] = []
    for name in ASSAY_LOGGERS:
        one = logging.getLogger(name)
        changed.append((one, one.level))
        if not any(isinstance(h, APILogHandler) for h in one.handlers):
            one.addHandler(handler)
        if one.getEffectiveLevel() > level:  # Prefect leaves extra loggers at the root's level (WARNING)
            one.setLevel(level)
    try:
        yield
    finally:
        for one, previous in changed:
            one.removeHandler(handler)
            one.setLevel(previous)


class Night:
    """One run as the UI follows it: the progress artifact as shards finish, the shards that failed,
    and what is known of the run if it fails before its summary exists."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.run_id: str | None = None
        self.listed = 0
        self.listing_done = False
        self.done = Counts()
        self.shards_done = 0
        self.failed_shards: list[tuple[Shard, str]] = []
        self._artifact: UUID | None = None

    # The core's progress events (pipeline.core.progress.ProgressListener).
    def documents_planned(self, total: int) -> None:
        self.listed = total

    def document_done(self, uri: str, status: str) -> None:
        pass

    def started_run(self, run_id: str) -> None:
        self.run_id = run_id
        self._artifact = cast(
            UUID,
            create_progress_artifact(
                progress=0.0, key=PROGRESS_KEY, description=f"Assay run {run_id}: listing the sources"
            ),
        )

    def shard_done(self, report: ShardReport) -> None:
        self.done.add(report)
        self.shards_done += 1
        self._show()

    def shard_failed(self, shard: Shard, error: str) -> None:
        self.failed_shards.append((shard, error))
        self._show()

    def listed_all(self) -> None:
        self.listing_done = True
        self._show()

    def describe(self) -> str:
        seconds = time.monotonic() - self.started
        pages_per_s = self.done.pages / seconds if seconds > 0 else 0.0
        documents_per_s = self.done.documents / seconds if seconds > 0 else 0.0
        left = max(self.listed + self.done.children - self.done.documents, 0)
        line = (
            f"{self.done.documents} of {self.listed} documents done"
            + ("" if self.listing_done else " (listing continues)")
            + f", {self.shards_done} shards; {pages_per_s:.2f} pages/s"
        )
        if left and documents_per_s > 0:
            line += f"; about {_duration(left / documents_per_s)} left" + ("" if self.listing_done else " at least")
        if self.failed_shards:
            line += f"; {len(self.failed_shards)} shards failed"
        return line

    def _show(self) -> None:
        if self._artifact is None:
            return
        expected = max(self.listed + self.done.children, 1)
        percent = min(100.0, 100.0 * self.done.documents / expected)
        try:
            update_progress_artifact(self._artifact, progress=round(percent, 1), description=self.describe())
        except Exception as exc:  # the UI is a convenience: the run goes on
            logger.warning("progress artifact not updated: %s", exc)

    def unaccounted(self) -> list[str]:
        return [planned.ref.uri for shard, _ in self.failed_shards for planned in shard.documents]

    def failed_message(self, summary: RunSummary) -> str:
        """A Failed state's message for an incomplete run: how many, which, and why."""
        missing = summary.documents_in + summary.children - summary.documents
        uris = self.unaccounted()
        named = ", ".join(uris[:NAMED_IN_STATE]) + (f" and {len(uris) - NAMED_IN_STATE} more" if len(uris) > 10 else "")
        why = "; ".join(f"shard {shard.index}: {error}" for shard, error in self.failed_shards[:3])
        return redact(
            f"Run {summary.run_id} incomplete: {missing} of {summary.documents_in + summary.children} documents"
            f" not accounted for"
            + (f" ({named})" if named else "")
            + (f" because {why}" if why else "")
            + ". What was done is committed; the next run processes the rest."
        )


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"


def publish_summary(settings: Settings, summary: RunSummary, night: Night) -> None:
    """The artifacts of a run that reached its commit: summary, failures table, link to its report."""
    markdown = render_markdown(summary)
    table: list[dict[str, str]] = []
    shown = ""
    try:
        with warehouse.read_only(settings) as con:
            facts = queries.run_facts(con, summary.run_id)
            columns, rows = queries.run_failures(con, summary.run_id, FAILURES_SHOWN)
        table = [dict(zip(columns, (redact(str(v)) for v in row), strict=True)) for row in rows]
        shown = "" if len(rows) < FAILURES_SHOWN else f" (the first {FAILURES_SHOWN}; the failures view has all)"
        if facts:
            markdown += "\n\n" + _facts_markdown(facts)
    except Exception as exc:
        logger.warning("run facts and failures not read from the warehouse: %s", redact(str(exc)))
    if night.failed_shards:
        markdown += "\n\n## Shards that failed\n\n" + "\n".join(
            f"- shard {shard.index} ({len(shard.documents)} documents): {error}" for shard, error in night.failed_shards
        )
        for shard, error in night.failed_shards:
            table += [
                {"stage": "shard", "reason": "not_processed", "document_uri": p.ref.uri, "message": error}
                for p in shard.documents
            ]
    create_markdown_artifact(markdown=markdown, key=SUMMARY_KEY, description=f"Assay run {summary.run_id}")
    if table:
        create_table_artifact(table=table, key=FAILURES_KEY, description=f"Failures of run {summary.run_id}{shown}")
    if summary.report:
        create_link_artifact(
            link=f"file://{summary.report}",
            link_text=f"Report of run {summary.run_id} (HTML, opens offline)",
            key=REPORT_KEY,
            description=summary.report,
        )


def _facts_markdown(facts: dict[str, Any]) -> str:
    findings, grounded = facts["findings"], facts["grounded"]
    rate = (
        f"{grounded} of {findings} findings grounded in the text ({100 * grounded / findings:.0f} %)"
        if findings
        else "no findings"
    )
    versions = facts["versions"] or {}
    return "\n".join(
        [
            "## Model and versions",
            "",
            f"- model: {facts['model']} (SHA-256 `{facts['model_sha256']}`)",
            f"- tasks: {facts['tasks'] or 'none'}",
            f"- grounding: {rate}",
            "- versions: " + ", ".join(f"{name} {version}" for name, version in sorted(versions.items())),
        ]
    )


def publish_failure(error: BaseException, night: Night) -> str:
    """The summary artifact of a run that failed before its commit: what failed, what was done before."""
    message = redact(f"{type(error).__name__}: {error}")
    run = f"`{night.run_id}`" if night.run_id else "(not started)"
    lines = [
        f"# Assay run {run}: failed",
        "",
        f"**{message}**",
        "",
        "Nothing of this run is committed; the next run recovers what it left and does its work again.",
        "",
        f"Before it failed: {night.describe()}.",
    ]
    try:
        create_markdown_artifact(markdown="\n".join(lines), key=SUMMARY_KEY, description=f"Assay run {run} failed")
    except Exception as exc:
        logger.warning("failure summary not published: %s", exc)
    return message


def tell(settings: Settings, outcome: str, payload: dict[str, Any]) -> None:
    """Notify as `[notify]` says; what was sent goes to the log."""
    for line in notify(settings.notify, outcome, payload):
        logger.info("notification (%s): %s", outcome, line)


def summary_payload(summary: RunSummary) -> dict[str, Any]:
    payload: dict[str, Any] = summary.model_dump(mode="json")
    payload["flow_run_name"] = flow_run.name
    return payload


def _settings_of(parameters: dict[str, Any]) -> Settings:
    return settings_from_parameters(parameters.get("config_file"), parameters.get("overrides"))


def on_crashed(flow: Flow[Any, Any], flow_run: FlowRun, state: State[Any]) -> None:
    """A flow run whose process died (killed, out of memory): a summary artifact and a notification.

    Prefect runs this hook from the worker, the run's own process being gone; the run's lock goes
    stale and the next run recovers what it left.
    """
    message = redact(state.message or "the flow run's process ended without a final state")
    with get_client(sync_client=True) as client:
        name = client.read_flow_run(flow_run.id).name  # as the run named itself (the worker saw its first name)
        markdown = "\n".join(
            [
                f"# Assay flow run `{name}`: crashed",
                "",
                f"**{message}**",
                "",
                "Nothing of this run is committed. Its lock on the lake goes stale after `[locks] stale_after_s`;"
                " the next run recovers what it left and does its work again.",
            ]
        )
        client.create_artifact(
            ArtifactCreate(
                type="markdown", key=SUMMARY_KEY, data=markdown, flow_run_id=flow_run.id, description="crashed"
            )
        )
    try:
        settings = _settings_of(flow_run.parameters)
    except Exception as exc:
        logger.error("crashed run %s: settings not loaded, nobody notified: %s", name, redact(str(exc)))
        return
    tell(settings, "crashed", {"flow_run_name": name, "flow_run_id": str(flow_run.id), "message": message})


def failed_shard_error(error: BaseException) -> str:
    return redact(f"{type(error).__name__}: {error}")
