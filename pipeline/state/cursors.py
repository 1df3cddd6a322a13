"""Listing cursors: where each source's next listing starts (pipeline/run/listing.py decides how to list).

A cursor is saved only by a run that committed completed, so a failed or incomplete night never moves
a source's listing past documents it did not account for. Next to it: its key, what it is valid for
(the work the run did on what it listed and the source's own settings: a new task or model, or a
wider glob, must see every document again, so a cursor saved under another key is not used), and
when the source was last listed in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select, update

from pipeline.state import schema


@dataclass(frozen=True)
class SavedCursor:
    source: str
    cursor: str | None
    key: str | None  # what the cursor is valid for (pipeline/run/listing.py: cursor_key)
    cursor_run_id: str | None
    full_listing_at: datetime | None
    full_listing_run_id: str | None


class ListingCursors:
    """The `listing_cursors` table of the state store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, source: str) -> SavedCursor | None:
        table = schema.listing_cursors
        with self.engine.connect() as connection:
            row = connection.execute(select(table).where(table.c.source == source)).first()
        if row is None:
            return None
        full_at = row.full_listing_at
        if full_at is not None and full_at.tzinfo is None:  # SQLite hands back naive times (stored as UTC)
            full_at = full_at.replace(tzinfo=UTC)
        return SavedCursor(row.source, row.cursor, row.cursor_key, row.cursor_run_id, full_at, row.full_listing_run_id)

    def save(
        self,
        source: str,
        cursor: str | None,
        key: str,
        run_id: str,
        full_listing_at: datetime | None,
    ) -> None:
        """Record the cursor a completed run's listing started from; `full_listing_at` when it listed in full."""
        table = schema.listing_cursors
        now = datetime.now(UTC)
        values: dict[str, object] = {
            "cursor": cursor,
            "cursor_key": key,
            "cursor_run_id": run_id,
            "updated_at": now,
        }
        if full_listing_at is not None:
            values |= {"full_listing_at": full_listing_at, "full_listing_run_id": run_id}
        with self.engine.begin() as connection:
            changed = connection.execute(update(table).where(table.c.source == source).values(**values)).rowcount
            if not changed:
                connection.execute(insert(table).values(source=source, **values))

    def forget(self, source: str | None = None) -> int:
        """Drop the cursor of `source` (every source: None): its next listing is a full one."""
        table = schema.listing_cursors
        statement = delete(table) if source is None else delete(table).where(table.c.source == source)
        with self.engine.begin() as connection:
            return int(connection.execute(statement).rowcount)
