"""Grounding statuses on real document text."""

from __future__ import annotations

import pytest

from pipeline.core.hashing import sha256_bytes
from pipeline.extract.answers import ground_value
from pipeline.extract.grounding import GroundingStatus, ground
from pipeline.parse.partition import partition_bytes
from tests.support import document


@pytest.fixture(scope="module")
def nda_text() -> str:
    name = "nda-52d16f549c8c3f0b2a1ebab40576f4dc.pdf"
    data = document(name).read_bytes()
    return partition_bytes(data, name, sha256_bytes(data)).document.text


def _passage(text: str, length: int = 60) -> tuple[int, str]:
    """A passage of real text well inside the document, starting at a word."""
    start = text.index(" ", len(text) // 3) + 1
    return start, text[start : start + length]


def test_exact(nda_text: str) -> None:
    _start, quote = _passage(nda_text)
    found = ground(quote, nda_text)
    assert found.status is GroundingStatus.EXACT
    assert nda_text[found.start : found.end] == quote


def test_normalised_case_whitespace_and_quotes(nda_text: str) -> None:
    start, quote = _passage(nda_text)
    mangled = "  " + quote.upper().replace(" ", "\n  ") + " "
    found = ground(mangled, nda_text)
    assert found.status is GroundingStatus.NORMALISED
    assert found.start == start
    assert nda_text[found.start : found.end].lower() == quote.lower().strip()


def test_normalised_across_line_break_hyphenation() -> None:
    text = "The Recipient shall keep the infor-\nmation strictly confidential."
    found = ground("keep the information strictly", text)
    assert found.status is GroundingStatus.NORMALISED
    assert text[found.start : found.end] == "keep the infor-\nmation strictly"


def test_typographic_quotes_normalise() -> None:
    text = "the \u201cConfidential Information\u201d means"
    assert ground('the "Confidential Information" means', text).status is GroundingStatus.NORMALISED


def test_fuzzy_with_a_score(nda_text: str) -> None:
    start, quote = _passage(nda_text, 80)
    typo = quote[:30] + "x" + quote[31:]  # one character changed
    found = ground(typo, nda_text)
    assert found.status is GroundingStatus.FUZZY
    assert 85 <= found.score < 100
    assert abs(found.start - start) <= 3  # type: ignore[operator]


def test_ungrounded(nda_text: str) -> None:
    found = ground("The moon is made of green cheese and governed by Martian law", nda_text)
    assert found.status is GroundingStatus.UNGROUNDED
    assert found.start is None and not found.verified


def test_chunk_is_searched_before_the_document() -> None:
    text = "alpha beta gamma. alpha beta gamma."
    found = ground("alpha beta", text, chunk_start=18, chunk_end=len(text))
    assert found.start == 18


def test_a_quote_that_does_not_hold_the_value_does_not_ground_it(nda_text: str) -> None:
    _, quote = _passage(nda_text)
    grounding, on = ground_value("Zanzibar Holdings Ltd", quote, nda_text, 0, len(nda_text))
    assert grounding.status is GroundingStatus.UNGROUNDED and on is None
    word = quote.split()[1]
    grounding, on = ground_value(word, quote, nda_text, 0, len(nda_text))
    assert on == "evidence" and grounding.verified
