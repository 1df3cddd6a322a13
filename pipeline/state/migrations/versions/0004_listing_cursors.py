"""Listing cursors: where each source's next listing starts, and when it was last listed in full;
the reason code of a document's last failure (a changes-only listing lists some failures again).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "listing_cursors",
        sa.Column("source", sa.String(512), primary_key=True),
        sa.Column("cursor", sa.Text),
        sa.Column("work_fingerprint", sa.String(64)),
        sa.Column("cursor_run_id", sa.String(64)),
        sa.Column("full_listing_at", sa.DateTime(timezone=True)),
        sa.Column("full_listing_run_id", sa.String(64)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    )
    with op.batch_alter_table("documents") as table:
        table.add_column(sa.Column("last_reason", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("documents") as table:
        table.drop_column("last_reason")
    op.drop_table("listing_cursors")
