"""Features of a field's candidate values, for the learned ranker (`pipeline/core/rankers.py`).

The generators (a task's rules and the model) propose candidates; `pipeline/reduce/values.py`
groups them by normalised value. A ranker scores each choosable group with a per-field logistic
regression over the features below and keeps the groups whose probability reaches the field's
threshold. The features are computed here, from the same groups, for training
(`pipeline/audit/learning.py`) and for use, so the two cannot drift apart. They read the findings
(how many rules of which name and how many model answers support a value, the model's confidence,
where the evidence is), the normalised value itself, and the words around its evidence in the
document's canonical text (`before:<word>`, `after:<word>`: which words the ranker weighs is learned;
the file keeps those seen in enough training documents).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Protocol

POSITION_SCALE = 12.0  # log(1 + chars): about 160,000 characters reads as 1.0
CONTEXT_WORDS = 4  # words read on each side of a value's evidence
CONTEXT_CHARS = 120  # at most this many characters on each side
CONTEXT_PREFIXES = ("before:", "after:")


class Finding(Protocol):
    """What the features read of a finding (`FindingRow` has it)."""

    method: str
    rule: str | None
    confidence: float | None
    grounding_status: str
    evidence_start: int | None
    evidence_end: int | None
    evidence_page: int | None


class Candidate(Protocol):
    """A group of findings with one normalised value (`values.Group` is one)."""

    normalised: str | None

    @property
    def findings(self) -> Sequence[Finding]: ...


_LEGAL_FORM = re.compile(
    r"\b(?:inc|llc|ltd|limited|corp|corporation|company|co|lp|plc|n\.v|s\.a|ag|gmbh|bank|bancorp)\.?$", re.I
)
_TOKEN = re.compile(r"[^\W\d_]+|\d+|[^\w\s]")
_DURATION = re.compile(r"^(?P<number>\d+) (?P<unit>year|month|week|day)s?$")


def _kind_features(kind: str, normalised: str) -> dict[str, float]:
    """What the value itself says: a party with a legal form or one like a person's name; a term's unit."""
    if kind == "party":
        words = normalised.split()
        legal = bool(_LEGAL_FORM.search(normalised))
        return {
            "party:legal_form": float(legal),
            "party:person_like": float(not legal and 2 <= len(words) <= 4 and all(w[:1].isupper() for w in words)),
            "party:words": min(len(words), 10) / 10,
            "party:upper": float(normalised.isupper()),
        }
    if kind == "duration":
        match = _DURATION.match(normalised)
        if match is None:
            return {}
        unit = match.group("unit")
        return {
            "duration:years": float(unit == "year"),
            "duration:months": float(unit == "month"),
            "duration:days_or_weeks": float(unit in ("day", "week")),
            "duration:number": math.log1p(int(match.group("number"))) / 5,
        }
    return {}


def _word(token: str) -> str:
    return "<number>" if token.isdigit() else token.lower()


def context_features(findings: Sequence[Finding], text: str) -> dict[str, float]:
    """The words next to the evidence: per word, the share of the findings with it among the
    `CONTEXT_WORDS` before (or after) their evidence (digits read as `<number>`, punctuation kept:
    a `(` after a name opens its defined term, a `:` before it is a form's label)."""
    located = [
        (f.evidence_start, f.evidence_end)
        for f in findings
        if f.evidence_start is not None
        and f.evidence_end is not None
        and 0 <= f.evidence_start <= f.evidence_end <= len(text)
    ]
    if not located:
        return {}
    counts: dict[str, float] = {}
    for start, end in located:
        before = _TOKEN.findall(text[max(0, start - CONTEXT_CHARS) : start])[-CONTEXT_WORDS:]
        after = _TOKEN.findall(text[end : end + CONTEXT_CHARS])[:CONTEXT_WORDS]
        seen = {f"before:{_word(t)}" for t in before} | {f"after:{_word(t)}" for t in after}
        for name in seen:
            counts[name] = counts.get(name, 0.0) + 1.0
    spans = len(located)
    return {name: count / spans for name, count in counts.items()}


def features(
    kind: str, group: Candidate, field_groups: Sequence[Candidate], text: str | None = None
) -> dict[str, float]:
    """The features of one candidate group among all the groups of its field in one document (with the
    document's canonical text, the words around the evidence too)."""
    grounded = [f for f in group.findings if f.grounding_status != "ungrounded"]
    model = [f for f in grounded if f.method == "model"]
    values: dict[str, float] = {}
    for finding in grounded:
        if finding.method == "rule" and finding.rule:
            key = f"rule:{finding.rule}"
            values[key] = values.get(key, 0.0) + 1.0
    for key in [k for k in values if k.startswith("rule:")]:
        values[key] = math.log1p(values[key])
    starts = [f.evidence_start for f in grounded if f.evidence_start is not None]
    first = min(starts) if starts else None
    pages = [f.evidence_page for f in grounded if f.evidence_page is not None]

    def earliest(other: Candidate) -> int:
        found = [f.evidence_start for f in other.findings if f.evidence_start is not None]
        return min(found) if found else 1 << 40

    order = sorted(range(len(field_groups)), key=lambda i: earliest(field_groups[i]))
    rank = next((n for n, i in enumerate(order) if field_groups[i] is group), 0)
    total = sum(len(g.findings) for g in field_groups) or 1
    values.update(
        {
            "rules": float(len({f.rule for f in grounded if f.method == "rule"})),
            "model": math.log1p(len(model)),
            "model_confidence": max((f.confidence or 0.0) for f in model) if model else 0.0,
            "ungrounded": math.log1p(len(group.findings) - len(grounded)),
            "first_offset": math.log1p(first) / POSITION_SCALE if first is not None else 1.0,
            "page_one": float(bool(pages) and min(pages) == 1),
            "position_rank": rank / max(1, len(field_groups) - 1),
            "support_share": len(group.findings) / total,
            "groups": math.log1p(len(field_groups)),
        }
    )
    if group.normalised:
        values.update(_kind_features(kind, group.normalised))
    if text:
        values.update(context_features(grounded, text))
    return values
