"""Run one Assay job in this process without Prefect: `python -m tests.jobrunner DATA_DIR SOURCE [TASK_DIR]`.

Used by the crash-safety tests, which kill it with SIGKILL at a named point (ASSAY_CRASH_AT).
Prints the run summary as JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pipeline  # noqa: F401
from connectors.registry import resolve_sources
from pipeline import job
from pipeline.settings import load_settings


def run(
    data_dir: Path, source: Path, tasks: list[str] | None = None, task_dir: Path | None = None, **extra: object
) -> job.RunSummary:
    overrides: dict[str, object] = {"data_dir": data_dir, "max_chunks_per_document": 1, "shard_size": 2, **extra}
    if tasks:
        overrides["tasks"] = tasks
    if task_dir:
        overrides["task_dirs"] = [task_dir]
    settings = load_settings(**overrides)  # type: ignore[arg-type]
    context = job.new_run(settings, resolve_sources([str(source)], settings))
    try:
        shards = job.plan_shards(job.list_documents(context.sources), settings.shard_size)
        reports = [job.process_shard(context, shard) for shard in shards]
        return job.finish_run(context, reports, sum(len(s.documents) for s in shards))
    except BaseException:
        job.abort_run(context)
        raise


if __name__ == "__main__":
    summary = run(Path(sys.argv[1]), Path(sys.argv[2]))
    print(summary.model_dump_json())
