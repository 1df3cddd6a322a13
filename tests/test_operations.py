"""The operator's night: `assay serve` (a real Prefect server on loopback, deploy/prefect.yaml's deployments,
a process worker), runs triggered through the API as the schedule would, and what the operator then sees
through the API and in a browser: run names, states that tell the truth, artifacts, Assay's log lines, the
failure hook. Runs use the no-model task: what is tested here is the orchestration, not the model.

Set ASSAY_SCREENSHOTS=1 to refresh the screenshots docs/operations.md shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.jobrunner import NO_MODEL, TEST_TASKS
from tests.support import ROOT, HookCatcher, assay_command, free_port, fresh_postgres_database, skip_or_fail

pytestmark = pytest.mark.slow  # a Prefect server, a worker and its flow runs

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


class _Patient(httpx.HTTPTransport):
    """Asks again when the server is busy (503, 502, 429), as Prefect's own client does."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(20):
            response = super().handle_request(request)
            if response.status_code not in (429, 502, 503):
                return response
            response.close()
            time.sleep(min(0.5 * (attempt + 1), 3.0))
        return response


class Served:
    """One `assay serve` and the API client that talks to it."""

    def __init__(self, tmp_path: Path, hook_url: str, database_url: str | None = None) -> None:
        self.port = free_port()
        self.home = tmp_path / "prefect"
        self.data_dir = tmp_path / "data"
        self.log = tmp_path / "serve.log"
        env = dict(os.environ)
        env.pop("PREFECT_API_URL", None)
        # The worker asks for scheduled runs every second, not every 10 s: the tests wait for each run.
        env.update(ASSAY_NOTIFY__WEBHOOK_URL=hook_url, PREFECT_LOGGING_LEVEL="INFO", PREFECT_WORKER_QUERY_SECONDS="1")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    *assay_command(),
                    "--data-dir",
                    str(self.data_dir),
                    "serve",
                    "--port",
                    str(self.port),
                    "--home",
                    str(self.home),
                    *(["--database-url", database_url] if database_url else []),
                ],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}/api", timeout=30, transport=_Patient())
        deadline = time.monotonic() + 180
        try:
            while "Stop with Ctrl-C or SIGTERM" not in self.log.read_text():
                assert self.process.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(1)
        except BaseException:
            self.process.terminate()  # a start that failed leaves nothing running (serve stops its children)
            self.process.wait(timeout=90)
            raise

    def trigger(self, sources: list[str], **overrides: Any) -> str:
        """Start `assay-run/nightly` with these parameters, as its schedule would; the flow run's id."""
        deployment = self.api.get("/deployments/name/assay-run/nightly").json()
        parameters = {
            "sources": sources,
            "config_file": None,
            "overrides": {
                "data_dir": str(self.data_dir),
                "tasks": NO_MODEL,
                "task_dirs": [str(TEST_TASKS)],
                **overrides,
            },
        }
        started = self.api.post(f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters})
        assert started.status_code == 201, started.text
        return str(started.json()["id"])

    def wait(self, flow_run_id: str, seconds: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            run: dict[str, Any] = self.api.get(f"/flow_runs/{flow_run_id}").json()
            if run["state"]["type"] in FINAL:
                return run
            assert time.monotonic() < deadline, f"{run['state']}; worker log: {(self.home / 'worker.log').read_text()}"
            time.sleep(2)

    def artifacts(self, flow_run_id: str) -> dict[str, dict[str, Any]]:
        found = self.api.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
        return {a["key"]: a for a in found.json()}

    def logs(self, flow_run_id: str) -> list[dict[str, Any]]:
        found = self.api.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})
        return list(found.json())

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)


