"""Values as their sources write them: a run reads dates by each source's conventions and records them."""

from __future__ import annotations

from pathlib import Path

from connectors.registry import resolve_sources
from pipeline.core.settings import load_settings
from pipeline.land.warehouse import connect_read_only
from pipeline.run.local import run_locally
from tests.jobrunner import NO_MODEL, TEST_TASKS
from tests.support import open_warehouse


def _dates(data_dir: Path) -> list[tuple[str, str, str]]:
    with connect_read_only(data_dir / "warehouse.duckdb") as con:
        rows = con.execute(
            "select regexp_extract(document_uri, '[^/]+$'), value, conventions from document_values"
            " where field = 'dates' order by 1"
        ).fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def test_each_source_is_read_by_its_own_conventions_and_the_value_records_them(tmp_path: Path) -> None:
    for name in ("zurich", "boston"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text(f"Signed 03/04/2026 in {name.title()}. Call (555) 123-4567.")
    settings = load_settings(
        data_dir=tmp_path / "data",
        tasks=NO_MODEL,
        task_dirs=[TEST_TASKS],
        values={"date_order": "MDY"},  # the default for sources that say nothing
        sources={
            "zurich": {"path": str(tmp_path / "zurich"), "values": {"date_order": "DMY", "languages": ["de", "en"]}},
            "boston": {"path": str(tmp_path / "boston")},
        },
    )
    summary = run_locally(settings, resolve_sources(["zurich", "boston"], settings))
    assert summary.processed == 2
    assert _dates(tmp_path / "data") == [
        ("boston.txt", "2026-03-04", "date_order=MDY languages=en decimal=auto"),
        ("zurich.txt", "2026-04-03", "date_order=DMY languages=de,en decimal=auto"),
    ]
    # the finding keeps the text as written; only the value is read
    with open_warehouse(tmp_path / "data") as con:
        quotes = {r[0] for r in con.execute("select value from findings where field = 'dates'").fetchall()}
    assert quotes == {"03/04/2026"}
