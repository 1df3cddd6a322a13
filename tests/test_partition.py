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