@pytest.fixture(scope="module")
def hooks() -> Iterator[HookCatcher]:
    catcher = HookCatcher()
    yield catcher
    catcher.close()


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory, hooks: HookCatcher) -> Iterator[dict[str, Any]]:
    """Under one `assay serve`: a good night over two files (one of them empty), then a night whose source
    does not exist; both left as the API shows them. Read only, but for the last test that uses it, which
    stops the estate and starts it again (`served` is then the second start)."""
    tmp = tmp_path_factory.mktemp("ops")
    source = tmp / "Verträge 2026"
    source.mkdir()
    (source / "lease.txt").write_text("Signed 03/04/2026 in Boston. Call (555) 123-4567.")
    (source / "blank.txt").write_text("")
    with contextlib.ExitStack() as stack:  # the server on PostgreSQL where there is one (as in production)
        database = (
            stack.enter_context(fresh_postgres_database("assay_ops")).replace("+psycopg://", "+asyncpg://")
            if os.environ.get("ASSAY_TEST_POSTGRES_URL")
            else None
        )
        yield from _nights(tmp, source, hooks, database)


def _nights(tmp: Path, source: Path, hooks: HookCatcher, database: str | None) -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"served": Served(tmp, hooks.url, database), "database": database, "tmp": tmp}
    try:
        served = state["served"]
        good = served.trigger([str(source)])
        state["good"] = served.wait(good)
        state["hooks_after_good"] = len(hooks.received)
        bad = served.trigger(["no-such-source"])
        state["bad"] = served.wait(bad)
        state["source"] = source
        yield state
    finally:
        if state["served"].process.poll() is None:
            state["served"].stop()


def test_a_good_night_is_named_completed_and_shows_its_summary_progress_failures_and_log_lines(
    nights: dict[str, Any],
) -> None:
    served, run = nights["served"], nights["good"]
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["name"].startswith("nightly-") and run["name"].endswith("-vertr-ge-2026"), run["name"]
    artifacts = served.artifacts(run["id"])
    assert set(artifacts) == {"assay-run-summary", "assay-run-failures", "assay-run-report", "assay-run-progress"}
    assert ": completed" in artifacts["assay-run-summary"]["data"]
    assert "## Model and versions" in artifacts["assay-run-summary"]["data"]
    assert re.search(r"- grounding: 3 of 3 findings grounded in the text", artifacts["assay-run-summary"]["data"])
    assert artifacts["assay-run-progress"]["data"] == 100.0
    (failure,) = json.loads(artifacts["assay-run-failures"]["data"])
    assert failure["reason"] == "empty_file" and failure["document_uri"].endswith("blank.txt")
    report = artifacts["assay-run-report"]["data"]
    assert "file://" in report and ".html" in report
    lines = {(line["name"], line["message"]) for line in served.logs(run["id"])}
    shard_lines = [message for name, message in lines if name == "pipeline.run.shard"]
    assert shard_lines and shard_lines[0].startswith("shard 0: 2 listed, 1 processed, 1 failed (empty_file 1)")
    assert any(name == "assay.progress" and "blank.txt" in message for name, message in lines)
    tasks = served.api.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [run["id"]]}}}).json()
    assert {t["name"] for t in tasks} >= {"shard-0", "finish-run"}
    assert nights["hooks_after_good"] == 0  # a completed night notifies nobody by default


def test_a_night_that_fails_is_failed_with_a_summary_and_calls_the_hook_once(
    nights: dict[str, Any], hooks: HookCatcher
) -> None:
    served, run = nights["served"], nights["bad"]
    assert run["state"]["type"] == "FAILED", run["state"]
    assert "no-such-source" in run["state"]["message"]
    summary = served.artifacts(run["id"])["assay-run-summary"]["data"]
    assert ": failed" in summary and "no-such-source" in summary
    (call,) = [call for call in hooks.received if call.get("flow_run_name") == run["name"]]
    assert call["outcome"] == "failed" and "no-such-source" in call["error"]


