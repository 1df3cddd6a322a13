"""Shard leases, so that several workers can share one run; runs keep what their workers need to join.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("context", sa.Text))
    op.create_table(
        "shards",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("shard_index", sa.Integer, primary_key=True),
        sa.Column("documents", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(256)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("report", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_shards_run_status", "shards", ["run_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_shards_run_status", "shards")
    op.drop_table("shards")
    op.drop_column("runs", "context")
