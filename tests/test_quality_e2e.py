"""The task library and the evaluation harness, run for real: Prefect, the GGUF model, DuckDB, offline."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from assay.cli import cli
from pipeline.land import warehouse
from pipeline.land.store import local_store
from tests.support import (
    ROOT,
    assay_command,
    document,
    nda_document,
    nda_gold,
    network_namespace_prefix,
    offline_env,
    open_warehouse,
)

pytestmark = pytest.mark.slow  # the real model through Prefect flow runs

LIBRARY = ("nda_key_terms", "contract_clauses", "pii_inventory", "document_profile")


def _rows(data_dir: Path, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    with open_warehouse(data_dir) as con:
        cursor = con.execute(sql, params or [])
        columns = [d[0] for d in cursor.description or []]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


@pytest.fixture(scope="module")
def library_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`assay run --task ...` with all four library tasks over an NDA and a real e-mail, offline."""
    tmp = tmp_path_factory.mktemp("library")
    documents = tmp / "documents"
    documents.mkdir()
    shutil.copy(nda_document("5fef505c7e8c60c597f150f2f2976684"), documents / "nda.pdf")
    shutil.copy(document("enron__jones-t_inbox_773.eml"), documents / "mail.eml")
    env, log = offline_env(tmp)
    tasks = [arg for name in LIBRARY for arg in ("--task", name)]
    command = [
        *network_namespace_prefix(),
        *assay_command(),
        "--data-dir",
        str(tmp / "data"),
        "run",
        str(documents),
        *tasks,
        "--no-progress",
        "--json",  # a script's view of the run: the summary as JSON on stdout
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["documents_in"] == 2 == summary["processed"]
    assert summary["chunks_routed"] > 0 and summary["values"] > 0 and Path(summary["report"]).is_file()
    assert not log.exists() or log.read_text() == "", "an outbound connection was attempted"
    return tmp / "data"


def test_every_chunk_has_a_routing_decision_per_task(library_run: Path) -> None:
    chunks = _rows(library_run, "SELECT content_sha256, count(*) AS n FROM chunks GROUP BY ALL")
    for row in chunks:
        decisions = _rows(
            library_run,
            "SELECT task, count(*) AS n, count(*) FILTER (WHERE routed) AS routed FROM routing "
            "WHERE content_sha256 = ? GROUP BY task",
            [row["content_sha256"]],
        )
        assert {d["task"] for d in decisions} == set(LIBRARY)
        assert all(d["n"] == row["n"] for d in decisions)
    summary = {r["task"]: r for r in _rows(library_run, "SELECT * FROM routing_summary")}
    assert summary["nda_key_terms"]["not_routed"] > 0  # routing did skip chunks with no signal
    answers = _rows(library_run, "SELECT task, count(*) AS n FROM answers GROUP BY task")
    routed = _rows(library_run, "SELECT task, count(*) AS n FROM routing WHERE routed GROUP BY task")
    assert {r["task"]: r["n"] for r in answers} == {r["task"]: r["n"] for r in routed}  # one answer per routed chunk


def test_library_values_carry_their_evidence(library_run: Path) -> None:
    values = _rows(library_run, "SELECT * FROM current_values")
    by = {(v["document_uri"].rsplit("/", 1)[-1], v["task"], v["field"], v["item_index"]): v for v in values}
    assert by[("nda.pdf", "nda_key_terms", "jurisdiction", 0)]["value"] == "Kentucky"
    assert by[("nda.pdf", "nda_key_terms", "effective_date", 0)]["value"] == "2018-08-16"
    assert by[("nda.pdf", "document_profile", "language", 0)]["value"] == "en"
    assert by[("mail.eml", "document_profile", "language", 0)]["value"] == "en"
    emails = [v for k, v in by.items() if k[0] == "mail.eml" and k[2] == "email_addresses"]
    assert emails, "the e-mail's addresses were not found"
    texts = {r["content_sha256"]: r["text"] for r in _rows(library_run, "SELECT content_sha256, text FROM texts")}
    for value in values:
        if value["status"] == "chosen" and value["evidence_start"] is not None and value["task"] != "document_profile":
            quoted = texts[value["content_sha256"]][value["evidence_start"] : value["evidence_end"]]
            assert quoted == value["evidence_text"]
    findings = {r["finding_id"] for r in _rows(library_run, "SELECT finding_id FROM findings")}
    for value in values:
        assert set(value["finding_ids"]) <= findings  # every value points at landed findings
    rule_findings = _rows(library_run, "SELECT * FROM findings WHERE method = 'rule'")
    assert rule_findings and all(f["answer_id"] is None and f["rule"] for f in rule_findings)


def test_a_rule_finding_replays(library_run: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"  # a copy: replaying records into the lake
    shutil.copytree(library_run, data_dir)
    warehouse.build(data_dir / "warehouse.duckdb", local_store(data_dir / "lake"))
    finding = _rows(data_dir, "SELECT finding_id FROM findings WHERE method = 'rule' ORDER BY finding_id LIMIT 1")
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "replay", finding[0]["finding_id"]])
    assert result.exit_code == 0, result.output
    replays = _rows(data_dir, "SELECT * FROM replays")
    assert replays[-1]["reproduced"] is True and "found the value again" in replays[-1]["message"]


