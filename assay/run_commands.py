"""`assay run` and `assay eval`: the commands that run the job."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from assay.context import CliContext
from assay.output import assay_invocation, console, progress_shown
from pipeline.core.errors import AssayError

if TYPE_CHECKING:
    from pipeline.run.summary import RunSummary


@click.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("--task", "tasks", multiple=True, help="Extraction task (repeatable; default: key_terms).")
@click.option("--shard-size", type=int, help="Documents per Prefect task run.")
@click.option("--max-chunks-per-document", type=int, help="Extract from at most N chunks per document.")
@click.option("--threads", type=int, help="llama.cpp threads (default: the cores available).")
@click.option(
    "--routing/--no-routing",
    default=None,
    help="Send only chunks where a task's signals match (default: settings.routing, on).",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    default=None,
    help="Parse again the documents that failed in a way the same bytes would fail again (default: not retried).",
)
@click.option(
    "--full-listing",
    is_flag=True,
    help="List every source in full, not only what changed since the last completed run (finds deletions).",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar (default: on a terminal; otherwise one line per document).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON (progress still on stderr).")
@click.pass_obj
def run(
    obj: CliContext,
    sources: tuple[str, ...],
    tasks: tuple[str, ...],
    shard_size: int | None,
    max_chunks_per_document: int | None,
    threads: int | None,
    routing: bool | None,
    retry_failed: bool | None,
    full_listing: bool,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Process SOURCES (folders, files, or configured source names) and land the findings.

    The run is a Prefect flow run (`assay-run`); exits 1 when the run did not account for every document.
    """
    _start_parsing_processes(obj)
    from flows.assay_run import assay_run, summary_of

    overrides: dict[str, Any] = {}
    if obj.data_dir is not None:
        overrides["data_dir"] = str(obj.data_dir)
    if tasks:
        overrides["tasks"] = list(tasks)
    if shard_size:
        overrides["shard_size"] = shard_size
    if max_chunks_per_document:
        overrides["max_chunks_per_document"] = max_chunks_per_document
    if threads:
        overrides["model"] = {"n_threads": threads}
    if routing is not None:
        overrides["routing"] = routing
    if retry_failed:
        overrides["retry_failed"] = True
    with progress_shown(sys.stderr.isatty() if progress is None else progress):
        state = assay_run(
            list(sources),
            overrides=overrides,
            config_file=obj.config_file,
            full_listing=full_listing,
            return_state=True,
        )
        summary = summary_of(state)
    if as_json:
        click.echo(summary.model_dump_json(indent=1))
    else:
        _print_summary(obj, summary)
    if summary.status != "completed":
        sys.exit(1)


def _start_parsing_processes(obj: CliContext) -> None:
    """Start the parsing processes' fork server before Prefect is imported: its preload (about 4 s of one
    core) then runs beside Prefect's import and the start of its ephemeral server, not after them."""
    from pipeline.parse.workers import start_parsing_processes

    try:
        settings = obj.settings()
    except Exception:  # a head start only: the flow run loads the settings again and reports what is wrong
        return
    start_parsing_processes(settings.parsing)


def _print_summary(obj: CliContext, summary: RunSummary) -> None:
    import duckdb

    from pipeline.land import queries, warehouse
    from pipeline.run.summary import render_text

    first, *rest = render_text(summary)
    console.print()
    console.print(first, style="bold", highlight=False)
    for line in rest:
        console.print(line, highlight=False)
    invocation = assay_invocation(obj.data_dir)
    try:
        with warehouse.read_only(obj.settings()) as con:
            example = queries.example_finding(con, summary.run_id)
    except (AssayError, duckdb.Error):  # the run is committed; its summary said what went wrong after it
        example = None
    console.print("\nLook at the results:")
    console.print(f'  {invocation} query "select field, value, grounding_status from findings limit 20"', markup=False)
    console.print(f"  {invocation} show {example or 'FINDING_ID'}", markup=False)
    folder = Path(summary.warehouse).parent
    console.print(f"(or with any DuckDB client: cd {folder} && duckdb -readonly warehouse.duckdb)", highlight=False)


