"""The run report as a reviewer sees it: opened in headless Chromium (Debian's chromium and chromium-driver),
offline. Set ASSAY_SCREENSHOTS=1 to refresh the screenshots docs/analysts.md shows."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from assay.cli import cli
from tests.jobrunner import NO_MODEL, run
from tests.support import ROOT, skip_or_fail

pytestmark = pytest.mark.slow  # a browser

DOCUMENTS = {
    "lease.txt": "Signed 03/04/2026 in Boston. Amended, and signed on 05/06/2026. Call (555) 123-4567.",
    "memo.txt": "Signed 09/10/2026 in Denver. Call (555) 987-6543.",
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        skip_or_fail("Chromium is not installed here (Debian: chromium, chromium-driver; .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,1600",
    ):
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(str(driver)), options=options)
    try:
        yield session
    finally:
        session.quit()


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The report of a second night, after one value was added and one document changed, with that run's row
    and its task's row as the warehouse holds them."""
    source = tmp_path / "in"
    source.mkdir()
    for name, text in DOCUMENTS.items():
        (source / name).write_text(text)
    data_dir = tmp_path / "data"
    run(data_dir, source, NO_MODEL)
    (source / "memo.txt").write_text("Signed 09/11/2026 in Denver. Call (555) 987-6543.")
    second = run(data_dir, source, NO_MODEL)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "report", second.run_id, "--out", str(out)])
    assert result.exit_code == 0, result.output
    (run_row,) = _rows(data_dir, f"select * from runs where run_id = '{second.run_id}'")
    (task_row,) = _rows(data_dir, f"select * from tasks where run_id = '{second.run_id}'")
    return out, run_row, task_row


def _rows(data_dir: Path, sql: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "query", "--format", "json", sql])
    assert result.exit_code == 0, result.output
    return list(json.loads(result.output))


def _cells(row: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [c.text for c in row.find_elements(By.CSS_SELECTOR, "th, td")]


def test_a_reviewer_reads_the_report_in_a_browser(
    browser: Any, report: tuple[Path, dict[str, Any], dict[str, Any]]
) -> None:
    from selenium.webdriver.common.by import By

    page, run_row, task_row = report
    browser.get(page.as_uri())
    text = browser.find_element(By.TAG_NAME, "body").text
    sections = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert sections == ["Values to review", "Changes since the previous run", "Charts", "Documents", "Failures"]
    # the run's facts, above everything: what ran, on what, with what result
    facts = dict(_cells(r) for r in browser.find_elements(By.CSS_SELECTOR, "h1 + table tr"))
    assert facts["status"] == "completed" and facts["documents in"] == "2"
    assert facts["findings"] == str(run_row["findings"])
    assert run_row["model_sha256"] in facts["model"]
    assert facts["previous manifest"] == run_row["previous_manifest_sha256"]  # the first night's commit
    # the tasks as run: the version (SHA-256 of the task file) and the prompt's SHA-256 (none: no model)
    assert "Tasks, as run" in [h.text for h in browser.find_elements(By.TAG_NAME, "h3")]
    tasks = browser.find_elements(By.CSS_SELECTOR, "h3 + table tr")
    assert _cells(tasks[0]) == ["task", "task_version", "prompt_sha256", "schema_sha256"]
    assert [_cells(r) for r in tasks[1:]] == [
        ["patterns_only", task_row["task_version"], task_row["prompt_sha256"] or "", task_row["schema_sha256"]]
    ]
    # what waits for a decision comes first: the lease's two signing dates
    first_table = browser.find_elements(By.CSS_SELECTOR, "h2 + p + table")[0].text
    assert "lease.txt" in first_table and "disagreement" in first_table and "2026-05-06 (1)" in first_table
    assert "grounded by a rule" in first_table  # what the value's evidence is grounded on
    # what changed since the previous night: the memo's date
    assert "changed" in text and "2026-09-10" in text and "2026-09-11" in text
    # each value's evidence, highlighted in its context
    marks = [m.text for m in browser.find_elements(By.TAG_NAME, "mark")]
    assert "09/11/2026" in marks and "(555) 987-6543" in marks
    # ...and what it is grounded on, for every value
    values = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "h2 ~ ul > li")]
    assert values and all("grounded by a rule" in v for v in values), values
    # the charts' words are text: a screen reader and Ctrl+F find them
    chart_words = {t.text for t in browser.find_elements(By.CSS_SELECTOR, "svg text")}
    assert {"Findings per field", "What findings are grounded on", "patterns_only.signed_on", "rule"} <= chart_words
    assert all(svg.get_attribute("role") == "img" for svg in browser.find_elements(By.TAG_NAME, "svg"))
    # nothing was fetched: the page is whole in one file
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    if os.environ.get("ASSAY_SCREENSHOTS") == "1":
        (ROOT / "docs" / "img").mkdir(exist_ok=True)
        browser.save_screenshot(str(ROOT / "docs" / "img" / "report-top.png"))
        browser.execute_script("document.querySelectorAll('h2')[3].scrollIntoView()")
        browser.save_screenshot(str(ROOT / "docs" / "img" / "report-documents.png"))
