"""Bytes -> canonical text, with unstructured's `partition` (auto type detection).

Known traps handled here (../docs/architecture.md, "Parsing"):
- an empty file, or a PDF partitioned to zero elements (unstructured's fast
  strategy returns [] silently when a PDF has no text layer or a dependency
  is missing), must be a recorded failure, never an empty success;
- encrypted PDFs and corrupt files raise assorted library exceptions, mapped
  here to stable reason codes.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from pipeline.documents import ELEMENT_SEPARATOR, PageSpan, ParsedDocument
from pipeline.errors import DocumentError, Reason
from pipeline.hashing import sha256_text

logger = logging.getLogger(__name__)

PARSER_NAME = "unstructured"
PARSER_VERSION = version("unstructured")

# unstructured FileType names that Assay partitions with the fast strategy, no OCR and no
# system converters (tested in tests/test_partition.py).
SUPPORTED_TYPES = {"pdf", "docx", "pptx", "xlsx", "xls", "html", "xml", "eml", "msg", "md", "txt", "csv", "tsv"}

# Types unstructured knows but that need something Assay does not install, and what.
NEEDS = {
    "doc": "LibreOffice (soffice) to convert legacy Word files",
    "ppt": "LibreOffice (soffice) to convert legacy PowerPoint files",
    "rtf": "pandoc",
    "odt": "pandoc",
    "epub": "pandoc",
    "org": "pandoc",
    "rst": "pandoc",
    "jpg": "OCR (tesseract)",
    "png": "OCR (tesseract)",
    "tiff": "OCR (tesseract)",
    "bmp": "OCR (tesseract)",
    "heic": "OCR (tesseract)",
    "webp": "OCR (tesseract)",
}


@dataclass(frozen=True)
class Partitioned:
    """A parsed document and unstructured's elements (needed for chunking)."""

    document: ParsedDocument
    elements: list[Any]


def detect_filetype(data: bytes, filename: str) -> str:
    from unstructured.file_utils.filetype import detect_filetype as _detect

    try:
        detected = _detect(file=io.BytesIO(data), metadata_file_path=filename)
    except Exception as exc:  # detection failures mean we cannot tell what it is
        raise DocumentError(Reason.UNSUPPORTED_TYPE, f"cannot detect the file type: {exc}") from exc
    return str(detected.name).lower()


def check_pdf_readable(data: bytes) -> None:
    """Encrypted PDFs that need a user password, and PDFs whose structure cannot be read."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(Reason.ENCRYPTED, "the PDF is encrypted and needs a password to open")
    except DocumentError:
        raise
    except PdfReadError as exc:
        message = str(exc)
        reason = Reason.ENCRYPTED if "password" in message.lower() or "decrypt" in message.lower() else Reason.CORRUPT
        raise DocumentError(reason, f"the PDF cannot be read: {message}") from exc
    except Exception as exc:  # pypdf raises assorted errors on broken files
        raise DocumentError(Reason.CORRUPT, f"the PDF cannot be read: {type(exc).__name__}: {exc}") from exc


def _require_pdf_dependencies() -> None:
    """unstructured returns zero elements, silently, when pikepdf is missing: refuse instead."""
    try:
        import pdfminer  # noqa: F401
        import pikepdf  # noqa: F401
    except ImportError as exc:  # pragma: no cover - an install problem, not a document problem
        raise RuntimeError(f"PDF support is incomplete ({exc}); reinstall Assay's dependencies") from exc


def _classify_exception(exc: BaseException) -> Reason:
    text = f"{type(exc).__name__}: {exc}".lower()
    if any(word in text for word in ("password", "encrypt", "decrypt")):
        return Reason.ENCRYPTED
    if any(word in text for word in ("unsupported", "not supported", "invalid file", "unknown file type")):
        return Reason.UNSUPPORTED_TYPE
    return Reason.CORRUPT


def partition_bytes(data: bytes, filename: str, content_sha256: str, strategy: str = "fast") -> Partitioned:
    """Partition one document; raise `DocumentError` with a reason when it cannot be used."""
    if not data.strip():
        raise DocumentError(Reason.EMPTY_FILE, "the file is empty")
    filetype = detect_filetype(data, filename)
    try:
        return _partition(data, filename, content_sha256, strategy, filetype)
    except DocumentError as exc:
        exc.filetype = filetype
        raise


def _partition(data: bytes, filename: str, content_sha256: str, strategy: str, filetype: str) -> Partitioned:
    if filetype not in SUPPORTED_TYPES:
        needs = f": it needs {NEEDS[filetype]}" if filetype in NEEDS else ""
        raise DocumentError(Reason.UNSUPPORTED_TYPE, f"file type {filetype!r} is not supported{needs}")
    if filetype == "pdf":
        _require_pdf_dependencies()
        check_pdf_readable(data)

    from unstructured.partition.auto import partition

    try:
        elements = partition(
            file=io.BytesIO(data),
            metadata_filename=filename,
            strategy=strategy,
            languages=["eng"],
        )
    except DocumentError:
        raise
    except Exception as exc:  # libraries raise anything on broken input
        reason = _classify_exception(exc)
        raise DocumentError(reason, f"{type(exc).__name__}: {exc}"[:2000]) from exc

    elements = [el for el in elements if (el.text or "").strip()]
    if not elements:
        hint = " (a scan without a text layer needs OCR)" if filetype == "pdf" else ""
        raise DocumentError(Reason.NO_TEXT, f"partitioning produced no text{hint}")

    spans: list[PageSpan] = []
    parts: list[str] = []
    cursor = 0
    for index, element in enumerate(elements):
        if index:
            cursor += len(ELEMENT_SEPARATOR)
        text = element.text
        parts.append(text)
        spans.append(PageSpan(page=element.metadata.page_number, start=cursor, end=cursor + len(text)))
        cursor += len(text)
    text = ELEMENT_SEPARATOR.join(parts)
    pages = {span.page for span in spans if span.page is not None}
    document = ParsedDocument(
        content_sha256=content_sha256,
        filetype=filetype,
        text=text,
        text_sha256=sha256_text(text),
        element_spans=tuple(spans),
        page_count=max(pages) if pages else None,
        parser=PARSER_NAME,
        parser_version=PARSER_VERSION,
    )
    return Partitioned(document=document, elements=elements)
