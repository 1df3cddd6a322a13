"""Review files: the result of a query as CSV or XLSX, for people who review in a spreadsheet.

Cells are written so that a spreadsheet shows them and never runs them: text
that a spreadsheet would take for a formula (starting with `=`, `+`, `-`, `@`,
a tab or a carriage return) is prefixed with an apostrophe (`neutralise`); lists
and objects are written as JSON text; times as UTC without a zone (Excel has
none). CSV lines end with LF. The review sheet of `values_to_review`
(pipeline/audit/review_sheet.py) is written with the same cells.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from pipeline.land.sandbox import check_select

SUPPORTED = {".csv", ".xlsx"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """Text a spreadsheet will show, not evaluate (OWASP's CSV-injection advice: a leading apostrophe)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def unneutralise(text: str) -> str:
    """The text `neutralise` was given."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


def cell(value: Any) -> Any:
    """A value as a spreadsheet cell: numbers and times as such, everything else as neutralised text."""
    if value is None or isinstance(value, bool | int | float | Decimal):
        return value
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo is not None else value
    if isinstance(value, list | dict | tuple):
        return neutralise(json.dumps(value, ensure_ascii=False, default=str))
    return neutralise(str(value))


def export_view(con: duckdb.DuckDBPyConnection, view: str, outputs: list[Path]) -> int:
    """Write a whole view of the warehouse to every path in `outputs`. Returns the row count."""
    known = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    if view not in known:
        raise ValueError(f"no view {view!r} in the warehouse (views: {', '.join(sorted(known))})")
    return export_query(con, f'SELECT * FROM "{view}"', outputs)


def export_query(con: duckdb.DuckDBPyConnection, sql: str, outputs: list[Path]) -> int:
    """Run `sql` and write its result to every path in `outputs` (by suffix). Returns the row count."""
    check_outputs(outputs)
    cursor = con.execute(check_select(sql))
    columns = [d[0] for d in cursor.description or []]
    rows = cursor.fetchall()
    write(outputs, columns, rows)
    return len(rows)


def check_outputs(outputs: list[Path]) -> None:
    for path in outputs:
        if path.suffix.lower() not in SUPPORTED:
            raise ValueError(f"{path}: export writes .csv or .xlsx")


def write(outputs: list[Path], columns: Sequence[str], rows: Sequence[Sequence[Any]], sheet: str = "review") -> None:
    """Write the same table to every path (CSV or XLSX by suffix)."""
    for path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".csv":
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(columns)
                writer.writerows([[_csv(cell(v)) for v in row] for row in rows])
        else:
            _write_xlsx(path, columns, rows, sheet)


def _csv(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _write_xlsx(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = title
    sheet.append(list(columns))
    for header in sheet[1]:
        header.font = Font(bold=True)
    for row in rows:
        sheet.append([cell(v) for v in row])
    sheet.freeze_panes = "A2"
    if rows:
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{len(rows) + 1}"
    for index, name in enumerate(columns, start=1):
        width = max([len(str(name))] + [len(str(r[index - 1])) for r in rows[:200] if r[index - 1] is not None])
        sheet.column_dimensions[get_column_letter(index)].width = min(60, max(8, width + 2))
    workbook.save(path)
