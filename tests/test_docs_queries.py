"""Every SQL example in docs/compliance-review.md runs against a real run's warehouse."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from tests.conftest import ROOT


def _examples() -> list[str]:
    text = (ROOT / "docs" / "compliance-review.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    statements = [s.strip() for block in blocks for s in block.split(";") if s.strip()]
    return [s for s in statements if not all(line.strip().startswith("--") for line in s.splitlines())]


def test_there_are_examples() -> None:
    assert len(_examples()) >= 10


def test_every_example_query_runs(landed: dict[str, object]) -> None:
    con = duckdb.connect(str(Path(str(landed["data_dir"])) / "warehouse.duckdb"), read_only=True)
    try:
        row = con.execute("select run_id from runs limit 1").fetchone()
        assert row is not None
        for statement in _examples():
            con.execute(statement.replace("RUN_ID", row[0])).fetchall()
    finally:
        con.close()
