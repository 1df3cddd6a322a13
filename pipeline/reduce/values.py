"""Per document and task: merge the candidates of each field into the document's values.

Chunks are extracted independently, so one field gets several candidates (from
several chunks, and from rules). They are normalised by the field's kind and
grouped by value. A group's score adds, per supporting finding, 1 for a rule match
or the model's confidence for a model answer, times 1 when its evidence was found
in the text and 0.2 when not. Only groups with grounded support can be chosen, and a
group a rule supports ranks before one only the model supports (rules are written to
be precise, the model fills the gaps; a confident model must not outvote a rule, which
a stronger model otherwise did: docs/quality.md):
- a single-valued field takes the best group; when two or more groups have grounded
  support the value is marked `disagreement` (the others are kept as alternatives)
  and waits for review (view `values_to_review`) rather than being silently resolved;
- a many-valued field (parties) keeps every grounded group, best first (at most `max_values`).
A party's defined short name ("TEVA", "GPC") joins the group of the full name it
abbreviates (first word or initials) instead of counting as another party.
A candidate that its kind cannot read (a "date" without day, month and year, a "party"
that is a role word like "Company") is never chosen, only kept as an alternative.
A field whose candidates are all ungrounded lands as `unsupported`, without a value
(unless the task does not ask evidence for it: a summary is not a quote).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.core.hashing import short_id
from pipeline.core.rankers import FieldModel, Reviewed
from pipeline.core.settings import ValueConventions
from pipeline.core.tasks import FieldSpec, Task
from pipeline.land.tables import DocumentValueRow, FindingRow
from pipeline.reduce.normalise import (
    DEFAULT_CONVENTIONS,
    LEGAL_FORM_WORDS,
    dedupe_key,
    label_key,
    normalise,
    party_initials,
    party_key,
)
from pipeline.reduce.ranker import features

UNGROUNDED_WEIGHT = 0.2
DEFAULT_MODEL_CONFIDENCE = 0.5  # when a model value's log-probabilities were not available


@dataclass
class Group:
    """The candidates of one field with one normalised value (or the same raw text when unreadable)."""

    key: str
    normalised: str | None
    findings: list[FindingRow] = field(default_factory=list)

    @property
    def grounded(self) -> list[FindingRow]:
        return [f for f in self.findings if f.grounding_status != "ungrounded"]

    @property
    def ruled(self) -> bool:
        """Whether a grounded rule match supports the group."""
        return any(f.method == "rule" for f in self.grounded)

    @property
    def score(self) -> float:
        total = 0.0
        for finding in self.findings:
            weight = 1.0 if finding.method == "rule" else (finding.confidence or DEFAULT_MODEL_CONFIDENCE)
            total += weight * (1.0 if finding.grounding_status != "ungrounded" else UNGROUNDED_WEIGHT)
        return round(total, 6)

    def best(self) -> FindingRow:
        """The supporting finding shown as the value's evidence: grounded, rule or most confident, earliest."""
        return min(
            self.findings,
            key=lambda f: (
                f.grounding_status == "ungrounded",
                f.method != "rule",
                -(f.confidence or 0.0),
                f.evidence_start if f.evidence_start is not None else 1 << 62,
            ),
        )

    def display(self) -> str:
        if self.normalised is not None:
            # Parties: show the longest spelling seen (keeps "Inc." where one candidate had it).
            return self.normalised
        return str(self.best().value)

    def summary(self) -> dict[str, Any]:
        methods = {f.method for f in self.findings}
        return {
            "value": self.display(),
            "support": len(self.findings),
            "grounded": len(self.grounded),
            "score": self.score,
            "methods": sorted(methods),
        }


def field_groups(
    kind: str, findings: Iterable[FindingRow], conventions: ValueConventions = DEFAULT_CONVENTIONS
) -> list[Group]:
    """A field's candidates grouped by normalised value, best first (score, then earliest evidence)."""
    groups: dict[str, Group] = {}
    for finding in findings:
        raw = str(finding.value)
        normalised = normalise(kind, raw, conventions)
        key = dedupe_key(kind, normalised) if normalised is not None else "raw:" + " ".join(raw.lower().split())
        if not key or key == "raw:":
            continue
        group = groups.setdefault(key, Group(key, normalised))
        if normalised is not None and (group.normalised is None or len(normalised) > len(group.normalised)):
            group.normalised = normalised
        group.findings.append(finding)
    if kind == "party":
        _merge_short_names(groups)
        _merge_name_tails(groups)
    # Best first: score, then the earliest evidence (ties broken the same way every run).
    return sorted(
        groups.values(),
        key=lambda g: (not g.grounded, -g.score, g.best().evidence_start or 0, g.key),
    )


