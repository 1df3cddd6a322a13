"""Tables of the state store. Created and upgraded only by the Alembic migrations next to this file."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

# Every document URI ever listed, with the content it had when last seen.
documents = Table(
    "documents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(512), nullable=False),
    Column("uri", Text, nullable=False),
    Column("version", String(256)),
    Column("content_sha256", String(64)),
    Column("size_bytes", BigInteger),
    Column("status", String(32), nullable=False),  # active | deleted
    Column("last_error", Text),
    Column("last_reason", String(64)),  # the reason code of last_error (a changes-only listing retries some)
    Column("first_seen_run", String(64)),
    Column("last_seen_run", String(64)),
    Column("deleted_in_run", String(64)),
    Column("updated_at", DateTime(timezone=True)),
    UniqueConstraint("source", "uri", name="uq_documents_source_uri"),
)

# A piece of work whose results have landed (and are listed in a manifest), keyed by its fingerprint.
work_done = Table(
    "work_done",
    metadata,
    Column("fingerprint", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # parse | extract | failed
    Column("content_sha256", String(64), nullable=False),
    Column("task", String(128)),  # extract: the task; failed: the failure reason
    Column("run_id", String(64), nullable=False, index=True),
    Column("landed_at", DateTime(timezone=True)),
)

# Runs as the state store saw them: a run still `running` after its process died has crashed.
runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),  # running | completed | crashed
    Column("host", String(256)),
    Column("pid", Integer),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("context", Text),  # JSON: what a worker joining the run needs (pinned tasks, sources, model)
)

# The shards of a run that several workers share: a worker leases one, processes it, completes it.
# A lease that expires (its worker died) can be taken again; a completed shard never is.
shards = Table(
    "shards",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("shard_index", Integer, primary_key=True),
    Column("documents", Text, nullable=False),  # JSON of the shard's planned documents
    Column("status", String(16), nullable=False),  # pending | leased | done
    Column("owner", String(256)),  # host:pid:worker of the current or last lease
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("report", Text),  # JSON of the ShardReport, once done
    Column("updated_at", DateTime(timezone=True)),
    Index("ix_shards_run_status", "run_id", "status"),
)

# One row per lock name; holding it means owning the data directory's lake for a run.
locks = Table(
    "locks",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("host", String(256)),
    Column("pid", Integer),
    Column("acquired_at", DateTime(timezone=True)),
    Column("heartbeat_at", DateTime(timezone=True)),
)

# Every manifest a writer appended to the ledger, recorded outside the lake: the newest is the head
# `assay verify` expects to find (a lake whose newest manifests were deleted with their files is caught).
ledger_heads = Table(
    "ledger_heads",
    metadata,
    Column("sequence", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("commit_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # run | review | replay
    Column("key_id", String(64)),  # the signing key's id
    Column("recorded_at", DateTime(timezone=True)),
)

# Where each source's next listing starts: the cursor its connector handed out before the listing of the
# newest completed run, and when that source was last listed in full (pipeline/run/listing.py).
listing_cursors = Table(
    "listing_cursors",
    metadata,
    Column("source", String(512), primary_key=True),
    Column("cursor", Text),  # opaque to the run; None: no listing has completed since a full one was asked for
    Column("cursor_key", String(64)),  # what the cursor is valid for: the run's work and the source's settings
    Column("cursor_run_id", String(64)),
    Column("full_listing_at", DateTime(timezone=True)),  # the start of the newest completed full listing
    Column("full_listing_run_id", String(64)),
    Column("updated_at", DateTime(timezone=True)),
)
