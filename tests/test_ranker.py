"""The learned ranker: its file, its features, how it chooses, and `assay learn` from gold and reviews.

The sentences in `TRAIN_SENTENCES` are quoted from NDAs of the Kleister-NDA train split (public SEC
EDGAR filings; github.com/applicaai/kleister-nda), the split the rules were developed on.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from assay.cli import cli
from pipeline.audit.learning import Example, examples_of, field_scores, gold_examples, learn, review_examples
from pipeline.core.errors import ConfigError
from pipeline.core.rankers import FieldModel, Ranker, load_ranker
from pipeline.core.tasks import BUILTIN_TASK_DIR, FieldSpec, find_task, load_task_file
from pipeline.extract.rules import apply_rules
from pipeline.land.warehouse import connect_read_only
from pipeline.reduce.normalise import comparison_key, duration, label_key, party, to_dataset_format
from pipeline.reduce.ranker import context_features, features
from pipeline.reduce.values import ValuesOf, choosable, choose, field_groups, reduce_document
from tests.support import FIXTURES, document, finding_row

NDA_TASK = BUILTIN_TASK_DIR / "nda_key_terms.yaml"


def _without_ranker(text: str) -> str:
    """The library task's text without its `ranker:` block (tests name their own, or none)."""
    return re.sub(r"(?m)^ranker:\n(?:[ \t]+.*\n)*", "", text)


# --- the generators: rules and normalisers, on sentences of the train split ---------------------

TRAIN_SENTENCES = [
    (
        "term",
        "shall survive termination or expiration of this Agreement, and shall expire seven (7) years from "
        "the Effective Date.",
        "7 years",
    ),
    ("term", "for a period of Two years from the effective date hereof.", "2 years"),
    (
        "term",
        "the Receiving Party agrees that, until eighteen (18) months from the date hereof, the Receiving Party",
        "18 months",
    ),
    ("term", "This Agreement shall terminate two years after the date first entered.", "2 years"),
    (
        "term",
        "the term of this letter agreement shall be three years (the \u201cTerm\u201d), unless otherwise agreed",
        "3 years",
    ),
    (
        "term",
        "This Agreement shall be effective from and after the Effective Date for two (2) years or until its "
        "earlier termination by either Party.",
        "2 years",
    ),
    ("term", "shall remain in effect until the third anniversary of the date of this Agreement.", "3 years"),
    (
        "party",
        "is made as of the 5th day of November 2004 (the \u201cEFFECTIVE DATE\u201d), by and between Richard "
        "Harcke (\u201cHARCKE\u201d) and  Haynes Wire Company, a Delaware corporation (\u201cBUYER\u201d).",
        "Richard Harcke",
    ),
    (
        "party",
        "between Affinity Gaming, a  Nevada corporation (the \u201cCompany\u201d), and Z Capital Partners "
        "L.L.C., a Delaware limited liability company (\u201cReceiving Party\u201d).",
        "Affinity Gaming",
    ),
    (
        "party",
        "between Affinity Gaming, a  Nevada corporation (the \u201cCompany\u201d), and Z Capital Partners "
        "L.L.C., a Delaware limited liability company (\u201cReceiving Party\u201d).",
        "Z Capital Partners LLC",
    ),
    ("party", "By: /s/ Mark A. Sirgo\n\nName: Mark A. Sirgo Title:\n\n/s/ Benny Ward Benny Ward", "Benny Ward"),
]


@pytest.mark.parametrize(("field", "sentence", "expected"), TRAIN_SENTENCES)
def test_the_nda_rules_find_terms_and_parties_in_train_sentences(field: str, sentence: str, expected: str) -> None:
    task = load_task_file(NDA_TASK)
    kind = task.fields[field].kind
    found = {f"{m.rule}: {m.value}" for m in apply_rules(task, sentence) if m.field == field}
    normalised = {duration(v.split(": ", 1)[1]) if kind == "duration" else party(v.split(": ", 1)[1]) for v in found}
    assert expected in normalised, found


def test_the_duration_normaliser_reads_anniversaries_and_hyphenated_units() -> None:
    assert duration("the third anniversary") == "3 years"
    assert duration("2nd anniversary") == "2 years"
    assert duration("an 18-month period") == "18 months"
    assert duration("three-year") == "3 years"
    assert duration("the eleventh anniversary") is None  # not an ordinal it knows: no guess


