"""Replay: run a recorded chunk again with the recorded model, prompt, schema and settings.

A replay is refused, not attempted, when what produced the finding cannot be
reproduced exactly: the model file's SHA-256 differs, the recorded task
definition is missing, or today's code renders a different prompt template
than the recorded one. Otherwise the answer is generated again and compared:
`reproduced` when the same field and item hold the same value,
`raw_identical` when the whole answer is byte-identical.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from pipeline.core.errors import ContextOverflow
from pipeline.core.settings import Settings
from pipeline.core.tasks import Task, parse_task
from pipeline.extract.answers import extract_values, read_answer
from pipeline.extract.engine import get_engine, sampling_update
from pipeline.extract.model_files import resolve_model_file
from pipeline.extract.prompts import build_messages, prompt_template_sha256
from pipeline.extract.rules import apply_rules
from pipeline.land import warehouse
from pipeline.land.lake import Lake
from pipeline.land.store import open_store
from pipeline.land.tables import ReplayRow
from pipeline.run.context import commit

_QUERY = """
    SELECT f.finding_id, f.run_id, f.answer_id, f.field, f.item_index, f.value, f.model_sha256, f.prompt_sha256,
           f.task, f.task_version, f.chunk_start, f.chunk_end, f.content_sha256,
           f.method, f.rule, f.evidence_start, f.evidence_end,
           a.raw_output, a.sampling,
           c.text AS chunk_text,
           (SELECT any_value(definition) FROM tasks t WHERE t.task_version = f.task_version) AS definition,
           (SELECT any_value(text) FROM texts x WHERE x.content_sha256 = f.content_sha256
                AND x.text_sha256 = f.text_sha256) AS document_text
    FROM findings f
    LEFT JOIN answers a ON a.answer_id = f.answer_id AND a.run_id = f.run_id
    LEFT JOIN chunks c ON c.chunk_id = f.chunk_id AND c.run_id = f.run_id
    WHERE f.finding_id = ?
    ORDER BY f.created_at DESC
    LIMIT 1
