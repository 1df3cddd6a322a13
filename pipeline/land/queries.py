"""The questions the CLI asks the warehouse, in one place (the CLI itself holds no SQL but the analyst's)."""

from __future__ import annotations

import json
from typing import Any

import duckdb


def rows_of(cursor: duckdb.DuckDBPyConnection) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and rows of an executed statement."""
    return [d[0] for d in cursor.description or []], cursor.fetchall()


def recent_runs(con: duckdb.DuckDBPyConnection, limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The newest runs with their counts (view `run_summary`)."""
    return rows_of(
        con.execute(
            "select run_id, status, strftime(started_at, '%Y-%m-%d %H:%M') as started, duration_s as secs,"
            ' documents_in as "in", documents_processed as processed, documents_failed as failed,'
            ' documents_skipped as skipped, chunks, findings, pages_per_second as "pages/s"'
            " from run_summary limit ?",
            [limit],
        )
    )


def finding_with_text(con: duckdb.DuckDBPyConnection, finding_id: str) -> dict[str, Any] | None:
    """A finding's row (its newest landing) and its document's canonical text (`document_text`)."""
    columns, rows = rows_of(
        con.execute(
            "select f.*, t.text as document_text from findings f"
            " left join (select distinct content_sha256, text_sha256, text from texts) t"
            " on t.content_sha256 = f.content_sha256 and t.text_sha256 = f.text_sha256"
            " where f.finding_id = ? order by f.created_at desc limit 1",
            [finding_id],
        )
    )
    return dict(zip(columns, rows[0], strict=True)) if rows else None


def example_finding(con: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    """A finding of this run worth showing: grounded, most confident first."""
    row = con.execute(
        "select finding_id from findings where run_id = ? and grounding_status <> 'ungrounded'"
        " order by confidence desc limit 1",
        [run_id],
    ).fetchone()
    return str(row[0]) if row else None


def document_overview(con: duckdb.DuckDBPyConnection, uri: str) -> dict[str, Any] | None:
    """One document by its URI: its status now and in every run, its current values, its findings."""

    def records(sql: str) -> list[dict[str, Any]]:
        columns, rows = rows_of(con.execute(sql, [uri]))
        return [dict(zip(columns, row, strict=True)) for row in rows]

    now = records("SELECT * FROM documents WHERE document_uri = ?")
    if not now:
        return None
    return {
        "document": now[0],
        "runs": records(
            "SELECT run_id, status, reason, message, content_sha256, pages, chunks, findings, processed_at"
            " FROM document_versions WHERE document_uri = ? ORDER BY processed_at DESC"
        ),
        "values": records(
            "SELECT value_id, task, field, item_index, status, value, reviewed_value, review_decision, reviewer,"
            " evidence_text, evidence_page, grounded_on FROM current_values WHERE document_uri = ?"
            " ORDER BY task, field, item_index"
        ),
        "findings": records(
            "SELECT finding_id, task, field, value, grounding_status, grounded_on, confidence, evidence_page,"
            " review_decision, run_id FROM findings_evidence WHERE document_uri = ? ORDER BY task, field, item_index"
        ),
    }


def run_failures(con: duckdb.DuckDBPyConnection, run_id: str, limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    """A run's failed documents, then its failed model answers, with reason and message (view `failures`)."""
    return rows_of(
        con.execute(
            "select stage, reason, document_uri, message from failures where run_id = ?"
            " order by stage = 'extract', reason, document_uri limit ?",
            [run_id, limit],
        )
    )


def run_facts(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any] | None:
    """What a run's summary artifact adds to its counts: model, versions, tasks and grounding rate."""
    row = con.execute(
        "select r.model_name, r.model_sha256, r.versions,"
        " (select string_agg(task || ' ' || left(task_version, 12), ', ' order by task)"
        "  from tasks where run_id = r.run_id),"
        " (select count(*) from findings where run_id = r.run_id),"
        " (select count(*) from findings where run_id = r.run_id and grounding_status <> 'ungrounded')"
        " from runs as r where r.run_id = ?",
        [run_id],
    ).fetchone()
    if row is None:
        return None
    model, sha256, versions, tasks, findings, grounded = row
    return {
        "model": model,
        "model_sha256": sha256,
        "versions": json.loads(versions) if isinstance(versions, str) else versions,
        "tasks": tasks,
        "grounded": grounded,
        "findings": findings,
    }
