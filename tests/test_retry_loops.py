"""A looping answer that kept nothing is asked once more with the DRY penalty (a task's `retry_loops`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from assay.cli import cli
from connectors.registry import resolve_sources
from pipeline.core.settings import load_settings
from pipeline.core.tasks import BUILTIN_TASK_DIR
from pipeline.run.local import run_locally
from pipeline.run.summary import RunSummary
from tests.support import open_warehouse

pytestmark = pytest.mark.slow  # the real model

# Without the penalty the embedded model loops in the `document_type` of this menu ("The document is a
# document that is a document that ...") before it finishes it, alone in a batch with 1 or 2 threads. The
# text of the menu in docling's tests/data/html/kvp_data_example.html (MIT; samples/documents has it).
MENU = (
    "List of services Breakfast options Choose as many as you like: Orange juice Tea Coffee Milk Water "
    "Choose as many as you like: Scramble eggs Porridge Bread Croissant"
)


def _run(data_dir: Path, source: Path, task_dirs: list[Path]) -> RunSummary:
    settings = load_settings(data_dir=data_dir, tasks=["key_terms"], task_dirs=task_dirs)
    return run_locally(settings, resolve_sources([str(source)], settings))


def test_a_looping_answer_is_asked_again_with_the_penalty_and_its_lineage_and_replay_say_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "breakfast menü.txt").write_text(MENU + "\n", encoding="utf-8")
    plain_tasks = tmp_path / "tasks"
    plain_tasks.mkdir()
    shipped = (BUILTIN_TASK_DIR / "key_terms.yaml").read_text()
    assert "retry_loops:\n  dry_multiplier: 0.8\n" in shipped
    (plain_tasks / "key_terms.yaml").write_text(shipped.replace("retry_loops:\n  dry_multiplier: 0.8\n", ""))

    without = _run(tmp_path / "without", source, [plain_tasks])
    assert without.answers_failed >= 1 and without.answers_asked_again == 0
    assert without.answer_failures == {"repetition": without.answers_failed}

    with caplog.at_level(logging.INFO, logger="pipeline.run.shard"):
        summary = _run(tmp_path / "data", source, [])
    assert f"({summary.answers_asked_again} asked again after a loop)" in caplog.text  # the shard's log line
    assert summary.answers == without.answers
    assert summary.answers_asked_again == without.answers_failed  # every answer that kept nothing, once
    assert summary.answers_failed < without.answers_failed
    with open_warehouse(tmp_path / "data") as con:
        answers = con.execute("SELECT answer_id, status, sampling, completion_tokens FROM answers").fetchall()
        findings = con.execute("SELECT finding_id, answer_id, sampling FROM findings").fetchall()
        model_tokens = con.execute("SELECT sum(model_tokens) FROM documents").fetchall()[0][0]
    with open_warehouse(tmp_path / "without") as con:
        first_tries = con.execute("SELECT sum(prompt_tokens + completion_tokens) FROM answers").fetchall()[0][0]
    again = {a: (status, json.loads(sampling)) for a, status, sampling, _ in answers if "asked_again" in sampling}
    assert len(again) == summary.answers_asked_again
    assert any(status in {"ok", "partial"} for status, _ in again.values())
    for _, recorded in again.values():
        assert recorded["asked_again"] == "repetition"
        assert recorded["dry"] == {"multiplier": 0.8, "base": 1.75, "allowed_length": 2}
    assert all("dry" not in json.loads(sampling) for a, _, sampling, _ in answers if a not in again)
    asked = [
        (finding, answer_id, json.loads(sampling)) for finding, answer_id, sampling in findings if answer_id in again
    ]
    assert asked and all(sampling == again[answer_id][1] for _, answer_id, sampling in asked)
    # The document is charged for both tries: every answer of the run without (the same first tries, the
    # prompt read once), plus the tokens of each second answer.
    assert model_tokens == first_tries + sum(tokens for a, _, _, tokens in answers if a in again)
    finding_id = asked[0][0]

    replayed = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "data"), "replay", finding_id])
    assert replayed.exit_code == 0, replayed.output
    assert "reproduced (raw answer identical)" in replayed.output