def _merge_short_names(groups: dict[str, Group]) -> None:
    """Fold a one-word party name into the group of the longer name it is the first word or initials of."""
    for key, group in list(groups.items()):
        # A name too short to stand alone ("GPC") is not readable as a party, but may still abbreviate one.
        name = group.normalised or str(group.best().value).strip()
        short = party_key(name)
        if len(name.split()) != 1 or len(short) < 2:
            continue
        targets = [
            other
            for other in groups.values()
            if other is not group
            and other.normalised is not None
            and len(other.normalised.split()) > 1
            and (party_key(other.normalised.split()[0]) == short or short in party_initials(other.normalised))
        ]
        if len(targets) == 1:  # ambiguous short names stay apart
            targets[0].findings.extend(group.findings)
            del groups[key]


def _merge_name_tails(groups: dict[str, Group]) -> None:
    """Fold a company name that is the tail of one longer name into it ("Struggles, Inc." into "Heidrick &
    Struggles, Inc."): a pattern that stops at "&" or a line break finds the tail of the whole name."""
    for key, group in sorted(groups.items(), key=lambda item: len((item[1].normalised or "").split())):
        words = _name_words(group.normalised)
        if len(words) < 2 or words[-1] not in LEGAL_FORM_WORDS:
            continue
        targets = [
            other
            for other in groups.values()
            if other is not group
            and len(longer := _name_words(other.normalised)) > len(words)
            and longer[-len(words) :] == words
        ]
        if len(targets) == 1:
            targets[0].findings.extend(group.findings)
            del groups[key]


def _name_words(name: str | None) -> list[str]:
    return [w for w in (w.strip(".,").lower() for w in (name or "").split()) if w]


@dataclass(frozen=True)
class ValuesOf:
    """Which document, in which run, the values are of, and how its source writes values."""

    run_id: str
    content_sha256: str
    document_uri: str
    created_at: datetime
    conventions: ValueConventions = DEFAULT_CONVENTIONS


def reduce_document(
    task: Task, findings: Sequence[FindingRow], base: ValuesOf, text: str | None = None
) -> list[DocumentValueRow]:
    """The `document_values` rows of one document and task (`text`: the document's canonical text, which
    a ranker reads the words around evidence in)."""
    rows: list[DocumentValueRow] = []
    ranker = task.ranker
    for name, spec in task.fields.items():
        groups = field_groups(spec.kind, (f for f in findings if f.field == name), base.conventions)
        if not groups:
            continue
        supported = choosable(task, name, groups)
        if not supported:
            rows.append(_row(base, task, name, spec.kind, 0, None, "unsupported", groups))
            continue
        field_model = ranker.fields.get(name) if ranker is not None else None
        reviewed = ranker.decisions(base.content_sha256, name) if ranker is not None else None
        chosen = choose(spec, supported, groups, field_model, reviewed, text)
        if not chosen:  # reviewers rejected every candidate of this document
            rows.append(_row(base, task, name, spec.kind, 0, None, "rejected", groups))
            continue
        kept = [group for group, _, _ in chosen]
        for index, (group, status, probability) in enumerate(chosen):
            rows.append(
                _row(
                    base,
                    task,
                    name,
                    spec.kind,
                    index,
                    group,
                    status,
                    [g for g in groups if g not in kept],
                    ranker_sha256=ranker.sha256 if ranker is not None and (field_model or reviewed) else None,
                    probability=probability,
                )
            )
    return rows


def choosable(task: Task, name: str, groups: list[Group]) -> list[Group]:
    """The groups that may be chosen, in the hand order: grounded (or a field that need not carry
    evidence, like a summary), read as their kind (a "date" the date parser cannot read, or a "party"
    that is a role word, is not), a rule's before the model's, then by score and earliest evidence."""
    kind = task.fields[name].kind
    supported = [
        g
        for g in groups
        if (g.grounded or name not in task.evidence_fields) and (g.normalised is not None or kind == "text")
    ]
    supported.sort(key=lambda g: (not g.ruled, -g.score, g.best().evidence_start or 0, g.key))
    return supported


