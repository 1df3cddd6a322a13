"""The first state schema: documents, work_done, runs, locks.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("version", sa.String(256)),
        sa.Column("content_sha256", sa.String(64)),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("first_seen_run", sa.String(64)),
        sa.Column("last_seen_run", sa.String(64)),
        sa.Column("deleted_in_run", sa.String(64)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("source", "uri", name="uq_documents_source_uri"),
    )
    op.create_table(
        "work_done",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("task", sa.String(128)),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("landed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_work_done_run_id", "work_done", ["run_id"])
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("host", sa.String(256)),
        sa.Column("pid", sa.Integer),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "locks",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("host", sa.String(256)),
        sa.Column("pid", sa.Integer),
        sa.Column("acquired_at", sa.DateTime(timezone=True)),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("locks")
    op.drop_table("runs")
    op.drop_index("ix_work_done_run_id", "work_done")
    op.drop_table("work_done")
    op.drop_table("documents")
