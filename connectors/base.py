"""What every connector provides."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from pipeline.documents import DocumentRef


class Connector(Protocol):
    """Lists documents of one source and reads their bytes.

    `list()` must be cheap per document (no content reads beyond what identity
    needs) and stream, so that an estate of millions never sits in memory.
    """

    source_name: str

    def list(self) -> Iterator[DocumentRef]: ...

    def read(self, ref: DocumentRef) -> bytes: ...