def test_eval_reports_and_compares(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path)]
    gold = str(nda_gold(tmp_path / "gold"))
    routed = runner.invoke(cli, [*base, "eval", "--task", "nda_key_terms", "--gold", gold, "--name", "routed"])
    assert routed.exit_code == 0, routed.output
    folder = tmp_path / "evals" / "routed" / "report"
    summary = json.loads((folder / "summary.json").read_text())
    fields = pq.read_table(folder / "fields.parquet").to_pylist()
    documents = pq.read_table(folder / "documents.parquet").to_pylist()
    assert summary["documents"] == 3 and not summary["documents_without_results"]
    # The overall counts are the sums of the per-document counts, and F1 follows from them.
    for key in ("tp", "fp", "fn"):
        assert summary[f"overall_{key}"] == sum(d[key] for d in documents) == sum(f[key] for f in fields)
    tp, fp, fn = summary["overall_tp"], summary["overall_fp"], summary["overall_fn"]
    assert summary["overall_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-4)
    jurisdiction = next(f for f in fields if f["field"] == "jurisdiction")
    assert jurisdiction["tp"] >= 2  # Arizona and Kentucky are written in governing-law passages
    for row in fields:  # the chosen values are among the candidates: no chooser beats candidate recall
        assert row["recall"] <= row["candidate_recall"] <= 1.0
    assert summary["overall_recall"] <= summary["overall_candidate_recall"]
    assert summary["chunks_routed"] < summary["chunks"]
    assert (folder / "calibration.parquet").is_file() and "| **overall (micro)** |" in (
        folder / "report.md"
    ).read_text()

    every = runner.invoke(
        cli, [*base, "eval", "--task", "nda_key_terms", "--gold", gold, "--name", "all", "--no-routing", "--limit", "1"]
    )
    assert every.exit_code == 0, every.output
    every_summary = json.loads((tmp_path / "evals" / "all" / "report" / "summary.json").read_text())
    assert every_summary["chunks_routed"] == every_summary["chunks"]
    first = documents[0]["file"]
    with open_warehouse(tmp_path / "evals" / "routed") as con:
        routed_tokens = con.execute(
            "SELECT sum(prompt_tokens + completion_tokens) FROM answers a JOIN documents d USING (content_sha256) "
            "WHERE d.document_uri LIKE '%' || ?",
            [first],
        ).fetchone()
    assert routed_tokens is not None and every_summary["model_tokens_per_document"] > routed_tokens[0]

    compared = runner.invoke(cli, ["eval", "--compare", str(folder), str(tmp_path / "evals" / "all" / "report")])
    assert compared.exit_code == 0, compared.output
    assert "| jurisdiction |" in compared.output and "## Documents that changed" in compared.output
    same = runner.invoke(cli, ["eval", "--compare", str(folder), str(folder)])
    assert "| (none) |" in same.output and "(worse)" not in same.output
