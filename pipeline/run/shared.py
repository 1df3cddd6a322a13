"""One run, many workers: shards queued in the state store and leased, never processed twice.

The run that lists the documents (the coordinator) holds the lake lock, queues
its shards with `share_run`, and has workers started (Prefect deployment runs on
a work pool, flows/assay_shards.py). Each worker `join_run`s with the same
settings and calls `work_on_shards`: lease the next free shard, process it,
complete it with its report; a heartbeat keeps the lease while it works. A
worker that dies leaves its lease to expire; the shard is then leased again
(attempt 2 writes files under new names, and the dead attempt's files are in no
manifest, so the next run's recovery quarantines them). A shard completed once
is never leased again, and a worker that lost its lease cannot complete it.
The coordinator waits for every shard to be done (working on shards itself when
no worker is left), then finishes the run from the shards' reports.

Workers on several machines must reach the same lake (an S3-compatible store,
or a shared file system) and the same state store (PostgreSQL): docs/scaling.md.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from pipeline.core.connector import Connector
from pipeline.core.secrets import redact_data
from pipeline.core.settings import Settings
from pipeline.core.tasks import parse_task
from pipeline.extract.device import check_offload
from pipeline.extract.model_files import resolve_model_file
from pipeline.run.context import RunContext, get_state, state_url
from pipeline.run.counts import ShardReport
from pipeline.run.plan import PlannedDocument, Shard
from pipeline.run.shard import process_shard

# Builds a joining worker's connectors from the sources the run recorded (connectors/registry.py has one).
SourceBuilder = Callable[[dict[str, dict[str, Any]], Settings], dict[str, Connector]]


class RunNotJoinable(RuntimeError):
    """The run is unknown, finished, or was started with a different model file."""


def share_run(context: RunContext, shards: Iterable[Shard]) -> int:
    """Queue the run's shards for workers (a stream is fine), and record what a worker needs to join. How many."""
    state = context.state
    joinable = {
        "flow_run_id": context.flow_run_id,
        "started_at": context.started_at.isoformat(),
        "model_sha256": context.model_sha256,
        # no secret: a worker builds a source it knows from its own settings (connectors/registry.py)
        "sources": {
            name: redact_data(source.config.model_dump(mode="json")) for name, source in context.sources.items()
        },
        "tasks": [{"definition": t.definition, "source_path": t.source_path} for t in context.tasks],
    }
    state.save_run_context(context.run_id, json.dumps(joinable))
    return state.shards.add(
        context.run_id,
        ((s.index, json.dumps([d.model_dump(mode="json") for d in s.documents])) for s in shards),
    )


def join_run(settings: Settings, run_id: str, build_sources: SourceBuilder) -> RunContext:
    """The context of a running shared run, for a worker with these settings."""
    url = state_url(settings)
    status, raw = get_state(url).run_context(run_id)
    if status != "running" or raw is None:
        raise RunNotJoinable(f"run {run_id} is {status} or was not shared with workers")
    joinable = json.loads(raw)
    check_offload(settings.model)  # this worker runs the model with its own settings
    model_sha256 = resolve_model_file(settings.model).sha256
    if model_sha256 != joinable["model_sha256"]:
        raise RunNotJoinable(
            f"this worker's model file ({model_sha256[:12]}) is not the run's ({joinable['model_sha256'][:12]})"
        )
    tasks = tuple(parse_task(t["definition"].encode(), t["source_path"]) for t in joinable["tasks"])
    sources = build_sources(joinable["sources"], settings)
    started_at = datetime.fromisoformat(joinable["started_at"])
    return RunContext(run_id, joinable["flow_run_id"], settings, sources, started_at, model_sha256, url, tasks)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def work_on_shards(
    context: RunContext,
    owner: str | None = None,
    lease: timedelta = timedelta(minutes=30),
    on_done: Callable[[ShardReport], None] | None = None,
) -> list[int]:
    """Lease, process and complete shards of the run until none is free; the indexes this worker did."""
    owner = owner or worker_name()
    state = context.state
    done: list[int] = []
    while (taken := state.shards.lease(context.run_id, owner, lease)) is not None:
        index, documents, attempt = taken
        shard = Shard(
            index=index,
            documents=[PlannedDocument.model_validate(d) for d in json.loads(documents)],
            attempt=attempt,
        )
        with _LeaseHeartbeat(context, index, owner, lease):
            report = process_shard(context, shard)
        if state.shards.complete(context.run_id, index, owner, report.model_dump_json()):
            done.append(index)
            if on_done is not None:
                on_done(report)
    return done


def wait_for_shards(context: RunContext, workers_alive: Callable[[], bool], poll_s: float = 2.0) -> list[ShardReport]:
    """Wait until every shard is done; work on shards here while no worker is left. The reports, in order."""
    state = context.state
    while True:
        progress = state.shards.progress(context.run_id)
        if progress["pending"] == 0 and progress["leased"] == 0:
            break
        if not workers_alive() and work_on_shards(context):  # free shards (or expired leases) and no worker
            continue
        time.sleep(poll_s)
    return [ShardReport.model_validate_json(r) for _, _, _, r in state.shards.reports(context.run_id) if r]


class _LeaseHeartbeat:
    """Renews a shard's lease every third of its length while the shard is processed."""

    def __init__(self, context: RunContext, index: int, owner: str, lease: timedelta) -> None:
        self._args = (context.run_id, index, owner, lease)
        self._state = context.state
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{index}", daemon=True)
        self._every = max(1.0, lease.total_seconds() / 3)

    def _beat(self) -> None:
        while not self._stop.wait(self._every):
            self._state.shards.renew(*self._args)

    def __enter__(self) -> _LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
