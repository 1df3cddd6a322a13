"""Chunks: pieces of a document's canonical text, with exact character offsets.

unstructured's `chunk_by_title` keeps no offsets. Without overlap every chunk's
text is a substring of the canonical text (elements joined with
`ELEMENT_SEPARATOR`), so each chunk is placed by searching forward from the end
of the previous one. Where that fails (a library change), the chunk is placed
over the span of its original elements instead. Either way the stored chunk
text *is* `document.text[start:end]`, so offsets can always be re-checked.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.documents import Chunk, ParsedDocument
from pipeline.core.hashing import canonical_json, short_id
from pipeline.core.settings import ChunkingSettings


def chunking_key(settings: ChunkingSettings) -> str:
    """The chunking settings as one string: part of lineage and of fingerprints."""
    return canonical_json({"method": "chunk_by_title", **settings.model_dump()})


def chunk_document(document: ParsedDocument, elements: list[Any], settings: ChunkingSettings) -> list[Chunk]:
    from unstructured.chunking.title import chunk_by_title

    raw_chunks = chunk_by_title(
        elements,
        max_characters=settings.max_characters,
        new_after_n_chars=settings.new_after_n_chars,
        combine_text_under_n_chars=settings.combine_text_under_n_chars,
        overlap=settings.overlap,
    )
    text = document.text
    key = chunking_key(settings)
    chunks: list[Chunk] = []
    cursor = 0
    for ordinal, raw in enumerate(raw_chunks):
        body = raw.text
        start = text.find(body, max(0, cursor - settings.overlap))
        placement = "exact"
        if start < 0 or not body:
            start, end = _span_of_elements(document, raw)
            placement = "elements"
        else:
            end = start + len(body)
        cursor = end
        chunks.append(
            Chunk(
                chunk_id=short_id(document.content_sha256, key, ordinal),
                content_sha256=document.content_sha256,
                ordinal=ordinal,
                start=start,
                end=end,
                pages=tuple(document.pages_between(start, end)),
                text=text[start:end],
                placement=placement,
            )
        )
    return chunks


def _span_of_elements(document: ParsedDocument, raw_chunk: Any) -> tuple[int, int]:
    """Fallback placement: from the first to the last of the chunk's original elements."""
    originals = getattr(raw_chunk.metadata, "orig_elements", None) or []
    starts: list[int] = []
    ends: list[int] = []
    for element in originals:
        position = document.text.find(element.text)
        if position >= 0:
            starts.append(position)
            ends.append(position + len(element.text))
    if not starts:
        raise ValueError("chunk cannot be placed in the canonical text")
    return min(starts), max(ends)
