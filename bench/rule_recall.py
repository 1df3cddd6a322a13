"""What a task's rules alone find on the Kleister-NDA splits: per rule and per field, no model.

    .venv/bin/python bench/rule_recall.py                          # train and dev, nda_key_terms
    .venv/bin/python bench/rule_recall.py --split dev --task FILE  # another task file (e.g. an older version)

For each split, every document is parsed once the way a run parses it (unstructured's fast strategy,
the canonical text of pipeline/parse/partition.py; cached as text under bench/.cache/texts/), the
task's rules run over the text, and their values are normalised by the field's kind. Prints, per rule,
in how many documents it matched, in how many one of its values was right, and in how many the gold
has no value at all (what a precise chooser must then leave empty); per field, the candidate recall of
the rules alone (the share of gold values among the rules' values). This is the generators' side of
docs/quality.md; `bench/quality.py --protocol` measures rules and model together, and the choice.
Reads ../shared/corpus (a bench may; tests may not).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.audit.evaluation import load_gold  # noqa: E402
from pipeline.core.tasks import BUILTIN_TASK_DIR, load_task_file  # noqa: E402
from pipeline.extract.rules import apply_rules  # noqa: E402
from pipeline.parse.partition import build_document, partition_elements  # noqa: E402
from pipeline.reduce.normalise import comparison_key, label_key, normalise  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
CACHE = ROOT / "bench" / ".cache" / "texts"


def text_of(pdf: Path) -> str:
    """The document's canonical text, as a run would read it (cached by the file's SHA-256)."""
    data = pdf.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    cached = CACHE / f"{digest}.txt"
    if cached.exists():
        return cached.read_text(encoding="utf-8")
    try:
        text = build_document(partition_elements(data, pdf.name, "fast", "pdf"), digest, "pdf").text
    except Exception as exc:  # a document that does not parse has no rule values; say so
        print(f"  {pdf.name}: not parsed ({type(exc).__name__})", file=sys.stderr)
        text = ""
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(text, encoding="utf-8")
    return text


def study(task_file: Path, split: str) -> None:
    task = load_task_file(task_file)
    folder = CORPUS / f"kleister-nda-{split}"
    documents = load_gold(folder / "labels.jsonl")
    per_rule: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    found: Counter[str] = Counter()
    gold_total: Counter[str] = Counter()
    for item in documents:
        matches = apply_rules(task, text_of(folder / item.file))
        for name in item.keys_asked:
            if name not in task.fields:
                continue
            gold = {comparison_key(v) for v in item.values.get(name, [])}
            candidates: set[str] = set()
            by_rule: dict[str, set[str]] = defaultdict(set)
            for match in (m for m in matches if m.field == name):
                value = normalise(task.fields[name].kind, match.value)
                if value is not None:
                    candidates.add(label_key(value))
                    by_rule[match.rule].add(label_key(value))
            for rule, keys in by_rule.items():
                counts = per_rule[(name, rule)]
                counts[0] += 1
                counts[1] += bool(keys & gold)
                counts[2] += not gold
            found[name] += len(gold & candidates)
            gold_total[name] += len(gold)
    print(f"## {split}: {len(documents)} documents, task {task.name} {task.version[:8]}")
    print("| field | rule | documents matched | with a right value | gold has none |")
    print("|---|---|---|---|---|")
    for (name, rule), (matched, right, empty) in sorted(per_rule.items()):
        print(f"| {name} | {rule} | {matched} | {right} | {empty} |")
    for name in task.fields:
        if gold_total[name]:
            share = found[name] / gold_total[name]
            print(f"{split} {name}: rules' candidate recall {found[name]}/{gold_total[name]} = {share:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", type=Path, default=BUILTIN_TASK_DIR / "nda_key_terms.yaml")
    parser.add_argument("--split", choices=["train", "dev", "both"], default="both")
    args = parser.parse_args()
    for split in ("train", "dev") if args.split == "both" else (args.split,):
        study(args.task, split)


if __name__ == "__main__":
    main()
