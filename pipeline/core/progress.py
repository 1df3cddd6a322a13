"""Progress events from the core, for whoever is watching (the CLI's progress bar, logs).

The run calls `documents_planned(total)` as its shard plan grows and
`document_done(uri, status)` as each document ends; a front end installs a
listener with `listening(listener)`. Every event also goes to the log
(`assay.progress`), listener or not: a failed document at WARNING, the rest at
DEBUG (a night of a million documents should not put a million lines in the
Prefect UI; each shard logs one line at INFO, pipeline/run/shard.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

logger = logging.getLogger("assay.progress")


class ProgressListener(Protocol):
    def documents_planned(self, total: int) -> None:
        """`total` documents listed so far (it grows as the sources are listed, shard by shard)."""
        ...

    def document_done(self, uri: str, status: str) -> None: ...


_listeners: list[ProgressListener] = []


@contextmanager
def listening(listener: ProgressListener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def documents_planned(total: int) -> None:
    logger.debug("%d documents listed so far", total)
    for listener in list(_listeners):
        listener.documents_planned(total)


def document_done(uri: str, status: str) -> None:
    logger.log(logging.WARNING if status == "failed" else logging.DEBUG, "%s: %s", status, uri)
    for listener in list(_listeners):
        listener.document_done(uri, status)
