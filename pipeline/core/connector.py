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
from typing import Protocol

from pydantic import BaseModel

from pipeline.core.documents import DocumentRef


@dataclass(frozen=True)
class SourceLimits:
    """What a connector may read of one document, from the run's settings."""

    max_file_bytes: int = 100 * 1024 * 1024


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
