"""`run_locally()`: the one run loop. The flow, the tests and the benchmarks all call it.

Start the run, stream its shard plan into an executor that turns shards into
reports, and finish the run from them; on any failure give up the lock (the
next run's recovery rolls back what this one left). The executor is where runs
differ: one after the other in this process (`in_order`, the default), Prefect
tasks on a Dask cluster, or shards queued for workers (flows/assay_run.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pipeline.core.connector import Connector
from pipeline.core.settings import Settings
from pipeline.run.ahead import parsing_ahead
from pipeline.run.context import RunContext, abort_run, new_run
from pipeline.run.counts import ShardReport
from pipeline.run.finish import finish_run
from pipeline.run.listing import list_documents, plan_listings
from pipeline.run.plan import ShardPlan
from pipeline.run.shard import parse_shard, process_shard
from pipeline.run.summary import RunSummary

ShardExecutor = Callable[[RunContext, ShardPlan], Sequence[ShardReport]]
Finisher = Callable[[RunContext, Sequence[ShardReport], int, float], RunSummary]


def in_order(context: RunContext, plan: ShardPlan) -> list[ShardReport]:
    """Every shard in this process, one after the other, as the plan streams them (parsed ahead when asked)."""
    with parsing_ahead(context, plan, parse_shard) as shards:
        return [process_shard(context, shard) for shard in shards]


def run_locally(
    settings: Settings,
    sources: dict[str, Connector],
    *,
    flow_run_id: str | None = None,
    execute: ShardExecutor = in_order,
    finish: Finisher = finish_run,
    full_listing: bool = False,
) -> RunSummary:
    """Run the job over `sources` with `settings`; the run's summary.

    Each source is listed in full or only for what changed since the last completed run
    (pipeline/run/listing.py); `full_listing` asks for a full listing of every source.
    """
    context = new_run(settings, sources, flow_run_id=flow_run_id)
    try:
        context.listings = plan_listings(
            sources, context.state, settings, context.work_fingerprint, context.started_at, full_listing
        )
        plan = ShardPlan(list_documents(context.sources, context.listings, context.state), settings.shard_size)
        reports = execute(context, plan)
        return finish(context, reports, plan.documents, plan.seconds)
    except BaseException:
        abort_run(context)
        raise
