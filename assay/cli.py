"""`assay`: run the job, and look at what it found.

assay run SOURCE...         process documents (paths or configured source names)
assay runs                  recent runs with their counts
assay query "SQL"           read-only SQL over the warehouse
assay show FINDING_ID       one finding, its evidence in context, and its lineage
assay eval --task --gold    how right a task is on labelled documents (and --compare A B)
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import click
import duckdb
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline import warehouse
from pipeline.errors import AssayError
from pipeline.lake_store import open_store
from pipeline.settings import Settings, load_settings

console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)  # pipes get whole tables
err_console = Console(stderr=True)


class _Context:
    def __init__(self, config: Path | None, data_dir: Path | None) -> None:
        self.config = config
        self.data_dir = data_dir

    def settings(self, **overrides: Any) -> Settings:
        if self.data_dir is not None:
            overrides["data_dir"] = self.data_dir
        return load_settings(self.config, **overrides)


class _Group(click.Group):
    """Turns Assay's own errors into clean CLI errors (exit 1, one line, no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (AssayError, FileNotFoundError, duckdb.Error) as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group)
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML settings file (default: $ASSAY_CONFIG or ./assay.toml).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the lake and warehouse live (default ./data, or ASSAY_DATA_DIR).",
)
@click.version_option(package_name="assay")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, data_dir: Path | None) -> None:
    """Assay: on-prem document analysis with audited findings."""
    ctx.obj = _Context(config, data_dir)


def _print_table(columns: list[str], rows: list[tuple[Any, ...]], title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in ("run_id", "started", "status"))
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)


class _RichProgress:
    """Progress listener drawing one bar over the run's documents."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task_id = progress.add_task("planning", total=None)

    def documents_planned(self, total: int) -> None:
        self.progress.update(self.task_id, total=total, description="documents")

    def document_done(self, uri: str, status: str) -> None:
        self.progress.update(self.task_id, advance=1, description=f"{status}: {uri.rsplit('/', 1)[-1][:40]}")


class _LineProgress:
    """Progress listener for logs and pipes: one line per document, `[done/listed so far]`."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0

    def documents_planned(self, total: int) -> None:
        self.total = total

    def document_done(self, uri: str, status: str) -> None:
        self.done += 1
        err_console.print(f"[{self.done}/{self.total}] {status}: {uri.rsplit('/', 1)[-1]}", highlight=False)


def _assay_invocation(data_dir: Path | None) -> str:
    """How the user can call this same CLI again (for the hints printed after a run)."""
    candidate = Path(sys.executable).parent / "assay"
    if candidate.exists():
        try:
            command = str(candidate.relative_to(Path.cwd()))
        except ValueError:
            command = str(candidate)
    else:
        command = "assay"
    return command + (f" --data-dir {data_dir}" if data_dir else "")


@cli.command()
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
    "--progress/--no-progress",
    default=None,
    help="Progress bar (default: on a terminal; otherwise one line per document).",
)
@click.pass_obj
def run(
    obj: _Context,
    sources: tuple[str, ...],
    tasks: tuple[str, ...],
    shard_size: int | None,
    max_chunks_per_document: int | None,
    threads: int | None,
    routing: bool | None,
    retry_failed: bool | None,
    progress: bool | None,
) -> None:
    """Process SOURCES (folders, files, or configured source names) and land the findings."""
    from flows.assay_run import assay_run

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
        overrides["model"] = {**obj.settings().model.model_dump(mode="json"), "n_threads": threads}
    if routing is not None:
        overrides["routing"] = routing
    if retry_failed:
        overrides["retry_failed"] = True
    show_bar = sys.stderr.isatty() if progress is None else progress
    with progress_listener(show_bar):
        summary = assay_run(list(sources), overrides=overrides, config_file=str(obj.config) if obj.config else None)
    failed_reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(summary.document_failures.items()))
    answer_reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(summary.answer_failures.items()))
    console.print(f"\n[bold]Run {summary.run_id}[/bold] {summary.status} in {summary.duration_s:.1f} s")
    console.print(f"  documents in:   {summary.documents_in}")
    console.print(f"  processed:      {summary.processed}")
    console.print(f"  failed:         {summary.failed}" + (f"  ({failed_reasons})" if failed_reasons else ""))
    console.print(
        f"  skipped:        {summary.skipped}" + (f"  (unchanged {summary.unchanged})" if summary.unchanged else "")
    )
    if summary.deleted:
        console.print(f"  deleted:        {summary.deleted}  (gone from the source; past findings kept)")
    console.print(f"  pages:          {summary.pages}")
    console.print(f"  chunks:         {summary.chunks}")
    console.print(
        f"  model answers:  {summary.answers}, failed {summary.answers_failed}"
        + (f"  ({answer_reasons})" if answer_reasons else "")
    )
    console.print(
        f"  chunks routed:  {summary.chunks_routed} to the model, {summary.chunks_not_routed} not (why: table routing)"
    )
    console.print(f"  findings:       {summary.findings}")
    console.print(
        f"  values:         {summary.values} per-document values, {summary.disagreements} disagreements to review"
    )
    console.print(f"  pages/second:   {summary.pages_per_second}")
    console.print("  seconds/stage:  " + ", ".join(f"{k} {v}" for k, v in summary.stage_seconds.items()))
    invocation = _assay_invocation(obj.data_dir)
    example = _example_finding(obj.settings(), summary.run_id)
    console.print("\nLook at the results:")
    console.print(f'  {invocation} query "select field, value, grounding_status from findings limit 20"')
    console.print(f"  {invocation} show {example or 'FINDING_ID'}")
    console.print(f"(or open {summary.warehouse} read-only with any DuckDB client)", highlight=False)
    if summary.status != "completed":
        sys.exit(1)


