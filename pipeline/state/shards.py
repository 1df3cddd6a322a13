"""Shard leases: the shards of a run that several workers share (pipeline/run/shared.py), in the state store.

A worker leases a free shard with a conditional UPDATE, so two workers racing for one cannot both get
it; renews the lease while it works; completes the shard with its report only while it still holds
the lease. A lease that expires (its worker died) can be taken again, as the next attempt; a
completed shard never is.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from itertools import islice

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.sql.elements import ColumnElement

from pipeline.state import schema


class ShardLeases:
    """The shard queue of every shared run, on the state store's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, run_id: str, shards: Iterable[tuple[int, str]]) -> int:
        """Queue (index, documents JSON) shards of a run for workers to lease, in one transaction.

        `shards` may be a stream: it is inserted 1,000 rows at a time, never held whole.
        """
        now = datetime.now(UTC)
        rows = (
            {"run_id": run_id, "shard_index": i, "documents": d, "status": "pending", "attempts": 0, "updated_at": now}
            for i, d in shards
        )
        added = 0
        with self.engine.begin() as connection:
            while batch := list(islice(rows, 1000)):
                connection.execute(insert(schema.shards), batch)
                added += len(batch)
        return added

    def lease(self, run_id: str, owner: str, ttl: timedelta) -> tuple[int, str, int] | None:
        """Take the next pending shard (or one whose lease expired): (index, documents JSON, attempt), or None.

        The UPDATE is conditional on the shard still being free, so two workers racing for one
        shard cannot both get it: the loser's update matches no row and it tries the next one.
        """
        shards = schema.shards.c
        while True:
            now = datetime.now(UTC)
            free = (shards.run_id == run_id) & (
                (shards.status == "pending") | ((shards.status == "leased") & (shards.lease_expires_at < now))
            )
            with self.engine.begin() as connection:
                candidate = connection.execute(
                    select(shards.shard_index, shards.documents, shards.attempts)
                    .where(free)
                    .order_by(shards.shard_index)
                    .limit(1)
                ).one_or_none()
                if candidate is None:
                    return None
                taken = connection.execute(
                    update(schema.shards)
                    .where(free & (shards.shard_index == candidate.shard_index))
                    .values(
                        status="leased",
                        owner=owner,
                        lease_expires_at=now + ttl,
                        attempts=shards.attempts + 1,
                        updated_at=now,
                    )
                )
                if taken.rowcount == 1:
                    return candidate.shard_index, candidate.documents, candidate.attempts + 1

    def renew(self, run_id: str, index: int, owner: str, ttl: timedelta) -> bool:
        """Push the lease's expiry on; False when the lease was lost (it expired and was taken)."""
        with self.engine.begin() as connection:
            renewed = connection.execute(
                update(schema.shards)
                .where(_held(run_id, index, owner))
                .values(lease_expires_at=datetime.now(UTC) + ttl)
            )
        return renewed.rowcount == 1

    def complete(self, run_id: str, index: int, owner: str, report_json: str) -> bool:
        """Mark a leased shard done with its report; False when this owner no longer holds the lease."""
        with self.engine.begin() as connection:
            done = connection.execute(
                update(schema.shards)
                .where(_held(run_id, index, owner))
                .values(status="done", report=report_json, lease_expires_at=None, updated_at=datetime.now(UTC))
            )
        return done.rowcount == 1

    def progress(self, run_id: str) -> dict[str, int]:
        """How many of the run's shards are pending, leased and done."""
        shards = schema.shards.c
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(shards.status, func.count()).where(shards.run_id == run_id).group_by(shards.status)
            ).all()
        return {"pending": 0, "leased": 0, "done": 0, **{status: int(count) for status, count in rows}}

    def reports(self, run_id: str) -> list[tuple[int, str, int, str | None]]:
        """(index, owner, attempts, report JSON) of every shard of the run, in order."""
        shards = schema.shards.c
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(shards.shard_index, shards.owner, shards.attempts, shards.report)
                .where(shards.run_id == run_id)
                .order_by(shards.shard_index)
            ).all()
        return [(r.shard_index, r.owner, r.attempts, r.report) for r in rows]


def _held(run_id: str, index: int, owner: str) -> ColumnElement[bool]:
    """The shard's row, while `owner` holds its lease."""
    shards = schema.shards.c
    return (
        (shards.run_id == run_id)
        & (shards.shard_index == index)
        & (shards.owner == owner)
        & (shards.status == "leased")
    )
