"""The Prefect skin of a run: one task run per shard, as the sources are listed; a summary artifact.

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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from connectors.registry import resolve_sources, validate_sources
from pipeline.audit.report import write_after_run
from pipeline.core.secrets import redact
from pipeline.core.settings import settings_from_parameters
from pipeline.run import shard as shard_step
from pipeline.run import shared
from pipeline.run.context import RunContext
from pipeline.run.counts import ShardReport
from pipeline.run.finish import finish_run as finish_step
from pipeline.run.local import run_locally
from pipeline.run.plan import Shard, ShardPlan
from pipeline.run.summary import RunSummary, render_markdown


@task(name="process-shard", task_run_name="shard-{shard.index}", cache_policy=NO_CACHE)
def process_shard(context: RunContext, shard: Shard) -> ShardReport:
    return shard_step.process_shard(context, shard)


@task(name="finish-run", cache_policy=NO_CACHE)
def finish_run(context: RunContext, reports: Sequence[ShardReport], total: int, list_seconds: float) -> RunSummary:
    return finish_step(context, reports, total, list_seconds)


def _finish(context: RunContext, reports: Sequence[ShardReport], total: int, list_seconds: float) -> RunSummary:
    get_run_logger().info("%d documents in %d shards (listing took %.1f s)", total, len(reports), list_seconds)
    return finish_run(context, reports, total, list_seconds)


def _in_task_runs(context: RunContext, plan: ShardPlan) -> list[ShardReport]:
    """One task run per shard, in this flow run, one after the other."""
    return [process_shard(context, shard) for shard in plan]


# Shards submitted to a Dask cluster ahead of the oldest one still running (bounds what is held).
DASK_SHARDS_IN_FLIGHT = 32


def _on_dask(context: RunContext, plan: ShardPlan) -> list[ShardReport]:
    """Submit the shards to the flow's Dask task runner as they are planned, a bounded number at a time."""
    in_flight: deque[PrefectFuture[ShardReport]] = deque()
    reports = []
    for one in plan:
        in_flight.append(process_shard.submit(context, one))
        if len(in_flight) >= DASK_SHARDS_IN_FLIGHT:
            reports.append(in_flight.popleft().result())
    reports += [future.result() for future in in_flight]
    return reports


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


@flow(name="assay-run", log_prints=False)
def assay_run(
    sources: list[str],
    overrides: dict[str, Any] | None = None,
    config_file: str | None = None,
    shard_workers: int = 0,
    worker_deployment: str = "assay-shard-worker/default",
) -> RunSummary:
    """Process every document of `sources` (configured names or paths) with the configured tasks.

    `shard_workers > 0` spreads the shards over that many runs of `worker_deployment`.
    """
    logger = get_run_logger()
    settings = settings_from_parameters(config_file, overrides)
    validate_sources(settings)
    connectors = resolve_sources(sources, settings)
    logger.info("run over %s", ", ".join(connectors))

    def on_workers(context: RunContext, plan: ShardPlan) -> list[ShardReport]:
        queued = shared.share_run(context, plan)  # the listing streams into the queue
        parameters = {"config_file": config_file, "overrides": overrides}
        return share_shards(context, queued, shard_workers, worker_deployment, parameters)

    execute = on_workers if shard_workers > 0 else _on_dask if _runs_on_dask() else _in_task_runs
    summary = run_locally(settings, connectors, flow_run_id=flow_run.id, execute=execute, finish=_finish)
    try:  # committed: the report is a convenience, its failure a warning
        summary.report = str(write_after_run(settings, summary.run_id))
    except Exception as exc:
        logger.exception("the run's report was not written")
        summary.warnings.append(redact(f"the report was not written ({type(exc).__name__}: {exc}); run `assay report`"))
    create_markdown_artifact(
        markdown=render_markdown(summary), key="assay-run-summary", description=f"Assay run {summary.run_id}"
    )
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
    return summary
