"""Partitioning in worker processes, so that no file can take the run down (the Apache Tika pattern).

unstructured and the libraries under it (pdfminer, python-docx, lxml, ...) can
hang on a crafted file, eat memory without bound, or crash the interpreter. So a
run does not partition in its own process: a pool of parsing processes
(`pebble`) does, each with

- a time limit per file (`parsing.timeout_s`): a file still parsing is killed
  with its worker and recorded as `parse_timeout`;
- a memory cap (`parsing.memory_mb`, the process's address space): a file that
  needs more is recorded as `parse_out_of_memory`;
- recycling after `parsing.files_per_worker` files, so slow leaks cannot pile up;
- crash isolation: a worker that dies (segfault, killed) is replaced and its
  file recorded as `parser_crashed` with the signal or exit code.

A PDF longer than `parsing.pdf_pages_per_part` pages is cut into page ranges,
each parsed as its own job (its own time limit and memory), and the parts'
elements are joined in page order before chunking: the document keeps one
canonical text with true page numbers.

Workers start from a fork server that has imported the parsing libraries
and loaded unstructured's language model once, so a recycled worker is cheap.
That preload takes about 4 s of one core; `start_parsing_processes` starts it
early (the CLI does before it imports Prefect), so that it runs on another
core while the run starts up instead of when the first document is handed over.
By default parsing and decoding never overlap in a run (a shard parses, then
decodes), so the pool takes the cores while it works and the model takes them
afterwards (docs/scaling.md); with
`[parsing] ahead` the next shard parses while the model works, on cores split
between them (pipeline/run/ahead.py).

Fault injection for the tests (`ASSAY_PARSE_FAULT`) is decided in the parent, and only in a process
that armed it (pipeline/core/faults.py).
"""

from __future__ import annotations

import atexit
import gc
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.core import faults
from pipeline.core.documents import Chunk, ParsedDocument
from pipeline.core.errors import ConfigError, DocumentError, Reason
from pipeline.core.settings import ChunkingSettings, ParsingSettings
from pipeline.parse.chunking import chunk_document
from pipeline.parse.ocr import OcrRead
from pipeline.parse.partition import (
    build_document,
    check_partitionable,
    partition_with_ocr,
    pdf_page_count,
    split_pdf,
)

logger = logging.getLogger(__name__)

# Imported once by the fork server, so each (recycled) worker starts with them loaded, and with the
# language model unstructured uses (pipeline/parse/preload.py).
_PRELOAD = ["pipeline", "pipeline.parse.workers", "pipeline.parse.preload"]


@dataclass(frozen=True)
class _Part:
    """One parse job: a whole file, or a page range of a long PDF."""

    data: bytes
    filename: str
    strategy: str
    pages_per_part: int
    filetype: str | None = None  # known for a page range
    first_page: int = 1
    last_page: int | None = None  # None: the whole file
    caps: tuple[int, int] = (200_000, 50_000_000)  # parsing.max_elements, parsing.max_text_chars
    fault: str | None = None  # tests only (pipeline/core/faults.py)
    ocr_languages: tuple[str, ...] = ()  # empty: OCR off (parsing.ocr)


@dataclass(frozen=True)
class _Parsed:
    """What a worker sends back: the elements, or the page ranges a long PDF must be cut into."""

    filetype: str
    elements: list[Any] | None = None
    ranges: list[tuple[int, int, bytes]] | None = None
    ocr: list[OcrRead | None] | None = None  # per element: how OCR read it (None: not OCR)
    warnings: tuple[str, ...] = ()  # what the parsing libraries warned about this file


# Warnings about the libraries' code, not about the file being parsed: not recorded with the document.
_CODE_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ImportWarning, ResourceWarning)
_MAX_WARNINGS = 20  # distinct warnings kept per file (or PDF page range)


def _parse_part(part: _Part, record_warnings: bool = False) -> _Parsed:
    """In a worker: check and partition a file, or cut a long PDF into page ranges (all of it isolated).

    With `record_warnings` (a parsing process's own job: `warnings.catch_warnings` is not thread-safe, so
    not in the run's process) what the libraries warn about the file (a guessed text encoding, say) comes
    back with it instead of going to the worker's stderr, where no one could tell which file it was about.

    A MemoryError is the memory cap biting: what the parse held is let go (outside the `except`, so
    the traceback does not keep it alive) before the worker takes its next file.
    """
    try:
        if not record_warnings:
            return _parse_in_worker(part)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")  # once per place in the code: a file cannot flood it
            parsed = _parse_in_worker(part)
        said = (f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, _CODE_WARNINGS))
        return replace(parsed, warnings=tuple(dict.fromkeys(said))[:_MAX_WARNINGS])
    except MemoryError:
        pass
    gc.collect()
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    cap = f"{limit // (1024 * 1024)} MiB (parsing.memory_mb)" if limit > 0 else "the memory available"
    raise DocumentError(Reason.PARSE_OUT_OF_MEMORY, f"parsing needed more than {cap}", part.filetype)


