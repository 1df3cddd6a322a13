"""Parsing ahead or in turn: which core split wins, measured side by side in one run.

    .venv/bin/python bench/parse_ahead.py                        # the 40 dev NDAs, nda_key_terms, shards of 8
    .venv/bin/python bench/parse_ahead.py --docs 16 --splits 1+1,2+1
    .venv/bin/python bench/parse_ahead.py --folder ../shared/corpus/formats --task key_terms
    .venv/bin/python bench/parse_ahead.py --in-turn 1+2 --keep /tmp/sides   # same model threads both sides

Each side is one `assay` process over the same files with a fresh data folder, one after the other:

- `in-turn` (the default): a shard parses with every core (`[parsing] workers` = cores), then the model
  decodes with every core (`[model] n_threads` = cores); `--in-turn T+W` sets them;
- `ahead:T+W`: `[parsing] ahead = true` with T model threads and W parsing processes: the next shard
  parses while the model works on this one.

With labels (the NDAs) the sides run `assay eval` and print F1 beside the seconds (parsing ahead must not
change a single value); without (`--folder`), `assay run --json`. Prints per side: the run's
seconds, pages/s, seconds per stage, shards parsed ahead, model answers (failed, partial); last line
`ahead_vs_in_turn[T+W]=<pages/s ratio> ...`.
Reads ../shared/corpus (a bench may; tests may not).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NDA_DIR = ROOT.parent / "shared" / "corpus" / "kleister-nda-dev"
ASSAY = [sys.executable, "-m", "assay"]


def side_env(split: str, ahead: bool) -> dict[str, str]:
    """The environment of one side: `T+W` model threads and parsing processes, in turn or ahead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSAY_PARSING__", "ASSAY_MODEL__"))}
    threads, workers = split.split("+")
    env.update(ASSAY_PARSING__AHEAD=str(ahead).lower(), ASSAY_PARSING__WORKERS=workers, ASSAY_MODEL__N_THREADS=threads)
    return env


def run_side(folder: Path, data: Path, task: str, shard_size: int, env: dict[str, str]) -> dict[str, Any]:
    labels = folder / "labels.jsonl"
    common = ["--data-dir", str(data)]
    if labels.is_file():
        command = [*ASSAY, *common, "eval", "--task", task, "--gold", str(labels), "--name", "side"]
        env = {**env, "ASSAY_SHARD_SIZE": str(shard_size)}
    else:
        command = [*ASSAY, *common, "run", str(folder), "--task", task, "--shard-size", str(shard_size)]
        command += ["--json", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if labels.is_file():
        if done.returncode != 0:
            raise SystemExit(f"assay eval failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        summary = json.loads((data / "evals" / "side" / "report" / "summary.json").read_text())
        import duckdb

        evals = data / "evals" / "side"
        with duckdb.connect(str(evals / "warehouse.duckdb"), read_only=True) as con:
            con.execute("SET file_search_path = ?", [str(evals)])
            row = con.execute("SELECT duration_s, pages FROM runs WHERE run_id = ?", [summary["run_id"]]).fetchone()
            answers = dict(
                con.execute(
                    "SELECT status, count(*) FROM answers WHERE run_id = ? GROUP BY status", [summary["run_id"]]
                ).fetchall()
            )
        assert row is not None
        return {
            "seconds": float(row[0]),
            "pages": int(row[1]),
            "stages": summary["stage_seconds"],
            "f1": summary["overall_f1"],
            "parsed_ahead": summary.get("shards_parsed_ahead", 0),
            "answers": sum(answers.values()),
            "failed": answers.get("failed", 0),
            "partial": answers.get("partial", 0),
        }
    if done.returncode not in (0, 1):  # 1: not every document accounted for (still measured)
        raise SystemExit(f"assay run failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    return {
        "seconds": summary["duration_s"],
        "pages": summary["pages"],
        "stages": summary["stage_seconds"],
        "f1": None,
        "parsed_ahead": summary.get("shards_parsed_ahead", 0),
        "values": summary["values"],
        "answers": summary["answers"],
        "failed": summary["answers_failed"],
        "partial": summary["answers_partial"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=40, help="the first N labelled dev NDAs")
    parser.add_argument("--folder", type=Path, help="a folder of documents instead (no labels: assay run)")
    parser.add_argument("--task", default="nda_key_terms")
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--splits", default="1+1", help="ahead sides as THREADS+WORKERS, comma-separated")
    parser.add_argument("--in-turn", help="the in-turn side's THREADS+WORKERS (default: every core for both)")
    parser.add_argument("--keep", type=Path, help="keep each side's data folder under this folder")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    splits = [s for s in args.splits.split(",") if s]
    in_turn = args.in_turn or f"{cores}+{cores}"
    with tempfile.TemporaryDirectory(prefix="assay-ahead-") as tmp:
        if args.folder is None:
            folder = Path(tmp) / "ndas"
            folder.mkdir()
            lines = [json.loads(x) for x in (NDA_DIR / "labels.jsonl").read_text().splitlines() if x.strip()]
            for label in lines[: args.docs]:
                shutil.copy(NDA_DIR / label["file"], folder / Path(label["file"]).name)
                label["file"] = Path(label["file"]).name
            (folder / "labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines[: args.docs]))
            what = f"{min(args.docs, len(lines))} dev NDAs"
        else:
            folder = args.folder.resolve()
            what = str(folder)
        print(f"{what}, task {args.task}, shards of {args.shard_size}, {cores} cores, in turn {in_turn}", flush=True)
        results: dict[str, dict[str, Any]] = {}
        for split, ahead in [(in_turn, False), *((s, True) for s in splits)]:
            name = f"ahead:{split}" if ahead else "in-turn"
            data = (args.keep or Path(tmp)) / f"{name}-{split}".replace(":", "-").replace("+", "-")
            side = run_side(folder, data, args.task, args.shard_size, side_env(split, ahead))
            results[name] = side
            stages = ", ".join(f"{k} {v:.1f}" for k, v in side["stages"].items())
            print(
                f"{name}: seconds={side['seconds']:.1f} pages={side['pages']} "
                f"pages/s={side['pages'] / side['seconds']:.4f} shards parsed ahead={side['parsed_ahead']}"
                + (f" F1={side['f1']:.4f}" if side["f1"] is not None else f" values={side.get('values')}")
                + f"\n  model answers={side['answers']} failed={side['failed']} partial={side['partial']}"
                + f"\n  seconds/stage: {stages}",
                flush=True,
            )

    def pages_per_s(name: str) -> float:
        return float(results[name]["pages"]) / float(results[name]["seconds"])

    print(" ".join(f"ahead_vs_in_turn[{s}]={pages_per_s(f'ahead:{s}') / pages_per_s('in-turn'):.2f}" for s in splits))


if __name__ == "__main__":
    main()
