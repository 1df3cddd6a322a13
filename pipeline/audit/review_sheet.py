"""The review round trip: `values_to_review` out to a spreadsheet, the reviewers' decisions back in.

`write_sheet` writes one row per value to review (its candidates, its evidence,
and what that is grounded on: `grounded_on`, from the view `value_grounding`),
with empty `decision`, `corrected_value` and `comment` columns for the reviewer
and a `row_check` (a hash of the cells they should not change). `read_sheet` reads a filled-in
sheet back and refuses it whole, with the line number of every problem, when a
row names a value that does not exist, when a row's other cells were changed
since the export, when a decision is not accept / reject / correct (or a
correction has no value), or when two rows decide the same value differently.
What it accepts, `pipeline.audit.review.record_decisions` lands in one commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipeline.audit.export import cell, unneutralise, write
from pipeline.audit.review import Decision, Proposed
from pipeline.core.errors import ConfigError
from pipeline.core.hashing import short_id
from pipeline.land.queries import rows_of

SHEET = "values to review"
SHOWN = (
    "value_id",
    "document_uri",
    "task",
    "field",
    "status",
    "value",
    "alternatives",
    "evidence_text",
    "evidence_page",
    "grounded_on",  # what the value's evidence is grounded on: rule, evidence (the model's quote), value, or empty
)
FILLED = ("decision", "corrected_value", "comment")
COLUMNS = (*SHOWN, *FILLED, "row_check")
# Sheets exported before `grounded_on` was shown are still read (a review in progress survives an upgrade).
SHOWN_BEFORE_GROUNDING = tuple(c for c in SHOWN if c != "grounded_on")
LAYOUTS = (SHOWN, SHOWN_BEFORE_GROUNDING)


class SheetRefused(ConfigError):
    """A review sheet that cannot be taken as it is; `problems` lists each, with its line."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: nothing recorded, {len(problems)} problem(s):\n" + "\n".join(problems))
        self.problems = problems


def _row_check(values: dict[str, Any], shown: tuple[str, ...] = SHOWN) -> str:
    return short_id(*[None if values[c] is None else str(values[c]) for c in shown])


def _alternatives(raw: Any) -> str:
    """The other candidates, readable: `2015-06-01 (1 finding); clicking (1 finding)`."""
    items = json.loads(raw) if isinstance(raw, str) else raw or []
    return "; ".join(f"{a['value']} ({a['support']} finding{'s' if a['support'] != 1 else ''})" for a in items)


def write_sheet(con: duckdb.DuckDBPyConnection, outputs: list[Path]) -> int:
    """Write the values waiting for review, with columns for the decisions. Returns the row count."""
    columns, rows = rows_of(con.execute(f"SELECT {', '.join(SHOWN)} FROM values_to_review"))
    out = []
    for row in rows:
        values = dict(zip(columns, row, strict=True))
        values["alternatives"] = _alternatives(values["alternatives"])
        out.append([*(values[c] for c in SHOWN), None, None, None, _row_check(values, SHOWN)])
    write(outputs, COLUMNS, out, sheet=SHEET)
    return len(out)


@dataclass(frozen=True)
class _Line:
    number: int
    cells: dict[str, Any]


def _lines(path: Path) -> tuple[tuple[str, ...], list[_Line]]:
    """The sheet's shown columns (its layout) and its lines."""
    if path.suffix.lower() == ".csv":
        import csv

        with path.open(newline="", encoding="utf-8") as handle:
            records = list(csv.reader(handle))
    else:
        from openpyxl import load_workbook

        sheet = load_workbook(path, read_only=True, data_only=True).active
        assert sheet is not None
        records = [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    header = [str(h) for h in records[0]] if records else []
    for shown in LAYOUTS:
        columns = (*shown, *FILLED, "row_check")
        if header[: len(columns)] == list(columns):
            lines = [
                _Line(number, {c: _read(v) for c, v in zip(columns, record, strict=False)})
                for number, record in enumerate(records[1:], start=2)
            ]
            return shown, lines
    raise SheetRefused(path, [f"line 1: the columns must be {', '.join(COLUMNS)} (write the sheet with export)"])


def _as_shown(value: Any) -> str:
    """A cell's text as the sheet shows it (numbers read back from CSV are text)."""
    return "" if value is None else unneutralise(str(cell(value)))


def _read(value: Any) -> Any:
    """A cell as export wrote it: neutralised text back to the text; empty cells to None."""
    if isinstance(value, str):
        value = unneutralise(value)
        return value if value != "" else None
    return value


def read_sheet(con: duckdb.DuckDBPyConnection, path: Path) -> list[Proposed]:
    """The decisions a filled-in review sheet holds, checked; SheetRefused lists every problem."""
    problems: list[str] = []
    decided: dict[str, tuple[int, Proposed]] = {}
    shown, lines = _lines(path)
    for line in lines:
        cells = line.cells
        choice = str(cells["decision"] or "").strip().lower()
        if not choice:
            continue  # not decided yet
        value_id = str(cells["value_id"] or "")
        current = con.execute(f"SELECT {', '.join(shown)} FROM current_values WHERE value_id = ?", [value_id])
        columns, rows = rows_of(current)
        if not rows:
            known = con.execute("SELECT 1 FROM document_values WHERE value_id = ?", [value_id]).fetchone()
            why = "a newer run replaced it: export the sheet again" if known else "no such value in this warehouse"
            problems.append(f"line {line.number}: value {value_id!r}: {why}")
            continue
        exported = dict(zip(columns, rows[0], strict=True))
        exported["alternatives"] = _alternatives(exported["alternatives"])
        if str(cells["row_check"]) != _row_check(exported, shown) or any(
            _as_shown(cells[c]) != _as_shown(exported[c]) for c in shown
        ):
            problems.append(f"line {line.number}: the row was changed after the export (only decide, correct, comment)")
            continue
        if choice not in {d.value for d in Decision}:
            problems.append(f"line {line.number}: decision {choice!r} is not accept, reject or correct")
            continue
        corrected = None if cells["corrected_value"] is None else str(cells["corrected_value"])
        proposed = Proposed(
            Decision(choice),
            value_id=value_id,
            corrected_value=corrected,
            comment=None if cells["comment"] is None else str(cells["comment"]),
        )
        problem = proposed.problem()
        if problem:
            problems.append(f"line {line.number}: {problem}")
            continue
        earlier = decided.get(value_id)
        if earlier is not None and (earlier[1].decision, earlier[1].corrected_value) != (
            proposed.decision,
            proposed.corrected_value,
        ):
            problems.append(f"lines {earlier[0]} and {line.number}: two different decisions on value {value_id}")
            continue
        decided[value_id] = (line.number, proposed)
    if problems:
        raise SheetRefused(path, problems)
    if not decided:
        raise SheetRefused(path, ["no row holds a decision (fill in the decision column: accept, reject or correct)"])
    return [proposed for _, proposed in decided.values()]
