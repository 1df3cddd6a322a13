"""The contract between a source of documents and a run (the connectors live in connectors/).

A run is handed its sources as `Connector`s; the core never picks or builds
one. `list()` streams `DocumentRef`s, cheaply (no content read beyond what
identity needs), so an estate of millions never sits in memory; `read(ref)`
returns the bytes. A connector raises `DocumentError` for a document it cannot
read (terminal for that document) and `TransientError` for what may work when
tried again (the run retries it, pipeline/core/retry.py). What a connector sees
but cannot read is still listed, as a ref with a `problem`, never dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from pipeline.core.documents import DocumentRef


@dataclass(frozen=True)
class SourceLimits:
    """The run's settings a connector follows: what it may read of one document, and how far back
    before the moment it was taken a time-stamp cursor reaches (`[listing] overlap_s`)."""

    max_file_bytes: int = 100 * 1024 * 1024
    cursor_overlap_s: float = 3600.0


class Connector(Protocol):
    """Lists the documents of one named source and reads their bytes."""

    @property
    def source_name(self) -> str:
        """The source's name: every `DocumentRef` it lists carries it."""
        ...

    @property
    def config(self) -> BaseModel:
        """The connector's own settings (recorded with each run, secrets masked)."""
        ...

    def list(self) -> Iterator[DocumentRef]: ...

    def read(self, ref: DocumentRef) -> bytes: ...


@runtime_checkable
class ListsChanges(Protocol):
    """A connector that can list only what changed since a cursor it handed out before.

    `cursor()` is asked just before a listing starts; the run saves it once it has committed
    completed, and hands it back to the next night's `list_changes(since=...)`. That listing must
    return every document added or changed since the cursor was taken (it may repeat some that
    did not change: the run recognises them by their version and reads nothing). Cursors are
    opaque strings to the run. Deletions cannot be seen this way: a full listing (weekly, or
    `assay run --full-listing`) finds them.
    """

    def cursor(self) -> str | None:
        """Where a listing starting now begins; None when this source, as configured, keeps no cursor."""
        ...

    def list_changes(self, since: str) -> Iterator[DocumentRef]: ...
