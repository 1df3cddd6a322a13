"""The Prefect skin of a run: one task run per shard, as the sources are listed; what the UI shows of it.

No logic lives here that the CLI or a test cannot reach without Prefect: the flow
calls `pipeline.run.local.run_locally`, the one run loop, and only chooses how
its shards are executed:
- by default one after the other in this flow run, one `process-shard` task run
  each (parsing and the model take the cores in turn);
- with a `DaskTaskRunner` (`assay_run.with_options(task_runner=DaskTaskRunner(...))`),
  fanned out over the Dask cluster's worker processes;
- with `shard_workers=N`, queued in the state store and leased by N runs of the
  `assay-shard-worker` deployment (flows/assay_shards.py) on a work pool's workers, on any machine.
Ephemeral Prefect is used unless PREFECT_API_URL points at a server (docs/scaling.md).

What the operator sees (flows/console.py): a run name that says what it is, Assay's log
lines, a progress artifact, and on every outcome a summary artifact; an incomplete run
ends Failed with a message naming what is missing. A shard is retried on transient errors
and timed out (`[orchestration]`); a shard that still fails leaves its documents to the
next run while the others commit. The flow itself is not retried by Prefect: the next
night is the retry (runs are incremental), and `timeout_seconds` ends a night that would
otherwise hold the deployment's concurrency slot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from prefect import Task, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.runtime import task_run as this_task_run
from prefect.settings import PREFECT_API_URL
from prefect.states import Failed
from prefect.task_engine import TaskRunTimeoutError

from connectors.registry import resolve_sources, validate_sources
from flows import console
from pipeline.audit.report import write_after_run
from pipeline.core import progress
from pipeline.core.retry import RETRIED
from pipeline.core.secrets import redact
from pipeline.core.settings import Settings, settings_from_parameters
from pipeline.parse.workers import start_parsing_processes
from pipeline.run import shard as shard_step
from pipeline.run import shared
from pipeline.run.ahead import parsing_ahead
from pipeline.run.context import RunContext
from pipeline.run.counts import ShardReport
from pipeline.run.finish import finish_run as finish_step
from pipeline.run.local import run_locally
from pipeline.run.plan import Shard, ShardPlan
from pipeline.run.summary import RunSummary

# A night still running after this is timed out (it would hold the deployment's slot for the next).
FLOW_TIMEOUT_S = 23 * 3600


def _transient(task: Task[..., Any], run: TaskRun, state: State[Any]) -> bool:
    """Retry a shard only for what may pass (network, a store that blinked), not for its time limit."""
    try:
        state.result()
    except TaskRunTimeoutError:
        return False
    except RETRIED:
        return True
    except Exception:
        return False
    return False


def _model_slot(settings: Settings) -> Any:
    """A slot of the Prefect global concurrency limit `[orchestration] model_slots`, with a server."""
    name = settings.orchestration.model_slots
    if not name or not PREFECT_API_URL.value():  # ephemeral Prefect: one process, nothing to share
        from contextlib import nullcontext

        return nullcontext()
    return concurrency(name, occupy=1, strict=False)


@task(name="process-shard", task_run_name="shard-{shard.index}", cache_policy=NO_CACHE, retry_condition_fn=_transient)
def process_shard(context: RunContext, shard: Shard) -> ShardReport:
    retried = max(int(this_task_run.run_count or 1) - 1, 0)  # a retry writes files of its own names
    if retried:
        shard = shard.model_copy(update={"attempt": shard.attempt + retried})
    with _model_slot(context.settings):
        return shard_step.process_shard(context, shard)


def _shard_task(settings: Settings) -> Task[[RunContext, Shard], ShardReport]:
    limits = settings.orchestration
    return process_shard.with_options(
        retries=limits.shard_retries,
        retry_delay_seconds=limits.shard_retry_delay_s,
        timeout_seconds=limits.shard_timeout_s,
    )


@task(name="finish-run", task_run_name="finish-run", cache_policy=NO_CACHE)
def finish_run(context: RunContext, reports: Sequence[ShardReport], total: int, list_seconds: float) -> RunSummary:
    return finish_step(context, reports, total, list_seconds)


def _finish(context: RunContext, reports: Sequence[ShardReport], total: int, list_seconds: float) -> RunSummary:
    get_run_logger().info("%d documents in %d shards (listing took %.1f s)", total, len(reports), list_seconds)
    return finish_run(context, reports, total, list_seconds)


# What a shard may fail with, after its retries, and leave its documents to the next run while the
# run commits the rest: what may pass, and its time limit. Anything else fails the run.
SHARD_LEFT_FOR_NEXT_RUN = (*RETRIED, TaskRunTimeoutError)

Executor = Callable[[RunContext, ShardPlan], list[ShardReport]]


def _in_task_runs(night: console.Night, shard_task: Task[[RunContext, Shard], ShardReport]) -> Executor:
    """One task run per shard, in this flow run, one after the other (the next parsed ahead when asked)."""

    def execute(context: RunContext, plan: ShardPlan) -> list[ShardReport]:
        night.started_run(context.run_id)
        reports = []
        with parsing_ahead(context, plan, shard_step.parse_shard) as shards:
            for one in shards:
                try:
                    report = shard_task(context, one)
                except SHARD_LEFT_FOR_NEXT_RUN as exc:
                    night.shard_failed(one, console.failed_shard_error(exc))
                    continue
                night.shard_done(report)
                reports.append(report)
        night.listed_all()
        return reports

    return execute


# Shards submitted to a Dask cluster ahead of the oldest one still running (bounds what is held).
DASK_SHARDS_IN_FLIGHT = 32


def _on_dask(night: console.Night, shard_task: Task[[RunContext, Shard], ShardReport]) -> Executor:
    """Submit the shards to the flow's Dask task runner as they are planned, a bounded number at a time."""

    def execute(context: RunContext, plan: ShardPlan) -> list[ShardReport]:
        night.started_run(context.run_id)
        in_flight: deque[tuple[Shard, PrefectFuture[ShardReport]]] = deque()
        reports: list[ShardReport] = []

        def settle(one: Shard, future: PrefectFuture[ShardReport]) -> None:
            try:
                report = future.result()
            except SHARD_LEFT_FOR_NEXT_RUN as exc:
                night.shard_failed(one, console.failed_shard_error(exc))
                return
            night.shard_done(report)
            reports.append(report)

        for one in plan:
            in_flight.append((one, shard_task.submit(context, one)))
            if len(in_flight) >= DASK_SHARDS_IN_FLIGHT:
                settle(*in_flight.popleft())
        night.listed_all()
        while in_flight:
            settle(*in_flight.popleft())
        return reports

    return execute