def test_the_party_normaliser_writes_legal_forms_as_filings_abbreviate_them() -> None:
    assert party("Z Capital Partners L.L.C.") == "Z Capital Partners LLC"
    assert party("One Equity Partners IV, L.P.") == "One Equity Partners IV, LP"
    assert party("Wynn Resorts, Limited") == "Wynn Resorts, Ltd."
    assert party("Coupa Software Incorporated") == "Coupa Software Inc."
    # a signature block read with its label, or its name written twice
    assert party("Patrick J. Mahaffy Signature") == "Patrick J. Mahaffy"
    assert party("Brian Lynch Brian Lynch") == "Brian Lynch"
    assert party("Stephen A. Vintz Title") == "Stephen A. Vintz"


def test_the_dataset_format_writes_ampersand_as_and() -> None:
    assert comparison_key(to_dataset_format("Raymond James & Associates, Inc.")) == comparison_key(
        "Raymond_James_and_Associates_Inc."
    )


# --- the ranker file ------------------------------------------------------------------------------

TERM_MODEL = FieldModel(
    features=("rule:term-from-date", "rule:term-phrase", "duration:days_or_weeks"),
    coefficients=(4.0, 0.5, -3.0),
    intercept=-2.0,
    threshold=0.5,
)


def _ranker_file(folder: Path, task: str = "nda_key_terms", **fields: FieldModel) -> tuple[Path, str]:
    from pipeline.core.hashing import sha256_bytes

    raw = Ranker(task=task, fields=fields or {"term": TERM_MODEL}).to_bytes()
    path = folder / "ranker.json"
    path.write_bytes(raw)
    return path, sha256_bytes(raw)


def test_a_ranker_file_is_data_checked_by_its_sha256(tmp_path: Path) -> None:
    path, digest = _ranker_file(tmp_path)
    ranker = load_ranker(path, digest)
    assert ranker.sha256 == digest and ranker.fields["term"] == TERM_MODEL
    with pytest.raises(ConfigError, match="SHA-256"):
        load_ranker(path, "0" * 64)
    path.write_bytes(b"\x80\x04\x95 a pickle is never read")
    with pytest.raises(ConfigError, match="not a ranker"):
        load_ranker(path)
    bad = json.loads(Ranker(task="t", fields={"term": TERM_MODEL}).to_bytes())
    bad["fields"]["term"]["coefficients"] = [1.0]
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="3 features but 1 coefficients"):
        load_ranker(path)


def _task_with_ranker(folder: Path, task: str = "nda_key_terms") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _, digest = _ranker_file(folder, task)
    text = _without_ranker(NDA_TASK.read_text(encoding="utf-8")) + f"ranker:\n  file: ranker.json\n  sha256: {digest}\n"
    (folder / "nda_key_terms.yaml").write_text(text, encoding="utf-8")
    return folder


def test_a_task_names_its_ranker_and_refuses_an_altered_one(tmp_path: Path) -> None:
    folder = _task_with_ranker(tmp_path / "tasks")
    task = find_task("nda_key_terms", [folder])
    assert task.ranker is not None and task.ranker.fields["term"] == TERM_MODEL
    assert task.version != load_task_file(NDA_TASK).version  # the ranker's SHA-256 is part of the task
    (folder / "ranker.json").write_text((folder / "ranker.json").read_text().replace("4.0", "9.0"))
    with pytest.raises(ConfigError, match="SHA-256"):
        find_task("nda_key_terms", [folder])
    other = _task_with_ranker(tmp_path / "other", task="pii_inventory")
    with pytest.raises(ConfigError, match="trained for 'pii_inventory'"):
        find_task("nda_key_terms", [other])


# --- features and the choice ----------------------------------------------------------------------


def test_features_read_the_rules_the_model_and_the_position() -> None:
    findings = [
        finding_row("term", "two (2) years", rule="term-from-date", start=900),
        finding_row("term", "2 years", rule="term-phrase", start=1500),
        finding_row("term", "thirty (30) days", rule="term-phrase", start=100),
        finding_row("term", "30 days", confidence=0.9, start=120),
    ]
    groups = field_groups("duration", findings)
    by_value = {g.normalised: g for g in groups}
    years = features("duration", by_value["2 years"], groups)
    days = features("duration", by_value["30 days"], groups)
    assert years["rule:term-from-date"] > 0 and years["rule:term-phrase"] > 0 and years["rules"] == 2.0
    assert years["model"] == 0.0 and days["model"] > 0 and days["model_confidence"] == 0.9
    assert days["position_rank"] == 0.0 and years["position_rank"] == 1.0  # 30 days is met first
    assert years["duration:years"] == 1.0 and days["duration:days_or_weeks"] == 1.0


