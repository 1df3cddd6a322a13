"""One engine call per shard for all its tasks against one call per task, side by side on the same prompts.

    .venv/bin/python bench/across_tasks.py              # the first 16 dev NDAs, 2 shards of 8 (about 8 minutes)
    .venv/bin/python bench/across_tasks.py --docs 8     # one shard

A run with several tasks asks the model for every routed chunk of every task. Asked task by task, each
call ends with a tail: its last answers decode while the other slots stand empty. Asked in one call
(`Engine.generate_groups`, what `assay run` does), the next task's first prompts take those slots.

Per shard of `--shard` documents (the run's default: 8) the script parses and chunks the documents as a
run does (Assay's chunking settings), routes the chunks for `key_terms` and `nda_key_terms` (their own
routing), builds each task's prompts with its schema, budget and `retry_loops`, and decodes them both
ways with one loaded `BatchedEngine` (the default model settings), alternating which way goes first from
shard to shard. Prints per way: seconds, answers/s, the slots' fill (busy slots per `llama_decode` over
the engine's slots), decode steps; and how many answers came out the same text both ways (greedy
decoding; a near-tie may tip with the batch's shape). Last line:
`across_vs_per_task=<answers/s ratio> fill_per_task=<f> fill_across=<f> answers_same=<n>/<m>`.
Reads ../shared/corpus (a bench may; tests may not).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipeline  # noqa: E402,F401  (offline switches)
from bench.settings import model_settings  # noqa: E402
from pipeline.core.hashing import sha256_bytes  # noqa: E402
from pipeline.core.settings import ChunkingSettings  # noqa: E402
from pipeline.core.tasks import find_task  # noqa: E402
from pipeline.extract.batched import BatchedEngine  # noqa: E402
from pipeline.extract.engine import Generation, PromptGroup  # noqa: E402
from pipeline.extract.model_files import resolve_model_file  # noqa: E402
from pipeline.extract.routing import route  # noqa: E402
from pipeline.parse.chunking import chunk_document  # noqa: E402
from pipeline.parse.partition import partition_bytes  # noqa: E402
from pipeline.run.extraction import prompt_group  # noqa: E402

NDA_DIR = ROOT.parent / "shared" / "corpus" / "kleister-nda-dev"
TASKS = ("key_terms", "nda_key_terms")


def shard_groups(files: list[Path], engine: BatchedEngine) -> list[PromptGroup]:
    """One prompt group per task: the routed chunks of these documents, as a run's shard asks them."""
    tasks = [find_task(name) for name in TASKS]
    texts: dict[str, list[str]] = {task.name: [] for task in tasks}
    for path in files:
        data = path.read_bytes()
        partitioned = partition_bytes(data, path.name, sha256_bytes(data))
        chunks = chunk_document(partitioned.document, partitioned.elements, ChunkingSettings())
        for task in tasks:
            texts[task.name] += [d.chunk.text for d in route(task, chunks) if d.routed]
    return [prompt_group(task, texts[task.name], engine) for task in tasks]


def timed(engine: BatchedEngine, run: object) -> tuple[list[Generation], float, int, int]:
    """(answers, seconds, busy slots, slot steps) of one way of asking."""
    busy, steps = engine.slot_use()
    started = time.perf_counter()
    answers = run()  # type: ignore[operator]
    seconds = time.perf_counter() - started
    busy_after, steps_after = engine.slot_use()
    return answers, seconds, busy_after - busy, steps_after - steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=16)
    parser.add_argument("--shard", type=int, default=8)
    args = parser.parse_args()

    labels = [json.loads(line) for line in (NDA_DIR / "labels.jsonl").read_text().splitlines() if line.strip()]
    files = [NDA_DIR / label["file"] for label in labels[: args.docs]]
    settings = model_settings()
    engine = BatchedEngine(resolve_model_file(settings), settings)
    print(
        f"{len(files)} documents, shards of {args.shard}, tasks {', '.join(TASKS)}, {settings.n_parallel} slots, "
        f"model {resolve_model_file(settings).path.name}, n_gpu_layers {settings.n_gpu_layers}"
    )

    seconds_of = {"per_task": 0.0, "across": 0.0}
    busy_of = {"per_task": 0, "across": 0}
    steps_of = {"per_task": 0, "across": 0}
    answers_count = same = 0
    for shard_index, start in enumerate(range(0, len(files), args.shard)):
        groups = shard_groups(files[start : start + args.shard], engine)

        def per_task(groups: list[PromptGroup] = groups) -> list[Generation]:
            answers = []
            for g in groups:
                answers += engine.generate_many(g.prompts, g.schema_json, g.max_tokens, g.dry_multiplier, g.ask_again)
            return answers

        def across(groups: list[PromptGroup] = groups) -> list[Generation]:
            return [answer for answers in engine.generate_groups(groups) for answer in answers]

        ways = [("per_task", per_task), ("across", across)]
        if shard_index % 2:
            ways.reverse()
        results = {}
        for name, run in ways:
            answers, seconds, busy, steps = timed(engine, run)
            results[name] = answers
            seconds_of[name] += seconds
            busy_of[name] += busy
            steps_of[name] += steps
            per_group = "+".join(str(len(g.prompts)) for g in groups)
            print(
                f"  shard {shard_index} {name:<9} answers={len(answers):3d} ({per_group}) "
                f"seconds={seconds:6.1f} fill={busy / steps:.3f} steps={steps}",
                flush=True,
            )
        answers_count += len(results["across"])
        same += sum(a.text == b.text for a, b in zip(results["per_task"], results["across"], strict=True))

    rates = {name: answers_count / seconds for name, seconds in seconds_of.items()}
    fill = {name: busy_of[name] / steps_of[name] for name in seconds_of}
    for name in seconds_of:
        print(
            f"{name:<9} answers/s={rates[name]:.3f} seconds={seconds_of[name]:.1f} fill={fill[name]:.3f} "
            f"steps={steps_of[name]}"
        )
    print(
        f"across_vs_per_task={rates['across'] / rates['per_task']:.3f} fill_per_task={fill['per_task']:.3f} "
        f"fill_across={fill['across']:.3f} answers_same={same}/{answers_count}"
    )


if __name__ == "__main__":
    main()
