"""The cost of a page: the pipeline a user would write in an afternoon (the PEER BASELINE) against `assay`.

    .venv/bin/python bench/e2e.py             # quick mode: a fixed subset of 8 NDAs (about 40 minutes on 2 cores)
    .venv/bin/python bench/e2e.py --docs 40   # all 40 labelled NDAs (hours: the peer sends every chunk)
    .venv/bin/python bench/e2e.py --docs 40 --sides tuned,assay   # against the tuned peer only

All sides read the same NDAs (../shared/corpus/kleister-nda-dev, first N in label order), use the same
model file on the same device (the settings `assay run` would use here, bench/settings.py: the embedded
SmolLM2-135M on the CPU unless `ASSAY_MODEL__PATH` or `ASSAY_MODEL__N_GPU_LAYERS` say otherwise), the same
threads and the same task (`nda_key_terms`: its instructions, answer shape and JSON Schema), one after the
other, each in its own process:

- peer baseline (`peer_baseline` below, written the obvious way): unstructured `partition(strategy="fast")`
  + `chunk_by_title`, one `Llama.create_chat_completion` per chunk with the schema as `response_format`,
  rows into DuckDB (an answer that is not JSON is counted as broken and skipped, not inserted);
  per document, the first value of each field and the union of the parties;
- tuned peer (the same code after one more hour): 1,500-character `chunk_by_title` chunks, a compact schema
  of its own (parties, effective_date, governing_law, term as plain strings, one evidence string) and
  `max_tokens=160`;
- assay: `assay eval --task nda_key_terms` over the same files: the Prefect flow, routing, the batched
  engine, rules, grounding, reduce, Parquet + DuckDB, scored by the evaluation harness.

For scoring, the peer's values are normalised with Assay's own normalisers (dates to ISO and so on), so
the F1 difference is about extraction, not formatting. Prints for each side: pages/s, prompt and
generated tokens per page, seconds per stage, CPU utilisation, peak RSS of the process, F1; last line
`e2e_vs_peer=<pages/s ratio> e2e_vs_tuned_peer=<ratio> f1_assay=<a> f1_peer=<b> f1_tuned_peer=<c>` (the
sides run) and `e2e_vs_limit=<ratio>`: the seconds llama.cpp's own `llama-batched-bench` needs for the
run's prompt and generated tokens at the run's mean shape, over the run's seconds (`model_limit` below;
`--no-limit` skips it; the first time it builds the C++ reference, bench/cpp_reference.py).
Timing starts after imports and excludes Prefect's ephemeral server start (printed apart); model
loading is inside both. Reads ../shared/corpus (a bench may; tests may not).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipeline  # noqa: E402,F401  (offline switches, before any library is imported: both sides get them)
from bench.cpp_reference import batched_bench, bench_row  # noqa: E402

NDA_DIR = ROOT.parent / "shared" / "corpus" / "kleister-nda-dev"
TASK = "nda_key_terms"


def _usage() -> dict[str, float]:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu_s": me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime,
        "peak_rss_mb": me.ru_maxrss / 1024,
    }


# THE TUNED PEER: what the same user writes after one more hour. Larger chunks, a compact schema of its
# own (one evidence string for the whole answer, plain strings for values), a tight answer budget.
TUNED_CHUNK_CHARS = 1500
TUNED_MAX_TOKENS = 160
TUNED_INSTRUCTIONS = (
    "Extract from this part of a non-disclosure agreement: the parties (companies or people who sign it), "
    "the effective date, the governing law (state or country), and the term (how long it lasts). "
    "Copy values from the text; use null or [] when the text does not say. "
    '"evidence" is one short quote from the text.'
)
TUNED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["parties", "effective_date", "governing_law", "term", "evidence"],
    "properties": {
        "parties": {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1, "maxLength": 80}},
        "effective_date": {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 40}, {"type": "null"}]},
        "governing_law": {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 40}, {"type": "null"}]},
        "term": {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 60}, {"type": "null"}]},
        "evidence": {"type": "string", "maxLength": 160},
    },
}
TUNED_FIELDS = {"parties": "party", "effective_date": "effective_date", "governing_law": "jurisdiction", "term": "term"}


def peer_baseline(folder: Path, threads: int, tuned: bool = False) -> dict[str, Any]:
    """THE PEER BASELINE: partition, chunk, one chat completion per chunk, rows into DuckDB.

    `tuned`: the tuned peer (1,500-character chunks, the compact schema above, `max_tokens=160`)."""
    import duckdb
    from llama_cpp import Llama
    from unstructured.chunking.title import chunk_by_title
    from unstructured.partition.auto import partition

    from bench.settings import model_settings
    from pipeline.core.tasks import find_task
    from pipeline.extract.model_files import resolve_model_file
    from pipeline.extract.prompts import build_messages

    task = find_task(TASK)
    usage0, started = _usage(), time.perf_counter()
    stages: dict[str, float] = {}

    t = time.perf_counter()
    files = sorted(folder.glob("*.pdf"))
    stages["list"] = time.perf_counter() - t

    t = time.perf_counter()
    chunks: list[tuple[str, str]] = []
    pages = 0
    for path in files:
        elements = partition(filename=str(path), strategy="fast")
        pages += max((e.metadata.page_number or 1 for e in elements), default=1)
        chunked = (
            chunk_by_title(elements, max_characters=TUNED_CHUNK_CHARS, new_after_n_chars=TUNED_CHUNK_CHARS)
            if tuned
            else chunk_by_title(elements)
        )
        chunks += [(path.name, c.text) for c in chunked]
    stages["parse"] = time.perf_counter() - t

    t = time.perf_counter()
    settings = model_settings(n_threads=threads)
    llm = Llama(
        model_path=str(resolve_model_file(settings).path),
        n_ctx=settings.n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        n_gpu_layers=settings.n_gpu_layers,
        seed=0,
        verbose=False,
    )
    answers: list[tuple[str, str]] = []
    prompt_tokens = generated = 0
    for name, text in chunks:
        messages = (
            [{"role": "system", "content": TUNED_INSTRUCTIONS}, {"role": "user", "content": text}]
            if tuned
            else build_messages(task, text)
        )
        result: Any = llm.create_chat_completion(
            messages=messages,  # type: ignore[arg-type]
            response_format={"type": "json_object", "schema": TUNED_SCHEMA if tuned else task.output_schema},
            temperature=0.0,
            max_tokens=TUNED_MAX_TOKENS if tuned else settings.max_tokens,
        )
        prompt_tokens += result["usage"]["prompt_tokens"]
        generated += result["usage"]["completion_tokens"]
        answers.append((name, result["choices"][0]["message"]["content"] or ""))
    stages["model"] = time.perf_counter() - t

    t = time.perf_counter()
    con = duckdb.connect(str(folder / "peer.duckdb"))
    con.execute("CREATE OR REPLACE TABLE findings (file VARCHAR, field VARCHAR, value VARCHAR)")
    broken = 0
    values: dict[str, dict[str, list[str]]] = {}
    for name, content in answers:
        try:
            data = json.loads(content)
        except json.JSONDecodeError:
            broken += 1
            continue
        if not isinstance(data, dict):
            broken += 1
            continue
        for key, raw in data.items():
            field = TUNED_FIELDS.get(key) if tuned else key
            if field is None:  # the tuned peer's one evidence string
                continue
            for item in raw if isinstance(raw, list) else [raw]:
                value = item.get("value") if isinstance(item, dict) else item
                if value:
                    con.execute("INSERT INTO findings VALUES (?, ?, ?)", [name, field, str(value)])
                    values.setdefault(name, {}).setdefault(field, []).append(str(value))
    con.close()
    stages["land"] = time.perf_counter() - t
    wall = time.perf_counter() - started
    usage = _usage()
    return {
        "wall_s": wall,
        "pages": pages,
        "chunks": len(chunks),
        "chunks_to_model": len(chunks),
        "prompt_tokens": prompt_tokens,
        "generated_tokens": generated,
        "broken_answers": broken,
        "stages": stages,
        "cpu_s": usage["cpu_s"] - usage0["cpu_s"],
        "peak_rss_mb": usage["peak_rss_mb"],
        "values": values,
    }


def peer_f1(values: dict[str, dict[str, list[str]]], gold_path: Path) -> float:
    """The peer's values per document (first value per field, union of parties), normalised, scored."""
    from pipeline.audit.evaluation import f1_of, load_gold, score_field
    from pipeline.core.tasks import find_task
    from pipeline.reduce.normalise import normalise

    task = find_task(TASK)
    counts = []
    for item in load_gold(gold_path):
        found = values.get(Path(item.file).name, {})
        for key in item.keys_asked:
            spec = task.fields[key]
            raw = found.get(key, [])
            normalised = [n for n in (normalise(spec.kind, v) for v in raw) if n]
            predicted = list(dict.fromkeys(normalised)) if spec.many else normalised[:1]
            counts.append(score_field(item, key, predicted))
    return float(f1_of(counts)["f1"])