def _process_of(flow_run_id: str) -> int | None:
    """The process running a flow run: the worker starts it with the run's id in its environment; its own
    children (parsing processes) inherit that, so it is the one whose parent does not have it."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    marked: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "environ").read_bytes():
                status = (proc / "status").read_text()
                marked[int(proc.name)] = int(status.split("PPid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
    tops = [pid for pid, parent in marked.items() if parent not in marked]
    return tops[0] if len(tops) == 1 else None


def test_a_night_whose_process_is_killed_is_crashed_with_a_summary_and_the_hook_called(
    nights: dict[str, Any], hooks: HookCatcher, tmp_path: Path
) -> None:
    served = nights["served"]
    source = tmp_path / "many"
    source.mkdir()
    for n in range(60):
        (source / f"note-{n:02d}.txt").write_text(f"Note {n}: signed 03/04/2026, call (555) 123-45{n:02d}.")
    flow_run_id = served.trigger([str(source)], shard_size=1)
    deadline = time.monotonic() + 120
    while True:  # kill it once it is working on its shards
        tasks = served.api.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}).json()
        pid = _process_of(flow_run_id)
        if pid and any(t["name"] == "shard-1" for t in tasks):
            break
        assert time.monotonic() < deadline, "the night never started its shards"
        time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    run = served.wait(flow_run_id)
    assert run["state"]["type"] == "CRASHED", run["state"]
    deadline = time.monotonic() + 60  # the worker runs the crash hook once it has reported the crash
    while "assay-run-summary" not in served.artifacts(flow_run_id) or not [
        c for c in hooks.received if c.get("flow_run_name") == run["name"]
    ]:
        assert time.monotonic() < deadline, (served.home / "worker.log").read_text()[-3000:]
        time.sleep(0.5)
    summary = served.artifacts(flow_run_id)["assay-run-summary"]["data"]
    assert ": crashed" in summary and "the next run recovers" in summary
    (call,) = [c for c in hooks.received if c.get("flow_run_name") == run["name"]]
    assert call["outcome"] == "crashed"


def test_the_operator_sees_the_summary_and_the_shard_lines_in_the_browser(nights: dict[str, Any]) -> None:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        skip_or_fail("Chromium is not installed here (Debian: chromium, chromium-driver; .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    served, run = nights["served"], nights["good"]
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(str(driver)), options=options)
    ui = f"http://127.0.0.1:{served.port}"
    try:
        browser.get(f"{ui}/runs/flow-run/{run['id']}")
        body = WebDriverWait(browser, 60).until(lambda b: _page_showing(b, "shard 0:"))
        assert run["name"] in body.text
        if os.environ.get("ASSAY_SCREENSHOTS") == "1":
            browser.save_screenshot(str(ROOT / "docs" / "img" / "prefect-flow-run-logs.png"))
        summary = served.artifacts(run["id"])["assay-run-summary"]
        browser.get(f"{ui}/artifacts/artifact/{summary['id']}")
        body = WebDriverWait(browser, 60).until(lambda b: _page_showing(b, "Seconds per stage"))
        assert "completed" in body.text
        if os.environ.get("ASSAY_SCREENSHOTS") == "1":
            browser.save_screenshot(str(ROOT / "docs" / "img" / "prefect-run-summary.png"))
    finally:
        browser.quit()


def _page_showing(browser: Any, text: str) -> Any:
    """The page's body once it shows `text` (the UI renders after loading), else False (keep waiting)."""
    from selenium.webdriver.common.by import By

    body = browser.find_element(By.TAG_NAME, "body")
    return body if text in body.text else False


INCOMPLETE = """
import json, sys
from pipeline.core.errors import TransientError
from pipeline.run import shard as shard_step

real = shard_step.process_shard
calls = []

def failing(context, shard):  # fault injection: the second shard's store keeps dropping
    calls.append((shard.index, shard.attempt))
    if shard.index == 1:
        raise TransientError("the store dropped the connection")
    return real(context, shard)

shard_step.process_shard = failing
from flows.assay_run import assay_run, summary_of
state = assay_run([sys.argv[1]], overrides=json.loads(sys.argv[2]), return_state=True)
summary = summary_of(state)
print(json.dumps({"state": state.type.value, "message": state.message, "summary": summary.model_dump(mode="json"),
                  "calls": calls}))
"""


