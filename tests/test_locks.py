"""Locks that hold: a run that lost its lock does not commit; two writers never fork the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from connectors.registry import resolve_sources
from pipeline.core.errors import RunInProgress
from pipeline.core.settings import load_settings
from pipeline.land.ledger import Ledger, chain_problems
from pipeline.land.store import local_store
from pipeline.run.context import RunContext
from pipeline.run.counts import ShardReport
from pipeline.run.local import in_order, run_locally
from pipeline.run.plan import ShardPlan
from pipeline.state import schema
from tests.jobrunner import NO_MODEL, TEST_TASKS, run
from tests.support import nightly_source


def test_a_run_that_lost_its_lock_does_not_commit(tmp_path: Path) -> None:
    """Its heartbeat stopped (a long GC pause, a frozen VM); another run took the lake over meanwhile."""
    settings = load_settings(data_dir=tmp_path / "data", tasks=NO_MODEL, task_dirs=[TEST_TASKS])
    source = nightly_source(tmp_path)

    def taken_over_while_working(context: RunContext, plan: ShardPlan) -> list[ShardReport]:
        reports = in_order(context, plan)
        with context.state.engine.begin() as connection:  # what a successor's takeover does to the row
            connection.execute(
                update(schema.locks)
                .where(schema.locks.c.name == "lake")
                .values(run_id="the-successor", heartbeat_at=datetime.now(UTC))
            )
        return reports

    with pytest.raises(RunInProgress, match="lost its lock on the lake"):
        run_locally(settings, resolve_sources([str(source)], settings), execute=taken_over_while_working)
    assert Ledger(local_store(tmp_path / "data" / "lake")).manifests() == []  # nothing committed
    from pipeline.run.context import get_state, state_url

    state = get_state(state_url(settings))
    with state.engine.connect() as connection:
        marked = connection.execute(select(func.count()).select_from(schema.work_done)).scalar()
    assert marked == 0 and state.unfinished_runs()  # no work marked done; the next run's recovery repairs
    state.locks.release("lake", "the-successor")
    assert run(tmp_path / "data", source, NO_MODEL).status == "completed"  # the next night repairs and lands


def test_two_writers_that_read_the_same_head_do_not_fork_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(tmp_path / "data", nightly_source(tmp_path), NO_MODEL)
    store = local_store(tmp_path / "data" / "lake")
    first, second = Ledger(store), Ledger(store)
    stale = first.head()
    reads = iter([stale])  # the first writer read the head before the second one committed
    monkeypatch.setattr(first, "head", lambda: next(reads, None) or Ledger(store).head())
    second.commit("review", [], commit_id="second")
    made = first.commit("review", [], commit_id="first")
    manifests = Ledger(store).manifests()
    assert [m.commit_id for m in manifests][-2:] == ["second", "first"]
    assert made.sequence == 3 and chain_problems(manifests) == []
    assert [m.name for m in manifests] == ["00000001.json", "00000002.json", "00000003.json"]


def test_a_stale_lock_is_taken_over_after_its_heartbeat_stops(tmp_path: Path) -> None:
    from pipeline.run.context import get_state, state_url

    settings = load_settings(data_dir=tmp_path / "data")
    state = get_state(state_url(settings))
    state.locks.acquire("lake", "crashed-run", timedelta(seconds=1))
    with state.engine.begin() as connection:
        connection.execute(update(schema.locks).values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=300)))
    summary = run(tmp_path / "data", nightly_source(tmp_path), NO_MODEL)  # default: stale after 120 s
    assert summary.status == "completed"
