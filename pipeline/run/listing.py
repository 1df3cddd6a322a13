"""How a run lists each source: only what changed since the last completed run, or everything.

A connector that keeps a cursor (`ListsChanges`: local, smb, s3, sql with a version column, imap)
hands one out just before its listing starts. A run that commits completed saves it
(pipeline/state/cursors.py) and the next night lists only what changed since. A full listing is
taken instead, and says why, when:

- the connector keeps no cursor, or `[listing] changes_only = false`;
- it is asked for (`assay run --full-listing`, the flow's `full_listing` parameter) or
  `retry_failed = true`;
- the source has no saved cursor (its first run, or the last completed one listed it another way);
- the work changed since the cursor's run (a task, the model, the code versions, parse settings, an
  installed converter), or the source's own settings did (its folder, its include/exclude globs, its
  table): every document must be looked at again, and files a wider glob now selects were never
  seen;
- the last full listing is `[listing] full_every_days` old (weekly by default): only a full
  listing finds deleted documents, and what a time-stamp cursor cannot see (a file copied in with
  an old time stamp, a database row committed late with an earlier updated-at).

Deletions are recorded only for sources listed in full (pipeline/run/finish.py). A failed or
incomplete run saves no cursor: the next night lists from the same place again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

from pydantic import BaseModel

from pipeline.core.connector import Connector, ListsChanges
from pipeline.core.documents import DocumentRef
from pipeline.core.errors import Reason
from pipeline.core.hashing import fingerprint
from pipeline.core.settings import Settings
from pipeline.state.cursors import SavedCursor
from pipeline.state.store import StateStore

logger = logging.getLogger(__name__)

# Failures a changes-only listing lists again (the others repeat with the same bytes, or are seen
# again when the document changes; docs/operations.md, "Nightly runs").
RETRIED_EVERY_RUN = (Reason.READ_ERROR.value, Reason.INTERNAL_ERROR.value, Reason.PARSER_CRASHED.value)


class SourceListing(BaseModel):
    """How one source is listed in this run (recorded in the run's `listing` column)."""

    full: bool
    why: str
    since: str | None = None  # the saved cursor a changes-only listing starts from
    cursor: str | None = None  # handed out before this listing: saved when the run commits completed

    def describe(self) -> str:
        return f"full listing ({self.why})" if self.full else f"changes since cursor {self.since} ({self.why})"


def plan_listings(
    sources: Mapping[str, Connector],
    state: StateStore,
    settings: Settings,
    work_fingerprint: str,
    started_at: datetime,
    full_listing: bool = False,
) -> dict[str, SourceListing]:
    """Per source: list in full or only the changes, and the cursor to save if this run completes."""
    listings: dict[str, SourceListing] = {}
    for name, connector in sources.items():
        cursor = connector.cursor() if isinstance(connector, ListsChanges) else None
        saved = state.cursors.get(name)
        full_why = _why_full(connector, cursor, saved, settings, work_fingerprint, started_at, full_listing)
        if full_why is not None:
            listing = SourceListing(full=True, why=full_why, cursor=cursor)
        else:
            assert saved is not None and saved.full_listing_at is not None  # _why_full checked both
            due = saved.full_listing_at + timedelta(days=settings.listing.full_every_days)
            listing = SourceListing(
                full=False,
                why=f"next full listing after {due:%Y-%m-%d %H:%M} UTC",
                since=saved.cursor,
                cursor=cursor,
            )
        logger.info("source %s: %s", name, listing.describe())
        listings[name] = listing
    return listings


def _why_full(
    connector: Connector,
    cursor: str | None,
    saved: SavedCursor | None,
    settings: Settings,
    work_fingerprint: str,
    started_at: datetime,
    asked: bool,
) -> str | None:
    """Why this source is listed in full, or None when only its changes (since `saved`) are listed."""
    kind = getattr(connector.config, "connector", "source")
    if not isinstance(connector, ListsChanges):
        return f"the {kind} connector keeps no cursor"
    if cursor is None:
        return f"the {kind} source keeps no cursor as configured"
    if not settings.listing.changes_only:
        return "listing.changes_only = false"
    if asked:
        return "a full listing was asked for"
    if settings.retry_failed:
        return "retry_failed = true"
    if settings.listing.full_every_days == 0:
        return "listing.full_every_days = 0"
    if saved is None or saved.cursor is None or saved.full_listing_at is None:
        return "no completed run saved a cursor for this source"
    if saved.key != cursor_key(connector, work_fingerprint):
        return (
            "the work or the source's settings changed since the cursor was saved "
            "(a task, the model, code or parse settings, the source's path or globs)"
        )
    age = started_at - saved.full_listing_at
    if age >= timedelta(days=settings.listing.full_every_days):
        every = settings.listing.full_every_days
        return f"the last full listing was {age.days} days ago (listing.full_every_days = {every:g})"
    return None


def cursor_key(connector: Connector, work_fingerprint: str) -> str:
    """What a saved cursor is valid for: the run's work and the source's settings (secrets masked)."""
    return fingerprint("cursor", work_fingerprint, connector.config.model_dump(mode="json"))


def list_documents(
    sources: Mapping[str, Connector],
    listings: Mapping[str, SourceListing] | None = None,
    state: StateStore | None = None,
) -> Iterator[DocumentRef]:
    """Every document of every source, listed as its `SourceListing` says (none given: in full).

    A changes-only listing also lists again, from the state store, the documents whose last outcome
    was a failure that may pass (`RETRIED_EVERY_RUN`: a read error, a crashed parser), as a full
    listing would: they are tried every night until they succeed, change or go.
    """
    for name, connector in sources.items():
        listing = (listings or {}).get(name)
        if listing is None or listing.full or listing.since is None or not isinstance(connector, ListsChanges):
            yield from connector.list()
            continue
        retry = {}
        if state is not None:
            retry = {uri: (version, size) for uri, version, size in state.failed_to_retry(name, RETRIED_EVERY_RUN)}
        for ref in connector.list_changes(listing.since):
            retry.pop(ref.uri, None)
            yield ref
        for uri, (version, size) in retry.items():
            yield DocumentRef(source=name, uri=uri, version=version, size=size)


def save_cursors(
    sources: Mapping[str, Connector],
    state: StateStore,
    listings: Mapping[str, SourceListing],
    work_fingerprint: str,
    run_id: str,
    started_at: datetime,
) -> None:
    """After a run committed completed: each source's next listing starts where this one did."""
    for name, listing in listings.items():
        if listing.cursor is None:
            continue
        key = cursor_key(sources[name], work_fingerprint)
        state.cursors.save(name, listing.cursor, key, run_id, started_at if listing.full else None)
