"""The ledger's heads, recorded outside the lake at every commit, so that a lake cut back is noticed.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_heads",
        sa.Column("sequence", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("commit_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key_id", sa.String(64)),
        sa.Column("recorded_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("ledger_heads")
