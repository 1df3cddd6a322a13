"""For analysts and auditors, on the results of the real end-to-end run: views, review, export,
replay on the embedded model, the HTML report, and verification after all of it."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from openpyxl import load_workbook

from assay.cli import cli
from pipeline.core.settings import ModelSettings
from pipeline.extract.model_files import resolve_model_file
from tests.support import E2E_DOCUMENTS

pytestmark = pytest.mark.slow  # reads the end-to-end run (the real model)


def _data_dir(landed: dict[str, object] | Path) -> Path:
    return landed if isinstance(landed, Path) else Path(str(landed["data_dir"]))


def _invoke(landed: dict[str, object] | Path, *args: str) -> Result:
    """The CLI on the end-to-end run's data (read only), or on a copy of it (`landed_copy`)."""
    return CliRunner().invoke(cli, ["--data-dir", str(_data_dir(landed)), *args])


def _rows(landed: dict[str, object] | Path, sql: str) -> list[dict[str, Any]]:
    result = _invoke(landed, "query", "--format", "json", sql)
    assert result.exit_code == 0, result.output
    return list(json.loads(result.output))


def test_findings_evidence_view_carries_evidence_and_lineage(landed: dict[str, object]) -> None:
    rows = _rows(landed, "select * from findings_evidence")
    assert rows
    for row in rows:
        assert row["verified"] == (row["grounding_status"] != "ungrounded")
        assert row["model_sha256"] and row["prompt_sha256"] and row["document_uri"]


def test_coverage_lists_every_input(landed: dict[str, object]) -> None:
    rows = _rows(landed, "select document_uri, status, reason from coverage")
    assert sorted(r["document_uri"].rsplit("/", 1)[-1] for r in rows) == sorted(E2E_DOCUMENTS)
    assert all(r["reason"] for r in rows if r["status"] != "processed")


def test_coverage_counts_how_each_documents_findings_are_grounded(landed: dict[str, object]) -> None:
    """The view's counts are the findings' own, per run and document (none for a document without findings)."""
    shown = _rows(
        landed,
        "select run_id, document_uri, findings, findings_verified, findings_on_evidence, findings_on_value,"
        " findings_by_rule from coverage",
    )
    counted = {
        (r["run_id"], r["document_uri"]): r
        for r in _rows(
            landed,
            "select run_id, document_uri, count(*) as findings,"
            " count(*) filter (where grounding_status <> 'ungrounded') as findings_verified,"
            " count(*) filter (where grounded_on = 'evidence') as findings_on_evidence,"
            " count(*) filter (where grounded_on = 'value') as findings_on_value,"
            " count(*) filter (where grounded_on = 'rule') as findings_by_rule"
            " from findings group by all",
        )
    }
    assert sum(r["findings_on_evidence"] for r in counted.values()) > 0  # the model's quotes held values
    counts = ("findings", "findings_verified", "findings_on_evidence", "findings_on_value", "findings_by_rule")
    for row in shown:
        key = (row["run_id"], row["document_uri"])
        assert row == counted.get(key, {"run_id": key[0], "document_uri": key[1], **dict.fromkeys(counts, 0)})
        grounded = row["findings_on_evidence"] + row["findings_on_value"] + row["findings_by_rule"]
        assert row["findings_verified"] == grounded  # a verified finding is grounded on exactly one of them
    assert set(counted) <= {(r["run_id"], r["document_uri"]) for r in shown}  # no finding of an unlisted document


def test_findings_to_review_are_unverified_or_unsure(landed: dict[str, object]) -> None:
    for row in _rows(landed, "select verified, confidence from findings_to_review"):
        assert not row["verified"] or row["confidence"] < 0.5
    strict = _rows(landed, "select count(*) as n from findings_below(1.01)")[0]["n"]
    total = _rows(landed, "select count(*) as n from findings")[0]["n"]
    assert strict == total


def test_compare_a_run_with_itself_changes_nothing(landed: dict[str, object]) -> None:
    run_id = _rows(landed, "select run_id from runs")[0]["run_id"]
    rows = _rows(landed, f"select change from compare_runs('{run_id}', '{run_id}')")
    assert rows and {r["change"] for r in rows} == {"same"}
    added = _rows(landed, f"select distinct change from compare_runs('no-such-run', '{run_id}')")
    assert {r["change"] for r in added} == {"added"}


