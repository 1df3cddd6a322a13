"""An evaluation from start to finish: run a task over labelled documents in a folder of its own, score it.

Each evaluation has its own data folder, `<data_dir>/evals/<name>` (lake,
warehouse, and its report: report.md, summary.json, fields/documents/
calibration.parquet), and never writes into the production lake or state store:
`state_url`, `lake_store` and `lake_mirror` are switched off for it. Re-running
an evaluation with the same settings reuses the landed results. The run itself
is the caller's (`run`: the CLI runs it as a Prefect flow run), so that this
module stays free of Prefect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.audit import evaluation
from pipeline.core.settings import Settings
from pipeline.land.warehouse import connect_read_only
from pipeline.run.summary import RunSummary

GOLD_SOURCE = "gold"

# Runs the job over the source `GOLD_SOURCE` with these settings overrides.
Runner = Callable[[dict[str, Any]], RunSummary]


@dataclass(frozen=True)
class Evaluated:
    name: str
    folder: Path
    report: evaluation.EvaluationReport
    markdown: Path  # report.md; summary.json and the Parquet tables lie beside it


def evaluate_task(
    settings: Settings,
    task_name: str,
    gold: Path,
    run: Runner,
    *,
    limit: int | None = None,
    name: str | None = None,
    routing: bool = True,
    threads: int | None = None,
) -> Evaluated:
    """Run `task_name` over the documents of the gold file `gold`, score it, and write the report."""
    documents = evaluation.load_gold(gold, limit)
    name = name or f"{task_name}-{settings.model.name}-{'routed' if routing else 'all-chunks'}"
    folder = settings.data_dir / "evals" / name
    model = settings.model.model_dump(mode="json")
    if threads:
        model["n_threads"] = threads
    overrides: dict[str, Any] = {
        "data_dir": str(folder),
        "tasks": [task_name],
        "routing": routing,
        "model": model,
        "sources": {
            GOLD_SOURCE: {
                "connector": "local",
                "path": str(gold.parent.resolve()),
                "include": [d.file for d in documents],
            }
        },
        # An evaluation keeps its own lake and state under its folder, never the production ones.
        "state_url": None,
        "lake_store": None,
        "lake_mirror": None,
    }
    summary = run(overrides)
    with connect_read_only(folder / "warehouse.duckdb") as con:
        report = evaluation.evaluate(con, task_name, documents)
        task_version = con.execute(
            "SELECT any_value(task_version) FROM tasks WHERE run_id = ? AND task = ?", [summary.run_id, task_name]
        ).fetchone()
    report.extra.update(
        name=name,
        model=settings.model.name,
        model_sha256=summary.model_sha256,
        routing=routing,
        task_version=task_version[0] if task_version else None,
        run_id=summary.run_id,
        run_seconds=summary.duration_s,
        stage_seconds=summary.stage_seconds,
        slot_fill=round(summary.slot_fill, 4) if summary.slot_fill is not None else None,
        shards_parsed_ahead=summary.shards_parsed_ahead,
        answers_asked_again=summary.answers_asked_again,
    )
    return Evaluated(name, folder, report, evaluation.write_report(report, folder / "report"))
