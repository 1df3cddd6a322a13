"""Values to canonical forms, by field kind, so that candidates can be compared and merged.

Each normaliser returns the canonical string, or None when the value cannot be
read as its kind (it then stays a raw candidate). Dates become ISO 8601 (only when
day, month and year are all written; read with `dateparser` in the source's
languages and date order), durations `<number> <unit>`, amounts `<number>
<ISO currency>` (read with `price-parser`: either decimal separator), jurisdictions
the bare place name, party names lose quotes, defined-term brackets and role
words, identifiers (IBAN, payment card, VAT) their spaces, checked by
`python-stdnum`. How a source writes its values (`ValueConventions`) comes from
the settings, per source, and is recorded with every value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pipeline.core.settings import ValueConventions

DEFAULT_CONVENTIONS = ValueConventions()

_SPACES = re.compile(r"\s+")
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
_DOUBLE_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"'})


def clean_text(value: str, quotes: dict[int, str] = _QUOTES) -> str:
    return _SPACES.sub(" ", value.translate(quotes)).strip(" \t\n\"'“”‘’.,;:()")


def text(value: str) -> str | None:
    """Whitespace collapsed and surrounding quotes dropped; the words themselves are kept as written."""
    cleaned = _SPACES.sub(" ", value.translate(_QUOTES)).strip(" \"'")
    return cleaned or None


def date(value: str, conventions: ValueConventions = DEFAULT_CONVENTIONS) -> str | None:
    """ISO date, only if day, month and year are all written; a phrase holding exactly one such date gives it."""
    cleaned = clean_text(value)
    if not re.search(r"\d", cleaned):
        return None
    import dateparser
    from dateparser.search import search_dates

    settings: Any = {
        "DATE_ORDER": conventions.date_order,
        "REQUIRE_PARTS": ["day", "month", "year"],
        "PREFER_DAY_OF_MONTH": "first",
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    parsed = dateparser.parse(cleaned, languages=conventions.languages, settings=settings)
    if parsed is None:
        found = search_dates(cleaned, languages=conventions.languages, settings=settings) or []
        dates = {when.date() for _, when in found}
        parsed_date = dates.pop() if len(dates) == 1 else None
    else:
        parsed_date = parsed.date()
    if parsed_date is None or not 1900 <= parsed_date.year <= 2100:
        return None
    return parsed_date.isoformat()


_JURISDICTION_NOISE = re.compile(
    r"^(?:.*?\blaws? of\s+)?(?:the\s+)?(?:state|commonwealth|province|republic|kingdom)\s+of\s+|"
    r"^(?:.*?\blaws? of\s+)?(?:the\s+)?|"
    r"\s*(?:law|laws|courts?)$|,?\s*(?:u\.?s\.?a?\.?|united states(?: of america)?)$",
    re.IGNORECASE,
)


def jurisdiction(value: str) -> str | None:
    cleaned = clean_text(value)
    for _ in range(3):
        stripped = clean_text(_JURISDICTION_NOISE.sub("", cleaned))
        if stripped == cleaned:
            break
        cleaned = stripped
    if not cleaned or not cleaned[0].isalpha() or len(cleaned) > 40:
        return None
    return " ".join(word if word.isupper() else word.capitalize() for word in cleaned.split())


# Words that name a role in the contract, not a party (the model often answers with them).
ROLE_WORDS = frozenset(
    "company recipient discloser disclosing receiving party parties employee employer consultant buyer seller "
    "purchaser licensor licensee contractor client customer supplier vendor executive investor you we us "
    "provider counsel partner member holder owner agent lender borrower landlord tenant distributor reseller "
    "affiliate affiliates subsidiary representative representatives advisor adviser shareholder stockholder".split()
)
NOT_NAME_WORDS = frozenset(
    "agreement agree section article miscellaneous confidential confidentiality nda payment severance "
    "successors assigns hereto herein whereas schedule exhibit date term my your our that this with "
    "employment".split()
)
_DEFINED_TERM = re.compile(r"\s*\((?:the\s+)?[\"'“]?[^()]{0,40}[\"'”]?\)\s*$")
# Legal forms that end a company name: the regex strips one from a name, the words are its forms
# spelled as one word without dots (for initials: "Georgia Power Company" -> "GP" as well as "GPC").
_LEGAL_FORM = re.compile(
    r"[,\s]+(inc|incorporated|llc|l\.l\.c|ltd|limited|corp|corporation|co|company|lp|l\.p|plc|n\.v|s\.a|ag|gmbh)\.?$",
    re.IGNORECASE,
)
LEGAL_FORM_WORDS = frozenset(
    "inc incorporated llc ltd limited corp corporation co company lp plc nv sa ag gmbh".split()
)


# A legal form written out or with dots, in the abbreviation most filings (and Kleister-NDA) use.
_CANONICAL_FORMS = (
    (re.compile(r"\bL\.\s?L\.\s?C\.?(?![A-Za-z])"), "LLC"),
    (re.compile(r"\bL\.\s?P\.?(?![A-Za-z])"), "LP"),
    (re.compile(r"\bLimited$"), "Ltd."),
    (re.compile(r"\bLIMITED$"), "LTD."),
    (re.compile(r"\bIncorporated$"), "Inc."),
    (re.compile(r"\bINCORPORATED$"), "INC."),
)
# Labels of a signature block read along with the name ("/s/ Jane Roe Title: ...", "Name: Jane Roe Signature").
_SIGNATURE_LABEL = re.compile(r"\s+(?:Title|Name|Signature|Its|By|Date|Address)\b.*$")


def _canonical_form(name: str) -> str:
    for pattern, form in _CANONICAL_FORMS:
        name = pattern.sub(form, name)
    return name


def _without_repeat(name: str) -> str:
    """A signature line's name written twice ("Brian Lynch Brian Lynch", "Mark G. Morrison Mark") once."""
    words = name.split()
    half = len(words) // 2
    if len(words) >= 4 and len(words) % 2 == 0 and words[:half] == words[half:]:
        return " ".join(words[:half])
    if len(words) >= 3 and words[-1] == words[0]:
        return " ".join(words[:-1])
    return name


