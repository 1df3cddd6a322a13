"""Extraction quality on labelled NDAs (Kleister-NDA), and what routing costs and saves.

    .venv/bin/python bench/quality.py --protocol            # train (cross-validated) and dev side by side
    .venv/bin/python bench/quality.py                       # dev: routed and all-chunks, embedded model (about 1 hour)
    .venv/bin/python bench/quality.py --limit 10            # a quick look
    .venv/bin/python bench/quality.py --only routed         # one configuration
    .venv/bin/python bench/quality.py --config qwen.toml --name-suffix qwen   # another GGUF (model.path + sha256)

Each configuration is one `assay eval` (its own data folder under --data-dir, so a second bench run reuses
what is landed and only re-scores). Prints each evaluation's per-field table, then one line per
configuration and, when both ran, the routing trade:
`routing: tokens_per_doc <all> -> <routed> (<x>x fewer), f1 <all> -> <routed> (<delta> points)`.

`--protocol` is the train/dev protocol of docs/quality.md: `assay eval` over the first --train-limit
documents of the train split and over the 40 dev documents (the task as it is, routed), then a ranker
trained on the train candidates only (`assay learn`'s code, cross-validated by document), then both
splits scored side by side: per field P/R/F1 and candidate recall with the hand order and with the
ranker (train: out-of-fold; dev: never seen in training), and the model tokens per document. Its
ranker file is written to bench/.cache/rankers/.

Reads the NDAs from ../shared/corpus (a bench may; tests may not).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GOLD = ROOT.parent / "shared" / "corpus" / "kleister-nda-dev" / "labels.jsonl"
TRAIN_GOLD = ROOT.parent / "shared" / "corpus" / "kleister-nda-train" / "labels.jsonl"


def eval_named(
    args: argparse.Namespace, gold: Path, name: str, limit: int | None, routed: bool = True, show: bool = False
) -> dict[str, Any]:
    """One `assay eval` (reusing what its folder already landed) and its summary; `show` prints its report."""
    command = [str(Path(sys.executable).parent / "assay"), "--data-dir", str(args.data_dir)]
    if args.config:
        command += ["--config", str(args.config)]
    command += ["eval", "--task", args.task, "--gold", str(gold), "--name", name]
    command += ["--routing" if routed else "--no-routing"]
    if limit:
        command += ["--limit", str(limit)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"assay eval failed for {name}")
    if show:
        print(result.stdout, flush=True)
    summary: dict[str, Any] = json.loads((args.data_dir / "evals" / name / "report" / "summary.json").read_text())
    return summary


def protocol(args: argparse.Namespace) -> None:
    """Train (cross-validated) and dev, hand order and learned ranker, side by side."""
    sys.path.insert(0, str(ROOT))
    from pipeline.audit import learning
    from pipeline.core.settings import load_settings
    from pipeline.core.tasks import find_task

    suffix = f"-{args.name_suffix}" if args.name_suffix else ""
    train = eval_named(args, TRAIN_GOLD, f"{args.task}-train{args.train_limit}{suffix}", args.train_limit)
    dev = eval_named(args, args.gold, f"{args.task}-dev{suffix}", args.limit)
    task = find_task(args.task, load_settings(args.config).task_dirs)
    evals = args.data_dir / "evals"
    train_examples, _ = learning.gold_examples(task, TRAIN_GOLD, evals)
    dev_examples, _ = learning.gold_examples(task, args.gold, evals)
    learned = learning.learn(task, train_examples, {"gold_sets": [str(TRAIN_GOLD)], "train_limit": args.train_limit})
    path, ranker = learning.write_ranker(learned.ranker, ROOT / "bench" / ".cache" / "rankers")
    print(learning.describe(learned.report))
    train_hand = learning.field_scores(task, train_examples, None)
    dev_hand = learning.field_scores(task, dev_examples, None)
    dev_ranked = learning.field_scores(task, dev_examples, ranker)
    train_documents = len({e.document for e in train_examples})
    dev_documents = len({e.document for e in dev_examples})
    print(f"\ntrain: {train_documents} documents (first {args.train_limit}); dev: {dev_documents}")
    print(
        "| field | train cand. recall | train F1 hand | train ranker P/R/F1 (cv) | ranker used "
        "| dev cand. recall | dev F1 hand | dev P/R/F1 with the ranker |"
    )
    print("|" + "---|" * 8)
    for name in [*task.fields, "overall"]:
        if name not in train_hand:
            continue
        field = learned.report["fields"].get(name, {})
        cv = learned.report["after"] if name == "overall" else field.get("after_cross_validated")
        used = "as chosen" if name == "overall" else ("yes" if field.get("model") else "no")
        ranked = dev_ranked[name]
        trained = f"{cv['precision']:.3f}/{cv['recall']:.3f}/**{cv['f1']:.3f}**" if cv else "-"
        print(
            f"| {name} | {train_hand[name]['candidate_recall']:.3f} | {train_hand[name]['f1']:.3f} "
            f"| {trained} | {used} "
            f"| {dev_hand[name]['candidate_recall']:.3f} | {dev_hand[name]['f1']:.3f} "
            f"| {ranked['precision']:.3f}/{ranked['recall']:.3f}/**{ranked['f1']:.3f}** |"
        )
    print(
        f"\ntokens_per_doc train={train['model_tokens_per_document']} dev={dev['model_tokens_per_document']}; "
        f"eval F1 as landed (the task's own choice: its ranker when it names one) "
        f"train={train['overall_f1']} dev={dev['overall_f1']}"
    )
    print(f"ranker: {path} sha256={ranker.sha256}")
    print(
        f"protocol: train_cv_f1={learned.report['after']['f1']} dev_f1={dev_ranked['overall']['f1']} "
        f"dev_f1_hand={dev_hand['overall']['f1']}"
    )


def run_eval(args: argparse.Namespace, routed: bool) -> dict[str, Any]:
    name = f"{args.task}-{'routed' if routed else 'all-chunks'}" + (f"-{args.name_suffix}" if args.name_suffix else "")
    summary = eval_named(args, args.gold, name, args.limit, routed=routed, show=True)
    summary["folder"] = str(args.data_dir / "evals" / name / "report")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", type=Path, default=DEFAULT_GOLD)
    parser.add_argument("--task", default="nda_key_terms")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--only", choices=["routed", "all-chunks"])
    parser.add_argument("--config", type=Path, help="TOML settings (e.g. another model)")
    parser.add_argument("--name-suffix", default="")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "bench" / ".cache" / "quality")
    parser.add_argument("--protocol", action="store_true", help="train (cross-validated) and dev, side by side")
    parser.add_argument("--train-limit", type=int, default=100, help="train documents for --protocol")
    args = parser.parse_args()
    if args.protocol:
        protocol(args)
        return
    if not args.gold.is_file():
        raise SystemExit(f"no gold labels at {args.gold}")
    results: dict[str, dict[str, Any]] = {}
    for routed in (True, False):
        label = "routed" if routed else "all-chunks"
        if args.only and args.only != label:
            continue
        results[label] = run_eval(args, routed)
    for label, s in results.items():
        print(
            f"{label}: f1={s['overall_f1']} precision={s['overall_precision']} recall={s['overall_recall']} "
            f"candidate_recall={s.get('overall_candidate_recall')} "
            f"grounded_share={s['grounded_share']} tokens_per_doc={s['model_tokens_per_document']} "
            f"chunks_to_model={s['chunks_routed']}/{s['chunks']} run_seconds={s.get('run_seconds')}"
        )
    if len(results) == 2:
        some, every = results["routed"], results["all-chunks"]
        fewer = float(every["model_tokens_per_document"]) / max(float(some["model_tokens_per_document"]), 1.0)
        delta = (float(some["overall_f1"]) - float(every["overall_f1"])) * 100
        print(
            f"routing: tokens_per_doc {every['model_tokens_per_document']} -> {some['model_tokens_per_document']} "
            f"({fewer:.2f}x fewer), f1 {every['overall_f1']} -> {some['overall_f1']} ({delta:+.1f} points)"
        )


if __name__ == "__main__":
    main()
