"""Check a quoted piece of evidence against the source text and find its exact characters.

Tried in order, stopping at the first that succeeds:
1. exact: the quote occurs verbatim;
2. normalised: it occurs once case, whitespace, line-break hyphenation,
   typographic quotes and dashes are normalised (offsets mapped back to the
   original characters);
3. fuzzy: the best approximate alignment (rapidfuzz) scores at least
   `FUZZY_THRESHOLD` out of 100.
Otherwise the evidence is `ungrounded`: the finding is kept but never
presented as verified (it waits for review). The model read one chunk, so a
match must be in it, with one exception: a quote found verbatim (exact or
normalised) elsewhere in the document also counts, the chunk preferred. A fuzzy
match only counts inside the chunk (an approximate match anywhere in a long
document is too easy to find), and a value looked for without its quote
(`within_chunk=True`) only counts inside the chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from rapidfuzz import fuzz

FUZZY_THRESHOLD = 85.0
_MIN_FUZZY_LENGTH = 8

_TRANSLATE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u00a0": " ",
        "\u00ad": "",
    }
)
_HYPHEN_BREAK = re.compile(r"(\w)-\s*\n\s*(\w)")


class GroundingStatus(StrEnum):
    EXACT = "exact"
    NORMALISED = "normalised"
    FUZZY = "fuzzy"
    UNGROUNDED = "ungrounded"


@dataclass(frozen=True)
class Grounding:
    status: GroundingStatus
    start: int | None
    end: int | None
    score: float  # 100 for exact and normalised matches

    @property
    def verified(self) -> bool:
        return self.status is not GroundingStatus.UNGROUNDED


def _normalise(text: str) -> tuple[str, list[int]]:
    """Normalised text and, for each of its characters, the index of the original character."""
    text_join = _HYPHEN_BREAK.sub(lambda m: m.group(1) + "\x00" * (len(m.group(0)) - 2) + m.group(2), text)
    out: list[str] = []
    index: list[int] = []
    previous_space = True
    for position, char in enumerate(text_join):
        if char == "\x00":
            continue
        char = char.translate(_TRANSLATE).lower()
        if not char:
            continue
        if char.isspace():
            if previous_space:
                continue
            char = " "
            previous_space = True
        else:
            previous_space = False
        out.append(char)
        index.append(position)
    while out and out[-1] == " ":
        out.pop()
        index.pop()
    return "".join(out), index


def normalise_text(text: str) -> str:
    """The normalised form used by the `normalised` match (case, spaces, hyphenation, quotes)."""
    return _normalise(text)[0]


def _exact(quote: str, text: str, offset: int) -> Grounding | None:
    position = text.find(quote)
    if position < 0:
        return None
    return Grounding(GroundingStatus.EXACT, offset + position, offset + position + len(quote), 100.0)


def _normalised(quote: str, text: str, offset: int) -> Grounding | None:
    norm_quote, _ = _normalise(quote)
    norm_text, index = _normalise(text)
    position = norm_text.find(norm_quote) if norm_quote else -1
    if position < 0:
        return None
    start = index[position]
    end = index[position + len(norm_quote) - 1] + 1
    return Grounding(GroundingStatus.NORMALISED, offset + start, offset + end, 100.0)


def _fuzzy(quote: str, text: str, offset: int) -> Grounding | None:
    norm_quote, _ = _normalise(quote)
    norm_text, index = _normalise(text)
    if len(norm_quote) < _MIN_FUZZY_LENGTH or not norm_text:
        return None
    alignment = fuzz.partial_ratio_alignment(norm_quote, norm_text, score_cutoff=FUZZY_THRESHOLD)
    if alignment is None or alignment.dest_end <= alignment.dest_start:
        return None
    start = index[alignment.dest_start]
    end = index[alignment.dest_end - 1] + 1
    return Grounding(GroundingStatus.FUZZY, offset + start, offset + end, round(alignment.score, 2))


def ground(
    quote: str, document_text: str, chunk_start: int = 0, chunk_end: int | None = None, within_chunk: bool = False
) -> Grounding:
    """Locate `quote`, preferring the strictest match, and within a method the chunk over the document.

    Exact and normalised matches may lie outside the chunk unless `within_chunk`; fuzzy ones never do.
    """
    quote = quote.strip()
    end = len(document_text) if chunk_end is None else chunk_end
    chunk = (document_text[chunk_start:end], chunk_start)
    elsewhere = not within_chunk and (chunk_start > 0 or end < len(document_text))
    if quote:
        for method in (_exact, _normalised):
            for text, offset in [chunk, (document_text, 0)] if elsewhere else [chunk]:
                found = method(quote, text, offset)
                if found is not None:
                    return found
        fuzzy = _fuzzy(quote, *chunk)
        if fuzzy is not None:
            return fuzzy
    return Grounding(GroundingStatus.UNGROUNDED, None, None, 0.0)