def _located(field: str, value: str, text: str, occurrence: int = 0, **kwargs: Any) -> Any:
    """A finding of `value` at its `occurrence`-th place in `text` (a rule's when `rule` is named)."""
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(value, start + 1)
    return finding_row(field, value, start=start, **kwargs)


SIGNED = (
    "This Agreement is made between Acme Widgets, Inc. (the \u201cCompany\u201d) and the Recipient.\n"
    "ACME WIDGETS, INC.\nBy: /s/ Jane Roe\nName: Jane Roe\nTitle: Chief Executive Officer\n"
)


def test_context_features_read_the_words_around_each_evidence() -> None:
    company = _located("party", "Acme Widgets, Inc.", SIGNED, rule="party-between")
    officer = _located("party", "Jane Roe", SIGNED, occurrence=1, rule="party-signature")
    assert context_features([company], SIGNED) == {
        "before:is": 1.0,
        "before:made": 1.0,
        "before:between": 1.0,
        "before:agreement": 1.0,
        "after:(": 1.0,
        "after:the": 1.0,
        "after:\u201c": 1.0,
        "after:company": 1.0,
    }
    signer = context_features([officer], SIGNED)
    assert signer["before:name"] == 1.0 and signer["before::"] == 1.0 and signer["after:title"] == 1.0
    # Per word, the share of the group's evidence spans it is next to; digits read as one word.
    both = context_features([officer, _located("party", "Jane Roe", SIGNED, rule="party-signature")], SIGNED)
    assert both["before:name"] == 0.5 and both["before:/"] == 0.5
    assert context_features([finding_row("term", "2 years", start=6)], "Until 2 years after 12 May") == {
        "before:until": 1.0,
        "after:after": 1.0,
        "after:<number>": 1.0,
        "after:may": 1.0,
    }
    # No text, or offsets outside it (a finding of another text): no context, no error.
    assert "before:between" not in features("party", field_groups("party", [company])[0], [])
    assert context_features([finding_row("party", "Acme", start=10_000)], SIGNED) == {}


