"""A run's report: one self-contained HTML page a reviewer reads from top to bottom.

In order: the run's facts (counts, model file, task and prompt versions); the
values that wait for a decision, among the documents the run listed (an unchanged
document's values are the ones landed for it earlier); what changed since the previous run (new,
changed, gone); charts (SVG whose words are text); every document of the run
with its values, each value's evidence highlighted in its context, what that
evidence is grounded on (view `value_grounding`), and its review status; the
failures. No script, no external asset: it opens anywhere, offline, and can be
attached to an audit file. `assay report` writes it, and so does every run
(`<data_dir>/reports/<run_id>.html`).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import duckdb

from pipeline.audit.charts import bar_chart, histogram
from pipeline.core.settings import Settings
from pipeline.land import warehouse
from pipeline.land.queries import rows_of

CONTEXT_CHARS = 120
MAX_DOCUMENTS = 200  # documents shown in full; the rest are counted (the coverage view has them all)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; line-height: 1.4; }
h1 { font-size: 1.5rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ccc; } h3 { font-size: 1rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td { overflow-wrap: anywhere; }
mark { background: #ffe58a; padding: 0 0.1rem; }
.context { font-family: ui-monospace, monospace; font-size: 0.8rem; white-space: pre-wrap; color: #444; }
.review { color: #8a4b00; font-weight: bold; } .ok { color: #1b6e20; } .failed { color: #a00; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
"""


def _records(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any]) -> list[dict[str, Any]]:
    columns, rows = rows_of(con.execute(sql, params))
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(rows: list[dict[str, Any]], columns: list[str], empty: str) -> str:
    if not rows:
        return f"<p>{_e(empty)}</p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _in_context(text: str | None, start: int | None, end: int | None) -> str:
    if not text or start is None or end is None:
        return ""
    before = text[max(0, start - CONTEXT_CHARS) : start]
    after = text[end : end + CONTEXT_CHARS]
    return f'<div class="context">…{_e(before)}<mark>{_e(text[start:end])}</mark>{_e(after)}…</div>'


def _facts(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    runs = _records(con, "SELECT * FROM runs WHERE run_id = ?", [run_id])
    if not runs:
        raise LookupError(f"no run {run_id!r}")
    run = runs[0]
    shown = {
        "status": run["status"],
        "started / finished (UTC)": f"{run['started_at']} / {run['finished_at']}",
        "documents in": run["documents_in"],
        "processed / failed / skipped": (
            f"{run['documents_processed']} / {run['documents_failed']} / {run['documents_skipped']}"
        ),
        "pages, chunks, model answers (failed)": (
            f"{run['pages']}, {run['chunks']}, {run['answers']} ({run['answers_failed']})"
        ),
        "findings": run["findings"],
        "model": f"{run['model_name']} ({run['model_quantization'] or 'not loaded'}), SHA-256 {run['model_sha256']}",
        "runtime": run["llm_runtime"] or "",
        "previous manifest": run["previous_manifest_sha256"] or "(first commit)",
    }
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in shown.items())
    tasks = _records(
        con,
        "SELECT task, task_version, prompt_sha256, schema_sha256 FROM tasks WHERE run_id = ? ORDER BY task",
        [run_id],
    )
    return f"<table>{rows}</table><h3>Tasks, as run</h3>" + _table(
        tasks, ["task", "task_version", "prompt_sha256", "schema_sha256"], "no task"
    )


_VALUES = """
    SELECT v.value_id, d.document_uri, v.content_sha256, v.task, v.field, v.item_index, v.status, v.value,
           v.alternatives, v.evidence_text, v.evidence_start, v.evidence_end, v.evidence_page, v.methods,
           g.grounded_on, v.run_id AS extracted_in, rd.decision AS review_decision, rd.corrected_value, rd.reviewer
    FROM (
        SELECT * FROM document_values WHERE run_id <= $run
        QUALIFY dense_rank() OVER (PARTITION BY content_sha256, task ORDER BY run_id DESC) = 1
    ) AS v
    JOIN (SELECT DISTINCT content_sha256, document_uri FROM document_versions WHERE run_id = $run) AS d
        USING (content_sha256)
    LEFT JOIN value_grounding AS g USING (value_id)
    LEFT JOIN latest_value_decisions AS rd USING (value_id)
    ORDER BY d.document_uri, v.task, v.field, v.item_index
"""


# What a value's evidence is grounded on (view value_grounding), as the report says it.
GROUNDED_ON = {
    "rule": "grounded by a rule",
    "evidence": "grounded on the model's quote",
    "value": "grounded on the value alone",
}