def test_review_decisions_are_appended_and_visible(landed_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    landed = landed_copy
    ids = [r["finding_id"] for r in _rows(landed, "select finding_id from findings order by finding_id limit 3")]
    assert len(ids) == 3
    monkeypatch.setenv("ASSAY_REVIEWER", "ana")  # the identity this installation records decisions as
    assert _invoke(landed, "review", ids[0], "--accept").exit_code == 0
    assert _invoke(landed, "review", ids[1], "--reject", "--comment", "not a party").exit_code == 0
    monkeypatch.setenv("ASSAY_REVIEWER", "bo")
    corrected = _invoke(landed, "review", ids[2], "--correct", "Compuware Corporation")
    assert corrected.exit_code == 0, corrected.output
    # a later decision on the same finding wins; the earlier one stays in the table
    assert _invoke(landed, "review", ids[0], "--reject").exit_code == 0

    rows = {
        r["finding_id"]: r for r in _rows(landed, "select * from findings_evidence where review_decision is not null")
    }
    assert rows[ids[0]]["review_decision"] == "reject" and rows[ids[0]]["reviewer"] == "bo"
    assert rows[ids[1]]["reviewed_value"] is None and rows[ids[1]]["reviewer"] == "ana"
    assert rows[ids[2]]["reviewed_value"] == "Compuware Corporation"
    assert _rows(landed, "select count(*) as n from review_decisions")[0]["n"] == 4

    bad = _invoke(landed, "review", "no-such-finding", "--accept")
    assert bad.exit_code != 0 and "no finding" in bad.output
    both = _invoke(landed, "review", ids[0], "--accept", "--correct", "x")
    assert both.exit_code != 0


def test_export_writes_csv_and_xlsx(landed: dict[str, object], tmp_path: Path) -> None:
    csv_path, xlsx_path = tmp_path / "review.csv", tmp_path / "review.xlsx"
    result = _invoke(landed, "export", "--view", "findings_evidence", "--out", str(csv_path), "--out", str(xlsx_path))
    assert result.exit_code == 0, result.output
    count = _rows(landed, "select count(*) as n from findings_evidence")[0]["n"]
    with csv_path.open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == count and "evidence_quote" in records[0]
    sheet = load_workbook(xlsx_path).active
    assert sheet is not None
    assert sheet.max_row == count + 1
    assert [c.value for c in sheet[1]][:3] == ["finding_id", "run_id", "document_uri"]
    assert _invoke(landed, "export", "select 1", "--out", str(tmp_path / "x.pdf")).exit_code != 0
    unknown = _invoke(landed, "export", "--view", "findings; drop view runs", "--out", str(csv_path))
    assert unknown.exit_code == 2 and "no view 'findings; drop view runs'" in unknown.output


def test_replay_reproduces_on_the_embedded_model(landed_copy: Path) -> None:
    landed = landed_copy
    finding = _rows(landed, "select finding_id from findings order by confidence desc limit 1")[0]["finding_id"]
    result = _invoke(landed, "replay", finding)
    assert result.exit_code == 0, result.output
    assert "reproduced" in result.output and "NOT" not in result.output


def test_replay_sample_records_the_rate_with_the_run(landed_copy: Path) -> None:
    landed = landed_copy
    run_id = _rows(landed, "select run_id from runs")[0]["run_id"]
    result = _invoke(landed, "replay", "--sample", "3", "--run", run_id)
    assert "reproducibility:" in result.output, result.output
    summary = _rows(landed, f"select replayed, reproducibility from run_summary where run_id = '{run_id}'")[0]
    assert summary["replayed"] >= 3
    assert 0.0 <= summary["reproducibility"] <= 1.0
    replays = _rows(landed, "select status, reproduced, raw_identical from replays")
    assert all(r["status"] == "replayed" for r in replays)


def test_replay_refuses_a_different_model_file(
    landed_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landed = landed_copy
    original = resolve_model_file(ModelSettings()).path
    other = tmp_path / "other.gguf"
    shutil.copyfile(original, other)
    with other.open("ab") as handle:
        handle.write(b"\0")
    digest = hashlib.sha256(other.read_bytes()).hexdigest()
    monkeypatch.setenv("ASSAY_MODEL__PATH", str(other))
    monkeypatch.setenv("ASSAY_MODEL__SHA256", digest)
    finding = _rows(landed, "select finding_id from findings limit 1")[0]["finding_id"]
    result = _invoke(landed, "replay", finding)
    assert result.exit_code == 1
    assert "refused" in result.output and "SHA-256" in result.output


def test_the_run_wrote_its_html_report_and_assay_report_writes_it_again(
    landed: dict[str, object], tmp_path: Path
) -> None:
    run_id = _rows(landed, "select run_id from runs")[0]["run_id"]
    written = Path(str(landed["data_dir"])) / "reports" / f"{run_id}.html"
    assert written.is_file(), "the flow did not write the run's report"
    out = tmp_path / "report.html"
    result = _invoke(landed, "report", run_id, "--out", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    for title in ("Findings per field", "What findings are grounded on", "Model confidence", "Failures by reason"):
        assert f">{title}</text>" in page  # chart titles are SVG text, not glyph outlines
    assert page.count("<svg") == 5 and "<path" not in page
    for document in E2E_DOCUMENTS:
        assert f">{document} <span" in page  # a section per document of the run
    assert page.count("<mark>") > 0  # evidence highlighted in context
    assert re.search(r"(src|href)=\"https?://", page) is None and "<script" not in page  # self-contained
    assert _invoke(landed, "report", "no-such-run").exit_code != 0


def test_the_lake_still_verifies_after_reviews_and_replays(landed_copy: Path) -> None:
    finding = _rows(landed_copy, "select finding_id from findings order by confidence desc limit 1")[0]["finding_id"]
    assert _invoke(landed_copy, "review", finding, "--accept").exit_code == 0
    assert _invoke(landed_copy, "replay", finding).exit_code == 0
    result = _invoke(landed_copy, "verify")
    assert result.exit_code == 0, result.output
    kinds = [r["kind"] for r in _rows(landed_copy, "select kind from manifests order by sequence")]
    assert kinds == ["run", "review", "replay"]
