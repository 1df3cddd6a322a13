"""Scale-out on real engines: one run's shards leased by two Prefect process workers against a real
Prefect server, the PostgreSQL state store and an S3 lake (moto), and fanned out over a real Dask
LocalCluster writing an S3 lake. Secrets reach every process from its environment only, and no record
of either run (Prefect's parameters, logs and artifacts, the state store, the lake, the report) holds one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text

from pipeline.core.settings import load_settings
from pipeline.land import warehouse
from tests.jobrunner import NO_MODEL, TEST_TASKS
from tests.support import ROOT, S3Bucket, document, fresh_postgres_database

pytestmark = pytest.mark.slow  # a Prefect server, process workers and a Dask cluster

DOCS = [
    "unstructured__fake-text-utf-16-be.txt",
    "docling__kvp_data_example.html",
    "enron__jones-t_inbox_773.eml",
    "unstructured__handbook-1p.docx",
    "unstructured__empty.txt",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _source(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in DOCS:
        (folder / name).write_bytes(document(name).read_bytes())
    return folder


def _overrides(tmp_path: Path, s3: S3Bucket) -> dict[str, object]:
    """The runs' flow parameters: no secret among them (a flow refuses one)."""
    lake = s3.store_settings("lake")
    return {
        "data_dir": str(tmp_path / "data"),
        "shard_size": 1,
        # What is tested here is who does which shard; the task asks the model nothing (tests/fixtures/tasks).
        "tasks": NO_MODEL,
        "task_dirs": [str(TEST_TASKS)],
        "parsing": {"workers": 1},
        "lake_store": {"url": lake["url"], "endpoint_url": lake["endpoint_url"]},
    }


def _secrets(state_url: str | None = None) -> dict[str, str]:
    """Secrets of the run, as environment variables; values no record may hold (moto takes any key)."""
    env = {
        "ASSAY_LAKE_STORE__ACCESS_KEY_ID": f"AKIA{uuid.uuid4().hex[:16].upper()}",
        "ASSAY_LAKE_STORE__SECRET_ACCESS_KEY": f"s3-secret-{uuid.uuid4().hex}",
    }
    if state_url:
        env["ASSAY_STATE_URL"] = f"{state_url}?sslpassword=ssl-{uuid.uuid4().hex}"  # libpq takes it, unused
    return env


def _secret_values(env: dict[str, str]) -> list[str]:
    values = [env["ASSAY_LAKE_STORE__ACCESS_KEY_ID"], env["ASSAY_LAKE_STORE__SECRET_ACCESS_KEY"]]
    if "ASSAY_STATE_URL" in env:
        url = make_url(env["ASSAY_STATE_URL"])
        values += [url.password or "", str(url.query["sslpassword"])]
    return [v for v in values if v]


