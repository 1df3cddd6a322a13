"""The state store on SQLite and on a real PostgreSQL server (started by .ci/run on loopback)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, text

from pipeline.core.errors import RunInProgress
from pipeline.state import schema
from pipeline.state.store import StateStore, WorkMark, alembic_config, default_url
from tests.support import fresh_postgres_database, skip_or_fail


def _postgres_url() -> str:
    url = os.environ.get("ASSAY_TEST_POSTGRES_URL")
    if not url:
        skip_or_fail("PostgreSQL is not running here (set ASSAY_TEST_POSTGRES_URL; .ci/run starts one)")
    assert url is not None
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        yield StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
        return
    with fresh_postgres_database("assay_test") as url:
        store = StateStore(url)
        try:
            yield store
        finally:
            store.engine.dispose()


def test_migrations_build_exactly_the_declared_schema(store: StateStore) -> None:
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), schema.metadata)
        version = connection.execute(text("select version_num from alembic_version")).scalar()
    assert differences == []
    assert version == "0005"
    StateStore(store.url)  # migrating again is a no-op


def test_a_store_at_the_released_0004_upgrades_with_its_cursors(store: StateStore) -> None:
    """0004 shipped with `work_fingerprint`; 0005 renames it, keeping the rows (their old key then matches no
    source's settings, so each source is listed in full once)."""
    config = alembic_config()
    with store.engine.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
        connection.commit()
    with store.engine.begin() as connection:
        connection.execute(
            text("insert into listing_cursors (source, cursor, work_fingerprint) values ('nas', '17', 'old-fp')")
        )
    upgraded = StateStore(store.url)
    saved = upgraded.cursors.get("nas")
    assert saved is not None and (saved.cursor, saved.key) == ("17", "old-fp")
    with upgraded.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), schema.metadata) == []


MINUTES = timedelta(minutes=2)


def test_only_one_run_holds_the_lock(store: StateStore) -> None:
    store.locks.acquire("lake", "run-a", MINUTES)
    with pytest.raises(RunInProgress, match="run-a"):
        StateStore(store.url).locks.acquire("lake", "run-b", MINUTES)
    store.locks.release("lake", "run-a")
    store.locks.acquire("lake", "run-b", MINUTES)
    store.locks.release("lake", "run-b")


def test_a_lock_is_stale_by_its_heartbeat_alone_and_a_taken_lock_is_known_lost(store: StateStore) -> None:
    """Whoever holds it, alive or dead, on this host or another: only the heartbeat's age counts."""
    old = datetime.now(UTC) - timedelta(minutes=5)
    with store.engine.begin() as connection:
        connection.execute(
            insert(schema.locks).values(
                name="lake",
                run_id="silent",
                host=os.uname().nodename,
                pid=os.getpid(),
                acquired_at=old,
                heartbeat_at=old,
            )
        )  # this very process "holds" it, but its heartbeat stopped five minutes ago
    store.locks.acquire("lake", "next", MINUTES)
    assert not store.locks.heartbeat("lake", "silent")  # the old holder learns it lost the lock
    assert store.locks.heartbeat("lake", "next")
    with pytest.raises(RunInProgress, match="last heartbeat was 0 s ago"):
        store.locks.acquire("lake", "third", MINUTES)
    store.locks.release("lake", "next")


def test_the_commit_lock_is_waited_for(store: StateStore) -> None:
    with store.locks.held("commit", "first", MINUTES):
        with pytest.raises(RunInProgress):
            store.locks.wait_for("commit", "second", MINUTES, timeout=0.5)
    with store.locks.held("commit", "second", MINUTES):
        pass


def test_work_marks_and_rollback(store: StateStore) -> None:
    store.mark_done("r1", [WorkMark("fp-a", "parse", "sha-a", None), WorkMark("fp-b", "extract", "sha-a", "key_terms")])
    store.mark_done("r1", [WorkMark("fp-a", "parse", "sha-a", None)])  # idempotent
    assert store.done(["fp-a", "fp-b", "fp-c"]) == {"fp-a", "fp-b"}
    assert store.forget_run("r1") == 2
    assert store.done(["fp-a", "fp-b"]) == set()