def test_learn_weighs_the_words_around_the_evidence_and_ignores_rare_ones() -> None:
    """Three companies found by the same rule; only the words before them tell the two parties (after
    "between") from the one named on a form's line ("Name:"). Which company is which, and whether the
    form comes first, changes from document to document. A word seen in too few documents is not a
    feature."""
    from pipeline.audit.learning import MIN_CONTEXT_DOCUMENTS

    task = load_task_file(NDA_TASK).model_copy(update={"ranker_ref": None})
    names = ("Globex LLC", "Initech LLC", "Hooli LLC")

    def example(document: str, index: int, rare: str = "", with_text: bool = True) -> Example:
        first, second, other = names[index % 3], names[(index + 1) % 3], names[(index + 2) % 3]
        agreement, form = f"Agreement between {first} and {second}.{rare}\n", f"Name: {other}\n"
        text = "Recitals.\n" + (agreement + form if (index // 3) % 2 else form + agreement)
        findings = [_located("party", name, text, rule="party-and") for name in names]
        found = examples_of(task, findings, document, "gold:synthetic", text if with_text else None)["party"]
        found.right = {label_key(first), label_key(second)}
        return found

    rare = [" Zyzzyva." if i < MIN_CONTEXT_DOCUMENTS - 1 else "" for i in range(30)]
    learned = learn(task, [example(f"doc{i}", i, rare[i]) for i in range(30)], {})
    party = learned.ranker.fields["party"]
    assert learned.report["fields"]["party"]["after_cross_validated"]["f1"] == 1.0
    assert "before:name" in party.features and "before:between" in party.features
    assert not any("zyzzyva" in name for name in party.features)  # in 4 documents: below the minimum
    assert sorted(_chosen(example("unseen", 0), party)) == ["Globex LLC", "Initech LLC"]
    assert sorted(_chosen(example("unseen", 4), party)) == ["Hooli LLC", "Initech LLC"]
    # Without the text, the same candidates cannot be told apart as well.
    blind = learn(task, [example(f"doc{i}", i, with_text=False) for i in range(30)], {})
    assert blind.report["fields"]["party"]["after_cross_validated"]["f1"] < 1.0


def test_the_ranker_chooses_by_probability_and_says_when_it_is_unsure(tmp_path: Path) -> None:
    task = find_task("nda_key_terms", [_task_with_ranker(tmp_path / "tasks")])
    assert task.ranker is not None
    base = ValuesOf("run", "c", "file:///d", datetime.now(UTC))
    # The hand order takes the earliest rule value (a notice period); the ranker the term from a date.
    findings = [
        finding_row("term", "thirty (30) days", rule="term-phrase", start=100),
        finding_row("term", "two (2) years", rule="term-from-date", start=900),
    ]
    hand = choose(task.fields["term"], choosable(task, "term", field_groups("duration", findings)), [], None)
    assert hand[0][0].normalised == "30 days" and hand[0][1] == "disagreement"
    rows = [r for r in reduce_document(task, findings, base) if r.field == "term"]
    assert [(r.value, r.status) for r in rows] == [("2 years", "chosen")]
    assert rows[0].ranker_sha256 == task.ranker.sha256 and rows[0].ranker_probability is not None
    assert rows[0].ranker_probability > 0.5 and "30 days" in rows[0].alternatives
    # Only a weak candidate: the most probable lands as `uncertain`, not as the document's value.
    rows = [r for r in reduce_document(task, findings[:1], base) if r.field == "term"]
    assert [(r.value, r.status) for r in rows] == [("30 days", "uncertain")]
    assert rows[0].ranker_probability is not None and rows[0].ranker_probability < 0.5
    # Fields the ranker has no model for keep the hand order, and say so by the absent SHA-256.
    rows = [r for r in reduce_document(task, [finding_row("jurisdiction", "Delaware", rule="x")], base)]
    assert rows[0].status == "chosen" and rows[0].ranker_sha256 is None


def test_many_valued_fields_keep_every_candidate_above_the_threshold_up_to_their_maximum() -> None:
    model = FieldModel(features=("rules",), coefficients=(3.0,), intercept=-4.0, threshold=0.5)
    findings = [
        finding_row("party", "Acme Inc.", rule="a", start=10),
        finding_row("party", "Acme Inc.", rule="b", start=10),
        finding_row("party", "Beta LLC", rule="a", start=50),
        finding_row("party", "Beta LLC", rule="b", start=50),
        finding_row("party", "Gamma Corp.", rule="c", start=5),
    ]
    groups = field_groups("party", findings)
    chosen = choose(FieldSpec(kind="party", many=True, max_values=2), groups, groups, model)
    assert [(g.normalised, status) for g, status, _ in chosen] == [("Acme Inc.", "chosen"), ("Beta LLC", "chosen")]


# --- assay learn, end to end: an evaluation, a run, a review, two rankers ---------------------------


def _rules_only(folder: Path) -> Path:
    """nda_key_terms with routing that sends nothing to the model (its rules stay): a run in seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    text = re.sub(
        r"(?ms)^routing:.*?^(?=# Passages)",
        "routing:\n  first_chunks: 0\n  signals: {}\n",
        _without_ranker(NDA_TASK.read_text(encoding="utf-8")),
    )
    (folder / "nda_key_terms.yaml").write_text(text, encoding="utf-8")
    return folder


def test_assay_learn_learns_from_a_gold_set_and_a_reviewer_changes_the_next_ranker(tmp_path: Path) -> None:
    tasks = _rules_only(tmp_path / "tasks")
    config = tmp_path / "assay.toml"
    config.write_text(f'task_dirs = ["{tasks}"]\n')
    data = tmp_path / "data"
    # The gold set as an estate names files: one of them with spaces, an accent, "_" and "&".
    shutil.copytree(FIXTURES / "nda-train", tmp_path / "gold")
    gold = tmp_path / "gold" / "labels.jsonl"
    first = json.loads(gold.read_text(encoding="utf-8").splitlines()[0])["file"]
    odd = "documents/Vertraulichkeit Müller_1 & Co.pdf"
    (tmp_path / "gold" / first).rename(tmp_path / "gold" / odd)
    gold.write_text(gold.read_text(encoding="utf-8").replace(first, odd), encoding="utf-8")
    runner = CliRunner()
    base = ["--config", str(config), "--data-dir", str(data)]

    evaluated = runner.invoke(cli, [*base, "eval", "--task", "nda_key_terms", "--gold", str(gold), "--name", "g"])
    assert evaluated.exit_code == 0, evaluated.output
    summary = json.loads((data / "evals" / "g" / "report" / "summary.json").read_text())
    assert summary["documents_without_results"] == []  # the odd name found too

    first = runner.invoke(cli, [*base, "learn", "--task", "nda_key_terms", "--gold", str(gold), "--json"])
    assert first.exit_code == 0, first.output
    report_a = json.loads(first.output)
    # The learner scores the hand order exactly as `assay eval` scored the run.
    assert report_a["before"]["f1"] == summary["overall_f1"]
    assert report_a["before"]["tp"] == summary["overall_tp"] and report_a["before"]["fp"] == summary["overall_fp"]
    # ...and so does the bench's scoring of a split (bench/quality.py --protocol), candidate recall too.
    gold_task = find_task("nda_key_terms", [tasks])
    scored = field_scores(gold_task, gold_examples(gold_task, gold, data / "evals")[0], None)["overall"]
    assert scored["f1"] == summary["overall_f1"]
    assert scored["candidate_recall"] == summary["overall_candidate_recall"]
    ranker_a = load_ranker(Path(report_a["file"]), report_a["sha256"])
    assert "party" in report_a["fields"] and ranker_a.training["gold_sets"] == [str(gold)]

    # The estate's own run over one NDA, and a reviewer who rejects the party the hand order chose first.
    documents = tmp_path / "documents"
    documents.mkdir()
    shutil.copy(document("nda-5fef505c7e8c60c597f150f2f2976684.pdf"), documents / "nda.pdf")
    ran = runner.invoke(cli, [*base, "run", str(documents), "--task", "nda_key_terms", "--no-progress"])
    assert ran.exit_code == 0, ran.output
    task = find_task("nda_key_terms", [tasks])
    [example] = [e for e in _examples_of_run(task, data) if e.field == "party"]
    chosen_a = _chosen(example, ranker_a.fields.get("party"))
    rejected = chosen_a[0]
    for finding in next(g for g in example.groups if g.display() == rejected).findings:
        decided = runner.invoke(cli, [*base, "review", finding.finding_id, "--reject", "--comment", "not a party"])
        assert decided.exit_code == 0, decided.output

    second = runner.invoke(cli, [*base, "learn", "--task", "nda_key_terms", "--gold", str(gold), "--json"])
    assert second.exit_code == 0, second.output
    report_b = json.loads(second.output)
    assert report_b["sha256"] != report_a["sha256"]
    ranker_b = load_ranker(Path(report_b["file"]), report_b["sha256"])
    assert ranker_b.training["review_decisions"] >= 1 and ranker_b.training["reviewed_examples"] == 1
    [reviewed] = [e for e in review_examples(task, data / "warehouse.duckdb")[0] if e.field == "party"]
    assert label_key(rejected) in reviewed.wrong
    decisions = ranker_b.decisions(reviewed.document, "party")
    assert decisions is not None and label_key(rejected) in decisions.wrong

    # The operator points the task at the new ranker; the next run chooses differently on that document.
    shutil.copy(report_b["file"], tasks / "ranker.json")
    with (tasks / "nda_key_terms.yaml").open("a", encoding="utf-8") as f:
        f.write(f"ranker:\n  file: ranker.json\n  sha256: {report_b['sha256']}\n")
    again = runner.invoke(cli, [*base, "run", str(documents), "--task", "nda_key_terms", "--no-progress"])
    assert again.exit_code == 0, again.output
    with connect_read_only(data / "warehouse.duckdb") as con:
        rows = con.execute(
            "SELECT value, status, ranker_sha256 FROM current_values WHERE field = 'party' ORDER BY item_index"
        ).fetchall()
    assert rows and all(sha == report_b["sha256"] for _, _, sha in rows)
    assert rejected not in [value for value, status, _ in rows if status in ("chosen", "disagreement")]


def _examples_of_run(task: Any, data: Path) -> list[Example]:
    """The candidates of the data folder's newest run, per field (what a reviewer looks at)."""
    from pipeline.audit.learning import landed_examples

    with connect_read_only(data / "warehouse.duckdb") as con:
        run_id, content_sha256 = con.execute(
            "SELECT run_id, content_sha256 FROM findings ORDER BY run_id DESC LIMIT 1"
        ).fetchone() or ("", "")
        return list(landed_examples(con, task, run_id, content_sha256, "").values())


def _chosen(example: Example, model: FieldModel | None) -> list[str]:
    return [
        g.display()
        for g, status, _ in choose(example.spec, example.supported, example.groups, model, text=example.text)
        if status in ("chosen", "disagreement")
    ]


def _term_example(task: Any, document: str, right_rule: str, wrong_rule: str) -> Example:
    """A document whose term a rule `right_rule` finds late and a notice period `wrong_rule` finds early."""
    findings = [
        finding_row("term", "thirty (30) days", rule=wrong_rule, start=100),
        finding_row("term", "two (2) years", rule=right_rule, start=900),
    ]
    example = examples_of(task, findings, document, "gold:synthetic")["term"]
    example.right = {label_key("2 years")}
    return example


def test_learn_finds_the_rule_that_is_right_and_keeps_the_hand_order_where_it_is_as_good() -> None:
    task = load_task_file(NDA_TASK).model_copy(update={"ranker_ref": None})  # "before" is the hand order
    examples = [_term_example(task, f"doc{i}", "term-from-date", "term-phrase") for i in range(30)]
    # jurisdiction: one candidate per document, always right: nothing to learn beyond the hand order
    for i in range(30):
        example = examples_of(
            task, [finding_row("jurisdiction", "Delaware", rule="governing-law-phrase")], f"doc{i}", ""
        )
        example["jurisdiction"].right = {label_key("Delaware")}
        examples.append(example["jurisdiction"])
    learned = learn(task, examples, {"gold_sets": ["synthetic"]})
    term = learned.report["fields"]["term"]
    assert term["before"]["f1"] == 0.0  # the hand order takes the earliest rule value, the notice period
    assert term["after_cross_validated"]["f1"] == 1.0 and term["model"] is True
    assert learned.report["fields"]["jurisdiction"]["model"] is False  # as good as the hand order: kept
    assert learned.report["after"]["f1"] > learned.report["before"]["f1"]
    new = _term_example(task, "unseen", "term-from-date", "term-phrase")
    assert _chosen(new, learned.ranker.fields["term"]) == ["2 years"]


def test_learn_weighs_a_new_model_against_the_hand_order_it_would_fall_back_to(tmp_path: Path) -> None:
    """A current ranker may score in-sample (here: reviewers' decisions on every document); a field whose
    cross-validated model is below that but above the hand order must still take the model."""
    from pipeline.core.hashing import sha256_bytes
    from pipeline.core.rankers import Reviewed

    documents = [f"doc{i}" for i in range(30)]
    years, days = label_key("2 years"), label_key("30 days")
    # Reviewers chose "2 years" on the first 20 documents and rejected both candidates on the last 10.
    reviewed = tuple(
        Reviewed(document=d, field="term", right=(years,), wrong=(days,))
        if i < 20
        else Reviewed(document=d, field="term", wrong=(days, years))
        for i, d in enumerate(documents)
    )
    folder = tmp_path / "tasks"
    folder.mkdir()
    raw = Ranker(task="nda_key_terms", fields={}, reviewed=reviewed).to_bytes()
    (folder / "ranker.json").write_bytes(raw)
    text = _without_ranker(NDA_TASK.read_text(encoding="utf-8"))
    (folder / "nda_key_terms.yaml").write_text(text + f"ranker:\n  file: ranker.json\n  sha256: {sha256_bytes(raw)}\n")
    task = find_task("nda_key_terms", [folder])
    examples = [_term_example(task, d, "term-from-date", "term-phrase") for d in documents]
    for example in examples[20:]:
        example.right = {label_key("5 years")}  # not among the candidates: missed by any chooser
    term = learn(task, examples, {}).report["fields"]["term"]
    assert term["before"]["f1"] > term["after_cross_validated"]["f1"] > term["hand_order"]["f1"] == 0.0
    assert term["model"] is True
