"""The review round trip: values to review out to a spreadsheet, decisions back in, all or nothing;
spreadsheet cells that cannot run; the reviewer as the installation knows them. Real runs (`patterns_only`,
no model), real XLSX files (openpyxl), the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner, Result
from openpyxl import load_workbook

from assay.cli import cli
from pipeline.audit.export import export_query
from pipeline.audit.review_sheet import COLUMNS
from tests.jobrunner import NO_MODEL, run
from tests.support import ROOT

# Two documents whose one signing date disagrees with itself (a reviewer must settle it), one that does not.
DOCUMENTS = {
    "lease.txt": "Signed 03/04/2026 in Boston. Amended, and signed on 05/06/2026. Call (555) 123-4567.",
    "loan.txt": "Signed 01/02/2026 in Austin. Also signed on 07/08/2026.",
    "memo.txt": "Signed 09/10/2026 in Denver.",
}


def _cli(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args])


def _rows(data_dir: Path, sql: str) -> list[dict[str, Any]]:
    result = _cli(data_dir, "query", "--format", "json", sql)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


@pytest.fixture
def night(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ASSAY_REVIEWER", "ana.lyst@compliance")
    source = tmp_path / "in"
    source.mkdir()
    for name, text in DOCUMENTS.items():
        (source / name).write_text(text)
    run(tmp_path / "data", source, NO_MODEL)
    return tmp_path / "data"


def _sheet(data_dir: Path, path: Path) -> list[list[Any]]:
    result = _cli(data_dir, "export", "--view", "values_to_review", "--out", str(path))
    assert result.exit_code == 0, result.output
    sheet = load_workbook(path).active
    assert sheet is not None
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def _save(rows: list[list[Any]], path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    book.save(path)


def test_a_filled_in_sheet_lands_every_decision_in_one_commit(night: Path, tmp_path: Path) -> None:
    rows = _sheet(night, tmp_path / "review.xlsx")
    assert rows[0] == list(COLUMNS)
    to_review = {Path(r[1]).name: r for r in rows[1:]}
    assert set(to_review) == {"lease.txt", "loan.txt"}  # the memo's one date needs no one
    lease, loan = to_review["lease.txt"], to_review["loan.txt"]
    assert lease[4] == "disagreement" and "2026-05-06 (1 finding)" in lease[6]  # the other candidate, readable
    assert lease[COLUMNS.index("grounded_on")] == "rule"  # what the value's evidence is grounded on
    decision, corrected, comment = (COLUMNS.index(c) for c in ("decision", "corrected_value", "comment"))
    lease[decision], lease[corrected], lease[comment] = "correct", "2026-05-06", "the amendment's date governs"
    loan[decision] = "Accept"
    _save(rows, tmp_path / "filled.xlsx")

    result = _cli(night, "review", "--from", str(tmp_path / "filled.xlsx"))
    assert result.exit_code == 0, result.output
    assert "2 decision(s) recorded as ana.lyst@compliance" in result.output
    values = {
        Path(r["document_uri"]).name: r for r in _rows(night, "select * from current_values where field = 'signed_on'")
    }
    assert values["lease.txt"]["review_decision"] == "correct"
    assert values["lease.txt"]["reviewed_value"] == "2026-05-06"
    assert values["lease.txt"]["review_comment"] == "the amendment's date governs"
    assert values["loan.txt"]["reviewed_value"] == values["loan.txt"]["value"] == "2026-01-02"
    assert {v["grounded_on"] for v in values.values()} == {"rule"}
    assert {v["reviewer"] for v in values.values() if v["review_decision"]} == {"ana.lyst@compliance"}
    assert _rows(night, "select count(*) as n from values_to_review") == [{"n": 0}]  # nothing left to decide
    kinds = [r["kind"] for r in _rows(night, "select kind from manifests order by sequence")]
    assert kinds == ["run", "review"]  # one commit for the whole sheet
    assert _cli(night, "verify").exit_code == 0


def test_a_sheet_exported_before_grounding_was_shown_is_still_read(
    night: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review in progress survives an upgrade: the older layout (no grounded_on column) lands its decisions."""
    from pipeline.audit import review_sheet

    with monkeypatch.context() as older:  # the export of the previous version
        older.setattr(review_sheet, "SHOWN", review_sheet.SHOWN_BEFORE_GROUNDING)
        older.setattr(
            review_sheet, "COLUMNS", (*review_sheet.SHOWN_BEFORE_GROUNDING, *review_sheet.FILLED, "row_check")
        )
        rows = _sheet(night, tmp_path / "old.xlsx")
    assert "grounded_on" not in rows[0]
    decision = rows[0].index("decision")
    for row in rows[1:]:
        row[decision] = "accept"
    _save(rows, tmp_path / "old-filled.xlsx")
    result = _cli(night, "review", "--from", str(tmp_path / "old-filled.xlsx"))
    assert result.exit_code == 0, result.output
    assert f"{len(rows) - 1} decision(s) recorded" in result.output