def test_documents_seen_and_deleted(store: StateStore) -> None:
    store.record_seen(
        "r1", [("src", "file:///a", "v1", "sha-a", 10, None, None), ("src", "file:///b", "v1", "sha-b", 5, None, None)]
    )
    store.record_seen("r2", [("src", "file:///a", "v2", "sha-a2", 11, None, None)])
    assert store.mark_deleted("r2", "src") == [("file:///b", "sha-b")]
    assert store.mark_deleted("r2", "src") == []  # already marked
    store.record_seen("r3", [("src", "file:///b", "v1", "sha-b", 5, None, None)])  # it came back
    with store.engine.connect() as connection:
        status = connection.execute(text("select status from documents where uri = 'file:///b'")).scalar()
    assert status == "active"


def test_runs_left_running_are_found(store: StateStore) -> None:
    store.run_started("r1")
    store.run_started("r2")
    store.run_finished("r2")
    assert store.unfinished_runs() == ["r1"]


def test_racing_workers_lease_every_shard_exactly_once(store: StateStore) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from datetime import timedelta

    store.shards.add("run-1", [(i, f'["doc-{i}"]') for i in range(40)])
    store.shards.add("run-other", [(0, "[]")])

    # Each worker with its own engine, as on another machine (made first: Alembic is not thread-safe).
    stores = {name: StateStore(store.url) for name in ["w1", "w2", "w3", "w4"]}

    def worker(name: str) -> list[int]:
        own = stores[name]
        taken: list[int] = []
        while (lease := own.shards.lease("run-1", name, timedelta(minutes=5))) is not None:
            index, documents, attempt = lease
            assert documents == f'["doc-{index}"]' and attempt == 1
            assert own.shards.complete("run-1", index, name, f'{{"shard_index": {index}}}')
            taken.append(index)
        own.engine.dispose()
        return taken

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, ["w1", "w2", "w3", "w4"]))
    every = sorted(i for taken in results for i in taken)
    assert every == list(range(40))  # all of them, none twice
    assert store.shards.progress("run-1") == {"pending": 0, "leased": 0, "done": 40}
    assert store.shards.progress("run-other") == {"pending": 1, "leased": 0, "done": 0}
    owners = {owner for _, owner, attempts, _ in store.shards.reports("run-1") if attempts == 1}
    assert owners <= {"w1", "w2", "w3", "w4"}


def test_an_expired_lease_is_taken_over_and_the_dead_worker_cannot_complete(store: StateStore) -> None:
    from datetime import timedelta

    store.shards.add("run-2", [(0, "[]"), (1, "[]")])
    assert store.shards.lease("run-2", "dead", timedelta(seconds=-1)) == (0, "[]", 1)  # expired at once
    assert store.shards.lease("run-2", "alive", timedelta(minutes=5)) == (0, "[]", 2)  # taken over: attempt 2
    assert not store.shards.renew("run-2", 0, "dead", timedelta(minutes=5))
    assert not store.shards.complete("run-2", 0, "dead", "{}")
    assert store.shards.renew("run-2", 0, "alive", timedelta(minutes=5))
    assert store.shards.complete("run-2", 0, "alive", '{"ok": 1}')
    assert store.shards.lease("run-2", "alive", timedelta(minutes=5)) == (1, "[]", 1)
    assert store.shards.complete("run-2", 1, "alive", "{}")
    assert store.shards.lease("run-2", "late", timedelta(minutes=5)) is None  # done shards are never leased again
    assert [(i, o, a) for i, o, a, _ in store.shards.reports("run-2")] == [(0, "alive", 2), (1, "alive", 1)]


def test_the_same_work_reported_twice_in_one_run_is_marked_once(tmp_path: Path) -> None:
    """Two files with the same bytes that fail the same way both report the same `failed` work."""
    store = StateStore(default_url(tmp_path))
    item = WorkMark("f" * 64, "failed", "e" * 64, "empty_file")
    store.mark_done("run-1", [item, item])
    assert store.failures_landed(["f" * 64]) == {"f" * 64: ("empty_file", "run-1")}
    store.mark_done("run-2", [item])  # already there: kept as the first run landed it
    assert store.failures_landed(["f" * 64, "a" * 64]) == {"f" * 64: ("empty_file", "run-1")}