def choose(
    spec: FieldSpec,
    supported: list[Group],
    groups: list[Group],
    field_model: FieldModel | None,
    reviewed: Reviewed | None = None,
    text: str | None = None,
) -> list[tuple[Group, str, float | None]]:
    """The chosen groups of a field, best first, with their status and the ranker's probability.

    Without a ranker: the hand order (a single-valued field's best, `disagreement` when others are
    choosable too; a many-valued field's first `max_values`). With one: the groups whose probability
    reaches the field's threshold (`disagreement` when a second one does too on a single-valued
    field); when none does, the most probable lands as `uncertain` (waits for review, not counted
    as the document's value). Reviewers' decisions on this document come first: a value they
    rejected is never chosen, one they accepted or corrected to is (probability 1.0). Empty when
    reviewers rejected every candidate."""
    pinned: list[Group] = []
    if reviewed is not None:
        supported = [g for g in supported if label_key(g.display()) not in reviewed.wrong]
        pinned = [g for g in supported if label_key(g.display()) in reviewed.right]
    if not supported:
        return []
    chosen = _ranked(spec, supported, groups, field_model, text)
    if not pinned:
        return chosen
    if not spec.many:
        return [(pinned[0], "chosen", 1.0)]
    kept: list[tuple[Group, str, float | None]] = [(g, "chosen", 1.0) for g in pinned]
    kept += [(g, status, p) for g, status, p in chosen if g not in pinned and status != "uncertain"]
    return kept[: spec.max_values] if spec.max_values else kept


def _ranked(
    spec: FieldSpec, supported: list[Group], groups: list[Group], field_model: FieldModel | None, text: str | None
) -> list[tuple[Group, str, float | None]]:
    if field_model is None:
        if spec.many:
            kept = supported[: spec.max_values] if spec.max_values else supported
            return [(g, "chosen", None) for g in kept]
        return [(supported[0], "disagreement" if len(supported) > 1 else "chosen", None)]
    scored = sorted(
        (
            (field_model.probability(features(spec.kind, g, groups, text)), index, g)
            for index, g in enumerate(supported)
        ),
        key=lambda item: (-item[0], item[1]),
    )
    above = [(p, g) for p, _, g in scored if p >= field_model.threshold]
    if not above:
        return [(scored[0][2], "uncertain", round(scored[0][0], 6))]
    if spec.many:
        return [(g, "chosen", round(p, 6)) for p, g in (above[: spec.max_values] if spec.max_values else above)]
    best_p, best = above[0]
    return [(best, "disagreement" if len(above) > 1 else "chosen", round(best_p, 6))]


def _row(
    base: ValuesOf,
    task: Task,
    name: str,
    kind: str,
    index: int,
    group: Group | None,
    status: str,
    others: list[Group],
    *,
    ranker_sha256: str | None = None,
    probability: float | None = None,
) -> DocumentValueRow:
    best = group.best() if group is not None else None
    model_confidences = [f.confidence for f in group.findings if f.method == "model" and f.confidence] if group else []
    return DocumentValueRow(
        value_id=short_id("value", base.run_id, base.content_sha256, task.name, name, index),
        run_id=base.run_id,
        content_sha256=base.content_sha256,
        document_uri=base.document_uri,
        task=task.name,
        task_version=task.version,
        field=name,
        kind=kind,
        item_index=index,
        value=group.display() if group else None,
        normalised=group.normalised if group else None,
        status=status,
        support=len(group.findings) if group else 0,
        score=group.score if group else 0.0,
        methods=",".join(sorted({f.method for f in group.findings})) if group else None,
        confidence=max(model_confidences) if model_confidences else None,
        finding_id=best.finding_id if best else None,
        finding_ids=[f.finding_id for f in group.findings] if group else [],
        evidence_text=best.evidence_text if best else None,
        evidence_start=best.evidence_start if best else None,
        evidence_end=best.evidence_end if best else None,
        evidence_page=best.evidence_page if best else None,
        alternatives=json.dumps([g.summary() for g in others], ensure_ascii=False),
        conventions=base.conventions.describe(),
        ranker_sha256=ranker_sha256,
        ranker_probability=probability,
        created_at=base.created_at,
    )