def assay_side(folder: Path, threads: int) -> dict[str, Any]:
    """`assay eval` in this process (CliRunner), so that its RSS and CPU are this process's."""
    import duckdb
    from click.testing import CliRunner

    from assay.cli import cli

    usage0, started = _usage(), time.perf_counter()
    data = folder / "assay-data"
    args = ["--data-dir", str(data), "eval", "--task", TASK, "--gold", str(folder / "labels.jsonl")]
    result = CliRunner().invoke(cli, [*args, "--name", "e2e", "--threads", str(threads)])
    if result.exit_code != 0:
        raise SystemExit(f"assay eval failed: {result.output[-3000:]}")
    wall = time.perf_counter() - started
    usage = _usage()
    summary = json.loads((data / "evals" / "e2e" / "report" / "summary.json").read_text())
    with duckdb.connect(str(data / "evals" / "e2e" / "warehouse.duckdb"), read_only=True) as con:
        con.execute("SET file_search_path = ?", [str(data / "evals" / "e2e")])  # the views name the lake relatively
        run = con.execute("SELECT duration_s, pages FROM runs WHERE run_id = ?", [summary["run_id"]]).fetchone()
        tokens = con.execute(
            "SELECT sum(prompt_tokens), sum(completion_tokens), count(*) FROM answers WHERE run_id = ?",
            [summary["run_id"]],
        ).fetchone()
    assert run is not None and tokens is not None
    return {
        "wall_s": float(run[0]),
        "process_wall_s": wall,
        "pages": int(run[1]),
        "chunks": summary["chunks"],
        "chunks_to_model": summary["chunks_routed"],
        "prompt_tokens": int(tokens[0] or 0),
        "generated_tokens": int(tokens[1] or 0),
        "answers": int(tokens[2] or 0),
        "stages": summary["stage_seconds"],
        "slot_fill": summary.get("slot_fill"),
        "cpu_s": usage["cpu_s"] - usage0["cpu_s"],
        "peak_rss_mb": usage["peak_rss_mb"],
        "f1": summary["overall_f1"],
    }


