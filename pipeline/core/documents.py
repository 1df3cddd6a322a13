"""Documents: a `DocumentRef` (where a document was seen), a `ParsedDocument` and its `Chunk`s.

A ref comes from a connector before any bytes are read. A parsed document is
the canonical text that every offset in the lake points into: the texts of
unstructured's elements joined with `ELEMENT_SEPARATOR`, plus the page each
character range came from. A chunk is a piece of that text with its exact
`[start, end)` offsets (pipeline/parse/chunking.py makes them).
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict

ELEMENT_SEPARATOR = "\n\n"
CHILD_SEPARATOR = "!/"  # a child's URI: <container's URI>!/<percent-encoded path inside it>


class ListingProblem(BaseModel):
    """Why a listed entry cannot be read (a `Reason` value and a message); the run records it as a failure."""

    model_config = ConfigDict(frozen=True)

    reason: str
    message: str


class DocumentRef(BaseModel):
    """One document as a connector lists it.

    A connector lists what it saw even when it cannot be read (a dangling link, a
    file it may not open, a pipe): such a ref carries a `problem` and no hash, and
    the run records it as failed with that reason, so every input is accounted for.
    """

    model_config = ConfigDict(frozen=True)

    source: str
    uri: str
    version: str
    size: int
    modified_at: datetime | None = None
    sha256: str | None = None
    problem: ListingProblem | None = None
    parent_uri: str | None = None  # a member of an archive or an e-mail's attachment: the container's URI
    depth: int = 0  # how many containers hold this document (0: its connector listed it)

    @property
    def name(self) -> str:
        """The last part of the URI, percent-decoded (what file-type detection and people read)."""
        last = self.uri.rsplit(CHILD_SEPARATOR, 1)[-1] if self.parent_uri else self.uri
        return unquote(last.rstrip("/").rsplit("/", 1)[-1])


class PageSpan(BaseModel):
    """Characters [start, end) of the canonical text came from `page` (None: no page concept)."""

    model_config = ConfigDict(frozen=True)

    page: int | None
    start: int
    end: int
    ocr: bool = False  # the text of this range was read from the page's image (tesseract)
    ocr_confidence: float | None = None  # tesseract's mean word confidence (0-100) on that page
    ocr_rotated: int | None = None  # degrees the page image was turned clockwise before it was read


class ParsedDocument(BaseModel):
    """The canonical text of one document's content and where each part of it came from."""

    model_config = ConfigDict(frozen=True)

    content_sha256: str
    filetype: str
    text: str
    text_sha256: str
    element_spans: tuple[PageSpan, ...]
    page_count: int | None
    parser: str
    parser_version: str

    @property
    def ocr_confidence(self) -> float | None:
        """The lowest mean word confidence of the pages OCR read (None: none was): the page to check."""
        found = [span.ocr_confidence for span in self.element_spans if span.ocr_confidence is not None]
        return min(found) if found else None

    @property
    def ocr_pages(self) -> int:
        """How many pages had their text read by OCR."""
        return len({span.page for span in self.element_spans if span.ocr})

    def pages_between(self, start: int, end: int) -> list[int]:
        """Page numbers of the elements that overlap characters [start, end)."""
        pages = {
            span.page for span in self.element_spans if span.page is not None and span.start < end and span.end > start
        }
        return sorted(pages)

    def page_at(self, offset: int) -> int | None:
        for span in self.element_spans:
            if span.start <= offset < span.end:
                return span.page
        return None


class Chunk(BaseModel):
    """Characters [start, end) of a document's canonical text; `text` is always that slice."""

    model_config = ConfigDict(frozen=True)

    chunk_id: str
    content_sha256: str
    ordinal: int
    start: int
    end: int
    pages: tuple[int, ...]
    text: str
    placement: str  # "exact" (substring search) or "elements" (span of its elements)
