"""Named locks in the state store, kept alive by a heartbeat and judged stale by its age alone.

Two locks guard a lake:
- `lake`: one run at a time works on a data directory; held for the whole run, renewed by a
  heartbeat thread (`Heartbeat`), and checked (the renewal must find the row: rowcount 1) before the
  run marks its work done and before it commits. A run that lost it (taken over after its heartbeat
  stopped) stops instead of committing.
- `commit`: one writer at a time appends a manifest to the ledger (a run's commit, a batch of review
  decisions, a replay sample); held for seconds; others wait for it.

A lock is stale when its heartbeat is older than `stale_after` (settings `locks.stale_after_s`):
nothing else is asked about the holder (a process id means nothing across containers or hosts).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from pipeline.core.errors import RunInProgress
from pipeline.state import schema

LAKE = "lake"
COMMIT = "commit"


class Locks:
    """The named locks of one state store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def acquire(self, name: str, holder: str, stale_after: timedelta) -> None:
        """Take the lock, or raise RunInProgress naming the holder (a stale holder's lock is taken over)."""
        now = datetime.now(UTC)
        host, pid = socket.gethostname(), os.getpid()
        locks = schema.locks.c
        with self.engine.begin() as connection:
            try:
                connection.execute(
                    insert(schema.locks).values(
                        name=name, run_id=holder, host=host, pid=pid, acquired_at=now, heartbeat_at=now
                    )
                )
                return
            except IntegrityError:
                pass
        with self.engine.begin() as connection:
            current = connection.execute(select(schema.locks).where(locks.name == name)).one_or_none()
            if current is not None:
                beat = current.heartbeat_at if current.heartbeat_at.tzinfo else current.heartbeat_at.replace(tzinfo=UTC)
                age = (now - beat).total_seconds()
                if age <= stale_after.total_seconds():
                    since = f"{current.acquired_at:%Y-%m-%d %H:%M:%S}"
                    raise RunInProgress(
                        f"{current.run_id} (pid {current.pid} on {current.host}, since {since}) holds the {name} lock"
                        f" of this data directory; its last heartbeat was {age:.0f} s ago (it is taken over after"
                        f" {stale_after.total_seconds():.0f} s without one)"
                    )
            taken = connection.execute(
                update(schema.locks)
                .where(locks.name == name)
                .where(locks.run_id == (current.run_id if current else None))
                .values(run_id=holder, host=host, pid=pid, acquired_at=now, heartbeat_at=now)
            )
            if taken.rowcount != 1:
                raise RunInProgress(f"another writer took the {name} lock at the same moment; try again")

    def wait_for(self, name: str, holder: str, stale_after: timedelta, timeout: float = 120.0) -> None:
        """`acquire`, trying again for up to `timeout` seconds while another holder has it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.acquire(name, holder, stale_after)
                return
            except RunInProgress:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def heartbeat(self, name: str, holder: str) -> bool:
        """Renew the lock; False when `holder` no longer holds it (it was taken over)."""
        locks = schema.locks.c
        with self.engine.begin() as connection:
            renewed = connection.execute(
                update(schema.locks)
                .where(locks.name == name, locks.run_id == holder)
                .values(heartbeat_at=datetime.now(UTC))
            )
        return renewed.rowcount == 1

    def release(self, name: str, holder: str) -> None:
        locks = schema.locks.c
        with self.engine.begin() as connection:
            connection.execute(delete(schema.locks).where(locks.name == name, locks.run_id == holder))

    @contextmanager
    def held(self, name: str, holder: str, stale_after: timedelta, timeout: float = 120.0) -> Iterator[None]:
        """The lock for the duration of a `with` block (waiting up to `timeout` for it)."""
        self.wait_for(name, holder, stale_after, timeout)
        try:
            yield
        finally:
            self.release(name, holder)


class Heartbeat:
    """Renews a lock every `every` seconds from a thread, and remembers whether a renewal found it lost."""

    def __init__(self, locks: Locks, name: str, holder: str, every: float) -> None:
        self._args = (name, holder)
        self._locks = locks
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{name}-{holder}", daemon=True)
        self.lost = False

    def _beat(self) -> None:
        while not self._stop.wait(self._every):
            try:
                if not self._locks.heartbeat(*self._args):
                    self.lost = True
                    return
            except Exception:  # a state store that is briefly unreachable: try again next beat
                continue

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