"""


@dataclass(frozen=True)
class ReplayResult:
    finding_id: str
    run_id: str | None
    answer_id: str | None
    status: str  # "replayed" or "refused"
    reproduced: bool | None
    raw_identical: bool | None
    original_value: str | None
    replayed_value: str | None
    message: str
    model_sha256: str | None = None
    llm_runtime: str | None = None


def _refused(finding: dict[str, Any], message: str) -> ReplayResult:
    return ReplayResult(
        finding["finding_id"],
        finding.get("run_id"),
        finding.get("answer_id"),
        "refused",
        None,
        None,
        finding.get("value"),
        None,
        message,
    )


def replay_finding(con: duckdb.DuckDBPyConnection, finding_id: str, settings: Settings) -> ReplayResult:
    cursor = con.execute(_QUERY, [finding_id])
    columns = [d[0] for d in cursor.description or []]
    row = cursor.fetchone()
    if row is None:
        raise LookupError(f"no finding {finding_id!r}")
    finding = dict(zip(columns, row, strict=True))

    if not finding["definition"]:
        return _refused(finding, f"the definition of task version {finding['task_version']} is not in the lake")
    task = parse_task(finding["definition"].encode("utf-8"), f"lake:tasks/{finding['task_version']}")
    if task.version != finding["task_version"]:
        return _refused(finding, "the recorded task definition does not hash to the recorded task version")
    if finding["method"] == "rule":
        return _replay_rule(finding, task)

    model_file = resolve_model_file(settings.model)
    if model_file.sha256 != finding["model_sha256"]:
        return _refused(
            finding,
            f"the configured model file {model_file.path} has SHA-256 {model_file.sha256}; "
            f"the finding was produced by {finding['model_sha256']}",
        )

    sampling = json.loads(finding["sampling"])
    model_settings = settings.model.model_copy(update=sampling_update(sampling))
    engine = get_engine(model_settings)
    if prompt_template_sha256(task, engine.render_prompt) != finding["prompt_sha256"]:
        return _refused(finding, "this version of Assay renders a different prompt template than the recorded one")

    try:
        generation = engine.generate(
            engine.render_prompt(build_messages(task, finding["chunk_text"])), json.dumps(task.output_schema)
        )
    except ContextOverflow as exc:
        return _refused(finding, str(exc))
    raw_identical = generation.text == finding["raw_output"]
    answer = read_answer(task, generation)  # a partial answer replays as partial: its finished fields
    if answer.failure is not None and not answer.data:
        return ReplayResult(
            finding_id,
            finding["run_id"],
            finding["answer_id"],
            "replayed",
            False,
            raw_identical,
            finding["value"],
            None,
            f"the replayed answer failed: {answer.failure}",
            model_file.sha256,
            engine.identity.runtime,
        )
    values = extract_values(
        task,
        answer.data,
        generation,
        finding["document_text"] or finding["chunk_text"],
        finding["chunk_start"],
        finding["chunk_end"],
    )
    replayed = next((v for v in values if v.field == finding["field"] and v.item_index == finding["item_index"]), None)
    replayed_value = None
    if replayed is not None:
        replayed_value = replayed.value if isinstance(replayed.value, str) else json.dumps(replayed.value)
    reproduced = replayed_value == finding["value"]
    message = "value reproduced" if reproduced else f"value differs: {replayed_value!r}"
    return ReplayResult(
        finding_id,
        finding["run_id"],
        finding["answer_id"],
        "replayed",
        reproduced,
        raw_identical,
        finding["value"],
        replayed_value,
        message,
        model_file.sha256,
        engine.identity.runtime,
    )


def _replay_rule(finding: dict[str, Any], task: Task) -> ReplayResult:
    """A rule finding is reproduced when the recorded task's rules find the same value at the same place."""
    if not finding["document_text"]:
        return _refused(finding, "the document text is not in the lake")
    matches = apply_rules(task, finding["document_text"])
    same = next(
        (
            m
            for m in matches
            if m.rule == finding["rule"]
            and m.field == finding["field"]
            and (m.start, m.end) == (finding["evidence_start"], finding["evidence_end"])
        ),
        None,
    )
    return ReplayResult(
        finding["finding_id"],
        finding["run_id"],
        None,
        "replayed",
        same is not None and same.value == finding["value"],
        None,
        finding["value"],
        same.value if same else None,
        f"rule {finding['rule']} " + ("found the value again" if same else "no longer finds the value at its place"),
    )


def sample_findings(con: duckdb.DuckDBPyConnection, run_id: str, n: int, seed: int = 0) -> list[str]:
    """A reproducible random sample of a run's findings (same seed, same sample)."""
    rows = con.execute(
        "SELECT finding_id FROM findings WHERE run_id = ? ORDER BY hash(finding_id || ?::VARCHAR) LIMIT ?",
        [run_id, seed, n],
    ).fetchall()
    return [r[0] for r in rows]


def record_replays(settings: Settings, results: list[ReplayResult]) -> str:
    """Append the results to the lake (table `replays`), commit a manifest, refresh the views."""
    now = datetime.now(UTC)
    commit_id = "replay-" + uuid.uuid4().hex[:12]
    rows = [
        ReplayRow(
            replay_id=uuid.uuid4().hex[:16],
            run_id=r.run_id,
            finding_id=r.finding_id,
            answer_id=r.answer_id,
            status=r.status,
            reproduced=r.reproduced,
            raw_identical=r.raw_identical,
            original_value=r.original_value,
            replayed_value=r.replayed_value,
            message=r.message,
            model_sha256=r.model_sha256,
            llm_runtime=r.llm_runtime,
            replayed_at=now,
        )
        for r in results
    ]
    store = open_store(settings)
    written = Lake(store).write("replays", rows, commit_id, "0", now.date())
    commit(settings, store, "replay", [written], commit_id=commit_id)
    warehouse.refresh(settings.warehouse_path, store)  # committed: a catalog problem is only a warning
    return store.describe(written.path)