def test_a_sheet_with_problems_is_refused_whole_with_each_line(night: Path, tmp_path: Path) -> None:
    rows = _sheet(night, tmp_path / "review.xlsx")
    header = rows[0]
    decision, value = (header.index(c) for c in ("decision", "value"))
    good, edited = rows[1], rows[2]
    good[decision] = "accept"
    edited[decision], edited[value] = "accept", "1999-01-01"  # someone changed the value, not the decision
    unknown = [*good]
    unknown[0], unknown[decision] = "0000000000000000", "accept"
    bad_word = [*good]
    bad_word[decision] = "approve"
    no_value = [*good]
    no_value[decision] = "correct"
    conflicting = [*good]
    conflicting[decision] = "reject"
    _save([header, good, edited, unknown, bad_word, no_value, conflicting], tmp_path / "filled.xlsx")

    result = _cli(night, "review", "--from", str(tmp_path / "filled.xlsx"))
    assert result.exit_code == 1
    assert "nothing recorded, 5 problem(s)" in result.output
    assert "line 3: the row was changed after the export" in result.output
    assert "line 4: value '0000000000000000': no such value" in result.output
    assert "line 5: decision 'approve' is not accept, reject or correct" in result.output
    assert "line 6: a correction needs the corrected value" in result.output
    assert "lines 2 and 7: two different decisions" in result.output
    assert _rows(night, "select count(*) as n from review_decisions") == [{"n": 0}]


def test_one_finding_is_reviewed_as_the_configured_reviewer(night: Path) -> None:
    finding = _rows(night, "select finding_id from findings order by finding_id limit 1")[0]["finding_id"]
    result = _cli(night, "review", finding, "--reject", "--comment", "not a phone number")
    assert result.exit_code == 0, result.output
    (row,) = _rows(night, "select reviewer, decision, comment from review_decisions")
    assert row == {"reviewer": "ana.lyst@compliance", "decision": "reject", "comment": "not a phone number"}
    typed = _cli(night, "review", finding, "--accept", "--reviewer", "Chief Compliance Officer")
    assert typed.exit_code == 2 and "No such option '--reviewer'" in typed.output


def test_exported_cells_never_run_and_csv_lines_end_with_lf(tmp_path: Path) -> None:
    con = duckdb.connect()
    sql = (
        "select '=HYPERLINK(\"http://evil.example\",\"click\")' as a, '+1+1' as b, '@SUM(A1)' as c, "
        "'-2' as d, 'plain' as e, ['x', 'y'] as f, 42 as g"
    )
    outputs = [tmp_path / "out.xlsx", tmp_path / "out.csv"]
    assert export_query(con, sql, outputs) == 1
    sheet = load_workbook(outputs[0]).active
    assert sheet is not None
    cells = next(iter(sheet.iter_rows(min_row=2, values_only=True)))
    assert cells[:5] == ('\'=HYPERLINK("http://evil.example","click")', "'+1+1", "'@SUM(A1)", "'-2", "plain")
    assert all(c.data_type != "f" for c in sheet[2])  # no formula cell at all
    assert cells[5] == '["x", "y"]' and cells[6] == 42  # lists as text, numbers as numbers
    raw = outputs[1].read_bytes()
    assert b"\r\n" not in raw and raw.count(b"\n") == 2
    with outputs[1].open(newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle))[1][0].startswith("'=HYPERLINK")


def _view(sql_file: str, view: str) -> str:
    """One view's statement of a file of sql/ (its comments left out)."""
    lines = (ROOT / "sql" / sql_file).read_text(encoding="utf-8").splitlines()
    statements = "\n".join(line for line in lines if not line.lstrip().startswith("--")).split(";")
    return next(s for s in statements if f"CREATE OR REPLACE VIEW {view} AS" in s)


def test_a_value_is_grounded_on_the_strongest_grounding_of_its_own_findings() -> None:
    con = duckdb.connect()
    con.execute("create table findings (run_id varchar, finding_id varchar, grounded_on varchar)")
    con.execute("create table document_values (run_id varchar, value_id varchar, finding_ids varchar[])")
    con.execute(
        "insert into findings values ('r1', 'quote', 'evidence'), ('r1', 'alone', 'value'), ('r1', 'rule', 'rule'),"
        " ('r1', 'lost', null), ('r2', 'quote', 'rule')"  # the same finding id in another run
    )
    con.execute(
        "insert into document_values values ('r1', 'ruled', ['alone', 'rule', 'quote']),"
        " ('r1', 'quoted', ['alone', 'quote']), ('r1', 'alone', ['alone', 'lost']), ('r1', 'lost', ['lost']),"
        " ('r1', 'unsupported', [])"
    )
    con.execute(_view("030_values.sql", "value_grounding"))
    grounded = dict(con.execute("select value_id, grounded_on from value_grounding").fetchall())
    assert grounded == {"ruled": "rule", "quoted": "evidence", "alone": "value", "lost": None}