def _grounding(value: dict[str, Any]) -> str:
    return GROUNDED_ON.get(str(value["grounded_on"]), "not verified")


# The statuses of a value that waits for a reviewer (as the view `values_to_review` selects them).
TO_REVIEW = ("disagreement", "unsupported", "uncertain")


def _review_state(value: dict[str, Any]) -> str:
    if value["review_decision"]:
        corrected = f" to {value['corrected_value']}" if value["review_decision"] == "correct" else ""
        return f'<span class="ok">{_e(value["review_decision"])}{_e(corrected)} by {_e(value["reviewer"])}</span>'
    if value["status"] in TO_REVIEW:
        return '<span class="review">to review</span>'
    return ""


def _alternatives(raw: Any) -> str:
    items = json.loads(raw) if isinstance(raw, str) else raw or []
    return "; ".join(f"{a['value']} ({a['support']})" for a in items)


def _to_review(values: list[dict[str, Any]]) -> str:
    waiting = [v for v in values if v["status"] in TO_REVIEW and not v["review_decision"]]
    rows = [
        {
            "document": Path(str(v["document_uri"])).name,
            "task.field": f"{v['task']}.{v['field']}",
            "status": v["status"],
            "value": v["value"],
            "other candidates": _alternatives(v["alternatives"]),
            "grounding": _grounding(v),
            "page": v["evidence_page"],
            "value_id": v["value_id"],
        }
        for v in waiting
    ]
    intro = f"<p>{len(rows)} value(s) wait for a decision (`assay export --view values_to_review`).</p>"
    columns = ["document", "task.field", "status", "value", "other candidates", "grounding", "page", "value_id"]
    return intro + _table(rows, columns, "Nothing waits for a decision.")


