"""`assay doctor`: a healthy installation passes, a broken one names each problem and its fix.

The embedded model is hashed (about 100 MB), never loaded. Real parts where they are cheap: a SQLite state
store migrated by Alembic, moto's S3 server (the `s3` fixture), a loopback HTTP server standing in for the
Prefect API, and the real Prefect server `.ci/run` starts when ASSAY_TEST_PREFECT_API_URL names it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from alembic import command
from click.testing import CliRunner, Result
from sqlalchemy import text

from assay.cli import cli
from pipeline.core.errors import ModelError
from pipeline.core.resources import available_cores, cpu_quota
from pipeline.core.settings import ModelSettings, Settings, load_settings
from pipeline.extract.device import llama_finds_gpu
from pipeline.extract.engine import get_engine
from pipeline.run.doctor import check_cores, check_device, check_offline, check_state_store, check_telemetry
from pipeline.state.store import StateStore, alembic_config, default_url, make_engine
from tests.support import S3Bucket, copy_documents, skip_or_fail

SECRET = "hunter2-doctor-secret"


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment for `assay doctor`: no config file but the test's, no Prefect API or profile."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "ASSAY_CONFIG",
        "ASSAY_MODEL__N_GPU_LAYERS",
        "PREFECT_API_URL",
        "PREFECT_API_KEY",
        "PREFECT_API_AUTH_STRING",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))  # not the machine's profiles
    monkeypatch.setenv("ASSAY_MODEL__N_THREADS", "1")
    monkeypatch.setenv("ASSAY_PARSING__WORKERS", "1")
    return tmp_path


def _doctor(data_dir: Path, *args: str, config: Path | None = None) -> Result:
    options = ["--config", str(config)] if config else []
    return CliRunner().invoke(cli, [*options, "--data-dir", str(data_dir), "doctor", *args])


def _checks(result: Result) -> dict[str, dict[str, Any]]:
    report = json.loads(result.output)
    assert report["ok"] is (result.exit_code == 0), result.output
    return {check["name"]: check for check in report["checks"]}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_healthy_installation_passes(installation: Path) -> None:
    data_dir = installation / "data"
    data_dir.mkdir()
    StateStore(default_url(data_dir)).engine.dispose()  # a state store migrated to the head revision
    documents = copy_documents(installation / "in", ["unstructured__empty.txt"])
    config = installation / "assay.toml"
    config.write_text(f'[sources.docs]\nconnector = "local"\npath = "{documents}"\n', encoding="utf-8")

    result = _doctor(data_dir, "--json", config=config)
    assert result.exit_code == 0, result.output
    checks = _checks(result)
    assert {c["status"] for c in checks.values()} <= {"ok", "warning", "skipped"}
    assert checks["model"]["status"] == "ok" and "as expected" in checks["model"]["detail"]
    assert "hashed in" in checks["model"]["detail"]  # how long the SHA-256 took
    assert checks["offline"]["status"] == "ok" and checks["telemetry"]["status"] == "ok"
    assert checks["cores"]["status"] == "ok" and "model.n_threads = 1" in checks["cores"]["detail"]
    assert checks["device"]["status"] == "ok" and "model.n_gpu_layers = 0" in checks["device"]["detail"]
    assert checks["state store"]["status"] == "ok" and "newest revision" in checks["state store"]["detail"]
    assert checks["data directory"]["status"] == "ok" and "free" in checks["data directory"]["detail"]
    assert checks["source docs"]["status"] == "ok" and "first document" in checks["source docs"]["detail"]
    assert checks["prefect api"]["status"] == "skipped"  # PREFECT_API_URL not set: ephemeral Prefect
    assert checks["lake_store"]["status"] == "skipped"
    assert not (data_dir / "lake").exists()  # the doctor creates nothing

    shown = _doctor(data_dir, "--no-sources", config=config)
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[-1].startswith("0 problems") and "ready for the night" in shown.output
    assert "not checked (--no-sources)" in shown.output


def test_a_broken_installation_names_each_problem_and_its_fix(
    installation: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    too_many = available_cores() + 1
    config = installation / "assay.toml"
    config.write_text(
        f'state_url = "postgresql+psycopg://assay:{SECRET}@127.0.0.1:{_closed_port()}/assay"\n'
        f'[model]\nsha256 = "{"0" * 64}"\nn_threads = {too_many}\n'
        f'[lake_store]\nurl = "s3://assay-lake/nightly"\nendpoint_url = "http://127.0.0.1:{_closed_port()}"\n'
        f'access_key_id = "test"\nsecret_access_key = "{SECRET}"\n',
        encoding="utf-8",
    )
    monkeypatch.delenv("ASSAY_MODEL__N_THREADS")  # the file's n_threads counts
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{_closed_port()}/api")
    result = _doctor(installation / "data", "--json", config=config)
    text_result = _doctor(installation / "data", "--no-hash", config=config)
    assert result.exit_code == 1, result.output
    checks = _checks(result)
    problems = {name for name, check in checks.items() if check["status"] == "problem"}
    assert problems == {"model", "cores", "state store", "lake_store", "prefect api"}, result.output
    assert all(checks[name]["fix"] for name in problems)
    assert "has SHA-256 b179c952" in checks["model"]["detail"] and "model.sha256" in checks["model"]["fix"]
    assert f"model.n_threads = {too_many}" in checks["cores"]["detail"]
    assert f"ASSAY_MODEL__N_THREADS={min(available_cores(), too_many)}" in checks["cores"]["fix"]
    assert "cannot be reached" in checks["state store"]["detail"] and "state_url" in checks["state store"]["fix"]
    assert "assay:***@127.0.0.1" in checks["state store"]["detail"]
    assert "cannot write s3://assay-lake/nightly/_doctor/" in checks["lake_store"]["detail"]
    assert "bucket exists" in checks["lake_store"]["fix"]
    assert "cannot be reached" in checks["prefect api"]["detail"] and "PREFECT_API_URL" in checks["prefect api"]["fix"]
    assert "work pool" not in checks  # nothing more is asked of an API that does not answer
    assert SECRET not in result.output

    assert text_result.exit_code == 1
    lines = text_result.output.splitlines()
    for name in ("cores", "state store", "lake_store", "prefect api"):
        line = next(i for i, text in enumerate(lines) if text.startswith("PROBLEM") and f" {name} " in text)
        assert "fix: " in lines[line + 1], lines[line : line + 2]
    assert lines[-1].startswith("4 problems") and "fix the problems above" in lines[-1]
    assert SECRET not in text_result.output


def test_settings_that_do_not_load_are_a_problem_that_names_the_key(installation: Path) -> None:
    config = installation / "assay.toml"
    config.write_text("[model]\nn_thread = 2\n", encoding="utf-8")
    result = _doctor(installation / "data", "--json", config=config)
    assert result.exit_code == 1
    assert "model.n_thread" in _checks(result)["settings"]["detail"]


def test_the_s3_lake_is_written_read_back_and_the_probe_deleted(installation: Path, s3: S3Bucket) -> None:
    store = s3.store_settings("nightly") | {"access_key_id": "doctor-key-id", "secret_access_key": "doctor-secret"}
    config = installation / "assay.toml"
    config.write_text(
        "[lake_store]\n" + "".join(f'{key} = "{value}"\n' for key, value in store.items()), encoding="utf-8"
    )
    result = _doctor(installation / "data", "--json", "--no-hash", config=config)
    checks = _checks(result)
    assert checks["lake_store"]["status"] == "ok", checks["lake_store"]
    assert "wrote, read back and deleted" in checks["lake_store"]["detail"]
    assert not [key for key in s3.keys("nightly/") if "_doctor" in key]  # the probe is gone, and its folder

    config.write_text(config.read_text().replace(s3.bucket, f"no-such-bucket-{uuid.uuid4().hex[:6]}"))
    missing = _checks(_doctor(installation / "data", "--json", "--no-hash", config=config))
    assert missing["lake_store"]["status"] == "problem" and "cannot write" in missing["lake_store"]["detail"]


class _FakePrefect(BaseHTTPRequestHandler):
    """Answers like a Prefect API that has the deployment and the model slots but not the work pool."""

    present: ClassVar[set[str]] = {
        "/api/health",
        "/api/deployments/name/assay-run/nightly",
        "/api/v2/concurrency_limits/assay-model-slots",
    }
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        found = self.path in self.present
        body = b"true" if found else b'{"detail": "Not found"}'
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_prefect() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakePrefect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _FakePrefect.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


def test_a_missing_work_pool_is_a_problem_with_the_command_that_creates_it(
    installation: Path, fake_prefect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", fake_prefect)
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_doctor_key")
    result = _doctor(installation / "data", "--json", "--no-hash", "--no-sources")
    checks = _checks(result)
    assert result.exit_code == 1
    assert checks["prefect api"]["status"] == "ok"
    assert checks["work pool"]["status"] == "problem"
    assert checks["work pool"]["fix"] == "prefect work-pool create assay-cpu --type process"
    assert checks["deployment"]["status"] == "ok" and checks["model slots"]["status"] == "ok"
    assert all(header == "Bearer pnu_doctor_key" for _, header in _FakePrefect.seen)  # Prefect's own credentials
    assert "pnu_doctor_key" not in result.output


def test_the_prefect_checks_against_a_real_prefect_server(installation: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = os.environ.get("ASSAY_TEST_PREFECT_API_URL")
    if not api:
        skip_or_fail("no Prefect server to ask (set ASSAY_TEST_PREFECT_API_URL; .ci/run starts one)")
    assert api is not None
    monkeypatch.setenv("PREFECT_API_URL", api)
    pool, deployment = f"assay-doctor-{uuid.uuid4().hex[:8]}", f"assay-run/doctor-{uuid.uuid4().hex[:8]}"
    result = _doctor(
        installation / "data", "--json", "--no-hash", "--no-sources", "--work-pool", pool, "--deployment", deployment
    )
    checks = _checks(result)
    assert checks["prefect api"]["status"] == "ok", checks["prefect api"]
    assert checks["work pool"]["status"] == "problem"
    assert checks["work pool"]["fix"] == f"prefect work-pool create {pool} --type process"
    assert checks["deployment"]["status"] == "problem" and "prefect deploy" in checks["deployment"]["fix"]
    assert result.exit_code == 1


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> Settings:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASSAY_CONFIG", raising=False)
    for name in ("ASSAY_MODEL__N_THREADS", "ASSAY_PARSING__WORKERS"):
        monkeypatch.delenv(name, raising=False)
    return load_settings(None, data_dir=tmp_path / "data", **overrides)


def test_cores_count_the_cgroup_quota_as_well_as_affinity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a container that sees 16 cores and may use 2 CPUs: the default of one thread per visible core is too many
    settings = _settings(tmp_path, monkeypatch, model={"n_threads": 16}, parsing={"workers": 2})
    crowded = check_cores(settings, affinity=16, quota=2.0)
    assert crowded.status == "problem" and "cgroup CPU quota: 2 CPUs" in crowded.detail
    assert "model.n_threads = 2" in crowded.fix
    assert check_cores(settings, affinity=16, quota=None).status == "ok"
    many_parsers = _settings(tmp_path, monkeypatch, model={"n_threads": 2}, parsing={"workers": 8})
    assert check_cores(many_parsers, affinity=4, quota=None).status == "warning"


def test_parsing_ahead_asks_for_the_cores_to_be_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def ahead(threads: int, workers: int) -> Any:
        parsing = {"workers": workers, "ahead": True}
        settings = _settings(tmp_path, monkeypatch, model={"n_threads": threads}, parsing=parsing)
        return check_cores(settings, affinity=2, quota=None)

    split = ahead(1, 1)
    assert split.status == "ok" and "split the cores" in split.detail
    crowded = ahead(2, 1)
    assert crowded.status == "warning" and "model.n_threads = 2 + parsing.workers = 1" in crowded.detail
    assert "<= 2" in crowded.fix
    in_process = ahead(1, 0)
    assert in_process.status == "warning" and "parsing.workers = 0" in in_process.detail
    assert check_cores(_settings(tmp_path, monkeypatch, model={"n_threads": 2}), affinity=2, quota=None).status == "ok"


def test_a_gpu_asked_for_where_llama_cpp_finds_none_is_a_problem_and_the_model_is_not_started() -> None:
    """n_gpu_layers on a CPU build of llama.cpp (or with no GPU visible) would run the model on the CPU, sized
    for a GPU, with nothing to say so: the doctor names it with the fix, and the engine refuses to load."""
    cpu = check_device(ModelSettings(), gpu_found=False)
    assert cpu.status == "ok" and "runs on the CPU (model.n_gpu_layers = 0" in cpu.detail
    gpu = check_device(ModelSettings(n_gpu_layers=-1), gpu_found=True)
    assert gpu.status == "ok" and "every layer on the GPU" in gpu.detail and "16 sequences" in gpu.detail
    missing = check_device(ModelSettings(n_gpu_layers=20), gpu_found=False)
    assert missing.status == "problem" and "model.n_gpu_layers = 20 asks for a GPU" in missing.detail
    assert 'CMAKE_ARGS="-DGGML_CUDA=on"' in missing.fix and "model.n_gpu_layers = 0" in missing.fix

    if llama_finds_gpu():
        pytest.skip("this llama.cpp finds a GPU; the refusal is for one that finds none")
    # The installed llama.cpp, asked for real (this one is built for the CPU).
    assert check_device(ModelSettings(n_gpu_layers=-1)).status == "problem"
    with pytest.raises(ModelError, match=r"asks for a GPU, but llama.cpp finds none .*CMAKE_ARGS"):
        get_engine(ModelSettings(n_gpu_layers=-1, n_threads=1))


def test_the_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "system.slice" / "assay.service").mkdir(parents=True)
    (v2 / "cpu.max").write_text("max 100000\n")
    (v2 / "system.slice" / "cpu.max").write_text("400000 100000\n")
    (v2 / "system.slice" / "assay.service" / "cpu.max").write_text("150000 100000\n")
    proc = tmp_path / "cgroup-v2"
    proc.write_text("0::/system.slice/assay.service\n")
    assert cpu_quota(v2, proc) == 1.5  # the tightest along the way
    (v2 / "system.slice" / "assay.service" / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(v2, proc) == 4.0  # the parent's quota still holds

    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    proc.write_text("4:memory:/\n2:cpu,cpuacct:/\n0::/\n")
    assert cpu_quota(v1, proc) is None  # -1: no quota
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("200000\n")
    assert cpu_quota(v1, proc) == 2.0
    assert cpu_quota(tmp_path / "nowhere", tmp_path / "no-such-file") is None


def test_offline_and_telemetry_switches_are_read_as_each_library_reads_them() -> None:
    assert check_offline({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}).status == "ok"
    online = check_offline({"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"})
    assert online.status == "problem" and "HF_HUB_OFFLINE='0'" in online.detail and "unset HF_HUB_OFFLINE" in online.fix

    quiet = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    quiet["PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY"] = "0"
    assert check_telemetry(quiet).status == "ok"
    loud = check_telemetry({**quiet, "DO_NOT_TRACK": "", "PREFECT_SERVER_ANALYTICS_ENABLED": "true"})
    assert loud.status == "problem"
    assert "DO_NOT_TRACK" in loud.detail and "PREFECT_SERVER_ANALYTICS_ENABLED=true" in loud.detail
    # Prefect's own resolution (a profile may switch analytics on) wins over the environment
    profile = check_telemetry(quiet, {"PREFECT_SERVER_ANALYTICS_ENABLED": True})
    assert profile.status == "problem" and "PREFECT_SERVER_ANALYTICS_ENABLED" in profile.fix


def test_a_state_store_behind_this_assay_is_a_warning_and_one_ahead_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, monkeypatch)
    settings.data_dir.mkdir()
    engine = make_engine(default_url(settings.data_dir))
    config = alembic_config()
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        connection.commit()
    behind = check_state_store(settings)
    assert behind.status == "warning" and "revision 0002" in behind.detail and "next run upgrades" in behind.detail
    with engine.begin() as connection:
        connection.execute(text("update alembic_version set version_num = '9999'"))
    engine.dispose()
    ahead = check_state_store(settings)
    assert ahead.status == "problem" and "newer than this Assay knows" in ahead.detail
