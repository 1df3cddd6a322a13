"""Shared fixtures. Tests use real parts: the real GGUF model, real Prefect, real DuckDB/Parquet."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
