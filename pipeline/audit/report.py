"""A static HTML report of one run: charts first, then the tables behind them.

One self-contained file (charts are inline SVG drawn by matplotlib, no
scripts, no external assets), so it can be attached to an audit file and
opened anywhere.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb


def _svg_bar(title: str, labels: Sequence[str], values: Sequence[float], xlabel: str = "") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 0.45 * max(3, len(labels)) + 0.9))
    if labels:
        axis.barh(list(labels)[::-1], list(values)[::-1], color="#3b6ea5")
        for y, value in enumerate(list(values)[::-1]):
            axis.text(value, y, f" {value:g}", va="center", fontsize=9)
    else:
        axis.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=axis.transAxes)
        axis.set_yticks([])
    axis.set_title(title, loc="left", fontsize=11)
    axis.set_xlabel(xlabel)
    axis.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _histogram(title: str, values: Sequence[float], bins: int = 10) -> str:
    edges = [i / bins for i in range(bins + 1)]
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int(value * bins))] += 1
    labels = [f"{edges[i]:.1f}-{edges[i + 1]:.1f}" for i in range(bins)]
    return _svg_bar(title, labels, counts, "findings")


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    cursor = con.execute(sql, params)
    return [d[0] for d in cursor.description or []], cursor.fetchall()


def _table(columns: list[str], rows: list[tuple[Any, ...]], limit: int = 200) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
        for row in rows[:limit]
    )
    more = f"<p>{len(rows) - limit} more rows not shown.</p>" if len(rows) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def render_run_report(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    columns, runs = _rows(con, "SELECT * FROM run_summary WHERE run_id = ?", [run_id])
    if not runs:
        raise LookupError(f"no run {run_id!r}")
    run = dict(zip(columns, runs[0], strict=True))

    _, per_field = _rows(
        con,
        "SELECT task || '.' || field, count(*) FROM findings WHERE run_id = ? GROUP BY ALL ORDER BY 2 DESC",
        [run_id],
    )
    _, grounding = _rows(
        con, "SELECT grounding_status, count(*) FROM findings WHERE run_id = ? GROUP BY ALL ORDER BY 2 DESC", [run_id]
    )
    _, confidences = _rows(con, "SELECT confidence FROM findings WHERE run_id = ? AND confidence IS NOT NULL", [run_id])
    _, coverage = _rows(
        con,
        "SELECT status || coalesce(' / ' || reason, ''), count(*) FROM document_versions "
        "WHERE run_id = ? GROUP BY ALL ORDER BY 2 DESC",
        [run_id],
    )
    _, failures = _rows(
        con,
        "SELECT stage || ': ' || reason, count(*) FROM failures WHERE run_id = ? GROUP BY ALL ORDER BY 2 DESC",
        [run_id],
    )
    coverage_columns, coverage_rows = _rows(
        con,
        "SELECT document_uri, filetype, status, reason, pages, chunks, chunks_extracted, answers, answers_failed, "
        "findings, findings_verified FROM coverage WHERE run_id = ? ORDER BY status, document_uri",
        [run_id],
    )
    failure_columns, failure_rows = _rows(
        con,
        "SELECT stage, reason, document_uri, message FROM failures WHERE run_id = ?"
        " ORDER BY stage, reason, document_uri",
        [run_id],
    )

    charts = [
        _svg_bar("Findings per field", [r[0] for r in per_field], [r[1] for r in per_field], "findings"),
        _svg_bar("Grounding status", [r[0] for r in grounding], [r[1] for r in grounding], "findings"),
        _histogram("Confidence", [float(r[0]) for r in confidences]),
        _svg_bar(
            "Coverage: what happened to each document", [r[0] for r in coverage], [r[1] for r in coverage], "documents"
        ),
        _svg_bar("Failures by reason", [r[0] for r in failures], [r[1] for r in failures], "failures"),
    ]
    facts = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape('' if v is None else str(v))}</td></tr>" for k, v in run.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Assay run {html.escape(run_id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
.charts {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 1rem; }}
.charts svg {{ width: 100%; height: auto; }}
table {{ border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }}
th {{ background: #f2f2f2; }}
</style></head><body>
<h1>Assay run <code>{html.escape(run_id)}</code></h1>
<table>{facts}</table>
<div class="charts">{"".join(f"<figure>{c}</figure>" for c in charts)}</div>
<h2>Coverage</h2>{_table(coverage_columns, coverage_rows)}
<h2>Failures</h2>{_table(failure_columns, failure_rows)}
</body></html>
"""


def write_run_report(con: duckdb.DuckDBPyConnection, run_id: str, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_run_report(con, run_id), encoding="utf-8")
    return out
