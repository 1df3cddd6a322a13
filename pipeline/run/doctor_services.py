"""`assay doctor`'s checks of the services this installation talks to: the state store, the S3 lake and
its mirror, the Prefect API and the sources.

Each reuses the code a run uses rather than imitating it: the state store's Alembic revisions
(`pipeline.state.store`) and the lake's S3 store (`pipeline.land.store`). Like all of `pipeline/` it imports
no Prefect (the Prefect API is asked over plain HTTP, with httpx) and no connectors (the CLI hands in one
probe per source, built by `connectors.registry` as `assay sources` builds them). Nothing here creates the
state store or upgrades its schema: a check reads, except the S3 probe, which writes, reads back and deletes
one small object under `<lake>/_doctor/`. `pipeline.run.doctor` runs these checks after those of the machine.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
from pyarrow import fs
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from pipeline.core.errors import AssayError
from pipeline.core.secrets import redact, redact_url
from pipeline.core.settings import S3StoreSettings, Settings
from pipeline.land.store import s3_store
from pipeline.run.doctor_report import Check, Status
from pipeline.state.store import default_url, revisions

DEFAULT_WORK_POOL = "assay-cpu"  # deploy/prefect.yaml
DEFAULT_DEPLOYMENT = "assay-run/nightly"
HTTP_TIMEOUT_S = 10.0
S3_PROBE_PREFIX = "_doctor"


@dataclass(frozen=True)
class PrefectTarget:
    """The Prefect API a night's flow runs report to, as Prefect's own settings resolve it (env, profile)."""

    api_url: str
    headers: Mapping[str, str] = field(default_factory=dict)  # Authorization, from the API key or auth string
    work_pool: str = DEFAULT_WORK_POOL
    deployment: str = DEFAULT_DEPLOYMENT  # <flow name>/<deployment name>


SourceProbe = Callable[[], str]  # lists a source's first document; returns what it found, raises when it cannot


# -- the stores ---------------------------------------------------------------------------------


def check_state_store(settings: Settings) -> Check:
    """The state store answers and its schema is this Assay's newest Alembic revision (nothing is created)."""
    url = settings.state_url.get_secret_value() if settings.state_url is not None else default_url(settings.data_dir)
    shown = redact_url(url)
    started = time.perf_counter()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        folder = Path(parsed.database).parent
        if settings.state_url is not None and not folder.is_dir():
            return Check(
                "state store",
                "problem",
                f"{shown}: the folder {folder} does not exist",
                f"create {folder}, or point state_url elsewhere",
            )
        return Check("state store", "ok", f"{shown}: not created yet; the first run creates it")
    connect_args = {"connect_timeout": int(HTTP_TIMEOUT_S)} if parsed.get_backend_name() == "postgresql" else {}
    engine = create_engine(url, connect_args=connect_args)
    try:
        current, head, known = revisions(engine)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc  # the driver's own words, without SQLAlchemy's footer
        message = redact(str(cause)).strip()
        return Check(
            "state store",
            "problem",
            f"{shown} cannot be reached: {message.splitlines()[0] if message else type(exc).__name__}",
            "start the database or correct state_url (ASSAY_STATE_URL); the account needs to connect, "
            "read, write and (for upgrades) create tables",
            round(time.perf_counter() - started, 2),
        )
    finally:
        engine.dispose()
    seconds = round(time.perf_counter() - started, 2)
    if current == head:
        return Check("state store", "ok", f"{shown}: reachable, schema at the newest revision {head}", seconds=seconds)
    if current is None:
        return Check(
            "state store", "ok", f"{shown}: reachable, empty; the first run creates the schema", seconds=seconds
        )
    if known:
        return Check(
            "state store",
            "warning",
            f"{shown}: schema at revision {current}, this Assay's newest is {head}; the next run upgrades it",
            "back up the state store before the night (the upgrade is one transaction on SQLite)",
            seconds,
        )
    return Check(
        "state store",
        "problem",
        f"{shown}: schema at revision {current}, newer than this Assay knows ({head}): a newer Assay upgraded it",
        "run the Assay version that upgraded it on this machine too",
        seconds,
    )


def check_s3(store: S3StoreSettings | None, what: str) -> Check:
    """The S3 store is reachable and writable: a probe object is written, read back and deleted."""
    if store is None:
        return Check(what, "skipped", f"[{what}] not set")
    started = time.perf_counter()
    lake = s3_store(store, what)
    probe = f"{S3_PROBE_PREFIX}/{socket.gethostname()}-{uuid.uuid4().hex[:12]}"
    payload = f"assay doctor probe {uuid.uuid4().hex}\n".encode()
    where = f"{lake.describe(probe)}" + (f" at {store.endpoint_url}" if store.endpoint_url else "")
    step = "write"
    try:
        lake.put(probe, payload)
        step = "read back"
        if lake.read_bytes(probe) != payload:
            raise OSError("the object read back differs from the one written")
        step = "delete"
        lake.filesystem.delete_file(lake.path(probe))
        # pyarrow keeps an emptied "folder" as a marker object (`_doctor/`): removed too, once no other
        # doctor's probe is there
        folder = fs.FileSelector(lake.path(S3_PROBE_PREFIX), allow_not_found=True)
        if not lake.filesystem.get_file_info(folder):
            lake.filesystem.delete_dir(lake.path(S3_PROBE_PREFIX))
    except OSError as exc:
        message = redact(str(exc)).strip()
        return Check(
            what,
            "problem",
            f"cannot {step} {where}: {message.splitlines()[0] if message else type(exc).__name__}",
            f"check [{what}] url and endpoint_url, that the bucket exists (Assay creates none) and that "
            "the credentials may list, get, put and delete under the prefix",
            round(time.perf_counter() - started, 2),
        )
    seconds = time.perf_counter() - started
    return Check(what, "ok", f"{lake.url}: wrote, read back and deleted a probe in {seconds:.2f} s", seconds=seconds)


