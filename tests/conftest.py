"""Shared fixtures. Tests use real parts: the real GGUF model, real Prefect, real DuckDB/Parquet.

Helpers and the test documents are in tests/support.py. Tiers: `make test-fast` runs what is not marked
`slow` (no model, no Prefect run: units, about 3.5 minutes on 2 cores); `make test` runs everything.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.land import warehouse
from pipeline.land.store import local_store
from tests.support import (
    E2E_DOCUMENTS,
    ROOT,
    S3Bucket,
    assay_command,
    copy_documents,
    network_namespace_prefix,
    offline_env,
)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Prefect stops its ephemeral server when Python exits and says so at INFO on a console that wrote to
    pytest's captured output, closed by then: a "--- Logging error ---" traceback after the tests' summary.
    Nothing of the tests is left to log at that point."""
    logging.getLogger("prefect").setLevel(logging.WARNING)


@pytest.fixture(scope="session", autouse=True)
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Sign the tests' manifests with a key of their own, never the user's `~/.config/assay/signing-key.pem`.

    Set in the environment so that the `assay` subprocesses the tests start inherit it."""
    key = tmp_path_factory.mktemp("signing") / "signing-key.pem"
    before = os.environ.get("ASSAY_SIGNING__KEY_FILE")
    os.environ["ASSAY_SIGNING__KEY_FILE"] = str(key)
    yield key
    if before is None:
        del os.environ["ASSAY_SIGNING__KEY_FILE"]
    else:
        os.environ["ASSAY_SIGNING__KEY_FILE"] = before


@pytest.fixture(scope="session")
def landed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One real `assay run` over the end-to-end documents, offline, shared by the tests that read its results.

    Read it only: a test that writes (reviews, replays) works on its own copy (`landed_copy`).
    """
    tmp = tmp_path_factory.mktemp("e2e")
    documents = copy_documents(tmp / "documents", E2E_DOCUMENTS)
    data_dir = tmp / "data"
    env, log = offline_env(tmp)
    command = [
        *network_namespace_prefix(),
        *assay_command(),
        "--data-dir",
        str(data_dir),
        "run",
        str(documents),
        "--max-chunks-per-document",
        "2",
        "--shard-size",
        "4",
        "--no-progress",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    return {"result": result, "data_dir": data_dir, "netlog": log, "documents": documents}


@pytest.fixture
def landed_copy(landed: dict[str, object], tmp_path: Path) -> Path:
    """A data directory of the end-to-end run's own, to write into; its views read its own lake."""
    copy = tmp_path / "data"
    shutil.copytree(Path(str(landed["data_dir"])), copy)
    warehouse.build(copy / "warehouse.duckdb", local_store(copy / "lake"))
    return copy


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
