"""Run one Assay job in this process without Prefect: `python -m tests.jobrunner DATA_DIR SOURCE [TASK ...]`.

Used in-process by the nightly-run tests and as a subprocess by the crash-safety tests, which kill it
with SIGKILL at a named point (ASSAY_CRASH_AT). Tasks are found in the library and in
tests/fixtures/tasks (`patterns_only` there asks the model nothing). Prints the run summary as JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pipeline  # noqa: F401
from pipeline.core import faults
from pipeline.core.settings import load_settings
from pipeline.parse.workers import start_parsing_processes

if TYPE_CHECKING:
    from pipeline.run.summary import RunSummary

TEST_TASKS = Path(__file__).resolve().parent / "fixtures" / "tasks"
NO_MODEL = ["patterns_only"]  # the tasks of a run that needs no model


def run(
    data_dir: Path,
    source: Path,
    tasks: list[str] | None = None,
    task_dir: Path | None = None,
    full_listing: bool = False,
    **extra: Any,
) -> RunSummary:
    from connectors.registry import resolve_sources
    from pipeline.run.local import run_locally

    overrides: dict[str, Any] = {"data_dir": data_dir, "max_chunks_per_document": 1, "shard_size": 2, **extra}
    if tasks:
        overrides["tasks"] = tasks
    overrides["task_dirs"] = [task_dir, TEST_TASKS] if task_dir else [TEST_TASKS]
    settings = load_settings(**overrides)
    return run_locally(settings, resolve_sources([str(source)], settings), full_listing=full_listing)


if __name__ == "__main__":
    faults.arm()  # this process is a test's: honour ASSAY_CRASH_AT
    start_parsing_processes(load_settings().parsing)  # as `assay run` does, beside the imports of run()
    summary = run(Path(sys.argv[1]), Path(sys.argv[2]), tasks=sys.argv[3:] or None)
    print(summary.model_dump_json())
