"""How right a task is on a labelled set: precision, recall, F1, grounding, calibration, cost.

Gold labels are JSON lines in the Kleister style: one document per line with its
`file` (relative to the labels file), `keys_asked`, and one entry per key (a
string, a list of strings, or null when the document does not say). Values are
compared the Kleister way: a predicted value is first written in the data set's
own format (spaces and colons become "_", commas dropped), then both sides are
upper-cased with "_" read as a space. A document's predicted values are its
`document_values` (chosen or disputed values, not the unsupported ones).

Beside F1, each field's **candidate recall**: the share of gold values found among
every candidate the generators (rules and model) produced for that field, before
the reducer chose (each `document_values` row's value and its `alternatives`,
whatever their status). It is the recall a perfect chooser would reach: a change
that raises it improved generation; one that raises F1 at the same candidate recall
improved the choice.

An evaluation writes `summary.json`, `fields.parquet`, `documents.parquet`,
`calibration.parquet` and `report.md` into its folder; two folders compare with
`compare_reports`.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from pipeline.core.errors import ConfigError
from pipeline.reduce.normalise import comparison_key, to_dataset_format

# Reference points for Kleister-NDA (F1 over all key=value pairs), from the data set's paper and later work.
KLEISTER_NDA_REFERENCES = {
    "best supervised system in the Kleister paper": 0.8177,
    "LAMBERT": 0.8042,
    "RoBERTa pipeline": 0.785,
}
CONFIDENCE_BUCKETS = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.01))


class GoldDocument(BaseModel):
    file: str
    keys_asked: list[str]
    values: dict[str, list[str]]


def load_gold(path: Path, limit: int | None = None) -> list[GoldDocument]:
    """The labelled documents of a JSON-lines file (first `limit` of them)."""
    documents = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            keys = list(row["keys_asked"])
            file = str(row["file"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: not a gold line with file and keys_asked ({exc})") from exc
        values: dict[str, list[str]] = {}
        for key in keys:
            raw = row.get(key)
            values[key] = [] if raw is None else [str(v) for v in (raw if isinstance(raw, list) else [raw])]
        documents.append(GoldDocument(file=file, keys_asked=keys, values=values))
        if limit is not None and len(documents) >= limit:
            break
    if not documents:
        raise ConfigError(f"{path} holds no gold documents")
    return documents


@dataclass
class Counts:
    """True and false positives and false negatives, and the precision, recall and F1 they give."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: Counts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def scores(self) -> dict[str, float | int]:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
        }


def score_field(item: GoldDocument, key: str, predicted: list[str]) -> Counts:
    """True and false positives and false negatives of one field of one document (Kleister comparison)."""
    gold_keys = {comparison_key(v) for v in item.values.get(key, [])}
    predicted_keys = {comparison_key(to_dataset_format(v)) for v in predicted}
    return Counts(
        tp=len(gold_keys & predicted_keys), fp=len(predicted_keys - gold_keys), fn=len(gold_keys - predicted_keys)
    )


def f1_of(counts: list[Counts]) -> dict[str, float | int]:
    """Micro precision, recall and F1 over many fields' counts."""
    total = Counts()
    for c in counts:
        total.add(c)
    return total.scores()


@dataclass
class EvaluationReport:
    summary: dict[str, Any]
    fields: list[dict[str, Any]]
    documents: list[dict[str, Any]]
    calibration: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


_CANDIDATES = """
    SELECT v.field, v.value, v.alternatives
    FROM document_values AS v
    WHERE v.task = ? AND v.run_id = ? AND v.content_sha256 = ?
"""


def candidate_keys(rows: list[tuple[Any, ...]]) -> dict[str, set[str]]:
    """Field -> the comparison keys of every candidate value (chosen or not), from `_CANDIDATES` rows."""
    found: dict[str, set[str]] = defaultdict(set)
    for field_name, value, alternatives in rows:
        values = [value] + [alt.get("value") for alt in json.loads(alternatives or "[]") if isinstance(alt, dict)]
        found[str(field_name)].update(comparison_key(to_dataset_format(str(v))) for v in values if v)
    return found


_PREDICTED = """
    SELECT v.content_sha256, v.field, v.value, v.status, v.confidence, v.methods, v.evidence_start,
           v.ranker_probability
    FROM document_values AS v
    WHERE v.task = ? AND v.run_id = ? AND v.content_sha256 = ? AND v.value IS NOT NULL
      AND v.status IN ('chosen', 'disagreement')
    ORDER BY v.field, v.item_index
"""


