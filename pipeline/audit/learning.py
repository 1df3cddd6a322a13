"""Train a task's ranker from labelled documents and reviewers' decisions (`assay learn`).

Examples are the candidate groups of a field in one document, built from landed findings with the
same code the reducer uses (`values.field_groups`), so training sees exactly what a run sees:

- **gold sets**: a labels file (the `assay eval` format) whose documents an `assay eval` has landed
  (its folder under `<data_dir>/evals/`). Every choosable group is labelled: right when its value
  is a gold value (the Kleister comparison), else wrong.
- **review decisions** in the data folder's own lake: an accepted value is right, a rejected one
  wrong, a corrected one wrong and its correction right; on a single-valued field, a right value
  makes every other candidate of that document wrong. A decision overrides a gold label.

Per field, a logistic regression (scikit-learn) over `pipeline/reduce/ranker.features`. Its
cross-validated F1 (folds by document: no document is scored by a model that saw it) is reported
beside the F1 of the task's current choice (its ranker, or the hand order) on the same examples;
the threshold of each field is the one that maximises its out-of-fold F1 (so the reported after
figure is slightly optimistic; the dev split is the check). The result is a new ranker file; the
task changes only when its file is pointed at it.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.audit.evaluation import Counts, latest_extraction, load_gold
from pipeline.core.errors import ConfigError
from pipeline.core.rankers import FieldModel, Ranker, Reviewed
from pipeline.core.tasks import FieldSpec, Task
from pipeline.land.tables import FindingRow
from pipeline.land.warehouse import connect_read_only
from pipeline.reduce.normalise import comparison_key, label_key
from pipeline.reduce.ranker import CONTEXT_PREFIXES, features
from pipeline.reduce.values import Group, choosable, choose, field_groups

FOLDS = 5
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
MIN_CONTEXT_DOCUMENTS = 5  # a word next to evidence becomes a feature when seen in this many documents
MIN_EXAMPLES = 10  # labelled groups a field needs (of both kinds) before it gets a model
REGULARISATION_C = 1.0
# A reviewer's decision on this estate's own documents weighs more than a gold label of a public set.
REVIEW_WEIGHT = 3.0
COUNTED = ("chosen", "disagreement")  # the statuses that are a document's value (as `assay eval` counts)


@dataclass
class Example:
    """One field of one document: its candidate groups and what is known right or wrong among them."""

    document: str  # content SHA-256: folds never split a document
    field: str
    spec: FieldSpec
    groups: list[Group]
    supported: list[Group]
    right: set[str] = dataclasses.field(default_factory=set)  # comparison keys
    wrong: set[str] = dataclasses.field(default_factory=set)
    complete: bool = True  # every value not right is wrong (a gold label; a review of a single value)
    origin: str = ""
    weight: float = 1.0
    text: str | None = None  # the document's canonical text (for the words around evidence)

    def label(self, group: Group) -> int | None:
        key = label_key(group.display())
        if key in self.right:
            return 1
        if key in self.wrong or self.complete:
            return 0
        return None


@dataclass
class Learned:
    ranker: Ranker
    report: dict[str, Any]


_FINDING_COLUMNS = [f.name for f in dataclasses.fields(FindingRow)]


def findings_of(con: Any, task: str, run_id: str, content_sha256: str) -> list[FindingRow]:
    """The findings a run landed for one document and task (every candidate, rule and model)."""
    rows = con.execute(
        f"SELECT {', '.join(_FINDING_COLUMNS)} FROM findings WHERE task = ? AND run_id = ? AND content_sha256 = ?",
        [task, run_id, content_sha256],
    ).fetchall()
    return [FindingRow(**dict(zip(_FINDING_COLUMNS, row, strict=True))) for row in rows]


def text_of(con: Any, run_id: str, content_sha256: str) -> str | None:
    """The canonical text a run landed for a document (the one its findings' offsets point into)."""
    row = con.execute(
        "SELECT text FROM texts WHERE run_id = ? AND content_sha256 = ? LIMIT 1", [run_id, content_sha256]
    ).fetchone()
    return str(row[0]) if row else None


def landed_examples(con: Any, task: Task, run_id: str, content_sha256: str, origin: str) -> dict[str, Example]:
    """Per field, the unlabelled example of a document as a run landed it: its findings and its text."""
    findings = findings_of(con, task.name, run_id, content_sha256)
    return examples_of(task, findings, content_sha256, origin, text_of(con, run_id, content_sha256))


def examples_of(
    task: Task, findings: Sequence[FindingRow], document: str, origin: str, text: str | None = None
) -> dict[str, Example]:
    """Per field with candidates, an unlabelled example of one document's findings."""
    found: dict[str, Example] = {}
    for name, spec in task.fields.items():
        groups = field_groups(spec.kind, [f for f in findings if f.field == name])
        if not groups:
            continue
        found[name] = Example(document, name, spec, groups, choosable(task, name, groups), origin=origin, text=text)
    return found


def gold_examples(task: Task, labels: Path, evals_dir: Path) -> tuple[list[Example], list[str]]:
    """The examples of a gold set from the newest `assay eval` run (over every evaluation folder) that
    landed each of its documents, and the files no evaluation has landed (reported, not guessed)."""
    documents = load_gold(labels)
    warehouses = sorted(evals_dir.glob("*/warehouse.duckdb")) if evals_dir.is_dir() else []
    examples: list[Example] = []
    missing: list[str] = []
    connections = [connect_read_only(path) for path in warehouses]
    try:
        for item in documents:
            landed = [(found, con) for con in connections if (found := latest_extraction(con, task.name, item.file))]
            if not landed:
                missing.append(item.file)
                continue
            (content_sha256, run_id), con = max(landed, key=lambda pair: pair[0][1])  # run ids sort by start
            origin = f"gold:{labels.name}"
            per_field = landed_examples(con, task, run_id, content_sha256, origin)
            for key in item.keys_asked:
                if key not in task.fields:
                    continue
                spec = task.fields[key]
                # A field without any candidate still counts: its gold values are missed.
                example = per_field.get(key) or Example(content_sha256, key, spec, [], [], origin=origin)
                example.right = {comparison_key(v) for v in item.values.get(key, [])}
                examples.append(example)
    finally:
        for con in connections:
            con.close()
    return examples, missing


_DECISIONS = """
    SELECT v.run_id, v.content_sha256, v.field, v.value, d.decision, d.corrected_value
    FROM latest_value_decisions AS d JOIN document_values AS v USING (value_id)
    WHERE v.task = $task AND v.value IS NOT NULL
    UNION ALL
    SELECT f.run_id, f.content_sha256, f.field, f.value, d.decision, d.corrected_value
    FROM latest_review_decisions AS d JOIN findings AS f USING (finding_id)
    WHERE f.task = $task
"""


def review_examples(task: Task, warehouse_path: Path) -> tuple[list[Example], int]:
    """The examples reviewers' decisions label, from the warehouse of the data folder, and how many
    decisions were read."""
    if not warehouse_path.exists():
        return [], 0
    with connect_read_only(warehouse_path) as con:
        decisions = con.execute(_DECISIONS, {"task": task.name}).fetchall()
        by_document: dict[tuple[str, str], list[tuple[str, str, str, str | None]]] = defaultdict(list)
        for run_id, content_sha256, field_name, value, decision, corrected in decisions:
            by_document[(str(run_id), str(content_sha256))].append((field_name, value, decision, corrected))
        examples: list[Example] = []
        for (run_id, content_sha256), decided in sorted(by_document.items()):
            per_field = landed_examples(con, task, run_id, content_sha256, "review")
            for example in per_field.values():
                example.weight = REVIEW_WEIGHT
            for field_name, value, decision, corrected in decided:
                if field_name not in per_field:
                    continue
                example = per_field[field_name]
                key = label_key(str(value))
                if decision == "accept":
                    example.right.add(key)
                    example.wrong.discard(key)
                else:
                    example.wrong.add(key)
                    example.right.discard(key)
                if decision == "correct" and corrected:
                    example.right.add(label_key(corrected))
            for example in per_field.values():
                example.complete = not example.spec.many and bool(example.right)
                if example.right or example.wrong:
                    examples.append(example)
    return examples, len(decisions)


def merge(gold: list[Example], reviewed: list[Example]) -> list[Example]:
    """Gold examples and reviewed ones; a review of the same document and field wins."""
    reviewed_keys = {(e.document, e.field) for e in reviewed}
    return [e for e in gold if (e.document, e.field) not in reviewed_keys] + reviewed


def _counts(example: Example, chosen: Sequence[tuple[Group, str, float | None]]) -> Counts:
    """TP, FP, FN of a field's choice against what is known right (complete examples only)."""
    predicted = {label_key(g.display()) for g, status, _ in chosen if status in COUNTED}
    return Counts(len(predicted & example.right), len(predicted - example.right), len(example.right - predicted))


def _choice(
    example: Example, field_model: FieldModel | None, reviewed: Reviewed | None = None
) -> list[tuple[Group, str, float | None]]:
    if not example.supported:
        return []
    return choose(example.spec, example.supported, example.groups, field_model, reviewed, example.text)


def _rows(example: Example) -> list[tuple[dict[str, float], int, float]]:
    """(features, label, weight) of each labelled choosable candidate of the example."""
    rows = []
    for group in example.supported:
        label = example.label(group)
        if label is not None:
            rows.append((features(example.spec.kind, group, example.groups, example.text), label, example.weight))
    return rows


def _fit(examples: Sequence[Example], names: list[str]) -> tuple[list[float], float] | None:
    from sklearn.linear_model import LogisticRegression

    rows = [row for example in examples for row in _rows(example)]
    labels = [label for _, label, _ in rows]
    if len(rows) < MIN_EXAMPLES or len(set(labels)) < 2:
        return None
    model = LogisticRegression(C=REGULARISATION_C, max_iter=5000)
    model.fit(
        [[values.get(n, 0.0) for n in names] for values, _, _ in rows],
        labels,
        sample_weight=[weight for _, _, weight in rows],
    )
    return [float(c) for c in model.coef_[0]], float(model.intercept_[0])


def _feature_names(examples: Sequence[Example]) -> list[str]:
    """The features the field's model weighs: every finding feature, and the context words seen around
    candidates in at least `MIN_CONTEXT_DOCUMENTS` documents (rarer words would be learned by heart)."""
    documents: dict[str, set[str]] = defaultdict(set)
    for example in examples:
        for values, _, _ in _rows(example):
            for name in values:
                documents[name].add(example.document)
    return sorted(
        name
        for name, seen in documents.items()
        if not name.startswith(CONTEXT_PREFIXES) or len(seen) >= MIN_CONTEXT_DOCUMENTS
    )


def _counts_with(example: Example, ranker: Ranker | None) -> Counts:
    """TP, FP, FN of the choice `ranker` (None: the hand order) makes on one example."""
    model = ranker.fields.get(example.field) if ranker else None
    reviewed = ranker.decisions(example.document, example.field) if ranker else None
    return _counts(example, _choice(example, model, reviewed))


def _cross_validated(of_field: list[Example], names: list[str]) -> tuple[float, Counts] | None:
    """The threshold that maximises the out-of-fold F1 (folds by document) and that F1's counts; None
    when there are too few documents to fold."""
    from sklearn.model_selection import GroupKFold

    folds = min(FOLDS, len({e.document for e in of_field}))
    if folds < 2:
        return None
    fold_models: list[tuple[set[str], tuple[list[float], float] | None]] = []
    splitter = GroupKFold(n_splits=folds)
    for train_index, test_index in splitter.split(of_field, groups=[e.document for e in of_field]):
        fitted = _fit([of_field[i] for i in train_index], names)
        fold_models.append(({of_field[i].document for i in test_index}, fitted))
    best: tuple[float, float, Counts] = (-1.0, 0.5, Counts())
    for threshold in THRESHOLDS:
        after = Counts()
        for held_out, fitted in fold_models:
            model = (
                FieldModel(
                    features=tuple(names), coefficients=tuple(fitted[0]), intercept=fitted[1], threshold=threshold
                )
                if fitted
                else None
            )
            for example in of_field:
                if example.complete and example.document in held_out:
                    after.add(_counts(example, _choice(example, model)))
        f1 = float(after.scores()["f1"])
        # Ties go to the threshold nearest 0.5 (the one that reads as "more likely right than not").
        if f1 > best[0] or (f1 == best[0] and abs(threshold - 0.5) < abs(best[1] - 0.5)):
            best = (f1, threshold, after)
    return best[1], best[2]


def learn(task: Task, examples: Sequence[Example], training: dict[str, Any]) -> Learned:
    """A ranker for `task` from the examples, with its cross-validated F1 beside the current choice's.

    A field gets a model only when its cross-validated F1 is at least the hand order's on the same
    documents (what the field falls back to without one); otherwise it keeps the hand order (said in
    the report). "Before" is the current choice, in-sample where its ranker saw these documents."""
    if not examples:
        raise ConfigError(f"no labelled candidates for task {task.name}: run `assay eval` over a gold set first")
    current = task.ranker
    report: dict[str, Any] = {"fields": {}, "examples": len(examples)}
    fields: dict[str, FieldModel] = {}
    totals = {"before": Counts(), "after": Counts()}
    for name in task.fields:
        of_field = [e for e in examples if e.field == name]
        if not of_field:
            continue
        names = _feature_names(of_field)
        before, hand = Counts(), Counts()
        for example in of_field:
            if example.complete:
                before.add(_counts_with(example, current))
                hand.add(_counts_with(example, None))
        validated = _cross_validated(of_field, names)
        fitted = _fit(of_field, names)
        # Without a model the field falls back to the hand order, so that is what the model must beat
        # (not the current ranker, whose figure may be in-sample on documents it was trained on).
        better = (
            validated is not None
            and fitted is not None
            and float(validated[1].scores()["f1"]) >= float(hand.scores()["f1"])
        )
        report["fields"][name] = {
            "examples": len(of_field),
            "labelled_candidates": sum(len(_rows(e)) for e in of_field),
            "before": before.scores(),
            "hand_order": hand.scores(),
            "after_cross_validated": validated[1].scores() if validated else None,
            "threshold": validated[0] if validated else None,
            "model": better,
        }
        if better and validated is not None and fitted is not None:
            fields[name] = FieldModel(
                features=tuple(names),
                coefficients=tuple(round(c, 6) for c in fitted[0]),
                intercept=round(fitted[1], 6),
                threshold=validated[0],
            )
            totals["after"].add(validated[1])
        else:  # no model for this field: it keeps the hand order
            totals["after"].add(hand)
        totals["before"].add(before)
    report["before"] = totals["before"].scores()
    report["after"] = totals["after"].scores()
    report["before_is"] = (
        f"the ranker {current.sha256[:12]}, in-sample where it was trained on these documents"
        if current
        else "the hand order"
    )
    import sklearn

    # Reviewed documents keep their reviewers' decisions (not used in the cross-validation above,
    # which measures what the model does on documents no one reviewed).
    reviewed = tuple(
        Reviewed(document=e.document, field=e.field, right=tuple(sorted(e.right)), wrong=tuple(sorted(e.wrong)))
        for e in examples
        if e.origin == "review"
    )
    report["reviewed_fields"] = len(reviewed)
    ranker = Ranker(
        task=task.name,
        fields=fields,
        reviewed=reviewed,
        training={
            **training,
            "task_version": task.version,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "scikit_learn": sklearn.__version__,
            "folds": FOLDS,
            "report": report,
        },
    )
    return Learned(ranker, report)


def field_scores(task: Task, examples: Sequence[Example], ranker: Ranker | None) -> dict[str, dict[str, Any]]:
    """Per field and overall: P/R/F1 of the choice `ranker` (None: the hand order) makes on the examples'
    candidates (complete examples only, as `assay eval` would score the values a run lands), and the
    candidate recall (the share of right values among all candidates: the best any chooser could do)."""
    counts: dict[str, Counts] = defaultdict(Counts)
    right: dict[str, int] = defaultdict(int)
    found: dict[str, int] = defaultdict(int)  # right values among the candidates
    for example in examples:
        if not example.complete:
            continue
        chosen = _counts_with(example, ranker)
        candidates = {label_key(g.display()) for g in example.groups}
        for name in (example.field, "overall"):
            counts[name].add(chosen)
            right[name] += len(example.right)
            found[name] += len(example.right & candidates)
    names = [name for name in task.fields if name in counts] + (["overall"] if "overall" in counts else [])
    return {
        name: {**counts[name].scores(), "candidate_recall": round(found[name] / right[name], 4) if right[name] else 0.0}
        for name in names
    }


def write_ranker(ranker: Ranker, folder: Path) -> tuple[Path, Ranker]:
    """Write the ranker as `<task>-<sha12>.json` in `folder`; the file and the ranker with its SHA-256."""
    from pipeline.core.hashing import sha256_bytes

    raw = ranker.to_bytes()
    digest = sha256_bytes(raw)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ranker.task}-{digest[:12]}.json"
    path.write_bytes(raw)
    return path, ranker.model_copy(update={"sha256": digest})


def describe(report: dict[str, Any]) -> str:
    """The report as a few lines of text (per field: before, after, threshold)."""
    lines = [f"{'field':16} {'before F1':>9} {'ranker F1 (cv)':>14} threshold  examples  uses the ranker"]
    for name, row in report["fields"].items():
        after = row["after_cross_validated"]
        threshold = row["threshold"]
        lines.append(
            f"{name:16} {row['before']['f1']:9.4f} {after['f1'] if after else float('nan'):14.4f} "
            f"{threshold if threshold is not None else float('nan'):9.2f}  {row['examples']:8}  "
            f"{'yes' if row['model'] else 'no (the hand order did as well or better)'}"
        )
    lines.append(
        f"{'overall':16} {report['before']['f1']:9.4f} {report['after']['f1']:14.4f}"
        f"            {report['examples']:8}  (before: {report['before_is']}; after: each field as chosen)"
    )
    return "\n".join(lines)


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=1, sort_keys=True)
