"""The Prefect skin of the job: one task run per shard, as the sources are listed; a summary artifact.

No logic lives here that the CLI or a test cannot reach without Prefect: each
task calls one function of `pipeline.job`. Ephemeral Prefect is used unless
PREFECT_API_URL points at a server.

Where the shards run (docs/scaling.md):
- by default one after the other in this flow run (parsing and the model take the cores in turn);
- with a `DaskTaskRunner` (`assay_run.with_options(task_runner=...)`, `assay run --dask-workers N`),
  fanned out over the Dask cluster's worker processes;
- with `shard_workers=N`, queued in the state store and leased by N runs of the
  `assay-shard-worker` deployment (flows/assay_shards.py) on a work pool's workers, on any machine.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from connectors.registry import resolve_sources
from pipeline import job
from pipeline.settings import load_settings


@task(name="process-shard", task_run_name="shard-{shard.index}", cache_policy=NO_CACHE)
def process_shard(context: job.RunContext, shard: job.Shard) -> job.ShardReport:
    return job.process_shard(context, shard)


@task(name="finish-run", cache_policy=NO_CACHE)
def finish_run(
    context: job.RunContext, reports: list[job.ShardReport], total: int, list_seconds: float
) -> job.RunSummary:
    return job.finish_run(context, reports, total, list_seconds)


def summary_markdown(summary: job.RunSummary) -> str:
    lines = [
        f"# Assay run `{summary.run_id}`: {summary.status}",
        "",
        "| documents in | processed | failed | skipped | pages | chunks | answers (failed) | findings | pages/s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {summary.documents_in} | {summary.processed} | {summary.failed} | {summary.skipped} | {summary.pages} "
        f"| {summary.chunks} | {summary.answers} ({summary.answers_failed}) | {summary.findings} "
        f"| {summary.pages_per_second} |",
        "",
        f"Chunks sent to the model: {summary.chunks_routed} (not routed: {summary.chunks_not_routed}); "
        f"per-document values: {summary.values}, disagreements to review: {summary.disagreements}.",
        "",
        "## Seconds per stage",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {stage} | {seconds} |" for stage, seconds in summary.stage_seconds.items()],
    ]
    for title, counts in (
        ("Documents failed, by reason", summary.document_failures),
        ("Model answers failed, by reason", summary.answer_failures),
    ):
        if counts:
            lines += ["", f"## {title}", "", "| reason | count |", "|---|---|"]
            lines += [f"| {reason} | {count} |" for reason, count in sorted(counts.items())]
    return "\n".join(lines)


def _runs_on_dask() -> bool:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = type(context.task_runner).__name__ if context is not None else ""
    return runner == "DaskTaskRunner"


@task(name="share-shards", cache_policy=NO_CACHE)
def share_shards(
    context: job.RunContext,
    shards: int,
    shard_workers: int,
    worker_deployment: str,
    worker_parameters: dict[str, Any],
) -> list[job.ShardReport]:
    """Start the worker flow runs for the queued shards, and wait until every shard is done."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from pipeline import shared_run

    logger = get_run_logger()
    started: list[Any] = [
        run_deployment(
            name=worker_deployment,
            parameters={"run_id": context.run_id, **worker_parameters},
            timeout=0,
            as_subflow=False,
        )
        for _ in range(shard_workers)
    ]
    ids = [flow_run.id for flow_run in started]
    logger.info("%d shards queued for %d runs of %s", shards, len(ids), worker_deployment)

    def workers_alive() -> bool:
        with get_client(sync_client=True) as client:
            states = [client.read_flow_run(i).state for i in ids]
        return any(state is None or not state.is_final() for state in states)

    return shared_run.wait_for_shards(context, workers_alive)


# Shards submitted to a Dask cluster ahead of the oldest one still running (bounds what is held).
DASK_SHARDS_IN_FLIGHT = 32


def process_on_dask(context: job.RunContext, plan: job.ShardPlan) -> list[job.ShardReport]:
    """Submit the shards to the flow's Dask task runner as they are planned, a bounded number at a time."""
    in_flight: deque[Any] = deque()
    reports = []
    for shard in plan:
        in_flight.append(process_shard.submit(context, shard))
        if len(in_flight) >= DASK_SHARDS_IN_FLIGHT:
            reports.append(in_flight.popleft().result())
    reports += [future.result() for future in in_flight]
    return reports


@flow(name="assay-run", log_prints=False)
def assay_run(
    sources: list[str],
    overrides: dict[str, Any] | None = None,
    config_file: str | None = None,
    shard_workers: int = 0,
    worker_deployment: str = "assay-shard-worker/default",
) -> job.RunSummary:
    """Process every document of `sources` (configured names or paths) with the configured tasks.

    `shard_workers > 0` spreads the shards over that many runs of `worker_deployment`.
    """
    from pathlib import Path

    logger = get_run_logger()
    settings = load_settings(Path(config_file) if config_file else None, **(overrides or {}))
    context = job.new_run(settings, resolve_sources(sources, settings), flow_run_id=flow_run.id)
    logger.info("run %s over %s", context.run_id, ", ".join(context.sources))
    try:
        # Listing streams into the shards as they run (or are queued): the plan is never held whole.
        plan = job.ShardPlan(job.list_documents(context.sources), settings.shard_size)
        if shard_workers > 0:
            from pipeline import shared_run

            queued = shared_run.share_run(context, plan)
            parameters = {"config_file": config_file, "overrides": overrides}
            reports = share_shards(context, queued, shard_workers, worker_deployment, parameters)
        elif _runs_on_dask():
            reports = process_on_dask(context, plan)
        else:
            reports = [process_shard(context, shard) for shard in plan]
        logger.info("%d documents in %d shards (listing took %.1f s)", plan.documents, plan.shards, plan.seconds)
        summary = finish_run(context, reports, plan.documents, plan.seconds)
    except BaseException:
        job.abort_run(context)
        raise
    create_markdown_artifact(
        markdown=summary_markdown(summary), key="assay-run-summary", description=f"Assay run {summary.run_id}"
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
