"""Engine benchmark: the naive high-level API, Assay's batched engine, and llama.cpp's own C++, side by side.

    .venv/bin/python bench/engine.py                 # 64 real chunks from the NDAs (about 10 minutes on 2 cores)
    .venv/bin/python bench/engine.py --chunks 16     # quick look

1. naive: `Llama.create_chat_completion` with the task's JSON Schema as `response_format`, one chunk at a
   time (it already reuses the prompt prefix left in the cache by the previous call);
2. engine: `BatchedEngine.generate_many` over the same prompts, at `--parallel` sequences;
3. C++ reference: `llama-batched-bench` built from the llama.cpp source vendored in the llama-cpp-python
   sdist of the installed version (bench/cpp_reference.py), at the engine's batch shape (mean prompt
   length, mean generated length, parallel sequences), and the engine at that same shape without grammar.

Prints chunks/s and prompt/generated tokens/s for each, and last
`engine_vs_naive=<x> engine_vs_cpp=<y>` (x: chunks/s ratio on the realistic task; y: total tokens/s ratio
at the same shape). Reads the NDAs from ../shared/corpus (a bench may; tests may not).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipeline  # noqa: E402,F401  (offline switches)
from bench.cpp_reference import batched_bench, bench_row  # noqa: E402
from bench.settings import model_settings  # noqa: E402
from pipeline.core.hashing import sha256_bytes  # noqa: E402
from pipeline.core.settings import ChunkingSettings, ModelSettings  # noqa: E402
from pipeline.core.tasks import find_task  # noqa: E402
from pipeline.extract.answers import parse_answer  # noqa: E402
from pipeline.extract.batched import BatchedEngine  # noqa: E402
from pipeline.extract.model_files import resolve_model_file  # noqa: E402
from pipeline.extract.prompts import build_messages  # noqa: E402
from pipeline.parse.chunking import chunk_document  # noqa: E402
from pipeline.parse.partition import partition_bytes  # noqa: E402

NDA_DIR = ROOT.parent / "shared" / "corpus" / "kleister-nda-dev"


def nda_chunks(count: int) -> list[str]:
    labels = [json.loads(line) for line in (NDA_DIR / "labels.jsonl").read_text().splitlines() if line.strip()]
    chunks: list[str] = []
    for label in labels:
        path = NDA_DIR / label["file"]
        data = path.read_bytes()
        partitioned = partition_bytes(data, path.name, sha256_bytes(data))
        for chunk in chunk_document(partitioned.document, partitioned.elements, ChunkingSettings()):
            chunks.append(chunk.text)
            if len(chunks) == count:
                return chunks
    return chunks


def line(name: str, chunks: int, seconds: float, prompt_tokens: int, generated: int, extra: str = "") -> None:
    print(
        f"{name:<28} chunks/s={chunks / seconds:7.3f}  prompt tok/s={prompt_tokens / seconds:8.1f}  "
        f"generated tok/s={generated / seconds:7.1f}  seconds={seconds:7.1f}  {extra}",
        flush=True,
    )


def run_naive(
    settings: ModelSettings, prompts_messages: list[list[dict[str, str]]], schema: dict[str, Any]
) -> tuple[float, int, int, int]:
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(resolve_model_file(settings).path),
        n_ctx=settings.n_ctx,
        n_batch=settings.n_batch,
        n_threads=settings.n_threads,
        n_threads_batch=settings.n_threads,
        n_gpu_layers=settings.n_gpu_layers,
        seed=0,
        verbose=False,
    )
    prompt_tokens = generated = valid = 0
    started = time.perf_counter()
    for messages in prompts_messages:
        result = llm.create_chat_completion(
            messages=messages,  # type: ignore[arg-type]
            response_format={"type": "json_object", "schema": schema},
            temperature=0.0,
            max_tokens=settings.max_tokens,
        )
        usage = result["usage"]  # type: ignore[index]
        prompt_tokens += usage["prompt_tokens"]
        generated += usage["completion_tokens"]
        try:
            json.loads(result["choices"][0]["message"]["content"] or "")  # type: ignore[index]
            valid += 1
        except json.JSONDecodeError:
            pass
    return time.perf_counter() - started, prompt_tokens, generated, valid


def cpp_shape(binary: Path, model: Path, settings: ModelSettings, pp: int, tg: int, parallel: int) -> float:
    """llama-batched-bench's total tokens/s at one shape (prompt pp, generate tg, parallel sequences)."""
    row = bench_row(binary, model, pp, tg, parallel, settings.n_threads, settings.n_batch, settings.n_gpu_layers)
    return row["S t/s"]  # all tokens over all time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--parallel", type=int, help="sequences decoded together (default: [model] n_parallel)")
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: [model] n_threads)")
    args = parser.parse_args()

    settings = model_settings(n_parallel=args.parallel, n_threads=args.threads)
    task = find_task("key_terms")
    schema_json = json.dumps(task.output_schema)
    chunks = nda_chunks(args.chunks)
    messages = [build_messages(task, chunk) for chunk in chunks]
    print(
        f"{len(chunks)} chunks from {NDA_DIR.name}; task {task.name}; model {resolve_model_file(settings).path.name}; "
        f"threads {settings.n_threads}; n_gpu_layers {settings.n_gpu_layers}; engine parallel {settings.n_parallel}; "
        f"max_tokens {settings.max_tokens}",
        flush=True,
    )

    binary = batched_bench()  # build first, so compiling never overlaps a measurement

    naive_s, naive_pt, naive_gt, naive_valid = run_naive(settings, messages, task.output_schema)
    line(
        "naive (create_chat_completion)",
        len(chunks),
        naive_s,
        naive_pt,
        naive_gt,
        f"valid JSON {naive_valid}/{len(chunks)}",
    )

    engine = BatchedEngine(resolve_model_file(settings), settings)
    prompts = [engine.render_prompt(m) for m in messages]
    started = time.perf_counter()
    generations = engine.generate_many(prompts, schema_json)
    engine_s = time.perf_counter() - started
    engine_pt = sum(g.prompt_tokens for g in generations)
    engine_gt = sum(g.completion_tokens for g in generations)
    valid = 0
    for generation in generations:
        try:
            parse_answer(task, generation)
            valid += 1
        except Exception:
            pass
    line(
        f"engine (batched, {settings.n_parallel} seq)",
        len(chunks),
        engine_s,
        engine_pt,
        engine_gt,
        f"schema-valid {valid}/{len(chunks)}; grammar full passes {engine.grammar.full_passes}/"
        f"{engine.grammar.checks} steps; loops stopped "
        f"{sum(g.finish_reason == 'repetition' for g in generations)}",
    )

    # The same shape for C++ and the engine: mean prompt, mean generation, the engine's parallelism.
    pp = max(1, round(engine_pt / len(generations)))
    tg = max(1, round(engine_gt / len(generations)))
    parallel = settings.n_parallel
    print(
        f"shape: prompt {pp} tokens, generate {tg} tokens, {parallel} sequences (no grammar, EOS ignored)", flush=True
    )
    base = engine.tokenize(chunks[0] * 8)
    token_lists = [[base[(i * 7 + j) % len(base)] for j in range(pp)] for i in range(parallel)]
    engine.generate_tokens(token_lists[:1], 4)  # warm-up, as batched-bench does
    # Alternate the two, three times each, and compare medians: this machine is shared and noisy.
    cpp_runs: list[float] = []
    engine_runs: list[float] = []
    for _ in range(3):
        cpp_runs.append(cpp_shape(binary, resolve_model_file(settings).path, settings, pp, tg, parallel))
        started = time.perf_counter()
        shaped = engine.generate_tokens(token_lists, tg)
        shape_s = time.perf_counter() - started
        engine_runs.append((sum(len(t) for t in token_lists) + sum(g.completion_tokens for g in shaped)) / shape_s)
        print(f"  engine at the same shape: {engine_runs[-1]:.1f} tok/s", flush=True)
    cpp_tps = sorted(cpp_runs)[1]
    engine_tps = sorted(engine_runs)[1]
    print(f"C++ llama-batched-bench      total tok/s={cpp_tps:8.1f} (median of 3)", flush=True)
    print(f"engine at the same shape     total tok/s={engine_tps:8.1f} (median of 3)", flush=True)
    print(
        f"engine_vs_naive={(len(chunks) / engine_s) / (len(chunks) / naive_s):.3f} "
        f"engine_vs_cpp={engine_tps / cpp_tps:.3f}"
    )


if __name__ == "__main__":
    main()
