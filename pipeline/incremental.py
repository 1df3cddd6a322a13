"""Incremental runs: fingerprints of work, and the landed results a later run can reuse.

A piece of work is skipped when its fingerprint is in the state store's
`work_done`, which is only ever filled for work whose files are committed in a
manifest (see pipeline/recovery.py). Two kinds of work:

- parse: content SHA-256 + parser name and version + parser strategy + PDF page-range length +
  chunking settings;
- extract (per document and task): the parse fingerprint + task name, version and schema hash +
  the prompt, routing and rule code + model file SHA-256 + sampling settings + the chunk budget +
  whether routing is on.

Changing a task's file re-extracts that task only; the chunks it needs are read
back from the lake instead of parsing again.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.chunks import Chunk, chunking_key
from pipeline.documents import PageSpan, ParsedDocument
from pipeline.engine import sampling_settings
from pipeline.extraction import SYSTEM_TEMPLATE, USER_TEMPLATE
from pipeline.hashing import fingerprint, sha256_bytes, sha256_text
from pipeline.lake_store import LakeStore
from pipeline.partition import PARSER_NAME, PARSER_VERSION
from pipeline.settings import Settings
from pipeline.tasks import Task

PROMPT_CODE_SHA256 = sha256_text(SYSTEM_TEMPLATE + "\x00" + USER_TEMPLATE)
# The code that decides which chunks the model sees and what rules find. (Normalising and reducing
# are not in it: they only recompute `document_values` from landed findings, never model work.)
EXTRACT_CODE_SHA256 = sha256_bytes(
    b"".join((Path(__file__).parent / name).read_bytes() for name in ("routing.py", "rules.py"))
)


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


def extract_fingerprint(parse_fp: str, task: Task, model_sha256: str, settings: Settings) -> str:
    return fingerprint(
        "extract",
        parse_fp,
        task.name,
        task.version,
        task.schema_sha256,
        PROMPT_CODE_SHA256,
        EXTRACT_CODE_SHA256,
        model_sha256,
        sampling_settings(settings.model),
        settings.max_chunks_per_document,
        settings.routing,
    )


def load_parsed(
    lake_store: LakeStore, content_sha256: str, settings: Settings
) -> tuple[ParsedDocument, list[Chunk]] | None:
    """The canonical text and chunks an earlier run landed for this content, or None."""
    lake = lake_store.url.replace("'", "''")
    key = chunking_key(settings.chunking)
    with lake_store.connect() as con:
        text_row = con.execute(
            f"SELECT text, text_sha256, page_spans FROM read_parquet('{lake}/texts/*/*.parquet') "
            "WHERE content_sha256 = ? LIMIT 1",
            [content_sha256],
        ).fetchone()
        meta = con.execute(
            f"SELECT filetype, pages, parser, parser_version FROM read_parquet('{lake}/documents/*/*.parquet') "
            "WHERE content_sha256 = ? AND status = 'processed' ORDER BY processed_at DESC LIMIT 1",
            [content_sha256],
        ).fetchone()
        chunk_rows = con.execute(
            f"SELECT chunk_id, ordinal, char_start, char_end, pages, text, placement "
            f"FROM read_parquet('{lake}/chunks/*/*.parquet') WHERE content_sha256 = ? AND chunking = ? "
            "QUALIFY row_number() OVER (PARTITION BY ordinal ORDER BY run_id DESC) = 1 ORDER BY ordinal",
            [content_sha256, key],
        ).fetchall()
    if text_row is None or meta is None or not chunk_rows:
        return None
    text, text_sha256, page_spans = text_row
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
    chunks = [
        Chunk(
            chunk_id=r[0],
            content_sha256=content_sha256,
            ordinal=r[1],
            start=r[2],
            end=r[3],
            pages=tuple(r[4] or ()),
            text=r[5],
            placement=r[6],
        )
        for r in chunk_rows
    ]
    return document, chunks