def party(value: str) -> str | None:
    # A name keeps its apostrophes as written ("Landry’s, Inc."); quotes around it go.
    cleaned = clean_text(_DEFINED_TERM.sub("", value.translate(_DOUBLE_QUOTES)), _DOUBLE_QUOTES)
    cleaned = _without_repeat(clean_text(_SIGNATURE_LABEL.sub("", cleaned), _DOUBLE_QUOTES))
    # "the Company" loses its article; "The Anson Group LLC" keeps it: a capital "The" is part of the name.
    # A clause's letter ("B. The Company") and a joining word ("of Acme Inc.") go too.
    cleaned = re.sub(r"^(?:[A-Z]\.\s+(?=(?i:the)\s)|\(?[a-z0-9]{1,3}\)\s+)", "", cleaned)
    cleaned = re.sub(r"^(?:the|[Bb]y|[Aa]nd|[Bb]etween|[Oo]f)\s+", "", cleaned)
    cleaned = re.sub(r",\s*an?\s+[A-Z][a-z]+\s+(?:corporation|company|limited liability company).*$", "", cleaned)
    words = [w.lower().strip(".,") for w in cleaned.split()]
    if not words or all(w in ROLE_WORDS or w in {"the", "a", "an", "and", "each", "other"} for w in words):
        return None
    if all(w in LEGAL_FORM_WORDS for w in words):  # "Inc." alone: a legal form without its name
        return None
    # Not a name: too long, a heading or clause number, a stray letter, or words no party is called.
    if len(cleaned) > 80 or len(words) > 7 or re.match(r"^\d+(?:\.\d*)?\s", cleaned) or len(cleaned) < 4:
        return None
    if NOT_NAME_WORDS & set(words) or re.match(
        r"^(?:(?:state|commonwealth|laws?)\s+of\b|an?\s)", cleaned, re.IGNORECASE
    ):
        return None
    if re.search(r"\b(?:Inc|Ltd|Corp|Co|N\.V|S\.A|INC|LTD|CORP|CO)$", cleaned):
        cleaned += "."  # the abbreviation's full stop, which clean_text took away
    return _canonical_form(cleaned)


def person(value: str) -> str | None:
    """A person's name: two to five words of letters, no digits, a label like "Name:" dropped."""
    cleaned = clean_text(re.sub(r"^[A-Za-z ]{1,20}:\s*", "", value))
    words = cleaned.split()
    if not 2 <= len(words) <= 5 or re.search(r"\d", cleaned):
        return None
    if not all(w[0].isupper() for w in words if w.lower() not in {"de", "van", "von", "der", "da", "la"}):
        return None
    if any(w.lower().strip(".,") in ROLE_WORDS for w in words):
        return None
    return cleaned


