"""Extraction quality on the 40 labelled NDAs (Kleister-NDA dev), and what routing costs and saves.

    .venv/bin/python bench/quality.py                       # routed and all-chunks, embedded model (about 1 hour)
    .venv/bin/python bench/quality.py --limit 10            # a quick look
    .venv/bin/python bench/quality.py --only routed         # one configuration
    .venv/bin/python bench/quality.py --config qwen.toml --name-suffix qwen   # another GGUF (model.path + sha256)

Each configuration is one `assay eval` (its own data folder under --data-dir, so a second bench run reuses
what is landed and only re-scores). Prints each evaluation's per-field table, then one line per
configuration and, when both ran, the routing trade:
`routing: tokens_per_doc <all> -> <routed> (<x>x fewer), f1 <all> -> <routed> (<delta> points)`.
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


def run_eval(args: argparse.Namespace, routed: bool) -> dict[str, Any]:
    name = f"{args.task}-{'routed' if routed else 'all-chunks'}" + (f"-{args.name_suffix}" if args.name_suffix else "")
    command = [str(Path(sys.executable).parent / "assay"), "--data-dir", str(args.data_dir)]
    if args.config:
        command += ["--config", str(args.config)]
    command += ["eval", "--task", args.task, "--gold", str(args.gold), "--name", name]
    command += ["--routing" if routed else "--no-routing"]
    if args.limit:
        command += ["--limit", str(args.limit)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"assay eval failed for {name}")
    print(result.stdout, flush=True)
    summary: dict[str, Any] = json.loads((args.data_dir / "evals" / name / "report" / "summary.json").read_text())
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
    args = parser.parse_args()
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