def progress_listener(show_bar: bool) -> Any:
    """Progress events for a run: a bar on a terminal, one line per document otherwise."""
    from contextlib import contextmanager

    from pipeline import progress as progress_events

    @contextmanager
    def listening() -> Any:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            disable=not show_bar,
            transient=True,
        ) as bar:
            listener = _RichProgress(bar) if show_bar else _LineProgress()
            with progress_events.listening(listener):
                yield

    return listening()


def _example_finding(settings: Settings, run_id: str) -> str | None:
    """A finding of this run worth showing: grounded, most confident first."""
    with warehouse.read_only(settings) as con:
        row = con.execute(
            "select finding_id from findings where run_id = ? and grounding_status <> 'ungrounded'"
            " order by confidence desc limit 1",
            [run_id],
        ).fetchone()
    return str(row[0]) if row else None


@cli.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_obj
def query(obj: _Context, sql: str, fmt: str) -> None:
    """Run read-only SQL against the warehouse and print the result."""
    settings = obj.settings()
    with warehouse.read_only(settings) as con:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        rows = cursor.fetchall()
    if fmt == "json":
        click.echo(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str, indent=1))
    elif fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        _print_table(columns, rows)


@cli.command()
@click.option("--limit", default=10, show_default=True)
@click.pass_obj
def runs(obj: _Context, limit: int) -> None:
    """Recent runs with their counts."""
    settings = obj.settings()
    with warehouse.read_only(settings) as con:
        cursor = con.execute(
            "select run_id, status, strftime(started_at, '%Y-%m-%d %H:%M') as started, duration_s as secs,"
            ' documents_in as "in", documents_processed as processed, documents_failed as failed,'
            ' documents_skipped as skipped, chunks, findings, pages_per_second as "pages/s"'
            " from run_summary limit ?",
            [limit],
        )
        columns = [d[0] for d in cursor.description or []]
        _print_table(columns, cursor.fetchall(), title="Recent runs")


CONTEXT_CHARS = 160


