"""Incremental runs: fingerprints of work, and the landed results a later run can reuse.

A piece of work is skipped when its fingerprint is in the state store's
`work_done`, which is only ever filled for work whose files are committed in a
manifest (see pipeline/recovery.py). Two kinds of work:

- parse: content SHA-256 + parser name and version + parser strategy + PDF page-range length +
  chunking settings;
- extract (per document and task): the parse fingerprint + task name, version and schema hash +
  the prompt templates + the version of the routing and rule code (pipeline/extract/versions.py) +
  model file SHA-256 + sampling settings + the chunk budget + whether routing is on.

A document whose parse failed in a way the same bytes would fail again (an
encrypted or empty file, a parse timeout, ...) is remembered under a third
fingerprint, the parse one plus the parsing time and memory limits, and not
parsed again until the file, the parse settings or the limits change (or
`retry_failed` is set).

Changing a task's file re-extracts that task only; the chunks it needs are read
back from the lake instead of parsing again.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from pipeline.core.documents import Chunk, DocumentRef, PageSpan, ParsedDocument
from pipeline.core.errors import Reason
from pipeline.core.hashing import fingerprint, sha256_text
from pipeline.core.settings import Settings
from pipeline.core.tasks import Task
from pipeline.extract.engine import sampling_settings
from pipeline.extract.prompts import SYSTEM_TEMPLATE, USER_TEMPLATE
from pipeline.extract.versions import EXTRACTION_CODE_VERSION
from pipeline.land.store import LakeStore
from pipeline.parse.chunking import chunking_key
from pipeline.parse.partition import PARSER_NAME, PARSER_VERSION, converters
from pipeline.state.store import StateStore

PROMPT_CODE_SHA256 = sha256_text(SYSTEM_TEMPLATE + "\x00" + USER_TEMPLATE)  # includes the fence


def parse_fingerprint(content_sha256: str, settings: Settings) -> str:
    return fingerprint(
        "parse",
        content_sha256,
        PARSER_NAME,
        PARSER_VERSION,
        settings.parser_strategy,
        settings.parsing.pdf_pages_per_part,
        chunking_key(settings.chunking),
    )


def failed_fingerprint(parse_fp: str, settings: Settings) -> str:
    """Marks a parse that failed in a way the same bytes would fail again, under these limits.

    OCR's settings and the converters installed count here, not in the parse fingerprint: turning OCR
    on (or adding a language), or installing LibreOffice's Writer, retries the files that failed as
    `no_text` or `unsupported_type`, without re-extracting every document that parsed well
    (docs/operations.md, "OCR").
    """
    ocr = ("ocr", *settings.parsing.ocr_languages) if settings.parsing.ocr else ("no-ocr",)
    limits = (settings.parsing.timeout_s, settings.parsing.memory_mb)
    return fingerprint("failed", parse_fp, *limits, *ocr, *converters())


def extract_fingerprint(parse_fp: str, task: Task, model_sha256: str, settings: Settings) -> str:
    return fingerprint(
        "extract",
        parse_fp,
        task.name,
        task.version,
        task.schema_sha256,
        PROMPT_CODE_SHA256,
        EXTRACTION_CODE_VERSION,
        model_sha256,
        sampling_settings(settings.model),
        settings.max_chunks_per_document,
        settings.routing,
    )


def load_parsed(
    lake_store: LakeStore, content_sha256s: Collection[str], settings: Settings
) -> dict[str, tuple[ParsedDocument, list[Chunk]]]:
    """The canonical text and chunks earlier runs landed for these contents (those found).

    One query per table for the whole set (a shard's documents): on an S3 lake every file footer
    read is a request, so looking documents up one by one would multiply them.
    """
    wanted = sorted(set(content_sha256s))
    if not wanted:
        return {}
    lake = lake_store.url.replace("'", "''")
    key = chunking_key(settings.chunking)
    among = f"content_sha256 IN ({', '.join('?' * len(wanted))})"  # a constant list: pushed into the scan
    with lake_store.connect() as con:
        texts = con.execute(
            f"SELECT content_sha256, text, text_sha256, page_spans FROM read_parquet('{lake}/texts/*/*.parquet') "
            f"WHERE {among} "
            "QUALIFY row_number() OVER (PARTITION BY content_sha256 ORDER BY run_id DESC) = 1",
            wanted,
        ).fetchall()
        metas = con.execute(
            "SELECT content_sha256, filetype, pages, parser, parser_version "
            f"FROM read_parquet('{lake}/documents/*/*.parquet') "
            f"WHERE {among} AND status = 'processed' "
            "QUALIFY row_number() OVER (PARTITION BY content_sha256 ORDER BY processed_at DESC) = 1",
            wanted,
        ).fetchall()
        chunk_rows = con.execute(
            "SELECT content_sha256, chunk_id, ordinal, char_start, char_end, pages, text, placement "
            f"FROM read_parquet('{lake}/chunks/*/*.parquet') WHERE {among} AND chunking = ? "
            "QUALIFY row_number() OVER (PARTITION BY content_sha256, ordinal ORDER BY run_id DESC) = 1 "
            "ORDER BY content_sha256, ordinal",
            [*wanted, key],
        ).fetchall()
    meta_of = {row[0]: row[1:] for row in metas}
    chunks_of: dict[str, list[Chunk]] = {}
    for r in chunk_rows:
        chunks_of.setdefault(r[0], []).append(
            Chunk(
                chunk_id=r[1],
                content_sha256=r[0],
                ordinal=r[2],
                start=r[3],
                end=r[4],
                pages=tuple(r[5] or ()),
                text=r[6],
                placement=r[7],
            )
        )
    found = {}
    for content_sha256, text, text_sha256, page_spans in texts:
        meta = meta_of.get(content_sha256)
        chunks = chunks_of.get(content_sha256)
        if meta is None or not chunks:
            continue
        document = ParsedDocument(
            content_sha256=content_sha256,
            filetype=meta[0],
            text=text,
            text_sha256=text_sha256,
            element_spans=tuple(PageSpan(**span) for span in json.loads(page_spans)),
            page_count=meta[1],
            parser=meta[2],
            parser_version=meta[3],
        )
        found[content_sha256] = (document, chunks)
    return found


# Failures the same bytes meet again under the same parser, settings and limits: not retried each
# night (`retry_failed` / `assay run --retry-failed` forces it). Not here: too_large (checked from the
# listed size, without reading), read_error and internal_error (may be transient), parser_crashed
# (the machine may have been short of memory).
REMEMBERED_FAILURES = frozenset(
    {
        Reason.EMPTY_FILE,
        Reason.UNSUPPORTED_TYPE,
        Reason.ENCRYPTED,
        Reason.CORRUPT,
        Reason.NO_TEXT,
        Reason.PARSE_ERROR,
        Reason.PARSE_TIMEOUT,
        Reason.PARSE_OUT_OF_MEMORY,
    }
)


@dataclass(frozen=True)
class DocumentPlan:
    """What a document needs, from its fingerprints and the state store."""

    parse_fp: str
    parse_done: bool
    extract_fps: dict[str, str]  # task name -> fingerprint of the work still to do
    failed_fp: str  # marks "these bytes failed under these parse settings and limits"
    failed_before: tuple[str, str] | None = None  # (reason, run_id) when they did, and are not to be retried

    @property
    def unchanged(self) -> bool:
        return self.parse_done and not self.extract_fps


def extract_fingerprints(parse_fp: str, tasks: Iterable[Task], model_sha256: str, settings: Settings) -> dict[str, str]:
    """Task name -> the fingerprint of extracting that task from the parse `parse_fp`."""
    return {task.name: extract_fingerprint(parse_fp, task, model_sha256, settings) for task in tasks}


def plan_documents(
    state: StateStore, refs: Iterable[DocumentRef], tasks: Sequence[Task], model_sha256: str, settings: Settings
) -> dict[str, DocumentPlan]:
    """URI -> plan for each ref whose content hash is known: one question to the state store for all of them."""
    wanted: dict[str, tuple[str, dict[str, str]]] = {}
    for ref in refs:
        if not ref.sha256:
            continue
        parse_fp = parse_fingerprint(ref.sha256, settings)
        wanted[ref.uri] = (parse_fp, extract_fingerprints(parse_fp, tasks, model_sha256, settings))
    done = state.done({fp for parse_fp, ex in wanted.values() for fp in (parse_fp, *ex.values())})
    failed_fps = {uri: failed_fingerprint(parse_fp, settings) for uri, (parse_fp, _) in wanted.items()}
    failed = {} if settings.retry_failed else state.failures_landed(failed_fps.values())
    return {
        uri: DocumentPlan(
            parse_fp=parse_fp,
            parse_done=parse_fp in done,
            extract_fps={name: fp for name, fp in extract.items() if fp not in done},
            failed_fp=failed_fps[uri],
            failed_before=None if parse_fp in done else failed.get(failed_fps[uri]),
        )
        for uri, (parse_fp, extract) in wanted.items()
    }


def work_fingerprint(tasks: Iterable[Task], model_sha256: str, settings: Settings) -> str:
    """The work a run does on every document it lists, as one fingerprint (its listing cursors carry it).

    Built from the fingerprints above for a stand-in content, so whatever would make a document's
    parse, extraction or failed parse differ (a task, the model, the code versions, chunking, OCR, an
    installed converter) changes it, and the next run lists every document again.
    """
    parse_fp = parse_fingerprint("listing", settings)
    extract = extract_fingerprints(parse_fp, tasks, model_sha256, settings)
    return fingerprint("work", parse_fp, failed_fingerprint(parse_fp, settings), *sorted(extract.values()))
