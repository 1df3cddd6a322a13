"""Shared fixtures. Tests use real parts: the real GGUF model, real Prefect, real DuckDB/Parquet."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pipeline  # noqa: F401  (offline switches first)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DOCUMENTS = FIXTURES / "documents"
NETGUARD = Path(__file__).resolve().parent / "netguard"


def require_services() -> bool:
    """Under ASSAY_REQUIRE_SERVICES=1 (CI), a missing system service fails instead of skipping."""
    return os.environ.get("ASSAY_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    if require_services():
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def network_namespace_prefix() -> list[str]:
    """`unshare` into a network namespace with only loopback, when this machine allows it."""
    unshare = shutil.which("unshare")
    ip = shutil.which("ip")
    if not unshare or not ip:
        return []
    probe = subprocess.run([unshare, "-n", ip, "link", "set", "lo", "up"], capture_output=True)
    if probe.returncode != 0:
        return []
    return [unshare, "-n", "sh", "-c", f'{ip} link set lo up && exec "$@"', "netns"]


def offline_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment for a subprocess with outbound connections blocked and logged."""
    log = tmp_path / "netguard.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(NETGUARD), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["ASSAY_NETGUARD_LOG"] = str(log)
    env.pop("PREFECT_API_URL", None)
    # Strip the offline switches so the test proves Assay sets them itself.
    for key in ("DO_NOT_TRACK", "HF_HUB_OFFLINE", "PREFECT_SERVER_ANALYTICS_ENABLED", "SCARF_NO_ANALYTICS"):
        env.pop(key, None)
    return env, log


# A small estate for nightly-run tests: two documents that process and one that fails.
NIGHTLY_GOOD = ["unstructured__fake-text-utf-16-be.txt", "docling__kvp_data_example.html"]
NIGHTLY_BAD = ["unstructured__empty.txt"]


def nightly_source(tmp_path: Path) -> Path:
    """`tmp_path/in` holding the nightly estate."""
    source = tmp_path / "in"
    source.mkdir()
    for name in NIGHTLY_GOOD + NIGHTLY_BAD:
        shutil.copy(DOCUMENTS / name, source / name)
    return source


def assay_command() -> list[str]:
    return [sys.executable, "-m", "assay"]


@pytest.fixture(scope="session")
def landed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One real `assay run` over tests/fixtures/documents, offline, shared by the tests that read its results."""
    tmp = tmp_path_factory.mktemp("e2e")
    data_dir = tmp / "data"
    env, log = offline_env(tmp)
    command = [
        *network_namespace_prefix(),
        *assay_command(),
        "--data-dir",
        str(data_dir),
        "run",
        str(DOCUMENTS),
        "--max-chunks-per-document",
        "2",
        "--shard-size",
        "4",
        "--no-progress",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    return {"result": result, "data_dir": data_dir, "netlog": log}


@dataclass(frozen=True)
class S3Bucket:
    endpoint: str
    client: Any  # a boto3 S3 client (boto3 ships no type information)
    bucket: str

    def keys(self, prefix: str) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def store_settings(self, prefix: str) -> dict[str, str]:
        """The `[lake_store]` / `[lake_mirror]` settings of s3://<bucket>/<prefix> on this endpoint."""
        return {
            "url": f"s3://{self.bucket}/{prefix}",
            "endpoint_url": self.endpoint,
            "access_key_id": "test",
            "secret_access_key": "test",
        }


@pytest.fixture
def s3() -> Iterator[S3Bucket]:
    """A real S3 endpoint on loopback (.ci/run's moto server, or one started here) and a fresh bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = None
    endpoint = os.environ.get("ASSAY_TEST_S3_ENDPOINT")
    if not endpoint:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    bucket = f"assay-lake-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    try:
        yield S3Bucket(endpoint, client, bucket)
    finally:
        if server is not None:
            server.stop()