def _parse_in_worker(part: _Part) -> _Parsed:
    faults.misbehave(part.fault)
    filetype = part.filetype or check_partitionable(part.data, part.filename, bool(part.ocr_languages))
    pages = None if part.last_page is None else part.last_page - part.first_page + 1
    if part.filetype is None and filetype == "pdf":
        pages = pdf_page_count(part.data)
        if pages > part.pages_per_part:
            ranges = [
                (first, min(first + part.pages_per_part - 1, pages), data)
                for first, data in split_pdf(part.data, part.pages_per_part)
            ]
            return _Parsed(filetype, ranges=ranges)
    elements, ocr = partition_with_ocr(
        part.data, part.filename, part.strategy, filetype, part.first_page, part.ocr_languages, pages
    )
    _Size().add(elements, part.caps, filetype)  # a bomb stops here, in the worker, before it is sent back
    return _Parsed(filetype, elements=elements, ocr=ocr)


@dataclass
class _Size:
    """Elements and characters of a document's parse so far, held under `parsing.max_*`."""

    elements: int = 0
    chars: int = 0

    def add(self, elements: list[Any], caps: tuple[int, int], filetype: str | None) -> None:
        self.elements += len(elements)
        self.chars += sum(len(element.text) for element in elements)
        max_elements, max_text_chars = caps
        if self.elements > max_elements:
            raise DocumentError(
                Reason.TOO_LARGE,
                f"parsing gave more than parsing.max_elements={max_elements:,} elements ({self.elements:,})",
                filetype,
            )
        if self.chars > max_text_chars:
            raise DocumentError(
                Reason.TOO_LARGE,
                f"parsing gave more than parsing.max_text_chars={max_text_chars:,} characters ({self.chars:,})",
                filetype,
            )


def _limit_memory(memory_mb: int) -> None:
    """Worker initialiser: cap the address space, so a runaway parse fails with MemoryError.

    Each worker also gets a home folder of its own, where LibreOffice (legacy .doc files) keeps its
    profile: a profile is locked by the instance using it, and workers should not wait on each other's
    (a precaution: two conversions at once also passed with one shared profile here). And tesseract,
    which these processes start, runs one OpenMP thread: the other parsing processes use the other cores.
    Set here, in parsing processes only: the run's own process runs llama.cpp's OpenMP threads.
    """
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ["OMP_THREAD_LIMIT"] = "1"
    home = tempfile.mkdtemp(prefix="assay-parse-home-")
    os.environ["HOME"] = home
    atexit.register(shutil.rmtree, home, True)


def _failure(part: _Part, exc: BaseException, limits: ParsingSettings) -> DocumentError:
    """The DocumentError that a failed parse job stands for."""
    from pebble import ProcessExpired

    where = "" if part.last_page is None else f" (pages {part.first_page}-{part.last_page})"
    if isinstance(exc, DocumentError):
        if where:
            exc.args = (f"{exc}{where}",)
        exc.filetype = exc.filetype or part.filetype
        return exc
    if isinstance(exc, FutureTimeout):
        return DocumentError(
            Reason.PARSE_TIMEOUT,
            f"parsing{where} took longer than parsing.timeout_s={limits.timeout_s:g}; its worker was stopped",
            part.filetype,
        )
    if isinstance(exc, MemoryError):  # parsing in this process (parsing.workers = 0)
        return DocumentError(Reason.PARSE_OUT_OF_MEMORY, f"parsing{where} ran out of memory", part.filetype)
    if isinstance(exc, ProcessExpired):
        code = exc.exitcode
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        return DocumentError(Reason.PARSER_CRASHED, f"the parsing process died{where} ({how})", part.filetype)
    return DocumentError(Reason.PARSE_ERROR, f"{type(exc).__name__}: {exc}{where}"[:2000], part.filetype)


def start_parsing_processes(limits: ParsingSettings) -> None:
    """Start the fork server the parsing processes come from, now, and return at once.

    Its preload then runs in its own process while the caller goes on (Prefect's import and ephemeral
    server, the state store, the listing); the pool made later forks its workers from the same server.
    Nothing happens when parsing runs in the calling process (`parsing.workers = 0`) or the server runs.
    Only a head start: if the server cannot start now, the pool tries again and says why it cannot.
    A run that parses nothing (an unchanged re-run) pays the preload on a spare core for nothing.
    """
    try:
        _start_fork_server(limits)
    except ConfigError as exc:
        logger.debug("the parsing processes were not started early: %s", exc)