def _runs_on_dask() -> bool:
    context = FlowRunContext.get()
    runner = type(context.task_runner).__name__ if context is not None else ""
    return runner == "DaskTaskRunner"


@task(name="share-shards", cache_policy=NO_CACHE)
def share_shards(
    context: RunContext, shards: int, shard_workers: int, worker_deployment: str, worker_parameters: dict[str, Any]
) -> list[ShardReport]:
    """Start the worker flow runs for the queued shards, and wait until every shard is done."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    ids = []
    for _ in range(shard_workers):
        started = run_deployment(
            name=worker_deployment,
            parameters={"run_id": context.run_id, **worker_parameters},
            timeout=0,
            as_subflow=False,
        )
        assert isinstance(started, FlowRun)  # called from a sync flow: the run, not a coroutine
        ids.append(started.id)
    logger.info("%d shards queued for %d runs of %s", shards, len(ids), worker_deployment)

    def workers_alive() -> bool:
        with get_client(sync_client=True) as client:
            states = [client.read_flow_run(i).state for i in ids]
        return any(state is None or not state.is_final() for state in states)

    return shared.wait_for_shards(context, workers_alive)


@flow(
    name="assay-run",
    flow_run_name=console.run_name,
    log_prints=False,
    timeout_seconds=FLOW_TIMEOUT_S,
    on_crashed=[console.on_crashed],
)
def assay_run(
    sources: list[str],
    overrides: dict[str, Any] | None = None,
    config_file: str | None = None,
    shard_workers: int = 0,
    worker_deployment: str = "assay-shard-worker/default",
    full_listing: bool = False,
) -> RunSummary | State[Any]:
    """Process every document of `sources` (configured names or paths) with the configured tasks.

    Each source lists only what changed since the last completed run where its connector keeps a
    cursor; `full_listing` lists every source in full (that also finds deleted documents).

    `shard_workers > 0` spreads the shards over that many runs of `worker_deployment`. Returns the
    run's summary; an incomplete run returns a Failed state holding it (`summary_of` reads either).
    """
    logger = get_run_logger()
    settings = settings_from_parameters(config_file, overrides)
    night = console.Night()

    def on_workers(context: RunContext, plan: ShardPlan) -> list[ShardReport]:
        night.started_run(context.run_id)
        queued = shared.share_run(context, plan)  # the listing streams into the queue
        parameters = {"config_file": config_file, "overrides": overrides}
        return share_shards(context, queued, shard_workers, worker_deployment, parameters)

    shard_task = _shard_task(settings)
    execute: Executor
    if shard_workers > 0:
        execute = on_workers
    elif _runs_on_dask():
        execute = _on_dask(night, shard_task)
    else:  # the shards parse in this process: the parsers' preload runs while the sources are listed
        execute = _in_task_runs(night, shard_task)
        start_parsing_processes(settings.parsing)
    with console.assay_logs_in_the_ui(), progress.listening(night):
        try:
            validate_sources(settings)
            connectors = resolve_sources(sources, settings)
            logger.info("run over %s", ", ".join(connectors))
            summary = run_locally(
                settings,
                connectors,
                flow_run_id=flow_run.id,
                execute=execute,
                finish=_finish,
                full_listing=full_listing,
            )
        except Exception as exc:
            message = console.publish_failure(exc, night)
            console.tell(settings, "failed", {"run_id": night.run_id, "flow_run_name": flow_run.name, "error": message})
            raise
        try:  # committed: the report is a convenience, its failure a warning
            summary.report = str(write_after_run(settings, summary.run_id))
        except Exception as exc:
            logger.exception("the run's report was not written")
            summary.warnings.append(
                redact(f"the report was not written ({type(exc).__name__}: {exc}); run `assay report`")
            )
        console.publish_summary(settings, summary, night)
    logger.info(
        "run %s %s: %d in, %d processed, %d failed, %d skipped, %d findings",
        summary.run_id,
        summary.status,
        summary.documents_in,
        summary.processed,
        summary.failed,
        summary.skipped,
        summary.findings,
    )
    if summary.status != "completed":
        message = night.failed_message(summary)
        console.tell(settings, "incomplete", console.summary_payload(summary) | {"message": message})
        return Failed(message=message, data=summary)
    console.tell(settings, "completed", console.summary_payload(summary))
    return summary


def summary_of(state: State[Any]) -> RunSummary:
    """The summary a finished `assay_run` state holds (completed or incomplete); its error otherwise."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, RunSummary):
        return result
    if isinstance(result, BaseException):
        raise result
    state.result()  # raises what Prefect knows of the failure
    raise RuntimeError(f"the flow run ended {state.name} without a summary")