# -- Prefect ------------------------------------------------------------------------------------


def check_prefect(target: PrefectTarget | None, settings: Settings) -> list[Check]:
    """The Prefect API answers, and the work pool, the deployment and the model slots it needs exist."""
    if target is None:
        return [Check("prefect api", "skipped", "PREFECT_API_URL is not set: `assay run` uses ephemeral Prefect")]
    api = target.api_url.rstrip("/")
    shown = redact_url(api)
    checks: list[Check] = []
    with httpx.Client(timeout=HTTP_TIMEOUT_S, headers=dict(target.headers)) as client:
        started = time.perf_counter()
        try:
            health = client.get(f"{api}/health")
        except httpx.HTTPError as exc:
            return [
                Check(
                    "prefect api",
                    "problem",
                    f"{shown} cannot be reached: {redact(str(exc)) or type(exc).__name__}",
                    "start the Prefect server (`prefect server start`, or `assay serve`), or correct "
                    "PREFECT_API_URL; unset it to run with ephemeral Prefect",
                    round(time.perf_counter() - started, 2),
                )
            ]
        seconds = round(time.perf_counter() - started, 2)
        if health.status_code != 200:
            fix = "set PREFECT_API_KEY or PREFECT_API_AUTH_STRING" if health.status_code in (401, 403) else ""
            return [
                Check(
                    "prefect api",
                    "problem",
                    f"{shown}/health answered HTTP {health.status_code}",
                    fix or "check that PREFECT_API_URL names a Prefect server's API (it ends in /api)",
                    seconds,
                )
            ]
        checks.append(Check("prefect api", "ok", f"{shown} answers", seconds=seconds))
        pool = target.work_pool
        checks.append(
            _prefect_object(
                client,
                f"{api}/work_pools/{quote(pool, safe='')}",
                "work pool",
                f"work pool {pool!r}",
                f"prefect work-pool create {pool} --type process",
            )
        )
        flow, _, deployment = target.deployment.partition("/")
        checks.append(
            _prefect_object(
                client,
                f"{api}/deployments/name/{quote(flow, safe='')}/{quote(deployment, safe='')}",
                "deployment",
                f"deployment {target.deployment!r}",
                "ASSAY_HOME=<this checkout> prefect deploy --prefect-file deploy/prefect.yaml --all (or `assay serve`)",
            )
        )
        slots = settings.orchestration.model_slots
        if slots:
            checks.append(
                _prefect_object(
                    client,
                    f"{api}/v2/concurrency_limits/{quote(slots, safe='')}",
                    "model slots",
                    f"global concurrency limit {slots!r} ([orchestration] model_slots)",
                    f"prefect gcl create {slots} --limit 1 (or `assay serve`, which creates it)",
                    missing="warning",
                    missing_detail="runs take no model slot and may share the cores or a GPU",
                )
            )
    return checks


def _prefect_object(
    client: httpx.Client,
    url: str,
    name: str,
    what: str,
    fix: str,
    missing: Status = "problem",
    missing_detail: str = "",
) -> Check:
    started = time.perf_counter()
    try:
        answer = client.get(url)
    except httpx.HTTPError as exc:
        return Check(name, "problem", f"{what}: {redact(str(exc)) or type(exc).__name__}", "", 0.0)
    seconds = round(time.perf_counter() - started, 2)
    if answer.status_code == 200:
        return Check(name, "ok", f"{what} exists", seconds=seconds)
    if answer.status_code == 404:
        detail = f"{what} does not exist on this Prefect server" + (f": {missing_detail}" if missing_detail else "")
        return Check(name, missing, detail, fix, seconds)
    return Check(name, "problem", f"{what}: the API answered HTTP {answer.status_code}", fix, seconds)


# -- sources ------------------------------------------------------------------------------------


def check_source(name: str, probe: SourceProbe) -> Check:
    started = time.perf_counter()
    try:
        found = probe()
    except Exception as exc:  # a driver's own error: the operator needs its words
        message = exc if isinstance(exc, AssayError) else f"{type(exc).__name__}: {exc}"
        return Check(
            f"source {name}",
            "problem",
            redact(str(message)),
            f"fix [sources.{name}] or the source itself; `assay sources` lists each one",
            round(time.perf_counter() - started, 2),
        )
    return Check(f"source {name}", "ok", found, seconds=round(time.perf_counter() - started, 2))