def _start_fork_server(limits: ParsingSettings) -> None:
    """Start the fork server (if it is not running), or `ConfigError` saying why it cannot: a machine's
    problem, not a document's, so the shard stops and its documents wait for the next run."""
    if limits.processes == 0:
        return
    multiprocessing.get_context("forkserver").set_forkserver_preload(_PRELOAD)
    try:
        with _sigint_ignored():
            multiprocessing.forkserver.ensure_running()
    except OSError as exc:
        hint = "`parsing.workers = 0` parses in the run's own process, without isolation"
        if "too long" in str(exc):  # the server's Unix socket lives under TMPDIR; its path has ~107 bytes
            hint = (
                f"their socket goes under TMPDIR ({tempfile.gettempdir()}): set TMPDIR to a shorter folder; or {hint}"
            )
        raise ConfigError(f"the parsing processes cannot start: {exc} ({hint})") from exc


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ctrl-C ignored while the fork server is started, so that it starts ignoring it too: the server
    ignores SIGINT only once its preload is done, and a Ctrl-C in the seconds before (the terminal sends
    it to every process of the command) printed a KeyboardInterrupt traceback from inside the preload
    under the run's own "Aborted!". Its workers inherit this; the run stops them itself."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change signal handlers
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class ParsePool:
    """The run's parsing processes. `submit` returns at once; `ParseJob.result` waits."""

    def __init__(self, limits: ParsingSettings) -> None:
        self.limits = limits
        self._pool: Any = None
        if limits.processes > 0:
            from pebble import ProcessPool

            _start_fork_server(limits)  # if no one did earlier
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPool(
                max_workers=limits.processes,
                max_tasks=limits.files_per_worker,
                initializer=_limit_memory,
                initargs=(limits.memory_mb,),
                context=context,
            )

    @property
    def ocr_languages(self) -> tuple[str, ...]:
        return tuple(self.limits.ocr_languages) if self.limits.ocr else ()

    @property
    def caps(self) -> tuple[int, int]:
        return self.limits.max_elements, self.limits.max_text_chars

    def schedule(self, part: _Part) -> Callable[[], _Parsed]:
        """Start one job; the returned callable waits for it (or, with no pool, runs it here)."""
        if self._pool is None:
            return lambda: _parse_part(part)
        future: Future[_Parsed] = self._pool.schedule(_parse_part, args=(part, True), timeout=self.limits.timeout_s)
        return future.result

    def submit(
        self, data: bytes, filename: str, content_sha256: str, strategy: str, chunking: ChunkingSettings
    ) -> ParseJob:
        """Start parsing one document; `result()` on the job gives its text and chunks."""
        part = _Part(
            data,
            filename,
            strategy,
            self.limits.pdf_pages_per_part,
            caps=self.caps,
            fault=faults.parse_fault(filename),
            ocr_languages=self.ocr_languages,
        )
        return ParseJob(self, content_sha256, chunking, part, self.schedule(part))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool.join()
            self._pool = None


@dataclass
class ParseJob:
    """A document being parsed."""

    pool: ParsePool
    content_sha256: str
    chunking: ChunkingSettings
    part: _Part
    wait: Callable[[], _Parsed]
    submitted_at: float = field(default_factory=time.perf_counter)  # perf_counter() when handed over
    warnings: list[str] = field(default_factory=list)  # what the parsers warned about it, once `result()` is in

    def result(self) -> tuple[ParsedDocument, list[Chunk]]:
        """The document and its chunks, or `DocumentError` with the reason it could not be parsed."""
        parsed = self._wait(self.part, self.wait)
        self.warnings = list(parsed.warnings)
        elements = parsed.elements or []
        ocr = parsed.ocr or [None] * len(elements)
        size = _Size()  # checked here too: the parent trusts no worker's answer, and sums a PDF's parts
        if parsed.ranges is not None:
            # A long PDF: its page ranges in parallel, then their elements in page order.
            parts = [
                _Part(
                    data,
                    self.part.filename,
                    self.part.strategy,
                    self.part.pages_per_part,
                    parsed.filetype,
                    a,
                    b,
                    caps=self.pool.caps,
                    ocr_languages=self.pool.ocr_languages,
                )
                for a, b, data in parsed.ranges
            ]
            waits = [self.pool.schedule(p) for p in parts]
            elements, ocr = [], []
            for p, w in zip(parts, waits, strict=True):
                done = self._wait(p, w)
                self.warnings += [said for said in done.warnings if said not in self.warnings]
                more = done.elements or []
                size.add(more, self.pool.caps, parsed.filetype)
                elements += more
                ocr += done.ocr or [None] * len(more)
        else:
            size.add(elements, self.pool.caps, parsed.filetype)
        document = build_document(elements or [], self.content_sha256, parsed.filetype, ocr)
        return document, chunk_document(document, elements, self.chunking)

    def _wait(self, part: _Part, wait: Callable[[], _Parsed]) -> _Parsed:
        try:
            return wait()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # every way a parse job can end badly has a reason
            raise _failure(part, exc, self.pool.limits) from exc


_POOLS: dict[str, ParsePool] = {}


def get_parse_pool(limits: ParsingSettings) -> ParsePool:
    """The process's pool for these limits (started on first use, stopped at exit)."""
    key = limits.model_dump_json()
    if key not in _POOLS:
        _POOLS[key] = ParsePool(limits)
    return _POOLS[key]


def close_parse_pools() -> None:
    for pool in _POOLS.values():
        pool.close()
    _POOLS.clear()


atexit.register(close_parse_pools)
