"""The worker side of a shared run: lease shards of a running run and process them.

Deployed as `assay-shard-worker/default` (deploy/prefect.yaml) on a work pool; the
`assay-run` flow with `shard_workers=N` starts N runs of it. Each run joins the
run through the state store (pipeline/run/shared.py) and works until no shard is
free. Start as many Prefect workers on as many machines as you like: a shard is
leased by one of them at a time and completed once.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from connectors.registry import rebuild_sources
from pipeline.core.settings import settings_from_parameters
from pipeline.parse.workers import start_parsing_processes
from pipeline.run import shared


@flow(name="assay-shard-worker", log_prints=False)
def assay_shard_worker(
    run_id: str, config_file: str | None = None, overrides: dict[str, Any] | None = None
) -> list[int]:
    """Process free shards of run `run_id` until none is left; the shard indexes this worker did."""
    logger = get_run_logger()
    settings = settings_from_parameters(config_file, overrides)
    start_parsing_processes(settings.parsing)  # their preload runs while the run is joined
    context = shared.join_run(settings, run_id, rebuild_sources)
    owner = f"{shared.worker_name()}:{flow_run.id}"
    done = shared.work_on_shards(context, owner=owner)
    logger.info("worker %s did shards %s of run %s", owner, done, run_id)
    return done
