"""The shard plan: a run's listed documents, in shards, as a stream (never held whole).

Sources are listed and their documents hashed as shards are taken. A document
whose (non-empty) bytes were already listed in this run is planned as a
duplicate of the first URI that had them; it shares that one's results.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from pydantic import BaseModel

from pipeline.core import progress
from pipeline.core.documents import DocumentRef


class PlannedDocument(BaseModel):
    ref: DocumentRef
    duplicate_of: str | None = None


class Shard(BaseModel):
    index: int
    documents: list[PlannedDocument]
    attempt: int = 1  # > 1 when a worker that leased it died and another took it over

    @property
    def part(self) -> str:
        """The part of its lake file names (a new attempt never collides with a dead one's files)."""
        return f"{self.index:05d}" if self.attempt == 1 else f"{self.index:05d}-{self.attempt}"


class ShardPlan:
    """A run's shards as a stream. Iterate it once.

    As it goes it counts the documents planned (the run's `documents_in`), the
    seconds spent listing, and tells progress listeners how many documents are
    planned so far.
    """

    def __init__(self, refs: Iterable[DocumentRef], shard_size: int) -> None:
        self._shards = _shards(refs, shard_size)
        self.documents = 0
        self.shards = 0
        self.seconds = 0.0

    def __iter__(self) -> Iterator[Shard]:
        while True:
            started = time.perf_counter()
            shard = next(self._shards, None)
            self.seconds += time.perf_counter() - started
            if shard is None:
                return
            self.documents += len(shard.documents)
            self.shards += 1
            progress.documents_planned(self.documents)
            yield shard


def _shards(refs: Iterable[DocumentRef], shard_size: int) -> Iterator[Shard]:
    """One shard in memory at a time (plus the content hashes seen so far)."""
    seen: dict[str, str] = {}
    current: list[PlannedDocument] = []
    index = 0
    for ref in refs:
        comparable = bool(ref.sha256) and ref.size > 0  # empty files are failures, not duplicates
        duplicate_of = seen.get(ref.sha256) if comparable and ref.sha256 else None
        if comparable and ref.sha256 and duplicate_of is None:
            seen[ref.sha256] = ref.uri
        current.append(PlannedDocument(ref=ref, duplicate_of=duplicate_of))
        if len(current) >= shard_size:
            yield Shard(index=index, documents=current)
            index += 1
            current = []
    if current:
        yield Shard(index=index, documents=current)