def address(value: str) -> str | None:
    """A postal address: letters and at least one number (house number or postcode)."""
    cleaned = clean_text(value)
    if len(cleaned) < 10 or not re.search(r"\d", cleaned) or not re.search(r"[A-Za-z]{3}", cleaned):
        return None
    return cleaned


def party_initials(name: str) -> set[str]:
    """The initials a party's name may be abbreviated to, with and without its legal form."""
    words = re.findall(r"[A-Za-z0-9]+", name)
    whole = "".join(w[0] for w in words).upper()
    without_form = "".join(w[0] for w in words if w.lower() not in LEGAL_FORM_WORDS).upper()
    return {whole, without_form}


def party_key(value: str) -> str:
    """The de-duplication key of a party name: upper-case letters and digits, legal form dropped."""
    base = _LEGAL_FORM.sub("", value.strip())
    return re.sub(r"[^A-Z0-9]", "", base.upper())


_NUMBER_WORDS = {
    word: number
    for number, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORDS.update({"thirty": 30, "thirty-six": 36, "forty-eight": 48, "sixty": 60, "ninety": 90, "eighteen": 18})
_DURATION = re.compile(
    r"(?:(?P<digits>\d+)|(?P<word>[a-z]+(?:-[a-z]+)?))\s*(?:\(\s*(?P<paren>\d+)\s*\))?\s*"
    r"(?:-\s*)?(?:full\s+|calendar\s+)?(?P<unit>year|month|week|day)s?\b",
    re.IGNORECASE,
)
_ORDINALS = {
    word: number
    for number, word in enumerate("first second third fourth fifth sixth seventh eighth ninth tenth".split(), start=1)
}
# "until the third anniversary of the Effective Date": a term of three years.
_ANNIVERSARY = re.compile(r"\b(?:(?P<word>[a-z]+)|(?P<digits>\d+)(?:st|nd|rd|th))\s+anniversary\b", re.IGNORECASE)


def duration(value: str) -> str | None:
    """`<number> <unit>` ("two (2) years", "an 18-month period", "the third anniversary"), or None."""
    cleaned = clean_text(value)
    anniversary = _ANNIVERSARY.search(cleaned)
    if anniversary:
        digits, word = anniversary.group("digits"), anniversary.group("word")
        years = int(digits) if digits else _ORDINALS.get(word.lower())
        return None if years is None else f"{years} year{'' if years == 1 else 's'}"
    match = _DURATION.search(cleaned)
    if not match:
        return None
    number: int | None
    if match.group("paren"):
        number = int(match.group("paren"))
    elif match.group("digits"):
        number = int(match.group("digits"))
    else:
        number = _NUMBER_WORDS.get((match.group("word") or "").lower())
    if number is None:
        return None
    unit = match.group("unit").lower()
    return f"{number} {unit}{'' if number == 1 else 's'}"


# Currency signs as price-parser finds them -> ISO 4217 codes (a three-letter code stands for itself).
_CURRENCY_SIGNS = {
    "$": "USD",
    "US$": "USD",
    "€": "EUR",
    "£": "GBP",
    "¥": "JPY",
    "₹": "INR",
    "Fr.": "CHF",
    "SFr.": "CHF",
}
_CURRENCY_WORDS = {"dollar": "USD", "dollars": "USD", "euro": "EUR", "euros": "EUR", "pounds": "GBP"}
_SCALE = re.compile(r"\d\s*(?P<scale>thousand|million|billion|mn|bn|m|k)\b", re.IGNORECASE)
_SCALES = {"thousand": 1_000, "k": 1_000, "million": 1_000_000, "mn": 1_000_000, "m": 1_000_000}
_SCALES |= {"billion": 1_000_000_000, "bn": 1_000_000_000}


def amount(value: str, conventions: ValueConventions = DEFAULT_CONVENTIONS) -> str | None:
    """`<number> <ISO currency>`: 'EUR 1.000.000,00' and '$1,000,000' alike; no currency, no amount."""
    from price_parser import Price

    price = Price.fromstring(value, decimal_separator=conventions.decimal_separator)
    sign = (price.currency or "").strip()
    words = re.findall(r"[a-z]+", value.lower())
    currency = _CURRENCY_SIGNS.get(sign) or (sign.upper() if re.fullmatch(r"[A-Za-z]{3}", sign) else None)
    currency = currency or next((_CURRENCY_WORDS[w] for w in words if w in _CURRENCY_WORDS), None)
    if price.amount is None or currency is None:
        return None
    scale = _SCALE.search(value)
    number = price.amount * _SCALES[scale.group("scale").lower()] if scale else price.amount
    shown = f"{number:f}".rstrip("0").rstrip(".") if "." in f"{number:f}" else f"{number:f}"
    return f"{shown} {currency}"


def email(value: str) -> str | None:
    cleaned = clean_text(value).lower()
    return cleaned if re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", cleaned) else None


def phone(value: str) -> str | None:
    digits = re.sub(r"\D", "", value)
    if not 7 <= len(digits) <= 15:
        return None
    return ("+" if value.strip().startswith("+") else "") + digits


def iban(value: str) -> str | None:
    """The IBAN without spaces, if its check digits hold (python-stdnum)."""
    from stdnum import iban as iban_number
    from stdnum.exceptions import ValidationError

    try:
        compact = iban_number.compact(value)
    except ValidationError:
        return None
    return compact if iban_number.is_valid(compact) else None


def payment_card(value: str) -> str | None:
    """The card number's digits, if 13 to 19 of them pass the Luhn check (python-stdnum)."""
    from stdnum import luhn

    digits = re.sub(r"\D", "", value)
    return digits if 13 <= len(digits) <= 19 and luhn.is_valid(digits) else None


def vat(value: str) -> str | None:
    """An EU VAT number, compact and upper case, if its country's check holds (python-stdnum)."""
    from stdnum.eu import vat as vat_number
    from stdnum.exceptions import ValidationError

    try:  # compact() raises on a number of no known country (found by tests/test_properties.py)
        compact = vat_number.compact(value)
    except ValidationError:
        return None
    return compact if vat_number.is_valid(compact) else None


_LANGUAGES = {"english": "en", "french": "fr", "german": "de", "spanish": "es", "italian": "it", "dutch": "nl"}


def language(value: str) -> str | None:
    cleaned = clean_text(value).lower()
    if re.fullmatch(r"[a-z]{2}", cleaned):
        return cleaned
    return _LANGUAGES.get(cleaned)


PLAIN: dict[str, Callable[[str], str | None]] = {
    "text": text,
    "jurisdiction": jurisdiction,
    "party": party,
    "person": person,
    "address": address,
    "duration": duration,
    "email": email,
    "phone": phone,
    "iban": iban,
    "payment_card": payment_card,
    "vat": vat,
    "language": language,
}
# Kinds whose reading depends on how the source writes them.
BY_CONVENTION: dict[str, Callable[[str, ValueConventions], str | None]] = {"date": date, "amount": amount}
KINDS = frozenset(PLAIN) | frozenset(BY_CONVENTION)


def normalise(kind: str, value: str, conventions: ValueConventions = DEFAULT_CONVENTIONS) -> str | None:
    """`value` in the canonical form of its kind, or None when it cannot be read as one."""
    if kind in BY_CONVENTION:
        return BY_CONVENTION[kind](value, conventions)
    return PLAIN[kind](value)


def to_dataset_format(value: str) -> str:
    """A value written the way Kleister-NDA writes values: spaces and colons as "_", no commas, "&" as "and"."""
    return "_".join(value.replace(",", "").replace(":", " ").replace("&", " and ").split())


def comparison_key(value: str) -> str:
    """Kleister's comparison: upper case, "_" read as a space."""
    return " ".join(value.replace("_", " ").upper().split())


def label_key(value: str) -> str:
    """The key a labelled value (gold, or a reviewer's) and a candidate are compared by (Kleister's comparison)."""
    return comparison_key(to_dataset_format(value))


def dedupe_key(kind: str, normalised: str) -> str:
    """Two values with the same key are the same value (party names ignore case, punctuation, legal form)."""
    if kind == "party":
        return party_key(normalised)
    if kind in {"text", "jurisdiction", "person", "address"}:
        return normalised.upper()
    return normalised
