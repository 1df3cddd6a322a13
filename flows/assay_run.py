"""The Prefect skin of the job: plan shards, one task run per shard, a summary artifact.

No logic lives here that the CLI or a test cannot reach without Prefect: each
task calls one function of `pipeline.job`. Ephemeral Prefect is used unless
PREFECT_API_URL points at a server.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from connectors.registry import resolve_sources
from pipeline import job, progress
from pipeline.settings import load_settings


@task(name="plan-shards", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def plan_shards(context: job.RunContext) -> tuple[list[job.Shard], int, float]:
    """List every source (streaming) and group the refs into shards."""
    started = time.perf_counter()
    shards = job.plan_shards(job.list_documents(context.sources), context.settings.shard_size)
    total = sum(len(shard.documents) for shard in shards)
    return shards, total, time.perf_counter() - started


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


@flow(name="assay-run", log_prints=False)
def assay_run(
    sources: list[str], overrides: dict[str, Any] | None = None, config_file: str | None = None
) -> job.RunSummary:
    """Process every document of `sources` (configured names or paths) with the configured tasks."""
    from pathlib import Path

    logger = get_run_logger()
    settings = load_settings(Path(config_file) if config_file else None, **(overrides or {}))
    context = job.new_run(settings, resolve_sources(sources, settings), flow_run_id=flow_run.id)
    logger.info("run %s over %s", context.run_id, ", ".join(context.sources))
    try:
        shards, total, list_seconds = plan_shards(context)
        progress.documents_planned(total)
        logger.info("%d documents in %d shards", total, len(shards))
        reports = [process_shard(context, shard) for shard in shards]
        summary = finish_run(context, reports, total, list_seconds)
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