def test_a_shard_that_keeps_failing_leaves_its_documents_to_the_next_night_and_the_night_ends_failed(
    tmp_path: Path, hooks: HookCatcher
) -> None:
    """Retried (transient), then given up: the other shards commit, the run is Failed naming the missing ones.

    With `[parsing] ahead` (the flow's executor parses each next shard in the background): the given-up
    shard's parse ahead is dropped, and the shards after it still parse ahead.
    """
    source = tmp_path / "in"
    source.mkdir()
    for n in range(8):
        (source / f"memo-{n}.txt").write_text(f"Memo {n}: signed 03/04/2026, call (555) 123-456{n}.")
    before = len(hooks.received)
    overrides = {
        "data_dir": str(tmp_path / "data"),
        "tasks": NO_MODEL,
        "task_dirs": [str(TEST_TASKS)],
        "shard_size": 2,
        "orchestration": {"shard_retries": 1, "shard_retry_delay_s": 0},
        "parsing": {"ahead": True, "workers": 1},
        "model": {"n_threads": 1},
    }
    env = {**os.environ, "ASSAY_NOTIFY__WEBHOOK_URL": hooks.url}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", INCOMPLETE, str(source), json.dumps(overrides)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["state"] == "FAILED"
    assert outcome["calls"].count([1, 1]) == 1 and outcome["calls"].count([1, 2]) == 1  # tried again, own files
    summary = outcome["summary"]
    assert summary["status"] == "incomplete" and summary["documents_in"] == 8 and summary["processed"] == 6
    # shard 1 was parsed ahead while shard 0 was with the model, then given up; shard 2 parsed in turn,
    # shard 3 ahead of it
    assert summary["shards_parsed_ahead"] == 1
    missing = [uri for uri in (source / f"memo-{n}.txt" for n in range(8)) if uri.as_uri() in outcome["message"]]
    assert len(missing) == 2 and "2 of 8 documents not accounted for" in outcome["message"]
    assert "TransientError" in outcome["message"]
    (call,) = hooks.received[before:]
    assert call["outcome"] == "incomplete" and call["run_id"] == summary["run_id"]


def test_sigterm_stops_the_estate_and_a_second_start_registers_the_same_deployments_and_keeps_the_nights(
    nights: dict[str, Any], hooks: HookCatcher
) -> None:
    """The module's estate (on PostgreSQL where there is one, the production set-up of the Prefect server),
    stopped and started again on the same database. Last of the tests that use `nights`: it replaces
    the estate they share."""
    served = nights["served"]
    first = served.api.post("/deployments/filter", json={}).json()
    assert served.stop() == 0
    assert "stopped the worker" in served.log.read_text() and "stopped the server" in served.log.read_text()
    if nights["database"]:
        assert not (served.home / "prefect.db").exists()  # the server kept nothing in SQLite
    again = nights["served"] = Served(nights["tmp"], hooks.url, nights["database"])
    second = again.api.post("/deployments/filter", json={}).json()
    assert sorted(d["name"] for d in second) == sorted(d["name"] for d in first) == ["default", "nightly"]
    assert {d["id"] for d in second} == {d["id"] for d in first}
    nightly = next(d for d in second if d["name"] == "nightly")
    assert nightly["concurrency_limit"] == 1 or nightly.get("global_concurrency_limit", {}).get("limit") == 1
    assert nightly["schedules"][0]["schedule"]["timezone"] == "Europe/Zurich"
    pools = again.api.post("/work_pools/filter", json={}).json()
    assert "assay-cpu" in {p["name"] for p in pools}
    limit = again.api.get("/v2/concurrency_limits/assay-model-slots").json()
    assert limit["limit"] == 1
    assert again.api.get(f"/flow_runs/{nights['good']['id']}").json()["state"]["type"] == "COMPLETED"  # kept
    assert again.stop() == 0


def test_the_summary_of_a_run_without_findings_keeps_its_model_and_versions() -> None:
    """A run whose every document failed (or had nothing to find) has no findings: its summary still
    says so, instead of losing the section (and the failures table beside it) to a division by zero."""
    from flows.console import _facts_markdown

    facts: dict[str, Any] = {
        "model": "m",
        "model_sha256": "0" * 64,
        "tasks": None,
        "findings": 0,
        "grounded": 0,
        "versions": {},
    }
    assert "- grounding: no findings" in _facts_markdown(facts)
    assert "- grounding: 3 of 4 findings grounded in the text (75 %)" in _facts_markdown(
        {**facts, "findings": 4, "grounded": 3}
    )
