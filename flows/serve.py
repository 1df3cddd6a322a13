"""`assay serve`: a Prefect server on loopback, Assay's deployments registered, a process worker.

The operator's console in one command (`make serve`): the server (SQLite under PREFECT_HOME, or
the PostgreSQL that `--database-url` names), the work pool, the global concurrency limit on model
slots, the deployments of deploy/prefect.yaml, and a worker that runs them, until SIGTERM or
Ctrl-C stops them in the reverse order. Registration is idempotent: a start cut short is finished
by the next one (nothing is half-registered that a second start does not put right).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from pipeline.core.errors import ConfigError
from pipeline.core.secrets import redact

ROOT = Path(__file__).resolve().parents[1]
ASSAY_LOGGERS = "assay,pipeline,connectors,flows"


@dataclass
class Estate:
    """What `assay serve` starts, and where."""

    home: Path  # PREFECT_HOME: the server's SQLite database, the worker's files
    host: str = "127.0.0.1"
    port: int = 4200
    database_url: str | None = None  # postgresql+asyncpg://... for the server's database; None: SQLite
    work_pool: str = "assay-cpu"
    model_slots: int = 1  # runs that may use the model at once, across deployments
    model_slots_name: str = "assay-model-slots"
    prefect_file: Path = ROOT / "deploy" / "prefect.yaml"
    deploy: bool = True  # False: the server alone (`make ui`)
    worker: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_LOGGING_EXTRA_LOGGERS=ASSAY_LOGGERS,
            ASSAY_HOME=str(ROOT),
        )
        if self.database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        env.update(self.extra_env)
        return env


def _prefect(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *arguments]


class Serving:
    """The processes of one `assay serve`, stopped in reverse order of their start."""

    def __init__(self, estate: Estate, say: Callable[[str], None]) -> None:
        self.estate = estate
        self.say = say
        self.env = estate.environment()
        self.stopping = threading.Event()
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        estate.home.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.estate.home / f"{name}.log", "ab")
        process = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append((name, process))
        return process

    def step(self, what: str, command: list[str]) -> None:
        """Run one registration command to its end."""
        if self.stopping.is_set():
            raise InterruptedError(what)
        done = subprocess.run(command, env=self.env, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ConfigError(f"{what} failed: {redact((done.stdout + done.stderr).strip()[-2000:])}")
        self.say(f"  {what}")

    def wait_for_server(self, server: subprocess.Popen[bytes], seconds: float = 120.0) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set():
            try:
                with urllib.request.urlopen(f"{self.estate.api_url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if server.poll() is not None:
                raise ConfigError(f"the Prefect server exited; its log: {self.estate.home / 'server.log'}")
            if time.monotonic() > deadline:
                raise ConfigError(f"the Prefect server did not answer in {seconds:.0f} s; see {self.estate.home}")
            time.sleep(0.5)
        raise InterruptedError("server start")

    def register(self, client_imported: threading.Thread | None = None) -> None:
        """Work pool, model-slot limit and deployments; each step idempotent.

        The work pool and the limit through Prefect's client in this process (a CLI call costs a
        Python start and Prefect's import, about 2.5 s on 2 cores, each); the deployments through
        `prefect deploy`, which reads deploy/prefect.yaml as an operator's own `prefect deploy` would.
        """
        estate = self.estate
        if client_imported is not None:
            client_imported.join()
        if self.stopping.is_set():
            raise InterruptedError("work pool")
        from prefect.client.orchestration import SyncPrefectClient
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.workers.process import ProcessWorker

        what = f"work pool {estate.work_pool} (process)"
        try:
            with SyncPrefectClient(estate.api_url) as client:
                client.create_work_pool(
                    WorkPoolCreate(
                        name=estate.work_pool,
                        type=ProcessWorker.type,
                        base_job_template=ProcessWorker.get_default_base_job_template(),
                    ),
                    overwrite=True,
                )
                self.say(f"  {what}")
                what = f"global concurrency limit {estate.model_slots_name} = {estate.model_slots}"
                client.upsert_global_concurrency_limit_by_name(estate.model_slots_name, estate.model_slots)
                self.say(f"  {what}")
        except Exception as exc:  # the server's answer (an HTTP error) or no answer
            raise ConfigError(f"{what} failed: {redact(f'{type(exc).__name__}: {exc}')[-2000:]}") from None
        self.step(
            f"deployments of {estate.prefect_file.relative_to(ROOT)}",
            _prefect("deploy", "--no-prompt", "--prefect-file", str(estate.prefect_file), "--all"),
        )

    def stop(self) -> None:
        for name, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                self.say(f"stopped the {name}")
        self.processes.clear()


def _import_client() -> None:
    import prefect.client.orchestration
    import prefect.workers.process  # noqa: F401


def serve(estate: Estate, say: Callable[[str], None]) -> int:
    """Start what `estate` names and hold it until SIGTERM/SIGINT or one of its processes ends."""
    serving = Serving(estate, say)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        serving.stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server = serving.start("server", _prefect("server", "start", "--host", estate.host, "--port", str(estate.port)))
        # This process talks to the server too (registration): the same Prefect home and API as its children,
        # set before Prefect is imported here (it reads them once).
        os.environ.update({key: serving.env[key] for key in ("PREFECT_HOME", "PREFECT_API_URL")})
        client_imported = threading.Thread(target=_import_client, daemon=True)
        client_imported.start()  # on the other core while the server starts
        serving.wait_for_server(server)
        say(f"Prefect server: {estate.ui_url} (API {estate.api_url}; files in {estate.home})")
        if estate.deploy:
            serving.register(client_imported)
        if estate.worker:
            serving.start("worker", _prefect("worker", "start", "--pool", estate.work_pool))
            say(f"worker on pool {estate.work_pool} (log: {estate.home / 'worker.log'})")
        say(f"Open {estate.ui_url} in a browser. Stop with Ctrl-C or SIGTERM.")
        while not serving.stopping.wait(1.0):
            for name, process in serving.processes:
                if process.poll() is not None:
                    say(f"the {name} exited ({process.returncode}); see {estate.home / (name + '.log')}")
                    return 1
        return 0
    except InterruptedError:
        return 0
    finally:
        serving.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
