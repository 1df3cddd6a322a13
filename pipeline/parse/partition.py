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
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pipeline.core.documents import ELEMENT_SEPARATOR, PageSpan, ParsedDocument
from pipeline.core.errors import DocumentError, Reason
from pipeline.core.hashing import sha256_text
from pipeline.parse.convert import TO_DOCX, libreoffice_has, needs_docx_conversion, to_docx
from pipeline.parse.ocr import OCR_CODE_VERSION, OcrRead, image_pages, ocr_elements, pdf_page_image

logger = logging.getLogger(__name__)

PARSER_NAME = "unstructured"
PARSER_VERSION = version("unstructured")

# unstructured FileType names that Assay partitions with the fast strategy, no OCR and no
# system converters (tested in tests/test_partition.py).
SUPPORTED_TYPES = {"pdf", "docx", "pptx", "xlsx", "xls", "html", "xml", "eml", "msg", "md", "txt", "csv", "tsv"}

# Types unstructured knows but that need something Assay does not install, and what.
NEEDS = {
    "doc": "LibreOffice (soffice; Debian: libreoffice-writer-nogui) to convert legacy Word files",
    "ppt": "LibreOffice Impress (soffice; Debian: libreoffice-impress-nogui) to convert legacy PowerPoint files",
    "rtf": "LibreOffice Writer (soffice; Debian: libreoffice-writer-nogui) to convert RTF files",
    "odt": "LibreOffice Writer (soffice; Debian: libreoffice-writer-nogui) to convert OpenDocument text",
    "epub": "pandoc",
    "org": "pandoc",
    "rst": "pandoc",
    "jpg": "OCR: parsing.ocr = true and tesseract installed (Debian: tesseract-ocr)",
    "png": "OCR: parsing.ocr = true and tesseract installed (Debian: tesseract-ocr)",
    "tiff": "OCR: parsing.ocr = true and tesseract installed (Debian: tesseract-ocr)",
    "bmp": "OCR: parsing.ocr = true and tesseract installed (Debian: tesseract-ocr)",
    "heic": "a HEIC decoder (pillow-heif) and OCR",
    "webp": "OCR (tesseract)",
}
# Legacy formats unstructured converts with LibreOffice (`soffice --headless --convert-to`), when the
# LibreOffice component that reads them is installed: its library beside the soffice program.
# RTF and OpenDocument text Assay converts to .docx itself (pipeline/parse/convert.py).
CONVERTED_TYPES = {"doc": "libswlo.so", "ppt": "libsdlo.so", **TO_DOCX}  # Writer, Impress


def converter_available(filetype: str) -> bool:
    return filetype in CONVERTED_TYPES and libreoffice_has(CONVERTED_TYPES[filetype])


CONVERSIONS_VERSION = "1"  # bumped when what Assay converts, or how, changes


def converters() -> tuple[str, ...]:
    """What this installation can convert: a file that failed for want of a converter is tried again once
    one is installed (the failed-parse fingerprint includes this, pipeline/state/incremental.py)."""
    return (f"conversions-{CONVERSIONS_VERSION}", *sorted(t for t in CONVERTED_TYPES if converter_available(t)))


# Images read with tesseract when OCR is on (parsing.ocr) and tesseract is installed.
IMAGE_TYPES = {"jpg", "png", "tiff", "bmp"}


@cache
def ocr_available() -> bool:
    return shutil.which("tesseract") is not None


@cache
def tesseract_version() -> str:
    """Asked once per process: it goes into every OCR'd document's parser_version."""
    try:
        out = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    first = out.splitlines()[0] if out else ""
    return first.split()[-1] if first else "unknown"


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


def partition_bytes(
    data: bytes, filename: str, content_sha256: str, strategy: str = "fast", ocr_languages: tuple[str, ...] = ()
) -> Partitioned:
    """Partition one document; raise `DocumentError` with a reason when it cannot be used."""
    filetype = check_partitionable(data, filename, bool(ocr_languages))
    elements, ocr = partition_with_ocr(data, filename, strategy, filetype, 1, ocr_languages)
    return Partitioned(document=build_document(elements, content_sha256, filetype, ocr), elements=elements)


def check_partitionable(data: bytes, filename: str, ocr: bool = False) -> str:
    """The file's type, or a `DocumentError` when it is empty, unsupported or an unreadable PDF."""
    if not data.strip():
        raise DocumentError(Reason.EMPTY_FILE, "the file is empty")
    filetype = detect_filetype(data, filename)
    if filetype in IMAGE_TYPES and ocr and ocr_available():
        return filetype
    if converter_available(filetype):
        return filetype
    if filetype not in SUPPORTED_TYPES:
        needs = f": it needs {NEEDS[filetype]}" if filetype in NEEDS else ""
        raise DocumentError(Reason.UNSUPPORTED_TYPE, f"file type {filetype!r} is not supported{needs}", filetype)
    if filetype == "pdf":
        _require_pdf_dependencies()
        try:
            check_pdf_readable(data)
        except DocumentError as exc:
            exc.filetype = filetype
            raise
    return filetype


