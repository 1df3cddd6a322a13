"""Run one Assay job in this process without Prefect: `python -m tests.jobrunner DATA_DIR SOURCE [TASK ...]`.

Used by the crash-safety tests, which kill it with SIGKILL at a named point (ASSAY_CRASH_AT).
Prints the run summary as JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pipeline  # noqa: F401
from connectors.registry import resolve_sources
from pipeline.core.settings import load_settings
from pipeline.run.local import run_locally
from pipeline.run.summary import RunSummary


def run(
    data_dir: Path, source: Path, tasks: list[str] | None = None, task_dir: Path | None = None, **extra: Any
) -> RunSummary:
    overrides: dict[str, Any] = {"data_dir": data_dir, "max_chunks_per_document": 1, "shard_size": 2, **extra}
    if tasks:
        overrides["tasks"] = tasks
    if task_dir:
        overrides["task_dirs"] = [task_dir]
    settings = load_settings(**overrides)
    return run_locally(settings, resolve_sources([str(source)], settings))


if __name__ == "__main__":
    summary = run(Path(sys.argv[1]), Path(sys.argv[2]))
    print(summary.model_dump_json())
