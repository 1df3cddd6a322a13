"""The parts of extraction quality that need no model: tasks, rules, routing, normalising, reducing, scoring."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from pipeline.audit.evaluation import load_gold
from pipeline.core.documents import Chunk
from pipeline.core.errors import ConfigError
from pipeline.core.settings import ValueConventions
from pipeline.core.tasks import BUILTIN_TASK_DIR, find_task, unrouted
from pipeline.extract.routing import route
from pipeline.extract.rules import apply_rules, eu_vat_ok, iban_ok, luhn_ok, us_ssn_ok
from pipeline.reduce import normalise
from pipeline.reduce.normalise import comparison_key, to_dataset_format
from pipeline.reduce.values import ValuesOf, reduce_document
from tests.support import finding_row, nda_gold

LIBRARY = ("nda_key_terms", "contract_clauses", "pii_inventory", "document_profile")


@pytest.mark.parametrize("name", LIBRARY)
def test_library_tasks_load_and_every_rule_and_signal_names_a_field(name: str) -> None:
    task = find_task(name)
    assert task.fields, name
    assert set(task.output_schema["properties"]) <= set(task.fields)
    assert set(task.evidence_fields) <= set(task.fields)
    for rule in task.rules:
        assert rule.field in task.fields
    if task.routing is not None:
        assert set(task.routing.signals) <= set(task.fields)


def test_a_task_file_with_a_broken_rule_is_refused(tmp_path: Path) -> None:
    text = (BUILTIN_TASK_DIR / "nda_key_terms.yaml").read_text(encoding="utf-8")
    (tmp_path / "nda_key_terms.yaml").write_text(text.replace("field: jurisdiction", "field: nowhere", 1))
    with pytest.raises(ConfigError, match="unknown field 'nowhere'"):
        find_task("nda_key_terms", [tmp_path])
    (tmp_path / "nda_key_terms.yaml").write_text(
        text.replace("    field: party\n", "    field: party\n    check: crc\n")
    )
    with pytest.raises(ConfigError, match="check"):
        find_task("nda_key_terms", [tmp_path])


def test_checks_are_python_stdnums() -> None:
    assert luhn_ok("4111 1111 1111 1111") and not luhn_ok("4111 1111 1111 1112")
    assert luhn_ok("5500-0000-0000-0004") and not luhn_ok("1234")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and iban_ok("DE89370400440532013000")
    assert not iban_ok("GB82 WEST 1234 5698 7654 33")
    assert eu_vat_ok("DE136695976") and eu_vat_ok("FR 40 303 265 045") and not eu_vat_ok("DE136695977")
    assert us_ssn_ok("536-90-4399") and not us_ssn_ok("078-05-1120")  # a number the SSA voided


def test_pii_rules_find_what_patterns_find_reliably_with_offsets() -> None:
    text = (
        "Mail j.doe@example.com or call +44 20 7946 0958. IBAN GB82 WEST 1234 5698 7654 32; "
        "card 4111 1111 1111 1111, not 4111 1111 1111 1112. SSN 123-45-6789, not 078-05-1120. "
        "VAT DE 136 695 976, not DE136695977. Date of birth: 12/03/1980."
    )
    matches = apply_rules(find_task("pii_inventory"), text)
    by_field: dict[str, list[str]] = {}
    for match in matches:
        assert text[match.start : match.end] == match.value
        by_field.setdefault(match.field, []).append(match.value)
    assert by_field["email_addresses"] == ["j.doe@example.com"]
    assert by_field["phone_numbers"] == ["+44 20 7946 0958"]  # not the digits inside the IBAN or the cards
    assert by_field["ibans"] == ["GB82 WEST 1234 5698 7654 32"]
    assert by_field["payment_cards"] == ["4111 1111 1111 1111"]  # the Luhn-failing number is dropped
    assert by_field["national_ids"] == ["123-45-6789"]  # the voided number is dropped
    assert by_field["vat_numbers"] == ["DE 136 695 976"]
    assert by_field["dates_of_birth"] == ["12/03/1980"]


def test_language_detector_rule() -> None:
    task = find_task("document_profile")
    english = apply_rules(task, "This agreement is made between the parties named below. " * 5)
    french = apply_rules(task, "Le présent accord est conclu entre les parties nommées ci-dessous. " * 5)
    assert [m.value for m in english] == ["en"] and [m.value for m in french] == ["fr"]


def test_nda_rules_on_real_wording() -> None:
    text = (
        "This Agreement is entered into as of the 20th day of May, 2014 by and between Liquidmetal Technologies, "
        'Inc. ("Company") and Visser Precision Cast, LLC. It remains in force for a period of three (3) years. '
        "This Agreement shall be governed by and construed in accordance with the laws of the State of New York."
    )
    found = {
        (m.field, normalise.normalise(find_task("nda_key_terms").fields[m.field].kind, m.value))
        for m in apply_rules(find_task("nda_key_terms"), text)
    }
    assert ("effective_date", "2014-05-20") in found
    assert ("jurisdiction", "New York") in found
    assert ("term", "3 years") in found
    assert ("party", "Liquidmetal Technologies, Inc.") in found
    assert ("party", "Visser Precision Cast, LLC") in found


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("date", "this 4th day of September, 2012", "2012-09-04"),
        ("date", "May 20, 2014", "2014-05-20"),
        ("date", "May 2014", None),  # no day: not a date this field can hold
        ("date", "clicking", None),
        ("duration", "thirty-six (36) months", "36 months"),
        ("duration", "a period of two years", "2 years"),
        ("duration", "one year", "1 year"),
        ("jurisdiction", "the laws of the State of New York", "New York"),
        ("jurisdiction", "the Commonwealth of Massachusetts", "Massachusetts"),
        ("party", 'Liquidmetal Technologies, Inc. ("Company")', "Liquidmetal Technologies, Inc."),
        ("party", "the Company", None),
        ("party", "Recipient", None),
        ("person", "Name: Jack Qian", "Jack Qian"),
        ("person", "4", None),
        ("amount", "$1,000,000", "1000000 USD"),
        ("amount", "EUR 5 million", "5000000 EUR"),
        ("amount", "EUR 1.000.000,00", "1000000 EUR"),  # was "1 EUR"
        ("amount", "€ 2.500", "2500 EUR"),  # was "2.5 EUR"
        ("amount", "USD 12,345.67", "12345.67 USD"),
        ("amount", "CHF 1'250.50", "1250.5 CHF"),
        ("amount", "1,5 EUR", "1.5 EUR"),
        ("amount", "12 apples", None),  # no currency, no amount
        ("date", "16/03/2026", "2026-03-16"),  # the day is past 12: no order needed
        ("date", "the 1st day of June, 2011", "2011-06-01"),
        ("date", "effective as of January 5, 2015 (the Effective Date)", "2015-01-05"),
        ("date", "dated March 3, 2011 and amended May 1, 2012", None),  # two dates: which one?
        ("iban", "GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432"),
        ("iban", "GB82 WEST 1234 5698 7654 33", None),
        ("vat", "DE 136 695 976", "DE136695976"),
        ("payment_card", "4111 1111 1111 1112", None),
        ("phone", "(212) 555-0187", "2125550187"),
        ("language", "English", "en"),
    ],
)
def test_normalisers(kind: str, raw: str, expected: str | None) -> None:
    assert normalise.normalise(kind, raw) == expected


@pytest.mark.parametrize(
    ("raw", "conventions", "expected"),
    [
        ("03/04/2026", ValueConventions(), "2026-03-04"),  # month first: the default (MDY)
        ("03/04/2026", ValueConventions(date_order="DMY"), "2026-04-03"),
        ("2026/04/03", ValueConventions(date_order="YMD"), "2026-04-03"),
        ("le 4 mars 2026", ValueConventions(languages=["fr"]), "2026-03-04"),  # was: nothing
        ("4. März 2026", ValueConventions(languages=["de"]), "2026-03-04"),  # was: nothing
        ("4 de marzo de 2026", ValueConventions(languages=["es", "en"]), "2026-03-04"),
    ],
)
def test_dates_are_read_by_how_their_source_writes_them(raw: str, conventions: ValueConventions, expected: str) -> None:
    assert normalise.normalise("date", raw, conventions) == expected


def test_an_ambiguous_amount_follows_the_sources_decimal_separator() -> None:
    assert normalise.normalise("amount", "EUR 1.500") == "1500 EUR"  # three digits after the point: thousands
    comma = ValueConventions(decimal_separator=",")
    assert normalise.normalise("amount", "EUR 1.500,25", comma) == "1500.25 EUR"
    assert normalise.normalise("amount", "USD 1,500", ValueConventions(decimal_separator=",")) == "1.5 USD"


@pytest.mark.parametrize("name", (*LIBRARY, "key_terms"))
def test_every_field_of_every_library_task_declares_its_kind(name: str) -> None:
    raw = yaml.safe_load((BUILTIN_TASK_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    declared = raw.get("fields") or {}
    assert set(raw["schema"].get("properties", {})) <= set(declared), name
    assert all("kind" in spec for spec in declared.values()), name


def _chunks(*texts: str) -> list[Chunk]:
    chunks, start = [], 0
    for ordinal, text in enumerate(texts):
        chunks.append(
            Chunk(
                chunk_id=f"c{ordinal}",
                content_sha256="x",
                ordinal=ordinal,
                start=start,
                end=start + len(text),
                pages=(1,),
                text=text,
                placement="exact",
            )
        )
        start += len(text) + 2
    return chunks


def test_routing_sends_only_chunks_with_a_signal_and_says_why() -> None:
    task = find_task("nda_key_terms")
    chunks = _chunks(
        "MUTUAL NON-DISCLOSURE AGREEMENT between A and B",
        "Definitions of words.",
        "This Agreement shall be governed by the laws of Delaware.",
        "Notices go to the addresses.",
    )
    decisions = route(task, chunks)
    assert [d.routed for d in decisions] == [True, False, True, False]
    assert "first 1 chunk" in decisions[0].reason
    assert decisions[1].reason == "no signal of any field matched"
    assert "jurisdiction" in decisions[2].reason and "governed by" in decisions[2].reason
    assert all(d.routed for d in route(task, chunks, enabled=False))
    budgeted = route(task, chunks, budget=1)
    assert [d.routed for d in budgeted] == [True, False, False, False]
    assert "max_chunks_per_document" in budgeted[2].reason
    unrouted_task = find_task("key_terms").model_copy(update={"routing": None})
    assert all(d.routed for d in route(unrouted_task, chunks))  # no routing declared: every chunk


def test_the_default_task_routes_and_keeps_to_its_chunk_budget() -> None:
    task = find_task("key_terms")
    assert task.routing is not None and task.routing.max_chunks == 6
    sheet = _chunks(*[f"Row {i}: total USD 1,{i:03d}.00" for i in range(20)])
    decisions = route(task, sheet)
    assert sum(d.routed for d in decisions) == 6
    assert [d.routed for d in decisions[:6]] == [True] * 6
    assert decisions[6].reason == "over the task's chunk budget (routing.max_chunks = 6)"
    assert "signal for amounts" in decisions[2].reason
    # The smaller of the settings' cap and the task's budget wins; with routing off, only the settings' cap.
    assert sum(d.routed for d in route(task, sheet, budget=3)) == 3
    assert all(d.routed for d in route(task, sheet, enabled=False))
    prose = _chunks("A memo.", "Lunch is at noon.", "The weather was fine.", "We met the team.")
    assert [d.routed for d in route(task, prose)] == [True, True, False, False]


def test_a_task_without_routing_is_named_in_a_warning() -> None:
    routed, bare = find_task("nda_key_terms"), find_task("key_terms").model_copy(update={"routing": None})
    assert unrouted([routed]) is None
    warning = unrouted([routed, bare])
    assert warning is not None and "key_terms" in warning and "nda_key_terms" not in warning


NOW = datetime(2026, 12, 2, tzinfo=UTC)
OF = ValuesOf(run_id="r", content_sha256="c", document_uri="file:///d", created_at=NOW)


def test_reduce_merges_normalised_candidates_and_flags_disagreement() -> None:
    # The hand order: the statuses a learned ranker gives are its own (tests/test_ranker.py).
    task = find_task("nda_key_terms").model_copy(update={"ranker_ref": None})
    findings = [
        finding_row("effective_date", "May 20, 2014", start=10),
        finding_row("effective_date", "20th day of May, 2014", method="rule", start=500),
        finding_row("effective_date", "June 1, 2015", confidence=0.9, start=900),
        finding_row("effective_date", "clicking", confidence=0.99, start=5),
        finding_row("jurisdiction", "New York", method="rule", start=700),
        finding_row("jurisdiction", "Delaware", grounded=False, confidence=0.99),
        finding_row("party", "Liquidmetal Technologies, Inc.", method="rule", start=40),
        finding_row("party", "LIQUIDMETAL TECHNOLOGIES", start=45),
        finding_row("party", "the Company", confidence=0.99, start=60),
        finding_row("party", "Visser Precision Cast, LLC", method="rule", start=80),
        finding_row("term", "made up", grounded=False),
    ]
    rows = {(r.field, r.item_index): r for r in reduce_document(task, findings, OF)}
    date = rows[("effective_date", 0)]
    assert date.value == "2014-05-20" and date.support == 2 and date.methods == "model,rule"
    assert date.status == "disagreement"  # 2015-06-01 is also grounded: kept for review, not dropped
    alternatives = {a["value"] for a in json.loads(date.alternatives)}
    assert {"2015-06-01", "clicking"} <= alternatives  # "clicking" is no date: never chosen
    assert rows[("jurisdiction", 0)].value == "New York"
    assert rows[("jurisdiction", 0)].status == "chosen"  # the ungrounded Delaware cannot compete
    parties = [rows[("party", i)].value for i in range(2)]
    assert parties == ["Liquidmetal Technologies, Inc.", "Visser Precision Cast, LLC"]
    assert ("party", 2) not in rows  # "the Company" is a role, not a party
    assert rows[("term", 0)].status == "unsupported" and rows[("term", 0)].value is None
    assert rows[("party", 0)].finding_id == "party-Liquidmetal Technologies, Inc.-rule-40"


def test_reduce_ranks_rule_support_first_and_folds_short_names_into_full_ones() -> None:
    task = find_task("nda_key_terms").model_copy(update={"ranker_ref": None})  # the hand order
    findings = [
        # A confident model outvoting a rule match on a single-valued field must not win.
        finding_row("jurisdiction", "Georgia", confidence=0.99, start=10),
        finding_row("jurisdiction", "Georgia", confidence=0.99, start=90),
        finding_row("jurisdiction", "New York", method="rule", start=700),
        finding_row("party", "Georgia Power Company", method="rule", start=20),
        finding_row("party", "GPC", confidence=0.99, start=60),
        finding_row("party", "GPC", confidence=0.99, start=160),
        finding_row("party", "TEVA", confidence=0.95, start=260),
        finding_row("party", "Teva Pharmaceutical Industries, Ltd.", confidence=0.7, start=30),
        finding_row("party", "Counsel", confidence=0.99, start=300),
        finding_row("party", "State of Delaware", confidence=0.99, start=400),
    ]
    rows = reduce_document(task, findings, OF)
    jurisdiction = next(r for r in rows if r.field == "jurisdiction")
    assert jurisdiction.value == "New York" and jurisdiction.status == "disagreement"
    assert json.loads(jurisdiction.alternatives)[0]["value"] == "Georgia"  # kept for review
    parties = [(r.value, r.support) for r in rows if r.field == "party"]
    assert parties == [("Georgia Power Company", 3), ("Teva Pharmaceutical Industries, Ltd.", 2)]


def test_reduce_takes_an_ungrounded_summary_but_never_an_ungrounded_type() -> None:
    task = find_task("document_profile")
    rows = reduce_document(
        task,
        [
            finding_row("summary", "An NDA between two firms.", grounded=False),
            finding_row("document_type", "invoice", grounded=False),
        ],
        OF,
    )
    by_field = {r.field: r for r in rows}
    assert by_field["summary"].value == "An NDA between two firms." and by_field["summary"].status == "chosen"
    assert by_field["document_type"].status == "unsupported"


def test_kleister_comparison() -> None:
    assert comparison_key(to_dataset_format("JDA Software Group, Inc.")) == comparison_key("Jda_Software_Group_Inc.")
    assert comparison_key(to_dataset_format("3 years")) == comparison_key("3_years")
    assert comparison_key(to_dataset_format("New York")) == comparison_key("New_York")
    assert comparison_key("Delaware") != comparison_key("New_York")


def test_gold_loading(tmp_path: Path) -> None:
    labels = nda_gold(tmp_path / "gold")
    gold = load_gold(labels)
    assert len(gold) == 3 and all((labels.parent / g.file).is_file() for g in gold)
    assert all(set(g.keys_asked) <= {"effective_date", "jurisdiction", "party", "term"} for g in gold)
    assert all(g.values["party"] for g in gold)
    assert load_gold(labels, limit=1)[0].file == gold[0].file
    (tmp_path / "bad.jsonl").write_text('{"no": "file"}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1"):
        load_gold(tmp_path / "bad.jsonl")


def test_candidate_recall_counts_gold_values_among_every_candidate_not_only_the_chosen() -> None:
    import json

    import duckdb

    from pipeline.audit.evaluation import GoldDocument, evaluate

    con = duckdb.connect()
    con.execute("CREATE TABLE documents (content_sha256 VARCHAR, document_uri VARCHAR)")
    con.execute("CREATE TABLE routing (task VARCHAR, run_id VARCHAR, content_sha256 VARCHAR, routed BOOLEAN)")
    con.execute(
        "CREATE TABLE answers (run_id VARCHAR, content_sha256 VARCHAR, task VARCHAR, prompt_tokens INT, "
        "completion_tokens INT)"
    )
    con.execute(
        "CREATE TABLE document_values (task VARCHAR, run_id VARCHAR, content_sha256 VARCHAR, field VARCHAR, "
        "value VARCHAR, status VARCHAR, confidence DOUBLE, methods VARCHAR, evidence_start BIGINT, "
        "item_index INT, alternatives VARCHAR, ranker_probability DOUBLE)"
    )
    con.execute("INSERT INTO documents VALUES ('sha', 'file:///gold/nda.pdf')")
    con.execute("INSERT INTO routing VALUES ('nda', 'run-1', 'sha', true)")
    other = json.dumps([{"value": "Delaware", "support": 1, "grounded": 1, "score": 0.4, "methods": ["model"]}])
    con.execute(
        "INSERT INTO document_values VALUES "
        "('nda', 'run-1', 'sha', 'jurisdiction', 'New York', 'chosen', 0.9, 'model', 10, 0, ?, NULL), "
        "('nda', 'run-1', 'sha', 'term', NULL, 'unsupported', NULL, 'model', NULL, 0, ?, NULL)",
        [other, json.dumps([{"value": "2 years", "support": 1, "grounded": 0, "score": 0.2, "methods": ["model"]}])],
    )
    gold = [
        GoldDocument(
            file="nda.pdf",
            keys_asked=["jurisdiction", "term"],
            values={"jurisdiction": ["Delaware"], "term": ["2_years"]},
        )
    ]
    report = evaluate(con, "nda", gold)
    fields = {row["field"]: row for row in report.fields}
    # the reducer chose New York (wrong) and found no supported term: recall 0, both gold values were candidates
    assert fields["jurisdiction"]["recall"] == 0.0 and fields["jurisdiction"]["candidate_recall"] == 1.0
    assert fields["term"]["recall"] == 0.0 and fields["term"]["candidate_recall"] == 1.0
    assert report.summary["overall_candidate_recall"] == 1.0 and report.summary["overall_f1"] == 0.0


@pytest.mark.parametrize("name", ["my nda é_1.pdf", "50% off [draft].pdf", "nda_v2.pdf", "plain.pdf"])
def test_a_gold_file_is_found_by_its_exact_name_however_its_uri_writes_it(name: str) -> None:
    import duckdb

    from pipeline.audit.evaluation import latest_extraction

    con = duckdb.connect()
    con.execute("CREATE TABLE documents (content_sha256 VARCHAR, document_uri VARCHAR)")
    con.execute("CREATE TABLE routing (task VARCHAR, run_id VARCHAR, content_sha256 VARCHAR)")
    # A decoy whose name differs where a LIKE pattern has wildcards, extracted by a newer run.
    decoy = name.replace(" ", "x").replace("_", "y").replace("%", "z") if name != "plain.pdf" else "aplain.pdf"
    for sha, file, run in (("right", name, "run-1"), ("decoy", decoy, "run-2")):
        con.execute("INSERT INTO documents VALUES (?, ?)", [sha, (Path("/gold/documents") / file).as_uri()])
        con.execute("INSERT INTO routing VALUES ('nda', ?, ?)", [run, sha])
    assert latest_extraction(con, "nda", f"documents/{name}") == ("right", "run-1")
