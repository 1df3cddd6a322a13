"""A run's context: what every shard needs to know about the run it belongs to, and starting a run.

`new_run` checks the configuration (tasks, model file), takes the lake lock,
repairs what a crashed run left (pipeline/state/recovery.py) and records the
run as started. The context pins the task definitions as read then: every
shard uses these, even if a task file changes during the run.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.core.connector import Connector
from pipeline.core.errors import RunInProgress
from pipeline.core.secrets import MASK, redact_url
from pipeline.core.settings import Settings, load_settings
from pipeline.core.tasks import Task, find_task, unrouted
from pipeline.extract.model_files import resolve_model_file
from pipeline.land.lake import FileEntry, Lake
from pipeline.land.ledger import Ledger, Manifest
from pipeline.land.signing import load_or_create
from pipeline.land.store import LakeStore, open_store
from pipeline.land.warehouse import sql_sha256
from pipeline.run.listing import SourceListing
from pipeline.state.incremental import work_fingerprint
from pipeline.state.locks import COMMIT, LAKE, Heartbeat
from pipeline.state.recovery import recover
from pipeline.state.store import StateStore
from pipeline.state.store import default_url as default_state_url

logger = logging.getLogger(__name__)


@dataclass
class RunContext:
    """The run's identity, settings, sources (as connectors), pinned tasks and model file."""

    run_id: str
    flow_run_id: str | None
    settings: Settings
    sources: dict[str, Connector]
    started_at: datetime
    model_sha256: str
    state_url: str = field(repr=False)  # may hold a password
    tasks: tuple[Task, ...] = ()
    listings: dict[str, SourceListing] = field(default_factory=dict)  # how each source is listed
    work_fingerprint: str = ""  # what the run does to each document (saved with its listing cursors)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for a Dask worker) without a secret: the worker takes them from its own environment."""
        state = dict(self.__dict__)
        state["settings"] = self.settings.without_secrets()
        state["state_url"] = redact_url(self.state_url)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if any(MASK in value for value in self.settings.secret_values()) or MASK in self.state_url:
            # this process's own secrets (its environment, its config file) for the same places
            self.settings = self.settings.with_secrets_from(load_settings(**self.settings.public_values()))
            self.state_url = state_url(self.settings)

    @property
    def lake(self) -> Lake:
        return Lake(open_store(self.settings))

    @property
    def state(self) -> StateStore:
        return get_state(self.state_url)


_STATES: dict[str, StateStore] = {}


def get_state(url: str) -> StateStore:
    """One state store (connection pool) per URL per process."""
    if url not in _STATES:
        _STATES[url] = StateStore(url)
    return _STATES[url]


def state_url(settings: Settings) -> str:
    """The state store's URL: `state_url`, or SQLite in the data directory."""
    if settings.state_url is not None:
        return settings.state_url.get_secret_value()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return default_state_url(settings.data_dir)


def new_run(settings: Settings, sources: dict[str, Connector], flow_run_id: str | None = None) -> RunContext:
    """Check the configuration, take the lake lock, repair what a crashed run left, and start the run."""
    # to the microsecond: run ids sort in start order (reports and reuse order by them), even for two
    # runs that start in the same second
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + uuid.uuid4().hex[:8]
    # Fail early on an unknown task or a bad model file, before any document is touched; pin the tasks.
    tasks = tuple(find_task(name, settings.task_dirs) for name in settings.tasks)
    if settings.routing and (warning := unrouted(tasks)):
        logger.warning("%s", warning)
    model_sha256 = resolve_model_file(settings.model).sha256
    url = state_url(settings)
    state = get_state(url)
    state.locks.acquire(LAKE, run_id, _stale_after(settings))  # RunInProgress when another run holds it
    _HEARTBEATS[run_id] = Heartbeat(state.locks, LAKE, run_id, settings.locks.heartbeat_s).start()
    try:
        recover(state, open_store(settings))
        state.run_started(run_id)
    except BaseException:
        release_lake(state, run_id)
        raise
    started_at = datetime.now(UTC)
    context = RunContext(run_id, flow_run_id, settings, sources, started_at, model_sha256, url, tasks)
    context.work_fingerprint = work_fingerprint(tasks, model_sha256, settings)
    return context


# The heartbeats of the runs this process holds the lake lock for (threads: not part of a pickled context).
_HEARTBEATS: dict[str, Heartbeat] = {}


def _stale_after(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.locks.stale_after_s)


def still_holds_lake(context: RunContext) -> None:
    """Raise RunInProgress unless this run still holds its lake lock (renewing it on the way)."""
    beat = _HEARTBEATS.get(context.run_id)
    if (beat is not None and beat.lost) or not context.state.locks.heartbeat(LAKE, context.run_id):
        raise RunInProgress(
            f"run {context.run_id} lost its lock on the lake (its heartbeat stopped for longer than "
            f"{context.settings.locks.stale_after_s:g} s and another run took it over): it does not commit"
        )


def release_lake(state: StateStore, run_id: str) -> None:
    beat = _HEARTBEATS.pop(run_id, None)
    if beat is not None:
        beat.stop()
    state.locks.release(LAKE, run_id)


def commit(
    settings: Settings,
    store: LakeStore,
    kind: str,
    files: Sequence[FileEntry],
    *,
    run_id: str | None = None,
    commit_id: str | None = None,
    check: Callable[[], None] | None = None,
) -> Manifest:
    """Append one manifest to the ledger: the one way runs, reviews and replays commit.

    Under the commit lock (one writer at a time), signed with the installation's key, carrying the
    SHA-256 of the view definitions, and recorded in the state store, outside the lake (its head is
    what `assay verify` expects). `check` runs under the lock before anything is written.
    """
    signer = load_or_create(settings.signing.key_file)
    state = get_state(state_url(settings))
    holder = commit_id or run_id or kind
    with state.locks.held(COMMIT, holder, _stale_after(settings)):
        if check is not None:
            check()
        manifest = Ledger(store).commit(
            kind, files, run_id=run_id, commit_id=commit_id, extra={"sql_sha256": sql_sha256()}, signer=signer
        )
        state.record_head(manifest.sequence, manifest.sha256, manifest.commit_id, kind, signer.key_id)
    return manifest


def abort_run(context: RunContext) -> None:
    """Give up the lock after a failure; the next run's recovery rolls back what this one left.

    Called while the failure propagates: if the lock cannot be released either (a full disk, the state
    store gone), that is logged and the failure itself is what the caller sees; the heartbeat has
    stopped, so the lock goes stale and the next run takes it over after `[locks] stale_after_s`.
    """
    try:
        release_lake(context.state, context.run_id)
    except Exception:
        logger.exception("run %s could not release its lock; it goes stale", context.run_id)
