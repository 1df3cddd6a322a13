"""Listing cursors: the column that says which source settings a cursor was taken under is named for what
it holds, `cursor_key` (a fingerprint of the work and the connector's settings), not `work_fingerprint`.

A cursor saved under 0004 held the work fingerprint alone; it no longer matches any key, so each source
is listed in full once after this upgrade (safe, and a new cursor is saved by that run).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("listing_cursors") as table:
        table.alter_column("work_fingerprint", new_column_name="cursor_key")


def downgrade() -> None:
    with op.batch_alter_table("listing_cursors") as table:
        table.alter_column("cursor_key", new_column_name="work_fingerprint")
