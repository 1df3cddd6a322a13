"""Parsing ahead: the next shard is read and parsed while the model works on this one (`[parsing] ahead`).

Without it a shard parses, then decodes, and the cores take turns. With it the
executor announces each shard's successor; once a shard's own parsing is done
(`begin`), one background thread of this process reads and parses the next
shard (its files go to the parsing processes) while the main thread runs the
model. When the next shard's turn comes, `take` hands over what was parsed
(waiting for the rest). Only reading and parsing run ahead: the model and the
landing of files stay in shard order on the main thread, so a shard's rows,
files and counts are the same as without it.

The cores must be split for it to pay: `[model] n_threads` + `[parsing] workers`
no more than the cores (a warning at the run's start says so otherwise);
docs/performance.md measures which split wins on 2 cores and when it loses.

A failure of the parse that ran ahead (the state store gone, a bug) is raised
where the shard takes it, as it would have been raised parsing it there; a shard
that is retried parses again in the main thread. Shards handed to Dask or to
shard workers are not parsed ahead (each process works on one shard at a time).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from pipeline.core.resources import available_cores, cpu_quota
from pipeline.run.context import RunContext
from pipeline.run.doctor import check_cores
from pipeline.run.plan import Shard
from pipeline.run.work import ParsedShard

logger = logging.getLogger(__name__)

ParseShard = Callable[[RunContext, Shard], ParsedShard]


class ParseAhead:
    """One background thread that parses the shard after the one being processed."""

    def __init__(self, context: RunContext, parse: ParseShard) -> None:
        self._context = context
        self._parse = parse
        self._lock = threading.Lock()
        self._next: Shard | None = None  # announced, not started
        self._started: tuple[int, Future[ParsedShard]] | None = None  # (shard index, its parse)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assay-parse-ahead")

    def announce(self, shards: Iterable[Shard]) -> Iterator[Shard]:
        """The shards in order; each is handed out once its successor is known (and announced here)."""
        stream = iter(shards)
        current = next(stream, None)
        while current is not None:
            following = next(stream, None)
            with self._lock:
                self._next = following
            yield current
            current = following

    def begin(self) -> None:
        """Start parsing the announced next shard in the background (the current one's parsing is done)."""
        with self._lock:
            if self._next is None or self._started is not None:
                return
            shard, self._next = self._next, None
            # In the caller's context (its log lines go where the current shard's go: the Prefect UI).
            here = contextvars.copy_context()
            self._started = (shard.index, self._thread.submit(here.run, self._parse, self._context, shard))

    def take(self, shard: Shard) -> ParsedShard | None:
        """What was parsed ahead for `shard` (waiting for it to finish), or None: parse it here.

        A shard parsed ahead that never came to be processed (the executor gave it up after its
        retries) is dropped once a later shard comes: nothing of it was landed.
        """
        with self._lock:
            if self._started is None:
                return None
            index, future = self._started
            if index < shard.index:
                logger.info("shard %d was parsed ahead but not processed; its parse is dropped", index)
                self._started = None
                return None
            if index != shard.index:  # an earlier shard tried again: the parse ahead waits for its own
                return None
            self._started = None
        return future.result()

    def close(self) -> None:
        """Wait for a parse still running (a run that stops early) and stop the thread."""
        self._thread.shutdown(wait=True, cancel_futures=True)


_AHEAD: dict[str, ParseAhead] = {}  # run id -> its parse-ahead (threads: not part of a pickled context)


@contextmanager
def parsing_ahead(context: RunContext, shards: Iterable[Shard], parse: ParseShard) -> Iterator[Iterator[Shard]]:
    """The run's shards to process in order; with `[parsing] ahead`, each next one parses in the background."""
    settings = context.settings
    if not settings.parsing.ahead:
        yield iter(shards)
        return
    cores = check_cores(settings, available_cores(), cpu_quota())  # `assay doctor`'s own judgement
    if cores.status != "ok":
        logger.warning("%s; %s", cores.detail, cores.fix)
    ahead = ParseAhead(context, parse)
    _AHEAD[context.run_id] = ahead
    try:
        yield ahead.announce(shards)
    finally:
        _AHEAD.pop(context.run_id, None)
        ahead.close()


def parse_ahead_of(run_id: str) -> ParseAhead | None:
    """The parse-ahead of a run executed in this process, if it has one."""
    return _AHEAD.get(run_id)