def _changes(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    previous = con.execute(
        "SELECT run_id FROM runs WHERE run_id < ? AND status = 'completed' ORDER BY run_id DESC LIMIT 1", [run_id]
    ).fetchone()
    if previous is None:
        return "<p>This is the first run: nothing to compare with.</p>"
    changes = _records(
        con,
        """
        WITH upto AS (
            SELECT run_id AS r, document_uri, task, field, item_index, value FROM document_values
        ), now AS (
            SELECT * FROM upto WHERE r <= $run
            QUALIFY row_number() OVER (PARTITION BY document_uri, task, field, item_index ORDER BY r DESC) = 1
        ), before AS (
            SELECT * FROM upto WHERE r <= $previous
            QUALIFY row_number() OVER (PARTITION BY document_uri, task, field, item_index ORDER BY r DESC) = 1
        )
        SELECT coalesce(n.document_uri, b.document_uri) AS document_uri, coalesce(n.task, b.task) AS task,
               coalesce(n.field, b.field) AS field, b.value AS before, n.value AS now,
               CASE WHEN b.value IS NULL AND n.value IS NOT NULL THEN 'new'
                    WHEN n.value IS NULL AND b.value IS NOT NULL THEN 'gone' ELSE 'changed' END AS change
        FROM now AS n FULL OUTER JOIN before AS b USING (document_uri, task, field, item_index)
        WHERE (n.r = $run OR n.r IS NULL) AND n.value IS DISTINCT FROM b.value
        UNION ALL
        SELECT document_uri, NULL, NULL, NULL, NULL, 'document gone' FROM deletions WHERE run_id = $run
        ORDER BY document_uri, task, field
        """,
        {"run": run_id, "previous": previous[0]},
    )
    intro = f"<p>Compared with run <code>{_e(previous[0])}</code>: {len(changes)} change(s).</p>"
    return intro + _table(changes, ["change", "document_uri", "task", "field", "before", "now"], "No value changed.")


def _charts(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    def pairs(sql: str) -> tuple[list[str], list[float]]:
        rows = con.execute(sql, [run_id]).fetchall()
        return [str(r[0]) for r in rows], [float(r[1]) for r in rows]

    by_field = pairs("SELECT task || '.' || field, count(*) FROM findings WHERE run_id = ? GROUP BY 1 ORDER BY 2 DESC")
    grounded = pairs(
        "SELECT coalesce(grounded_on, 'not verified'), count(*) FROM findings WHERE run_id = ?"
        " GROUP BY 1 ORDER BY 2 DESC"
    )
    coverage = pairs(
        "SELECT status || coalesce(' / ' || reason, ''), count(*) FROM document_versions WHERE run_id = ? "
        "GROUP BY 1 ORDER BY 2 DESC"
    )
    failures = pairs(
        "SELECT stage || ': ' || reason, count(*) FROM failures WHERE run_id = ? GROUP BY 1 ORDER BY 2 DESC"
    )
    confidences = [
        float(r[0])
        for r in con.execute(
            "SELECT confidence FROM findings WHERE run_id = ? AND confidence IS NOT NULL", [run_id]
        ).fetchall()
    ]
    charts = [
        bar_chart("Findings per field", *by_field, "findings"),
        bar_chart("What findings are grounded on", *grounded, "findings"),
        histogram("Model confidence", confidences),
        bar_chart("Coverage: what happened to each document", *coverage, "documents"),
        bar_chart("Failures by reason", *failures, "failures"),
    ]
    return '<div class="charts">' + "".join(f"<figure>{c}</figure>" for c in charts) + "</div>"


def _documents(con: duckdb.DuckDBPyConnection, run_id: str, values: list[dict[str, Any]]) -> str:
    documents = _records(
        con,
        "SELECT document_uri, filetype, status, reason, message, pages, chunks, findings, content_sha256 "
        "FROM document_versions WHERE run_id = ? ORDER BY status <> 'processed', document_uri",
        [run_id],
    )
    shown = documents[:MAX_DOCUMENTS]
    contents = sorted({str(d["content_sha256"]) for d in shown if d["content_sha256"]})
    texts = {
        str(r[0]): str(r[1])
        for r in con.execute(
            "SELECT content_sha256, any_value(text) FROM texts WHERE list_contains(?, content_sha256) GROUP BY 1",
            [contents],
        ).fetchall()
    }
    by_document: dict[str, list[dict[str, Any]]] = {}
    for value in values:
        by_document.setdefault(str(value["document_uri"]), []).append(value)
    sections = []
    for document in shown:
        uri = str(document["document_uri"])
        status = document["status"] + (f" ({document['reason']})" if document["reason"] else "")
        css = "failed" if document["status"] == "failed" else "ok"
        head = f'<h3 id="{_e(uri)}">{_e(Path(uri).name)} <span class="{css}">{_e(status)}</span></h3>'
        facts = [uri, document["filetype"], f"{document['pages']} page(s)" if document["pages"] else None]
        meta = "<p>" + " · ".join(_e(f) for f in facts if f) + "</p>"
        items = []
        for value in by_document.get(uri, []):
            evidence = _in_context(
                texts.get(str(value["content_sha256"])), value["evidence_start"], value["evidence_end"]
            )
            items.append(
                f"<li><b>{_e(value['task'])}.{_e(value['field'])}</b> = {_e(value['value'] or '(no value)')} "
                f"<small>[{_e(value['status'])}; {_e(value['methods'])}; {_e(_grounding(value))}"
                + (f"; page {_e(value['evidence_page'])}" if value["evidence_page"] is not None else "")
                + "]</small> "
                f"{_review_state(value)}{evidence}</li>"
            )
        message = f"<p>{_e(document['message'])}</p>" if document["status"] != "processed" else ""
        sections.append(head + meta + message + (f"<ul>{''.join(items)}</ul>" if items else ""))
    more = len(documents) - len(shown)
    tail = f"<p>{more} more document(s): see the view <code>coverage</code>.</p>" if more > 0 else ""
    return "".join(sections) + tail


def render_run_report(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    facts = _facts(con, run_id)
    values = _records(con, _VALUES, {"run": run_id})
    failures = _records(
        con,
        "SELECT stage, reason, document_uri, message FROM failures WHERE run_id = ?"
        " ORDER BY stage, reason, document_uri",
        [run_id],
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Assay run {_e(run_id)}</title>
<style>{STYLE}</style></head><body>
<h1>Assay run <code>{_e(run_id)}</code></h1>
{facts}
<h2>Values to review</h2>
{_to_review(values)}
<h2>Changes since the previous run</h2>
{_changes(con, run_id)}
<h2>Charts</h2>
{_charts(con, run_id)}
<h2>Documents</h2>
{_documents(con, run_id, values)}
<h2>Failures</h2>
{_table(failures, ["stage", "reason", "document_uri", "message"], "No failure.")}
</body></html>
"""


def write_run_report(con: duckdb.DuckDBPyConnection, run_id: str, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_run_report(con, run_id), encoding="utf-8")
    return out


def report_path(settings: Settings, run_id: str) -> Path:
    """Where a run's report is written: `<data_dir>/reports/<run_id>.html`."""
    return settings.data_dir / "reports" / f"{run_id}.html"


def write_after_run(settings: Settings, run_id: str) -> Path:
    """The report of a run that just committed, in its usual place."""
    with warehouse.read_only(settings) as con:
        return write_run_report(con, run_id, report_path(settings, run_id))