def partition_with_ocr(
    data: bytes,
    filename: str,
    strategy: str,
    filetype: str,
    first_page: int,
    ocr_languages: tuple[str, ...],
    pages: int | None = None,
) -> tuple[list[Any], list[OcrRead | None]]:
    """The elements, and for each how OCR read it (None: not OCR): images whole, PDF pages that have
    no text layer.

    A PDF's text-layer pages keep their text; each page the text layer gives nothing for (a scanned
    page inside a born-digital PDF included) is rendered and read on its own with tesseract,
    turned upright first (pipeline/parse/ocr.py).
    """
    ocr = bool(ocr_languages) and ocr_available()
    if needs_docx_conversion(data, filetype):  # RTF, OpenDocument text, Strict OOXML: read as a .docx
        converted = to_docx(data, filetype)
        elements = partition_elements(converted, f"{Path(filename).stem}.docx", strategy, filetype, first_page)
        return elements, [None] * len(elements)
    if filetype in IMAGE_TYPES:
        read = [pair for i, image in enumerate(image_pages(data)) for pair in ocr_elements(image, ocr_languages, i + 1)]
        return [element for element, _ in read], [how for _, how in read]
    try:
        elements = partition_elements(data, filename, strategy, filetype, first_page)
    except DocumentError as exc:
        if filetype not in ("csv", "tsv") or "Error tokenizing data" not in str(exc):
            raise
        # Rows of different lengths (a ragged export): pandas refuses them; pad every row to the widest.
        elements = partition_elements(rectangular(data, filetype), filename, strategy, filetype, first_page)
    flags: list[OcrRead | None] = [None] * len(elements)
    if filetype != "pdf" or not ocr:
        return elements, flags
    with_text = {element.metadata.page_number for element in elements}
    pages = pages if pages is not None else pdf_page_count(data)  # the caller usually counted them already
    scanned = [page for page in range(first_page, first_page + pages) if page not in with_text]
    if not scanned:
        return elements, flags
    found: list[tuple[Any, OcrRead | None]] = list(zip(elements, flags, strict=True))
    for page in scanned:
        found += ocr_elements(pdf_page_image(data, page - first_page), ocr_languages, page)
    found.sort(key=lambda pair: pair[0].metadata.page_number or 0)  # stable: each page keeps its order
    return [element for element, _ in found], [flag for _, flag in found]


def rectangular(data: bytes, filetype: str) -> bytes:
    """A CSV or TSV with every row padded to the widest row's number of fields (nothing dropped)."""
    import csv

    text = data.decode("utf-8", errors="replace")
    delimiter = "\t" if filetype == "tsv" else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    width = max((len(row) for row in rows), default=0)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    for row in rows:
        writer.writerow(row + [""] * (width - len(row)))
    return out.getvalue().encode("utf-8")


def partition_elements(
    data: bytes,
    filename: str,
    strategy: str,
    filetype: str,
    first_page: int = 1,
    languages: tuple[str, ...] = ("eng",),
) -> list[Any]:
    """unstructured's elements with text; `first_page` numbers the pages of a part of a larger PDF."""
    from unstructured.partition.auto import partition

    try:
        elements = partition(
            file=io.BytesIO(data),
            metadata_filename=filename,
            strategy=strategy,
            languages=list(languages) or ["eng"],
        )
    except DocumentError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # libraries raise anything on broken input
        reason = _classify_exception(exc)
        raise DocumentError(reason, f"{type(exc).__name__}: {exc}"[:2000], filetype) from exc
    elements = [el for el in elements if (el.text or "").strip()]
    for element in elements:
        element.text = str(element.text)  # OCR gives numpy strings
    if first_page != 1:
        for element in elements:
            if element.metadata.page_number is not None:
                element.metadata.page_number += first_page - 1
    return elements


def build_document(
    elements: list[Any], content_sha256: str, filetype: str, ocr: list[OcrRead | None] | None = None
) -> ParsedDocument:
    """The canonical text of a document from its elements (in order), with the page of each range."""
    if not elements:
        hint = ""
        if filetype == "pdf" and not ocr_available():
            hint = " (a scan without a text layer needs OCR: install tesseract, Debian's tesseract-ocr)"
        elif filetype == "pdf" or filetype in IMAGE_TYPES:
            hint = " (OCR found no text either, or parsing.ocr is off)"
        raise DocumentError(Reason.NO_TEXT, f"partitioning produced no text{hint}", filetype)
    flags = ocr if ocr is not None else [None] * len(elements)

    spans: list[PageSpan] = []
    parts: list[str] = []
    cursor = 0
    for index, element in enumerate(elements):
        if index:
            cursor += len(ELEMENT_SEPARATOR)
        text = element.text
        parts.append(text)
        read = flags[index]
        spans.append(
            PageSpan(
                page=element.metadata.page_number,
                start=cursor,
                end=cursor + len(text),
                ocr=read is not None,
                ocr_confidence=read.confidence if read is not None else None,
                ocr_rotated=read.rotated if read is not None else None,
            )
        )
        cursor += len(text)
    text = ELEMENT_SEPARATOR.join(parts)
    pages = {span.page for span in spans if span.page is not None}
    return ParsedDocument(
        content_sha256=content_sha256,
        filetype=filetype,
        text=text,
        text_sha256=sha256_text(text),
        element_spans=tuple(spans),
        page_count=max(pages) if pages else None,
        parser=f"{PARSER_NAME}+tesseract" if any(flags) else PARSER_NAME,
        parser_version=(
            f"{PARSER_VERSION}; tesseract {tesseract_version()}; ocr {OCR_CODE_VERSION}"
            if any(flags)
            else PARSER_VERSION
        ),
    )


def pdf_page_count(data: bytes) -> int:
    from pypdf import PdfReader

    return len(PdfReader(io.BytesIO(data)).pages)


def split_pdf(data: bytes, pages_per_part: int) -> list[tuple[int, bytes]]:
    """A PDF cut into page ranges: (first page number, bytes of a PDF holding those pages) each."""
    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(io.BytesIO(data))
    parts: list[tuple[int, bytes]] = []
    for first in range(0, len(reader.pages), pages_per_part):
        writer = PdfWriter()
        for page in reader.pages[first : first + pages_per_part]:
            writer.add_page(page)
        buffer = io.BytesIO()
        writer.write(buffer)
        parts.append((first + 1, buffer.getvalue()))
    return parts
