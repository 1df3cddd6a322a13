"""Values found without the model: a task's patterns (with checksums) and detectors.

Rules are declared in the task file (`rules:`). A pattern rule yields its named
group `value` (or the whole match) with the exact character offsets it was found
at, so every rule value is grounded by construction. A rule's `check` drops the
matches whose check digits (or ranges) fail. A detector
rule (`detector: language`) reads the start of the document text. Checks are
python-stdnum's: `luhn` (payment cards), `iban`, `eu_vat`, `us_ssn`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.tasks import RuleSpec, Task

LANGUAGE_SAMPLE_CHARS = 4000


@dataclass(frozen=True)
class RuleMatch:
    rule: str
    field: str
    value: str
    start: int
    end: int


def luhn_ok(text: str) -> bool:
    """A payment card number: 13 to 19 digits that pass the Luhn check (python-stdnum)."""
    from stdnum import luhn

    digits = "".join(c for c in text if c.isdigit())
    return 13 <= len(digits) <= 19 and bool(luhn.is_valid(digits))


def iban_ok(text: str) -> bool:
    """An IBAN whose country format and ISO 13616 check digits hold (python-stdnum)."""
    from stdnum import iban

    return bool(iban.is_valid(text))


def eu_vat_ok(text: str) -> bool:
    """An EU VAT number whose country's check holds (python-stdnum)."""
    from stdnum.eu import vat

    return bool(vat.is_valid(text))


def us_ssn_ok(text: str) -> bool:
    """A US social security number in a range the SSA issues (python-stdnum)."""
    from stdnum.us import ssn

    return bool(ssn.is_valid(text))


CHECKS = {"luhn": luhn_ok, "iban": iban_ok, "eu_vat": eu_vat_ok, "us_ssn": us_ssn_ok}


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language (langdetect, seeded so that it is deterministic)."""
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    try:
        return str(detect(text[:LANGUAGE_SAMPLE_CHARS]))
    except LangDetectException:
        return None


def _pattern_matches(rule: RuleSpec, text: str) -> list[RuleMatch]:
    matches = []
    for match in rule.regex.finditer(text, 0, rule.first_chars or len(text)):
        group = "value" if "value" in rule.regex.groupindex else 0
        start, end = match.span(group)
        if start < 0 or start == end:
            continue
        value = text[start:end]
        if rule.check is not None and not CHECKS[rule.check](value):
            continue
        matches.append(RuleMatch(rule.name, rule.field, value, start, end))
    return matches


def apply_rules(task: Task, text: str) -> list[RuleMatch]:
    """Every value the task's rules find in a document's text, each at most once per field and span."""
    found: dict[tuple[str, int, int], RuleMatch] = {}
    for rule in task.rules:
        if rule.detector == "language":
            code = detect_language(text)
            matches = (
                []
                if code is None
                else [RuleMatch(rule.name, rule.field, code, 0, min(len(text), LANGUAGE_SAMPLE_CHARS))]
            )
        else:
            matches = _pattern_matches(rule, text)
        for match in matches:
            found.setdefault((match.field, match.start, match.end), match)
    # A number that passed a checksum (IBAN, card) is that, not also a phone number inside it.
    checked_fields = {rule.field for rule in task.rules if rule.check is not None}
    checked = [m for m in found.values() if m.field in checked_fields]
    kept = [
        m
        for m in found.values()
        if m.field in checked_fields or not any(c.start < m.end and m.start < c.end for c in checked)
    ]
    return sorted(kept, key=lambda m: (m.start, m.field))