def report(name: str, side: dict[str, Any], cores: int) -> None:
    pages = max(side["pages"], 1)
    print(f"{name}:", flush=True)
    print(f"  pages/s={side['pages'] / side['wall_s']:.4f}  pages={side['pages']}  seconds={side['wall_s']:.1f}")
    print(
        f"  prompt tokens/page={side['prompt_tokens'] / pages:.0f}  generated tokens/page="
        f"{side['generated_tokens'] / pages:.0f}  chunks to the model={side['chunks_to_model']}/{side['chunks']}"
    )
    print("  seconds/stage: " + ", ".join(f"{k} {v:.1f}" for k, v in side["stages"].items()))
    if side.get("slot_fill") is not None:
        print(f"  model slots full={side['slot_fill']:.2f} (busy slots per llama_decode over the engine's slots)")
    process_wall = side.get("process_wall_s", side["wall_s"])
    print(
        f"  cpu utilisation={side['cpu_s'] / (process_wall * cores):.2f} of {cores} cores  "
        f"peak RSS={side['peak_rss_mb']:.0f} MB  F1={side['f1']:.4f}"
        + (f"  broken answers={side['broken_answers']}" if "broken_answers" in side else "")
        + (f"  (process wall {process_wall:.1f} s incl. Prefect start)" if "process_wall_s" in side else "")
    )


SIDES = ("peer", "tuned", "assay")
TITLES = {
    "peer": "peer baseline (partition + chunk_by_title + create_chat_completion per chunk + DuckDB)",
    "tuned": "tuned peer (1,500-character chunks, compact schema, max_tokens=160)",
    "assay": "assay (eval --task nda_key_terms)",
}