def latest_extraction(con: duckdb.DuckDBPyConnection, task: str, uri_suffix: str) -> tuple[str, str] | None:
    """(content SHA-256, run id) of the newest run that extracted `task` from the document at that path.

    The path is matched as the end of the document's URI, written the way a file URI writes it
    (percent-encoded: "my nda é.pdf" is `my%20nda%20%C3%A9.pdf`), exactly: no character of a file
    name is a wildcard."""
    suffix = "/" + quote_from_bytes(os.fsencode(uri_suffix.lstrip("/")))
    row = con.execute(
        """
        SELECT r.content_sha256, max(r.run_id)
        FROM routing AS r JOIN documents AS d USING (content_sha256)
        WHERE r.task = ? AND ends_with(d.document_uri, ?)
        GROUP BY r.content_sha256
        ORDER BY max(r.run_id) DESC LIMIT 1
        """,
        [task, suffix],
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def evaluate(con: duckdb.DuckDBPyConnection, task: str, gold: list[GoldDocument]) -> EvaluationReport:
    """Score the task's landed values against the gold labels (the warehouse must hold a run over them)."""
    per_field: dict[str, Counts] = defaultdict(Counts)
    candidates_found: dict[str, int] = defaultdict(int)  # gold values among the candidates, per field
    documents: list[dict[str, Any]] = []
    buckets: dict[str, list[bool]] = defaultdict(list)
    predicted_total = grounded_total = 0
    tokens_total = routed_total = chunks_total = 0
    missing: list[str] = []
    for item in gold:
        found = latest_extraction(con, task, item.file)
        if found is None:
            missing.append(item.file)
        content_sha256, run_id = found or ("", "")
        rows = con.execute(_PREDICTED, [task, run_id, content_sha256]).fetchall() if found else []
        candidates = candidate_keys(
            con.execute(_CANDIDATES, [task, run_id, content_sha256]).fetchall() if found else []
        )
        if found:
            tokens, routed, chunks = con.execute(
                """
                SELECT (SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM answers
                        WHERE run_id = $run AND content_sha256 = $sha AND task = $task),
                       count(*) FILTER (WHERE routed), count(*)
                FROM routing WHERE run_id = $run AND content_sha256 = $sha AND task = $task
                """,
                {"run": run_id, "sha": content_sha256, "task": task},
            ).fetchone() or (0, 0, 0)
            tokens_total += int(tokens)
            routed_total += int(routed)
            chunks_total += int(chunks)
        for key in item.keys_asked:
            gold_keys = {comparison_key(v) for v in item.values.get(key, [])}
            predicted = [r for r in rows if r[1] == key]
            predicted_keys: dict[str, tuple[Any, ...]] = {}
            for row in predicted:
                predicted_keys.setdefault(comparison_key(to_dataset_format(str(row[2]))), row)
            counts = score_field(item, key, [str(r[2]) for r in predicted])
            per_field[key].add(counts)
            candidates_found[key] += len(gold_keys & candidates.get(key, set()))
            for value_key, row in predicted_keys.items():
                predicted_total += 1
                grounded_total += row[6] is not None
                confidence, probability = row[4], row[7]
                bucket = "rule only (no model confidence)"
                if probability is not None:  # a ranker chose it: its calibration is the ranker's
                    low, high = next(b for b in CONFIDENCE_BUCKETS if b[0] <= probability < b[1])
                    bucket = f"ranker {low:.1f}-{min(high, 1.0):.1f}"
                elif confidence is not None:
                    low, high = next(b for b in CONFIDENCE_BUCKETS if b[0] <= confidence < b[1])
                    bucket = f"{low:.1f}-{min(high, 1.0):.1f}"
                buckets[bucket].append(value_key in gold_keys)
            documents.append(
                {
                    "file": item.file,
                    "field": key,
                    "gold": sorted(item.values.get(key, [])),
                    "predicted": [to_dataset_format(str(r[2])) for r in predicted],
                    "statuses": [str(r[3]) for r in predicted],
                    "methods": [str(r[5]) for r in predicted],
                    **{k: v for k, v in counts.scores().items() if k in ("tp", "fp", "fn")},
                    "run_id": run_id or None,
                }
            )
    overall = Counts()
    for counts in per_field.values():
        overall.add(counts)
    fields = [
        {"field": name, **counts.scores(), "candidate_recall": _share(candidates_found[name], counts.tp + counts.fn)}
        for name, counts in sorted(per_field.items())
    ]
    calibration = [
        {"bucket": name, "values": len(hits), "accuracy": round(sum(hits) / len(hits), 4)}
        for name, hits in sorted(buckets.items())
    ]
    summary = {
        "task": task,
        "documents": len(gold),
        "documents_without_results": missing,
        **{f"overall_{k}": v for k, v in overall.scores().items()},
        "overall_candidate_recall": _share(sum(candidates_found.values()), overall.tp + overall.fn),
        "grounded_share": round(grounded_total / predicted_total, 4) if predicted_total else None,
        "predicted_values": predicted_total,
        "model_tokens_per_document": round(tokens_total / len(gold), 1),
        "chunks": chunks_total,
        "chunks_routed": routed_total,
    }
    return EvaluationReport(summary, fields, documents, calibration)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def write_report(report: EvaluationReport, out_dir: Path) -> Path:
    """summary.json, three Parquet tables and report.md in `out_dir`; returns the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(
        json.dumps({**report.summary, **report.extra}, indent=2, default=str) + "\n", encoding="utf-8"
    )
    for name, rows in (("fields", report.fields), ("documents", report.documents), ("calibration", report.calibration)):
        if rows:
            pq.write_table(pa.Table.from_pylist(rows), out_dir / f"{name}.parquet")
    markdown = out_dir / "report.md"
    markdown.write_text(report_markdown(report), encoding="utf-8")
    return markdown


def report_markdown(report: EvaluationReport) -> str:
    s = {**report.summary, **report.extra}
    lines = [
        f"# Evaluation of `{s['task']}`" + (f" ({s['name']})" if s.get("name") else ""),
        "",
        f"- documents: {s['documents']}"
        + (f" ({len(s['documents_without_results'])} without results)" if s["documents_without_results"] else ""),
        *(f"- {key}: {s[key]}" for key in ("model", "model_sha256", "routing", "task_version", "run_id") if key in s),
        f"- model tokens per document: {s['model_tokens_per_document']}; chunks sent to the model: "
        f"{s['chunks_routed']} of {s['chunks']}",
        f"- share of predicted values grounded in the source: {s['grounded_share']}",
        "",
        "| field | precision | recall | F1 | candidate recall | TP | FP | FN |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {f['field']} | {f['precision']:.3f} | {f['recall']:.3f} | {f['f1']:.3f} "
            f"| {f.get('candidate_recall', 0.0):.3f} | {f['tp']} | {f['fp']} | {f['fn']} |"
            for f in report.fields
        ),
        f"| **overall (micro)** | {s['overall_precision']:.3f} | {s['overall_recall']:.3f} | **{s['overall_f1']:.3f}** "
        f"| {s.get('overall_candidate_recall', 0.0):.3f} | {s['overall_tp']} | {s['overall_fp']} | {s['overall_fn']} |",
        "",
        "Candidate recall: the share of gold values among every candidate the rules and the model produced, "
        "before the reducer chose (the recall a perfect chooser would reach).",
        "",
        "## Calibration (accuracy of predicted values by model confidence)",
        "",
        "| confidence | values | accuracy |",
        "|---|---|---|",
        *(f"| {c['bucket']} | {c['values']} | {c['accuracy']:.3f} |" for c in report.calibration),
    ]
    if s["task"].startswith("nda"):
        lines += [
            "",
            "Reference points on Kleister-NDA (F1): "
            + "; ".join(f"{k} {v}" for k, v in KLEISTER_NDA_REFERENCES.items()),
        ]
    return "\n".join(lines) + "\n"


def compare_reports(a_dir: Path, b_dir: Path) -> str:
    """Markdown: per field F1 of A and B, and the documents whose values changed between them."""
    for folder in (a_dir, b_dir):
        if not (folder / "summary.json").is_file():
            raise ConfigError(f"{folder} is not an evaluation folder (no summary.json)")
    a_summary = json.loads((a_dir / "summary.json").read_text(encoding="utf-8"))
    b_summary = json.loads((b_dir / "summary.json").read_text(encoding="utf-8"))
    a_fields = {r["field"]: r for r in pq.read_table(a_dir / "fields.parquet").to_pylist()}
    b_fields = {r["field"]: r for r in pq.read_table(b_dir / "fields.parquet").to_pylist()}
    lines = [
        f"# Comparison: A = {a_dir}, B = {b_dir}",
        "",
        "| field | F1 A | F1 B | change |",
        "|---|---|---|---|",
    ]
    for name in sorted(set(a_fields) | set(b_fields)):
        fa = a_fields.get(name, {}).get("f1", 0.0)
        fb = b_fields.get(name, {}).get("f1", 0.0)
        verdict = "better" if fb > fa else "worse" if fb < fa else "same"
        lines.append(f"| {name} | {fa:.3f} | {fb:.3f} | {fb - fa:+.3f} ({verdict}) |")
    fa, fb = a_summary["overall_f1"], b_summary["overall_f1"]
    lines.append(f"| **overall** | {fa:.3f} | {fb:.3f} | {fb - fa:+.3f} |")
    lines += [
        "",
        f"Model tokens per document: A {a_summary['model_tokens_per_document']}, "
        f"B {b_summary['model_tokens_per_document']}.",
        "",
        "## Documents that changed",
        "",
        "| file | field | A | B | TP A -> B |",
        "|---|---|---|---|---|",
    ]
    a_docs = {(r["file"], r["field"]): r for r in pq.read_table(a_dir / "documents.parquet").to_pylist()}
    b_docs = {(r["file"], r["field"]): r for r in pq.read_table(b_dir / "documents.parquet").to_pylist()}
    changed = 0
    for key in sorted(set(a_docs) | set(b_docs)):
        ra, rb = a_docs.get(key, {}), b_docs.get(key, {})
        if sorted(ra.get("predicted") or []) != sorted(rb.get("predicted") or []):
            changed += 1
            lines.append(
                f"| {key[0]} | {key[1]} | {', '.join(ra.get('predicted') or []) or '-'} "
                f"| {', '.join(rb.get('predicted') or []) or '-'} | {ra.get('tp', 0)} -> {rb.get('tp', 0)} |"
            )
    if not changed:
        lines.append("| (none) | | | | |")
    return "\n".join(lines) + "\n"