@cli.command()
@click.argument("finding_id")
@click.pass_obj
def show(obj: _Context, finding_id: str) -> None:
    """A finding, its evidence within the surrounding text, the document, page, model and prompt."""
    settings = obj.settings()
    with warehouse.read_only(settings) as con:
        cursor = con.execute(
            "select f.*, t.text as document_text from findings f"
            " left join (select distinct content_sha256, text_sha256, text from texts) t"
            " on t.content_sha256 = f.content_sha256 and t.text_sha256 = f.text_sha256"
            " where f.finding_id = ? order by f.created_at desc limit 1",
            [finding_id],
        )
        columns = [d[0] for d in cursor.description or []]
        row = cursor.fetchone()
    if row is None:
        raise click.ClickException(f"no finding {finding_id!r}")
    finding = dict(zip(columns, row, strict=True))
    text: str = finding.pop("document_text") or ""
    verified = finding["grounding_status"] != "ungrounded"
    console.print(
        f"[bold]Finding {finding_id}[/bold]  {finding['task']}.{finding['field']}"
        f"[{finding['item_index']}] = [bold]{finding['value']}[/bold]"
    )
    console.print(
        f"grounding: {finding['grounding_status']} (score {finding['grounding_score']})"
        + ("" if verified else "  [red]NOT VERIFIED: the quote was not found in the document[/red]")
    )
    if finding["confidence"] is not None:
        console.print(f"confidence: {finding['confidence']:.3f}")
    console.print(f"quote from the model: {finding['evidence_quote']!r}")
    if verified and text:
        start, end = int(finding["evidence_start"]), int(finding["evidence_end"])
        before = text[max(0, start - CONTEXT_CHARS) : start]
        after = text[end : end + CONTEXT_CHARS]
        console.print(f"\nevidence, characters {start}-{end} of the document text (page {finding['evidence_page']}):")
        console.print(
            textwrap.indent(f"…{before}[reverse]{text[start:end]}[/reverse]{after}…", "  "),
            markup=True,
            highlight=False,
        )
    console.print("\nlineage:")
    for key in (
        "document_uri",
        "document_version",
        "content_sha256",
        "text_sha256",
        "chunk_id",
        "chunk_start",
        "chunk_end",
        "parser",
        "parser_version",
        "chunking",
        "task_version",
        "prompt_sha256",
        "schema_sha256",
        "model_name",
        "model_sha256",
        "model_quantization",
        "llm_runtime",
        "sampling",
        "run_id",
        "flow_run_id",
        "answer_id",
        "fingerprint",
        "created_at",
    ):
        console.print(f"  {key}: {finding[key]}", highlight=False, markup=False)


@cli.command()
@click.pass_obj
def verify(obj: _Context) -> None:
    """Re-hash the lake and walk the manifest chain; exit 1 on any change, gap or stray file."""
    from pipeline.ledger import verify as verify_lake

    settings = obj.settings()
    report = verify_lake(open_store(settings))
    console.print(f"manifests: {report.manifests}, files checked: {report.files_checked}")
    console.print(f"head manifest SHA-256: {report.head_sha256}  (record it elsewhere to anchor the chain)")
    for label, items in (
        ("changed", report.changed),
        ("removed", report.removed),
        ("added", report.added),
        ("broken chain", report.broken_links),
    ):
        for item in items:
            console.print(f"[red]{label}:[/red] {item}", highlight=False)
    if not report.ok:
        console.print("[red bold]verification FAILED[/red bold]")
        sys.exit(1)
    console.print("[green]verified: every file matches its manifest and the chain is unbroken[/green]")


@cli.command()
@click.argument("finding_id", required=False)
@click.option("--sample", type=int, help="Replay a random sample of N findings of --run.")
@click.option("--run", "run_id", help="The run to sample from.")
@click.option("--seed", default=0, show_default=True, help="Seed of the sample.")
@click.pass_obj
def replay(obj: _Context, finding_id: str | None, sample: int | None, run_id: str | None, seed: int) -> None:
    """Re-run the recorded chunk with the recorded model, prompt, schema and settings; does the value reproduce?"""
    from pipeline.replay import record_replays, replay_finding, sample_findings

    if bool(finding_id) == bool(sample):
        raise click.UsageError("give either FINDING_ID or --sample N --run RUN_ID")
    if sample and not run_id:
        raise click.UsageError("--sample needs --run")
    settings = obj.settings()
    with warehouse.read_only(settings) as con:
        ids = [finding_id] if finding_id else sample_findings(con, str(run_id), int(sample or 0), seed)
        if not ids:
            raise click.ClickException(f"no findings in run {run_id!r}")
        try:
            results = [replay_finding(con, one, settings) for one in ids]
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc
    for result in results:
        if result.reproduced is None:
            mark = "[yellow]refused[/yellow]"
        else:
            mark = "[green]reproduced[/green]" if result.reproduced else "[red]NOT reproduced[/red]"
        raw = (
            ""
            if result.raw_identical is None
            else f" (raw answer {'identical' if result.raw_identical else 'differs'})"
        )
        console.print(f"{result.finding_id}: {mark}{raw}: {result.message}", highlight=False)
    record_replays(settings, results)
    replayed = [r for r in results if r.status == "replayed"]
    if replayed:
        rate = sum(1 for r in replayed if r.reproduced) / len(replayed)
        console.print(f"reproducibility: {rate:.3f} ({len(replayed)} replayed, {len(results) - len(replayed)} refused)")
    if any(r.status == "refused" for r in results) or any(r.reproduced is False for r in results):
        sys.exit(1)


