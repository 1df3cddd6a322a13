"""Every SQL example in docs/compliance-review.md runs against a real run's warehouse."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import ROOT, open_warehouse

pytestmark = pytest.mark.slow  # reads the end-to-end run (the real model)


def _examples() -> list[str]:
    text = (ROOT / "docs" / "compliance-review.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    statements = [s.strip() for block in blocks for s in block.split(";") if s.strip()]
    return [s for s in statements if not all(line.strip().startswith("--") for line in s.splitlines())]


def test_every_example_query_runs_and_returns_columns(landed: dict[str, object]) -> None:
    examples = _examples()
    assert len(examples) >= 10, "the review guide lost its examples"
    con = open_warehouse(Path(str(landed["data_dir"])))
    try:
        row = con.execute("select run_id from runs limit 1").fetchone()
        assert row is not None
        for statement in examples:
            cursor = con.execute(statement.replace("RUN_ID", row[0]))
            cursor.fetchall()
            assert cursor.description, statement  # a query an analyst can read, not a bare statement
    finally:
        con.close()
