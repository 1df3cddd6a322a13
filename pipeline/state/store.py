"""The state store: documents seen, work done, runs, the run lock, and shard leases, through SQLAlchemy 2.

SQLite by default (`<data_dir>/state.sqlite`), PostgreSQL in production
(`state_url = "postgresql+psycopg://..."`). The schema is created and upgraded
by Alembic migrations (`migrations/`), never by hand. The shard leases of shared
runs are `StateStore.shards` (pipeline/state/shards.py).

The lake's manifests are the truth about what has landed; `work_done` is an
index of it for fast skipping. Recovery (pipeline/state/recovery.py, at the start
of every run) makes the two agree after a crash.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, bindparam, create_engine, delete, event, insert, select, update

from pipeline.state import schema
from pipeline.state.cursors import ListingCursors
from pipeline.state.locks import Locks
from pipeline.state.shards import ShardLeases

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


# Statements whose values are bound at execution (`expanding` IN): a statement built per batch keeps
# that batch's values alive in SQLAlchemy's statement cache, memory that grows with the estate.
_LANDED = select(schema.work_done.c.fingerprint).where(
    schema.work_done.c.fingerprint.in_(bindparam("fingerprints", expanding=True))
)


class WorkMark(NamedTuple):
    """A piece of work whose results a run landed (`work_done`), so later runs skip it."""

    fingerprint: str
    kind: Literal["parse", "extract", "failed"]
    content_sha256: str
    task: str | None  # extract: the task; failed: the failure reason; parse: None


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'state.sqlite').resolve()}"


def make_engine(url: str) -> Engine:
    engine = create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def alembic_config() -> Config:
    """Alembic's configuration for this code's migrations (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


class Revisions(NamedTuple):
    """Where a state store's schema stands against this code's migrations."""

    current: str | None  # None: no schema yet
    head: str  # the newest revision this code has
    known: bool  # whether `current` is one of this code's revisions (False: a newer Assay upgraded it)


def revisions(engine: Engine) -> Revisions:
    """The store's schema revision against this code's newest. Reads only: nothing is created or upgraded
    (`assay doctor`; a run upgrades through `migrate`)."""
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    assert head is not None, "the migrations folder has no head revision"
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    known = current is None or any(script.revision == current for script in scripts.walk_revisions())
    return Revisions(current, head, known)


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration."""
    config = alembic_config()
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            # pysqlite runs DDL outside a transaction unless told: an upgrade cut short (a full disk) would
            # leave half a schema that no later run can upgrade. One transaction: all of it or nothing.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()


class StateStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        migrate(self.engine)
        self.shards = ShardLeases(self.engine)
        self.locks = Locks(self.engine)
        self.cursors = ListingCursors(self.engine)

    # -- runs --------------------------------------------------------------------------------

    def run_started(self, run_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                insert(schema.runs).values(
                    run_id=run_id,
                    status="running",
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=datetime.now(UTC),
                )
            )

    def run_finished(self, run_id: str, status: str = "completed") -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(schema.runs)
                .where(schema.runs.c.run_id == run_id)
                .values(status=status, finished_at=datetime.now(UTC))
            )

    def unfinished_runs(self) -> list[str]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(schema.runs.c.run_id).where(schema.runs.c.status == "running"))
            return [r.run_id for r in rows]

    def completed_runs(self) -> list[str]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(schema.runs.c.run_id).where(schema.runs.c.status == "completed"))
            return [r.run_id for r in rows]

    def save_run_context(self, run_id: str, context_json: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(schema.runs).where(schema.runs.c.run_id == run_id).values(context=context_json))

    def run_context(self, run_id: str) -> tuple[str, str | None]:
        """The run's status and the context its workers join with; KeyError for an unknown run."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(schema.runs.c.status, schema.runs.c.context).where(schema.runs.c.run_id == run_id)
            ).one_or_none()
        if row is None:
            raise KeyError(run_id)
        return row.status, row.context

    # -- the ledger's heads ------------------------------------------------------------------

    def record_head(self, sequence: int, sha256: str, commit_id: str, kind: str, key_id: str | None) -> None:
        """Remember a manifest just appended to the ledger (outside the lake it describes)."""
        with self.engine.begin() as connection:
            connection.execute(
                insert(schema.ledger_heads).values(
                    sequence=sequence,
                    sha256=sha256,
                    commit_id=commit_id,
                    kind=kind,
                    key_id=key_id,
                    recorded_at=datetime.now(UTC),
                )
            )

    def recorded_heads(self) -> list[tuple[int, str]]:
        """(sequence, SHA-256) of every manifest recorded, in order."""
        heads = schema.ledger_heads.c
        with self.engine.connect() as connection:
            rows = connection.execute(select(heads.sequence, heads.sha256).order_by(heads.sequence)).all()
        return [(int(r.sequence), str(r.sha256)) for r in rows]

    # -- work done ---------------------------------------------------------------------------

    def done(self, fingerprints: Iterable[str]) -> set[str]:
        """Which of these fingerprints have landed."""
        wanted = list(set(fingerprints))
        found: set[str] = set()
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                rows = connection.execute(_LANDED, {"fingerprints": wanted[start : start + 500]})
                found.update(r.fingerprint for r in rows)
        return found

    def failures_landed(self, fingerprints: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Which of these `failed` fingerprints have landed: fingerprint -> (reason, run_id)."""
        wanted = list(set(fingerprints))
        found: dict[str, tuple[str, str]] = {}
        table = schema.work_done.c
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                rows = connection.execute(
                    select(table.fingerprint, table.task, table.run_id).where(
                        table.fingerprint.in_(bindparam("fingerprints", expanding=True)), table.kind == "failed"
                    ),
                    {"fingerprints": wanted[start : start + 500]},
                )
                found.update((r.fingerprint, (str(r.task), r.run_id)) for r in rows)
        return found

    def mark_done(self, run_id: str, items: Iterable[WorkMark]) -> None:
        """Record work as landed by `run_id`."""
        now = datetime.now(UTC)
        # One row per fingerprint: the same work can be reported twice (two files with the same bytes
        # that both fail the same way are both parsed: empty files are never treated as duplicates).
        rows = list(
            {
                f: {"fingerprint": f, "kind": k, "content_sha256": c, "task": t, "run_id": run_id, "landed_at": now}
                for f, k, c, t in items
            }.values()
        )
        if not rows:
            return
        with self.engine.begin() as connection:
            existing: set[str] = set()
            for start in range(0, len(rows), 500):
                batch = [r["fingerprint"] for r in rows[start : start + 500]]
                existing.update(r.fingerprint for r in connection.execute(_LANDED, {"fingerprints": batch}))
            fresh = [r for r in rows if r["fingerprint"] not in existing]
            if fresh:
                connection.execute(insert(schema.work_done), fresh)

    def forget_run(self, run_id: str) -> int:
        """Drop the work marks of a run that never committed its manifest."""
        with self.engine.begin() as connection:
            result = connection.execute(delete(schema.work_done).where(schema.work_done.c.run_id == run_id))
            return int(result.rowcount or 0)

    # -- documents ---------------------------------------------------------------------------

    def record_seen(
        self, run_id: str, seen: Iterable[tuple[str, str, str, str | None, int, str | None, str | None]]
    ) -> None:
        """Record (source, uri, version, content_sha256, size, last_error, last_reason) as listed by `run_id`.

        In batches: one query finds which rows exist, then one executemany updates them and one
        inserts the rest (a nightly re-run of a million documents is a million updates).
        """
        now = datetime.now(UTC)
        documents = schema.documents.c
        rows = [
            {
                "b_source": source,
                "b_uri": uri,
                "version": version,
                "content_sha256": content_sha256,
                "size_bytes": size,
                "status": "active",
                "last_seen_run": run_id,
                "deleted_in_run": None,
                "last_error": error,
                "last_reason": reason,
                "updated_at": now,
            }
            for source, uri, version, content_sha256, size, error, reason in seen
        ]
        known_uris = select(documents.uri).where(  # values bound per batch, not kept in the statement cache
            documents.source == bindparam("source"), documents.uri.in_(bindparam("uris", expanding=True))
        )
        with self.engine.begin() as connection:
            for start in range(0, len(rows), 500):
                batch = rows[start : start + 500]
                existing: set[tuple[str, str]] = set()
                for source in {b["b_source"] for b in batch}:  # (source, uri) is the unique index
                    uris = [b["b_uri"] for b in batch if b["b_source"] == source]
                    found = connection.execute(known_uris, {"source": source, "uris": uris})
                    existing.update((str(source), str(r.uri)) for r in found)
                known = [b for b in batch if (b["b_source"], b["b_uri"]) in existing]
                fresh = [b for b in batch if (b["b_source"], b["b_uri"]) not in existing]
                if known:
                    connection.execute(
                        update(schema.documents)
                        .where(documents.source == bindparam("b_source"), documents.uri == bindparam("b_uri"))
                        .values({k: bindparam(k) for k in known[0] if not k.startswith("b_")}),
                        known,
                    )
                if fresh:
                    connection.execute(
                        insert(schema.documents),
                        [
                            {
                                **{k: v for k, v in b.items() if not k.startswith("b_")},
                                "source": b["b_source"],
                                "uri": b["b_uri"],
                                "first_seen_run": run_id,
                            }
                            for b in fresh
                        ],
                    )

    def known_contents(self, source: str, versions: dict[str, str]) -> dict[str, str]:
        """URI -> content SHA-256, for the URIs of `source` last seen at the version given (uri -> version).

        A connector that cannot hash while listing (an object store, a database) names a version
        instead; the same version seen before means the same bytes, so the run plans it unread.
        """
        documents = schema.documents.c
        known: dict[str, str] = {}
        uris = list(versions)
        # One statement, its values bound at execution: a statement built per batch would keep each
        # batch's URIs alive in SQLAlchemy's statement cache (found by bench/connectors.py).
        query = select(documents.uri, documents.version, documents.content_sha256).where(
            documents.source == bindparam("source"),
            documents.uri.in_(bindparam("uris", expanding=True)),
            documents.content_sha256.is_not(None),
        )
        with self.engine.connect() as connection:
            for start in range(0, len(uris), 500):
                found = connection.execute(query, {"source": source, "uris": uris[start : start + 500]})
                known.update((str(r.uri), str(r.content_sha256)) for r in found if r.version == versions[str(r.uri)])
        return known

    def failed_to_retry(self, source: str, reasons: Iterable[str]) -> Iterator[tuple[str, str, int]]:
        """(uri, version, size) of the active documents of `source` whose last outcome was a failure for
        one of `reasons`: a changes-only listing lists them again (their failure may have been passing)."""
        documents = schema.documents.c
        query = (
            select(documents.uri, documents.version, documents.size_bytes)
            .where(documents.source == source, documents.status == "active", documents.last_reason.in_(list(reasons)))
            .order_by(documents.uri)
        )
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                yield str(row.uri), str(row.version or ""), int(row.size_bytes or 0)

    def mark_deleted(self, run_id: str, source: str) -> list[tuple[str, str | None]]:
        """Active documents of `source` not listed by `run_id`: mark them deleted; return (uri, sha) of each."""
        now = datetime.now(UTC)
        gone_filter = (
            (schema.documents.c.source == source)
            & (schema.documents.c.status == "active")
            & (schema.documents.c.last_seen_run != run_id)
        )
        with self.engine.begin() as connection:
            rows = connection.execute(
                select(schema.documents.c.uri, schema.documents.c.content_sha256).where(gone_filter)
            ).all()
            connection.execute(
                update(schema.documents)
                .where(gone_filter)
                .values(status="deleted", deleted_in_run=run_id, updated_at=now)
            )
        return [(r.uri, r.content_sha256) for r in rows]
