"""`assay verify`, `replay`, `review`, `export`, `report`, `warehouse`: the auditor's and reviewer's commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from assay.context import CliContext
from assay.output import console, print_json, safe
from pipeline.land import warehouse
from pipeline.land.store import open_store


@click.command()
@click.option(
    "--expect-head", metavar="SHA256", help="Fail unless the newest manifest has this SHA-256 (kept elsewhere)."
)
@click.option(
    "--legacy-unsigned",
    type=int,
    default=0,
    show_default=True,
    metavar="N",
    help="Accept unsigned manifests up to sequence N (a lake begun before manifests were signed).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verification as JSON (exit code as without).")
@click.pass_obj
def verify(obj: CliContext, expect_head: str | None, legacy_unsigned: int, as_json: bool) -> None:
    """Check that what analysts read is what the runs committed; exit 1 on any difference.

    Re-hashes every lake file against its manifest, walks the chain of manifests, checks each manifest's
    signature, compares the lake with the heads recorded outside it (the state store), and compares the
    warehouse's views with the committed SQL over the committed files.
    """
    from dataclasses import asdict

    from pipeline.audit.integrity import verify_all

    report = verify_all(obj.settings(), expect_head=expect_head, legacy_unsigned=legacy_unsigned)
    if as_json:
        print_json({**asdict(report), "ok": report.ok})
        if not report.ok:
            sys.exit(1)
        return
    console.print(f"manifests: {report.manifests}, files checked: {report.files_checked}")
    console.print(f"head manifest SHA-256: {report.head_sha256}  (keep it elsewhere; verify --expect-head checks it)")
    for label, items in (
        ("changed", report.changed),
        ("removed", report.removed),
        ("added", report.added),
        ("broken chain", report.broken_links),
        ("signature", report.signatures),
        ("not as committed", report.anchors),
        ("view", report.views),
    ):
        for item in items:
            console.print(f"[red]{label}:[/red] {safe(item)}", highlight=False)
    for note in report.notes:
        console.print(f"note: {safe(note)}", highlight=False)
    if not report.ok:
        console.print("[red bold]verification FAILED[/red bold]")
        sys.exit(1)
    console.print(
        "[green]verified: every file matches its signed manifest, the chain is whole and as committed, "
        "and the views are the committed ones[/green]"
    )


@click.command()
@click.argument("finding_id", required=False)
@click.option("--sample", type=int, help="Replay a random sample of N findings of --run.")
@click.option("--run", "run_id", help="The run to sample from.")
@click.option("--seed", default=0, show_default=True, help="Seed of the sample.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (exit code as without).")
@click.pass_obj
def replay(
    obj: CliContext, finding_id: str | None, sample: int | None, run_id: str | None, seed: int, as_json: bool
) -> None:
    """Re-run the recorded chunk with the recorded model, prompt, schema and settings; does the value reproduce?"""
    from pipeline.audit.replay import record_replays, replay_finding, sample_findings

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
    record_replays(settings, results)
    failed = any(r.status == "refused" for r in results) or any(r.reproduced is False for r in results)
    if as_json:
        from dataclasses import asdict

        print_json([asdict(r) for r in results])
        if failed:
            sys.exit(1)
        return
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
        console.print(f"{safe(result.finding_id)}: {mark}{raw}: {safe(result.message)}", highlight=False)
    replayed = [r for r in results if r.status == "replayed"]
    if replayed:
        rate = sum(1 for r in replayed if r.reproduced) / len(replayed)
        console.print(f"reproducibility: {rate:.3f} ({len(replayed)} replayed, {len(results) - len(replayed)} refused)")
    if failed:
        sys.exit(1)


@click.command()
@click.argument("finding_id", required=False)
@click.option("--accept", "decision", flag_value="accept", help="The finding is right.")
@click.option("--reject", "decision", flag_value="reject", help="The finding is wrong.")
@click.option("--correct", "corrected", metavar="VALUE", help="The right value.")
@click.option("--comment", help="Why.")
@click.option(
    "--from",
    "sheet",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A review sheet (.xlsx or .csv) written by `assay export --view values_to_review` and filled in.",
)
@click.pass_obj
def review(
    obj: CliContext,
    finding_id: str | None,
    decision: str | None,
    corrected: str | None,
    comment: str | None,
    sheet: Path | None,
) -> None:
    """Record review decisions: on one finding, or on the values of a filled-in review sheet (all or none).

    The reviewer is the one the installation knows (setting `reviewer`, else login@host), not a name typed here.
    """
    from pipeline.audit.review import Decision, Proposed, record_decisions, reviewer_identity
    from pipeline.audit.review_sheet import read_sheet

    settings = obj.settings()
    if sheet is not None:
        if finding_id or decision or corrected or comment:
            raise click.UsageError("--from takes the decisions from the sheet: give nothing else")
        with warehouse.read_only(settings) as con:
            proposed = read_sheet(con, sheet)
    else:
        if corrected is not None:
            if decision:
                raise click.UsageError("give one of --accept, --reject, --correct VALUE")
            decision = "correct"
        if not finding_id or not decision:
            raise click.UsageError("give FINDING_ID and one of --accept, --reject, --correct VALUE (or --from SHEET)")
        proposed = [Proposed(Decision(decision), finding_id=finding_id, corrected_value=corrected, comment=comment)]
    rows = record_decisions(settings, proposed)
    for row in rows:
        target = f"finding {row.finding_id}" if row.finding_id else f"value {row.value_id}"
        console.print(f"recorded {row.decision} of {target} (decision {row.decision_id})", highlight=False)
    console.print(f"{len(rows)} decision(s) recorded as {reviewer_identity(settings)}", highlight=False)


@click.command()
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
def export(obj: CliContext, sql: str | None, view: str | None, outputs: tuple[Path, ...]) -> None:
    """Write a review file (CSV and/or XLSX) of a query's result or a view.

    `--view values_to_review` writes the review sheet: one row per value to decide, with decision,
    corrected_value and comment columns to fill in and read back with `assay review --from`.
    """
    from pipeline.audit.export import check_outputs, export_query, export_view
    from pipeline.audit.review_sheet import write_sheet

    if bool(sql) == bool(view):
        raise click.UsageError("give either SQL or --view NAME")
    with warehouse.read_only(obj.settings()) as con:
        try:
            check_outputs(list(outputs))
            if view == "values_to_review":  # the review sheet: with columns for the decisions
                count = write_sheet(con, list(outputs))
            elif view:
                count = export_view(con, view, list(outputs))
            else:
                count = export_query(con, str(sql), list(outputs))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    for path in outputs:
        console.print(f"wrote {count} rows to {path}", highlight=False)


@click.command()
@click.argument("run_id")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Default: <data_dir>/reports/<run>.html")
@click.pass_obj
def report(obj: CliContext, run_id: str, out: Path | None) -> None:
    """Write a run's report: one self-contained HTML page (every run writes its own, too).

    Values to review first, then what changed since the previous run, charts, every document with its
    values and their evidence in context, and the failures.
    """
    from pipeline.audit.report import report_path, write_run_report

    settings = obj.settings()
    target = out or report_path(settings, run_id)
    with warehouse.read_only(settings) as con:
        try:
            write_run_report(con, run_id, target)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc
    console.print(f"report written to {target}", highlight=False)


@click.command(name="warehouse")
@click.pass_obj
def rebuild_warehouse(obj: CliContext) -> None:
    """Re-create the warehouse views from sql/*.sql (e.g. after moving the data folder)."""
    settings = obj.settings()
    warehouse.build(settings.warehouse_path, open_store(settings))
    console.print(f"views rebuilt in {settings.warehouse_path}")


@click.command(name="mirror")
@click.option(
    "--check-hashes",
    is_flag=True,
    help="Read every mirrored object back and re-send any whose SHA-256 is not its manifest's (slow: a full read).",
)
@click.pass_obj
def mirror(obj: CliContext, check_hashes: bool) -> None:
    """Publish the committed lake to `[lake_mirror]` now: what it lacks, or (checking hashes) holds wrong."""
    from pipeline.land.mirror import publish

    settings = obj.settings()
    if settings.lake_mirror is None:
        raise click.ClickException("no [lake_mirror] is configured")
    published = publish(open_store(settings), settings.lake_mirror, check_hashes=check_hashes)
    console.print(
        f"{published.uploaded} files uploaded ({published.bytes_uploaded} bytes), "
        f"{published.already_there} already there",
        highlight=False,
    )
    for relative in published.repaired:
        console.print(f"repaired (its SHA-256 was wrong): {safe(relative)}", highlight=False)
