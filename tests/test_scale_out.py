"""Scale-out on real engines: one run's shards leased by two Prefect process workers against a real
Prefect server, the PostgreSQL state store and an S3 lake (moto), and fanned out over a real Dask
LocalCluster writing a local lake."""

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
from sqlalchemy import create_engine, text

from pipeline.core.settings import load_settings
from pipeline.land import warehouse
from tests.jobrunner import NO_MODEL, TEST_TASKS
from tests.support import ROOT, S3Bucket, document, skip_or_fail

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


def _overrides(tmp_path: Path, state_url: str | None = None) -> dict[str, object]:
    overrides: dict[str, object] = {
        "data_dir": str(tmp_path / "data"),
        "shard_size": 1,
        # What is tested here is who does which shard; the task asks the model nothing (tests/fixtures/tasks).
        "tasks": NO_MODEL,
        "task_dirs": [str(TEST_TASKS)],
        "parsing": {"workers": 1},
    }
    if state_url:
        overrides["state_url"] = state_url
    return overrides


def _check_lake(overrides: dict[str, object], run_id: str) -> None:
    con = warehouse.read_only(load_settings(**overrides))  # type: ignore[arg-type]
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
    base = os.environ.get("ASSAY_TEST_POSTGRES_URL")
    if not base:
        skip_or_fail("PostgreSQL is not running here (set ASSAY_TEST_POSTGRES_URL; .ci/run starts one)")
    assert base is not None
    name = f"assay_scale_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real Prefect server on loopback (.ci/run's, or one started here); the environment that talks to it."""
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
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
from flows.assay_shards import assay_shard_worker
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
    env = prefect_server
    run: dict[str, Any] = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 300}
    name = f"assay-test-{uuid.uuid4().hex[:8]}"  # the work pool and the worker deployment
    pool = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", name, "--type", "process"], **run)
    assert pool.returncode == 0, pool.stdout + pool.stderr
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
        overrides = _overrides(tmp_path, postgres_state)
        overrides["lake_store"] = s3.store_settings("lake")
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
    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncio\nfrom prefect.client.orchestration import get_client\n"
            "async def main():\n    async with get_client() as c:\n"
            "        runs = await c.read_flow_runs()\n"
            "        print('\\n'.join(f'{r.id} {r.name} {r.state_type.value}' for r in runs))\n"
            "asyncio.run(main())",
        ],
        **run,
    )
    states = {line.split()[0]: line.split()[-1] for line in listed.stdout.splitlines()}
    # The coordinating flow run and every worker flow run that did shards completed.
    assert all(states.get(run_id) == "COMPLETED" for run_id in flow_runs | {summary["flow_run_id"]}), listed.stdout
    _check_lake(overrides, summary["run_id"])
    # The workers wrote their Parquet to the store; the data directory holds only the catalog and the report.
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["reports", "warehouse.duckdb"]
    assert any(key.startswith("lake/findings/run_date=") for key in s3.keys("lake/"))


DASK = """
import json, sys
from prefect_dask import DaskTaskRunner
from flows.assay_run import assay_run
runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True,
                                        "dashboard_address": None})
summary = assay_run.with_options(task_runner=runner)([sys.argv[1]], overrides=json.loads(sys.argv[2]))
print(summary.model_dump_json())
"""


def test_a_run_fans_out_over_a_dask_cluster_of_worker_processes(tmp_path: Path) -> None:
    overrides = _overrides(tmp_path)
    overrides["parsing"] = {"workers": 0}  # each Dask worker process parses its own shards
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
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
    _check_lake(overrides, summary["run_id"])
    # The shards ran in the cluster's two worker processes, not in the flow's own process.
    assert len(summary["workers"]) == 2, summary["workers"]