def _check_lake(overrides: dict[str, object], run_id: str, secrets: dict[str, str]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in secrets.items():
            patch.setenv(name, value)
        settings = load_settings(**overrides)  # type: ignore[arg-type]
    con = warehouse.read_only(settings)
    try:
        rows = con.execute("select status, count(*) from documents where run_id = ? group by 1", [run_id]).fetchall()
        assert dict(rows) == {"processed": 4, "failed": 1}
        found, distinct = con.execute(
            "select count(*), count(distinct finding_id) from findings where run_id = ?", [run_id]
        ).fetchone() or (0, 0)
        assert found > 0 and found == distinct  # the rules found values, and no finding landed twice
        assert con.execute(
            "select count(distinct document_uri) from documents where run_id = ?", [run_id]
        ).fetchone() == (5,)
    finally:
        con.close()


@pytest.fixture
def postgres_state() -> Iterator[str]:
    with fresh_postgres_database("assay_scale") as url:
        yield url


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real Prefect server on loopback (.ci/run's, or one started here); the environment that talks to it."""
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_WORKER_QUERY_SECONDS="1",  # workers ask for scheduled runs every second, not every 10 s
        ASSAY_HOME=str(ROOT),
    )
    running = os.environ.get("ASSAY_TEST_PREFECT_API_URL")
    if running:
        yield {**env, "PREFECT_API_URL": running}
        return
    port = _free_port()
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    log = open(tmp_path / "prefect-server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Prefect server did not start: " + (tmp_path / "prefect-server.log").read_text())
            time.sleep(1)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


DEPLOY = """
import sys
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.workers.process import ProcessWorker
from flows.assay_shards import assay_shard_worker
with get_client(sync_client=True) as client:
    client.create_work_pool(WorkPoolCreate(name=sys.argv[1], type="process",
                                           base_job_template=ProcessWorker.get_default_base_job_template()))
assay_shard_worker.from_source(source=".", entrypoint="flows/assay_shards.py:assay_shard_worker").deploy(
    name=sys.argv[1], work_pool_name=sys.argv[1], print_next_steps=False
)
"""

COORDINATE = """
import json, sys
from flows.assay_run import assay_run
summary = assay_run([sys.argv[1]], overrides=json.loads(sys.argv[2]), shard_workers=2,
                    worker_deployment="assay-shard-worker/" + sys.argv[3])
print(summary.model_dump_json())
"""


def test_two_prefect_workers_share_one_run_and_never_process_a_shard_twice(
    prefect_server: dict[str, str], postgres_state: str, s3: S3Bucket, tmp_path: Path
) -> None:
    """Workers share nothing but the Prefect server, the PostgreSQL state and the S3 lake."""
    secrets = _secrets(postgres_state)
    env = {**prefect_server, **secrets}
    run: dict[str, Any] = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 300}
    name = f"assay-test-{uuid.uuid4().hex[:8]}"  # the work pool and the worker deployment
    deployed = subprocess.run([sys.executable, "-c", DEPLOY, name], **run)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                name,
                "--limit",
                "1",
                "--name",
                f"worker-{n}",
            ],
            cwd=ROOT,
            env=env,
            stdout=open(tmp_path / f"worker-{n}.log", "w"),
            stderr=subprocess.STDOUT,
        )
        for n in (1, 2)
    ]
    try:
        overrides = _overrides(tmp_path, s3)
        coordinator = subprocess.run(
            [sys.executable, "-c", COORDINATE, str(_source(tmp_path)), json.dumps(overrides), name],
            **{**run, "timeout": 900},
        )
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
    logs = "\n".join((tmp_path / f"worker-{n}.log").read_text()[-3000:] for n in (1, 2))
    assert coordinator.returncode == 0, coordinator.stderr[-5000:] + logs
    summary = json.loads(coordinator.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed"
    assert summary["documents_in"] == 5 == summary["processed"] + summary["failed"] + summary["skipped"]
    assert (summary["processed"], summary["failed"]) == (4, 1)

    engine = create_engine(postgres_state)
    with engine.connect() as connection:
        shards = connection.execute(
            text("select shard_index, status, attempts, owner from shards where run_id = :r order by 1"),
            {"r": summary["run_id"]},
        ).all()
    engine.dispose()
    assert [s.shard_index for s in shards] == [0, 1, 2, 3, 4]
    assert all(s.status == "done" and s.attempts == 1 for s in shards)  # each shard leased once, done once
    # Every shard was done by one of the deployment's flow runs, started by the two process workers.
    flow_runs = {s.owner.rsplit(":", 1)[-1] for s in shards}
    assert 1 <= len(flow_runs) <= 2
    kept = subprocess.run([sys.executable, "-c", PREFECT_RECORDS, *flow_runs, summary["flow_run_id"]], **run)
    assert kept.returncode == 0 and '"parameters"' in kept.stdout and '"message"' in kept.stdout, kept.stderr
    states = {r["id"]: r["state_type"] for r in json.loads(kept.stdout)["flow_runs"]}
    # The coordinating flow run and every worker flow run that did shards completed.
    assert all(states.get(run_id) == "COMPLETED" for run_id in flow_runs | {summary["flow_run_id"]}), states
    _check_lake(overrides, summary["run_id"], secrets)
    # The workers wrote their Parquet to the store; the data directory holds only the catalog and the report.
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["reports", "warehouse.duckdb"]
    assert any(key.startswith("lake/findings/run_date=") for key in s3.keys("lake/"))

    # No secret in what Prefect keeps of the runs (parameters, logs, artifacts), the state store, the lake,
    # the data directory, or the processes' output.
    with create_engine(make_url(secrets["ASSAY_STATE_URL"]).set(query={})).connect() as connection:
        state = [
            str(connection.execute(text(f"select * from {table}")).all())
            for table in ("runs", "shards", "documents", "work_done", "ledger_heads", "locks")
        ]
    records = {
        "prefect": kept.stdout,
        "state store": "\n".join(state),
        "coordinator output": coordinator.stdout + coordinator.stderr,
        "worker logs": logs,
        **_lake_and_data(s3, tmp_path / "data"),
    }
    assert _leaks(secrets, records) == []


PREFECT_RECORDS = """
import asyncio, json, sys
from uuid import UUID
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

async def main():
    ids = [UUID(i) for i in sys.argv[1:]]
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
        task_runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
        logs, offset = [], 0
        while page := await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200, offset=offset
        ):
            logs += page
            offset += len(page)
        artifacts = await client.read_artifacts()
    dump = lambda items: [item.model_dump(mode="json") for item in items]
    print(json.dumps({"flow_runs": dump(runs), "task_runs": dump(task_runs), "logs": dump(logs),
                      "artifacts": dump(artifacts)}))

asyncio.run(main())
"""


def _lake_and_data(s3: S3Bucket, data_dir: Path) -> dict[str, str]:
    """Every object of the bucket and every file of the data directory, by name."""
    found = {
        f"s3://{s3.bucket}/{key}": s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read() for key in s3.keys("")
    }
    found |= {str(path): path.read_bytes() for path in data_dir.rglob("*") if path.is_file()}
    return {name: content.decode("latin-1") for name, content in found.items()}


def _leaks(secrets: dict[str, str], records: dict[str, str]) -> list[str]:
    return [
        f"{secret[:4]}... in {where}"
        for where, record in records.items()
        for secret in _secret_values(secrets)
        if secret in record
    ]


DASK = """
import json, sys
from prefect_dask import DaskTaskRunner
from flows.assay_run import assay_run
runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True,
                                        "dashboard_address": None})
summary = assay_run.with_options(task_runner=runner)([sys.argv[1]], overrides=json.loads(sys.argv[2]))
print(summary.model_dump_json())
"""


def test_a_run_fans_out_over_a_dask_cluster_of_worker_processes(
    prefect_server: dict[str, str], s3: S3Bucket, tmp_path: Path
) -> None:
    """The run's context travels to the Dask workers pickled without its S3 keys; they take theirs from
    their own environment. Against a Prefect server, as docs/scaling.md says to run it (with ephemeral
    Prefect each Dask worker process would start a temporary server of its own)."""
    overrides = _overrides(tmp_path, s3)
    overrides["parsing"] = {"workers": 0}  # each Dask worker process parses its own shards
    secrets = _secrets()
    env = {**prefect_server, **secrets}
    result = subprocess.run(
        [sys.executable, "-c", DASK, str(_source(tmp_path)), json.dumps(overrides)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["documents_in"] == 5 and (summary["processed"], summary["failed"]) == (4, 1)
    _check_lake(overrides, summary["run_id"], secrets)
    # The shards ran in the cluster's two worker processes, not in the flow's own process.
    assert len(summary["workers"]) == 2, summary["workers"]
    kept = subprocess.run(
        [sys.executable, "-c", PREFECT_RECORDS, summary["flow_run_id"]],
        cwd=ROOT,
        env=prefect_server,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert kept.returncode == 0, kept.stderr
    (flow_run,) = json.loads(kept.stdout)["flow_runs"]
    assert flow_run["state_type"] == "COMPLETED" and flow_run["parameters"]
    # The Dask workers reported their shards' task runs to the same server (not to ephemeral ones of their own).
    shard_runs = {t["name"]: t["state_type"] for t in json.loads(kept.stdout)["task_runs"]}
    assert {f"shard-{n}": "COMPLETED" for n in range(5)}.items() <= shard_runs.items(), shard_runs
    records = {"prefect": kept.stdout, "output": result.stdout + result.stderr, **_lake_and_data(s3, tmp_path / "data")}
    assert _leaks(secrets, records) == []
