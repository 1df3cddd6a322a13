"""Review files: the result of a query as CSV or XLSX, for people who review in a spreadsheet."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

SUPPORTED = {".csv", ".xlsx"}


def _cell(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)  # Excel has no time zones; lake times are UTC
    if isinstance(value, (list, dict)):
        return str(value)
    return value


def export_view(con: duckdb.DuckDBPyConnection, view: str, outputs: list[Path]) -> int:
    """Write a whole view of the warehouse to every path in `outputs`. Returns the row count."""
    known = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    if view not in known:
        raise ValueError(f"no view {view!r} in the warehouse (views: {', '.join(sorted(known))})")
    return export_query(con, f'SELECT * FROM "{view}"', outputs)


def export_query(con: duckdb.DuckDBPyConnection, sql: str, outputs: list[Path]) -> int:
    """Run `sql` and write its result to every path in `outputs` (by suffix). Returns the row count."""
    for path in outputs:
        if path.suffix.lower() not in SUPPORTED:
            raise ValueError(f"{path}: export writes .csv or .xlsx")
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description or []]
    rows = cursor.fetchall()
    for path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".csv":
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(columns)
                writer.writerows(rows)
        else:
            _write_xlsx(path, columns, rows)
    return len(rows)


def _write_xlsx(path: Path, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "review"
    sheet.append(columns)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append([_cell(v) for v in row])
    sheet.freeze_panes = "A2"
    if rows:
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{len(rows) + 1}"
    for index, name in enumerate(columns, start=1):
        width = max([len(str(name))] + [len(str(r[index - 1])) for r in rows[:200] if r[index - 1] is not None])
        sheet.column_dimensions[get_column_letter(index)].width = min(60, max(8, width + 2))
    workbook.save(path)
