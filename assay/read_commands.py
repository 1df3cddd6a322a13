"""`assay runs`, `assay query`, `assay show`: reading what the runs landed, through the warehouse."""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from pathlib import Path

import click

from assay.context import CliContext
from assay.output import console, print_json, print_table, safe
from pipeline.land import queries, warehouse
from pipeline.land.sandbox import check_select

CONTEXT_CHARS = 160
LINEAGE = (
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
)


@click.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_obj
def query(obj: CliContext, sql: str, fmt: str) -> None:
    """Run one SELECT against the warehouse and print the result.

    The connection reads the lake's views and nothing else: no other file, no setting, no extension.
    """
    with warehouse.read_only(obj.settings()) as con:
        columns, rows = queries.rows_of(con.execute(check_select(sql)))
    if fmt == "json":
        click.echo(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str, indent=1))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        print_table(columns, rows)


@click.command()
@click.option("--limit", default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of runs) instead of a table.")
@click.pass_obj
def runs(obj: CliContext, limit: int, as_json: bool) -> None:
    """Recent runs with their counts."""
    with warehouse.read_only(obj.settings()) as con:
        columns, rows = queries.recent_runs(con, limit)
    if as_json:
        print_json([dict(zip(columns, row, strict=True)) for row in rows])
    else:
        print_table(columns, rows, title="Recent runs")


@click.command()
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def documents(obj: CliContext, uri: str, as_json: bool) -> None:
    """One document: its status now and in every run, its values (with review state), its findings.

    URI is the document's URI as the runs recorded it, or a path to a local file.
    """
    if "://" not in uri and Path(uri).exists():
        uri = Path(uri).resolve().as_uri()
    with warehouse.read_only(obj.settings()) as con:
        overview = queries.document_overview(con, uri)
    if overview is None:
        raise click.ClickException(f"no document {uri!r} in the warehouse")
    if as_json:
        print_json(overview)
        return
    document = overview["document"]
    state = document["status"] + (f" ({document['reason']})" if document["reason"] else "")
    deleted = "  DELETED from its source" if document["deleted"] else ""
    console.print(safe(f"{document['document_uri']}: {state}{deleted}"), highlight=False)
    for title, key, columns in (
        ("Runs", "runs", ["run_id", "status", "reason", "pages", "chunks", "findings"]),
        ("Values", "values", ["task", "field", "item_index", "status", "value", "reviewed_value", "review_decision"]),
        ("Findings", "findings", ["finding_id", "field", "value", "grounding_status", "grounded_on", "confidence"]),
    ):
        rows = [tuple(r[c] for c in columns) for r in overview[key]]
        print_table(columns, rows, title=title)


@click.command()
@click.argument("finding_id")
@click.option("--json", "as_json", is_flag=True, help="Print the finding and its lineage as JSON.")
@click.pass_obj
def show(obj: CliContext, finding_id: str, as_json: bool) -> None:
    """A finding, its evidence within the surrounding text, the document, page, model and prompt."""
    with warehouse.read_only(obj.settings()) as con:
        finding = queries.finding_with_text(con, finding_id)
    if finding is None:
        raise click.ClickException(f"no finding {finding_id!r}")
    text: str = finding.pop("document_text") or ""
    if as_json:
        start, end = finding["evidence_start"], finding["evidence_end"]
        context = text[max(0, start - CONTEXT_CHARS) : end + CONTEXT_CHARS] if text and start is not None else None
        print_json({**finding, "context": context})
        return
    verified = finding["grounding_status"] != "ungrounded"
    console.print(
        f"[bold]Finding {safe(finding_id)}[/bold]  {safe(finding['task'])}.{safe(finding['field'])}"
        f"\\[{finding['item_index']}] = [bold]{safe(finding['value'])}[/bold]"
    )
    on = {
        "evidence": "on the model's quote, which holds the value",
        "value": "on the value alone: the model's quote was not in the text, or did not hold the value",
        "rule": f"by the rule {finding['rule']}, where it matched",
    }.get(str(finding["grounded_on"]), "")
    console.print(
        safe(f"grounding: {finding['grounding_status']} (score {finding['grounding_score']}) {on}".rstrip()),
        highlight=False,
    )
    if not verified:
        console.print("[red]NOT VERIFIED: neither the quote nor the value was found where the model read[/red]")
    if finding["confidence"] is not None:
        console.print(f"confidence: {finding['confidence']:.3f}")
    console.print(f"quote from the model: {safe(repr(finding['evidence_quote']))}", highlight=False)
    if verified and text:
        start, end = int(finding["evidence_start"]), int(finding["evidence_end"])
        before = text[max(0, start - CONTEXT_CHARS) : start]
        after = text[end : end + CONTEXT_CHARS]
        console.print(f"\nevidence, characters {start}-{end} of the document text (page {finding['evidence_page']}):")
        console.print(
            textwrap.indent(f"…{safe(before)}[reverse]{safe(text[start:end])}[/reverse]{safe(after)}…", "  "),
            highlight=False,
        )
    console.print("\nlineage:")
    for key in LINEAGE:
        console.print(f"  {key}: {safe(finding[key])}", highlight=False)
