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


def test_a_fuzzy_match_outside_the_chunk_does_not_verify() -> None:
    """The model read one chunk: an approximate match elsewhere in the document is not its evidence."""
    chunk = "The amounts due are listed in Schedule B. "
    elsewhere = "Nothing in this Agreement waives rights under Title 11 of the United States Code. "
    text = chunk + elsewhere
    quote = "The Law of the United States"  # what a small model wrote; fuzzy-matches "itle 11 of the United States"
    assert ground(quote, text).status is GroundingStatus.FUZZY  # over the whole text, it would pass
    found = ground(quote, text, chunk_start=0, chunk_end=len(chunk))
    assert found.status is GroundingStatus.UNGROUNDED and not found.verified
    grounding, on = ground_value(quote, quote, text, 0, len(chunk))
    assert not grounding.verified and on is None  # so it waits for a reviewer


def test_a_value_without_its_quote_is_only_looked_for_in_the_chunk() -> None:
    chunk = "This Agreement starts on the Effective Date. "
    text = chunk + "Payments are due in New York."
    grounding, on = ground_value("New York", "governed by the laws of New York", text, 0, len(chunk))
    assert not grounding.verified and on is None  # the words exist, but not where the model read
    grounding, on = ground_value("Effective Date", "a quote the model made up", text, 0, len(chunk))
    assert grounding.verified and on == "value" and text[grounding.start : grounding.end] == "Effective Date"


def test_a_verbatim_quote_elsewhere_in_the_document_still_counts() -> None:
    chunk = "Section 2. Term. "
    text = chunk + "This Agreement shall remain in force for two (2) years."
    found = ground("remain in force for two (2) years", text, chunk_start=0, chunk_end=len(chunk))
    assert found.status is GroundingStatus.EXACT and found.start == text.index("remain")