@click.command(name="eval")
@click.option("--task", "task_name", help="The task to evaluate (its field names must match the gold keys).")
@click.option(
    "--gold",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Gold labels, JSON lines (Kleister style); documents are found relative to this file.",
)
@click.option("--limit", type=int, help="Evaluate the first N labelled documents only.")
@click.option("--name", help="Name of this evaluation (default: task, model and routing).")
@click.option("--routing/--no-routing", default=True, show_default=True, help="Route chunks by the task's signals.")
@click.option("--threads", type=int, help="llama.cpp threads (default: the cores available).")
@click.option(
    "--compare",
    nargs=2,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Compare two evaluation folders instead of running one.",
)
@click.pass_obj
def evaluate(
    obj: CliContext,
    task_name: str | None,
    gold: Path | None,
    limit: int | None,
    name: str | None,
    routing: bool,
    threads: int | None,
    compare: tuple[Path, Path] | None,
) -> None:
    """Run a task over labelled documents and report precision, recall, F1, grounding and calibration.

    Each evaluation has its own data folder, DATA_DIR/evals/NAME (lake, warehouse, and the report:
    report.md, summary.json, fields/documents/calibration.parquet). Re-running an evaluation with the
    same settings reuses the landed results.
    """
    if compare:
        from pipeline.audit import evaluation

        click.echo(evaluation.compare_reports(*compare))
        return
    if not task_name or gold is None:
        raise click.UsageError("--task and --gold are required (or --compare A B)")
    _start_parsing_processes(obj)
    from flows.assay_run import assay_run, summary_of
    from pipeline.audit.evaluation_run import GOLD_SOURCE, evaluate_task

    def run_flow(overrides: dict[str, Any]) -> RunSummary:
        with progress_shown(False):
            return summary_of(
                assay_run([GOLD_SOURCE], overrides=overrides, config_file=obj.config_file, return_state=True)
            )

    evaluated = evaluate_task(
        obj.settings(), task_name, gold, run_flow, limit=limit, name=name, routing=routing, threads=threads
    )
    click.echo(evaluated.markdown.read_text(encoding="utf-8"))
    click.echo(f"Report: {evaluated.markdown} (and summary.json, fields/documents/calibration.parquet beside it)")


@click.command(name="learn")
@click.option("--task", "task_name", required=True, help="The task whose ranker to train.")
@click.option(
    "--gold",
    "gold_sets",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A gold label file an `assay eval` has run over (repeatable; default: the setting learning.gold_sets).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the new ranker file (default: learning.rankers_dir, else DATA_DIR/rankers).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the training report as JSON.")
@click.pass_obj
def learn(obj: CliContext, task_name: str, gold_sets: tuple[Path, ...], out: Path | None, as_json: bool) -> None:
    """Train a task's ranker from gold sets and reviewers' decisions; write it as a new file.

    The candidates are those `assay eval` landed for the gold sets' documents (DATA_DIR/evals/*) and
    those of the reviewed values and findings in DATA_DIR's own lake. Prints each field's F1 with the
    task's current choice and the new ranker's cross-validated F1 on the same documents. Nothing
    changes until the task file names the new file (`ranker: {file, sha256}`, printed at the end).
    """
    from pipeline.audit import learning
    from pipeline.core.tasks import find_task

    settings = obj.settings()
    task = find_task(task_name, settings.task_dirs)
    sets = list(gold_sets) or list(settings.learning.gold_sets)
    examples: list[learning.Example] = []
    missing: dict[str, list[str]] = {}
    for labels in sets:
        found, not_landed = learning.gold_examples(task, labels, settings.data_dir / "evals")
        examples += found
        if not_landed:
            missing[str(labels)] = not_landed
    reviewed, decisions = learning.review_examples(task, settings.data_dir / "warehouse.duckdb")
    learned = learning.learn(
        task,
        learning.merge(examples, reviewed),
        {
            "gold_sets": [str(p) for p in sets],
            "gold_documents_not_landed": sum(len(v) for v in missing.values()),
            "review_decisions": decisions,
            "reviewed_examples": len(reviewed),
        },
    )
    path, ranker = learning.write_ranker(
        learned.ranker, out or settings.learning.rankers_dir or settings.data_dir / "rankers"
    )
    if as_json:
        click.echo(learning.report_json({**learned.report, "file": str(path), "sha256": ranker.sha256}))
        return
    for label_file, files in missing.items():
        click.echo(f"{len(files)} document(s) of {label_file} have no landed evaluation (run `assay eval` over it)")
    click.echo(f"{decisions} review decision(s) read; {len(reviewed)} reviewed field(s) of documents")
    click.echo(learning.describe(learned.report))
    click.echo(f"\nNew ranker: {path}")
    click.echo(
        f"To use it, put it beside the task file ({task.source_path}; a built-in task is copied into one of"
        " your task_dirs first) and add to that file:"
    )
    click.echo(f"ranker:\n  file: {path.name}\n  sha256: {ranker.sha256}")