@cli.command()
@click.argument("finding_id")
@click.option("--accept", "decision", flag_value="accept", help="The finding is right.")
@click.option("--reject", "decision", flag_value="reject", help="The finding is wrong.")
@click.option("--correct", "corrected", metavar="VALUE", help="The right value.")
@click.option("--reviewer", default=lambda: os.environ.get("USER", ""), help="Who decides (default: $USER).")
@click.option("--comment", help="Why.")
@click.pass_obj
def review(
    obj: _Context, finding_id: str, decision: str | None, corrected: str | None, reviewer: str, comment: str | None
) -> None:
    """Record a review decision on a finding (appended to the lake, visible in the views)."""
    from pipeline.review import Decision, record_decision

    if corrected is not None:
        if decision:
            raise click.UsageError("give one of --accept, --reject, --correct VALUE")
        decision = "correct"
    if not decision:
        raise click.UsageError("give one of --accept, --reject, --correct VALUE")
    record = record_decision(obj.settings(), finding_id, Decision(decision), reviewer, corrected, comment)
    console.print(
        f"recorded {record.decision.value} of {finding_id} by {record.reviewer} (decision {record.decision_id})",
        highlight=False,
    )


@cli.command()
@click.argument("sql", required=False)
@click.option("--view", help="Export a whole view instead of SQL, e.g. findings_to_review.")
@click.option(
    "--out",
    "outputs",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Output file, .csv or .xlsx (repeatable).",
)
@click.pass_obj
def export(obj: _Context, sql: str | None, view: str | None, outputs: tuple[Path, ...]) -> None:
    """Write a review file (CSV and/or XLSX) of a query's result or a view."""
    from pipeline.export import export_query

    if bool(sql) == bool(view):
        raise click.UsageError("give either SQL or --view NAME")
    if view and not view.replace("_", "").isalnum():
        raise click.UsageError("--view takes a view name")
    statement = sql or f"SELECT * FROM {view}"
    settings = obj.settings()
    with warehouse.read_only(settings) as con:
        try:
            count = export_query(con, statement, list(outputs))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    for path in outputs:
        console.print(f"wrote {count} rows to {path}", highlight=False)


@cli.command()
@click.argument("run_id")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Default: <data_dir>/reports/<run>.html")
@click.pass_obj
def report(obj: _Context, run_id: str, out: Path | None) -> None:
    """Write a static HTML report of a run (charts of findings, grounding, confidence, coverage, failures)."""
    from pipeline.report import write_run_report

    settings = obj.settings()
    target = out or settings.data_dir / "reports" / f"{run_id}.html"
    with warehouse.read_only(settings) as con:
        try:
            write_run_report(con, run_id, target)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc
    console.print(f"report written to {target}", highlight=False)


@cli.command(name="eval")
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
    obj: _Context,
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
    from flows.assay_run import assay_run
    from pipeline import evaluation

    if compare:
        click.echo(evaluation.compare_reports(*compare))
        return
    if not task_name or gold is None:
        raise click.UsageError("--task and --gold are required (or --compare A B)")
    settings = obj.settings()
    documents = evaluation.load_gold(gold, limit)
    name = name or f"{task_name}-{settings.model.name}-{'routed' if routing else 'all-chunks'}"
    eval_dir = settings.data_dir / "evals" / name
    model = settings.model.model_dump(mode="json")
    if threads:
        model["n_threads"] = threads
    overrides: dict[str, Any] = {
        "data_dir": str(eval_dir),
        "tasks": [task_name],
        "routing": routing,
        "model": model,
        "sources": {"gold": {"path": str(gold.parent.resolve()), "include": [d.file for d in documents]}},
        # An evaluation keeps its own lake and state under eval_dir, never the production ones.
        "state_url": None,
        "lake_store": None,
        "lake_mirror": None,
    }
    with progress_listener(False):
        summary = assay_run(["gold"], overrides=overrides, config_file=str(obj.config) if obj.config else None)
    with warehouse.connect_read_only(eval_dir / "warehouse.duckdb") as con:
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
    )
    markdown = evaluation.write_report(report, eval_dir / "report")
    click.echo(markdown.read_text(encoding="utf-8"))
    click.echo(f"Report: {markdown} (and summary.json, fields/documents/calibration.parquet beside it)")


@cli.command(name="warehouse")
@click.pass_obj
def rebuild_warehouse(obj: _Context) -> None:
    """Re-create the warehouse views from sql/*.sql (e.g. after moving the data folder)."""
    settings = obj.settings()
    warehouse.build(settings.warehouse_path, open_store(settings))
    console.print(f"views rebuilt in {settings.warehouse_path}")


def main() -> None:
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