def model_limit(binary: Path, assay: dict[str, Any], threads: int) -> float:
    """Seconds llama.cpp's own `llama-batched-bench` needs for the run's model tokens: its prompt and its
    generation speed at the run's mean shape (prompt and generated tokens per answer, the engine's
    parallel sequences), applied to the run's prompt and generated tokens. Every prompt token counts,
    as the answers record them (the engine's shared-prefix reuse is Assay's own saving)."""
    from bench.settings import model_settings
    from pipeline.extract.model_files import resolve_model_file

    settings = model_settings(n_threads=threads)
    answers = max(int(assay["answers"]), 1)
    pp = max(1, round(assay["prompt_tokens"] / answers))
    tg = max(1, round(assay["generated_tokens"] / answers))
    model = resolve_model_file(settings).path
    row = bench_row(binary, model, pp, tg, settings.n_parallel, threads, settings.n_batch, settings.n_gpu_layers)
    seconds = assay["prompt_tokens"] / row["S_PP t/s"] + assay["generated_tokens"] / row["S_TG t/s"]
    print(
        f"model-bound limit (llama-batched-bench, pp={pp} tg={tg} B={settings.n_parallel}): "
        f"prompt {row['S_PP t/s']:.1f} tok/s, generation {row['S_TG t/s']:.1f} tok/s -> {seconds:.1f} s "
        f"for the run's {assay['prompt_tokens']} + {assay['generated_tokens']} tokens "
        f"= {assay['pages'] / seconds:.4f} pages/s",
        flush=True,
    )
    return float(seconds)


def _model_line(threads: int) -> str:
    from bench.settings import model_settings
    from pipeline.extract.model_files import resolve_model_file

    settings = model_settings(n_threads=threads)
    model = resolve_model_file(settings).path.name
    return f"model {model}, {threads} threads, n_gpu_layers {settings.n_gpu_layers}"


def _run_side(side: str, folder: Path, threads: int) -> dict[str, Any]:
    if side == "assay":
        return assay_side(folder, threads)
    return peer_baseline(folder, threads, tuned=side == "tuned")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=8, help="the first N labelled NDAs (40: all)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--sides", default=",".join(SIDES), help="which to run, comma-separated (default: peer,tuned,assay)"
    )
    parser.add_argument(
        "--no-limit", action="store_true", help="skip the model-bound limit (builds llama-batched-bench once)"
    )
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side:  # a child process: one side, its result as JSON on the last line
        print(json.dumps(_run_side(args.side, args.folder, args.threads)))
        return

    wanted = [side for side in SIDES if side in args.sides.split(",")]
    if "assay" not in wanted:
        raise SystemExit("--sides must include assay (the ratios are Assay's over each peer)")
    binary = None if args.no_limit else batched_bench()  # built first: compiling never overlaps a measurement
    labels = [json.loads(x) for x in (NDA_DIR / "labels.jsonl").read_text().splitlines() if x.strip()][: args.docs]
    with tempfile.TemporaryDirectory(prefix="assay-e2e-") as tmp:
        folder = Path(tmp)
        for label in labels:
            shutil.copy(NDA_DIR / label["file"], folder / Path(label["file"]).name)
            label["file"] = Path(label["file"]).name
        (folder / "labels.jsonl").write_text("".join(json.dumps(label) + "\n" for label in labels))
        print(f"{len(labels)} NDAs, task {TASK}, {_model_line(args.threads)}", flush=True)
        sides = {}
        for side in wanted:
            command = [
                sys.executable,
                __file__,
                "--side",
                side,
                "--folder",
                str(folder),
                "--threads",
                str(args.threads),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-4000:])
                raise SystemExit(f"the {side} side failed")
            sides[side] = json.loads(done.stdout.strip().splitlines()[-1])
            if side != "assay":
                sides[side]["f1"] = peer_f1(sides[side].pop("values"), folder / "labels.jsonl")
            report(TITLES[side], sides[side], len(os.sched_getaffinity(0)))

    def pages_per_s(side: str) -> float:
        return float(sides[side]["pages"]) / float(sides[side]["wall_s"])

    peers = {side: "tuned_peer" if side == "tuned" else side for side in wanted if side != "assay"}
    parts = [f"e2e_vs_{name}={pages_per_s('assay') / pages_per_s(side):.2f}" for side, name in peers.items()]
    if binary is not None:
        limit_s = model_limit(binary, sides["assay"], args.threads)
        parts += [f"e2e_vs_limit={limit_s / float(sides['assay']['wall_s']):.2f}"]
    parts += [f"f1_assay={sides['assay']['f1']:.4f}"]
    parts += [f"f1_{name}={sides[side]['f1']:.4f}" for side, name in peers.items()]
    print(" ".join(parts))


if __name__ == "__main__":
    main()
