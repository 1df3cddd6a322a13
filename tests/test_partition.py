"""Partitioning and chunking on real documents (no model)."""

from __future__ import annotations

import pytest

from pipeline.core.errors import DocumentError, Reason
from pipeline.core.hashing import sha256_bytes, sha256_text
from pipeline.core.settings import ChunkingSettings
from pipeline.parse.chunking import chunk_document
from pipeline.parse.partition import Partitioned, partition_bytes
from tests.support import document

READABLE = {
    "nda-52d16f549c8c3f0b2a1ebab40576f4dc.pdf": "pdf",
    "unstructured__handbook-1p.docx": "docx",
    "docling__kvp_data_example.html": "html",
    "enron__jones-t_inbox_773.eml": "eml",
    "unstructured__fake-text-utf-16-be.txt": "txt",
}

BROKEN = {
    "unstructured__password.pdf": Reason.ENCRYPTED,
    "unstructured__empty.txt": Reason.EMPTY_FILE,
    "pdfplumber__empty.pdf": Reason.EMPTY_FILE,
    "docling__ocr_test.pdf": Reason.NO_TEXT,
    "docling__qr_bill_example.jpg": Reason.UNSUPPORTED_TYPE,
}


def _partition(name: str) -> Partitioned:
    data = document(name).read_bytes()
    return partition_bytes(data, name, sha256_bytes(data))


@pytest.mark.parametrize(("name", "filetype"), sorted(READABLE.items()))
def test_readable_documents_give_text_and_exact_chunks(name: str, filetype: str) -> None:
    partitioned = _partition(name)
    parsed = partitioned.document
    assert parsed.filetype == filetype
    assert len(parsed.text) > 100
    assert parsed.text_sha256 == sha256_text(parsed.text)
    chunks = chunk_document(parsed, partitioned.elements, ChunkingSettings())
    assert chunks
    previous_end = 0
    for ordinal, chunk in enumerate(chunks):
        assert chunk.ordinal == ordinal
        assert parsed.text[chunk.start : chunk.end] == chunk.text
        assert chunk.start >= previous_end
        previous_end = chunk.end
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_pdf_pages_are_mapped() -> None:
    document = _partition("nda-52d16f549c8c3f0b2a1ebab40576f4dc.pdf").document
    assert document.page_count and document.page_count >= 1
    assert document.page_at(0) == 1


def test_email_text_comes_from_the_body() -> None:
    document = _partition("enron__jones-t_inbox_773.eml").document
    assert "non" in document.text.lower() and "disclosure" in document.text.lower()


@pytest.mark.parametrize(("name", "reason"), sorted(BROKEN.items()))
def test_hard_cases_raise_with_a_reason(name: str, reason: Reason) -> None:
    with pytest.raises(DocumentError) as caught:
        _partition(name)
    assert caught.value.reason is reason
    assert str(caught.value)


def test_corrupt_pdf_is_reported_as_corrupt() -> None:
    data = document("nda-52d16f549c8c3f0b2a1ebab40576f4dc.pdf").read_bytes()
    broken = data[:400]  # a real PDF header, then nothing: cross-reference table and objects gone
    with pytest.raises(DocumentError) as caught:
        partition_bytes(broken, "truncated.pdf", sha256_bytes(broken))
    assert caught.value.reason is Reason.CORRUPT


def test_ocr_reads_a_scan_an_image_and_the_scanned_page_of_a_born_digital_pdf() -> None:
    import io

    from pypdf import PdfReader, PdfWriter

    from pipeline.parse.partition import ocr_available
    from tests.support import skip_or_fail

    if not ocr_available():
        skip_or_fail("tesseract is not installed here (Debian: tesseract-ocr; .ci/run installs it)")
    scan = document("docling__ocr_test.pdf").read_bytes()
    read = partition_bytes(scan, "scan.pdf", sha256_bytes(scan), ocr_languages=("eng",)).document
    assert "Docling bundles PDF document conversion" in read.text
    assert read.ocr_pages == 1 and all(span.ocr for span in read.element_spans)
    assert read.parser == "unstructured+tesseract" and "tesseract" in read.parser_version
    assert read.ocr_confidence is not None and read.ocr_confidence > 80  # a clean scan: tesseract is sure
    assert {span.ocr_rotated for span in read.element_spans} == {0}

    from pipeline.parse.ocr import pdf_page_image

    for turned in (90, 180):  # a page scanned on its side, or upside down, is turned upright first
        buffer = io.BytesIO()
        pdf_page_image(scan, 0).rotate(turned, expand=True).save(buffer, format="PNG")
        sideways = buffer.getvalue()
        upright = partition_bytes(sideways, "sideways.png", sha256_bytes(sideways), ocr_languages=("eng",)).document
        assert "Docling bundles PDF document conversion" in upright.text
        assert {span.ocr_rotated for span in upright.element_spans} == {turned}
        assert upright.ocr_confidence is not None and upright.ocr_confidence > 80

    image = document("docling__qr_bill_example.jpg").read_bytes()
    seen = partition_bytes(image, "bill.jpg", sha256_bytes(image), ocr_languages=("eng",)).document
    assert seen.filetype == "jpg" and len(seen.text) > 50 and seen.ocr_pages == 1

    writer = PdfWriter()  # a born-digital page, then a scanned one: the fast strategy alone drops page 2
    writer.add_page(PdfReader(document("nda-52d16f549c8c3f0b2a1ebab40576f4dc.pdf")).pages[0])
    writer.add_page(PdfReader(io.BytesIO(scan)).pages[0])
    buffer = io.BytesIO()
    writer.write(buffer)
    mixed = buffer.getvalue()
    without = partition_bytes(mixed, "mixed.pdf", sha256_bytes(mixed)).document
    assert {span.page for span in without.element_spans} == {1}
    both = partition_bytes(mixed, "mixed.pdf", sha256_bytes(mixed), ocr_languages=("eng",)).document
    assert {(span.page, span.ocr) for span in both.element_spans} == {(1, False), (2, True)}
    assert both.text.startswith(without.text) and "Docling bundles" in both.text


def test_a_csv_whose_rows_differ_in_length_is_read_whole() -> None:
    ragged = b'name,amount\nAcme,100\nBeta,200,extra,more\nGamma\n"Delta, Inc",300\n'
    read = partition_bytes(ragged, "export.csv", sha256_bytes(ragged)).document
    for cell in ("Acme", "Beta", "extra", "more", "Gamma", "Delta, Inc", "300"):
        assert cell in read.text  # every cell kept; before, the whole file failed as corrupt
