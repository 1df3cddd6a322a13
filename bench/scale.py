"""Scale benchmark: everything but the model, at growing estate sizes.

    .venv/bin/python bench/scale.py                       # 1k and 10k pages, 1M documents of bookkeeping
    .venv/bin/python bench/scale.py --pages 1000 --docs 100000   # smaller

EXTRACTION IS A STAND-IN HERE: every chunk sent to "the model" gets a fixed,
schema-valid answer at once (no GGUF is loaded), so that the figures measure
listing, hashing, the state store, partitioning (in the parsing processes),
chunking, routing and landing. Model speed is bench/engine.py's and bench/e2e.py's.

1. Full path: a synthetic estate of real PDF pages (pages of the Kleister NDAs in
   ../shared/corpus, recombined into documents of 1-9 pages, each with its own
   metadata so that no two files have the same hash) at 1k and 10k pages, each
   run in a fresh process: pages/s and peak RSS (the run's process and its
   largest parsing process). Targets: pages/s at 10k >= 0.9 x at 1k; peak RSS at
   10k <= 1.2 x at 1k.
2. Bookkeeping at N documents (1M by default; small text files on disk):
   discovery (list, hash, record every document in the state store, and mark its
   work done as a completed run would: no parsing, no model) and then the
   unchanged nightly re-run through the real job path (list, hash, plan, ask the
   state store, skip, land one `documents` row per document, record what was
   seen). Targets: the re-run does no parsing and no model work, spends per
   document <= 1% of the full path's per-document time, and stays under 1 GiB RSS.
   Then the same re-run once more through the Prefect flow (ephemeral Prefect),
   which streams its shard plan too: its peak RSS, beside the job path's.

Each figure is printed on its own line; docs/performance.md records them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.core.settings import Settings  # noqa: E402
from pipeline.extract.engine import (  # noqa: E402
    AskAgain,
    Generation,
    Messages,
    ModelIdentity,
    PromptGroup,
    use_engine,
)

CORPUS = ROOT.parent / "shared" / "corpus" / "kleister-nda-dev" / "documents"
CACHE = ROOT / "bench" / ".cache" / "scale"
SHARD_SIZE_FULL = 16
SHARD_SIZE_BOOKKEEPING = 1000


# -- the stand-in for the model ---------------------------------------------------------------


class StandInEngine:
    """NOT A MODEL: answers every prompt at once with the same schema-valid answer (bench only)."""

    ANSWER = json.dumps(
        {"document_type": None, "parties": [], "effective_date": None, "governing_law": None, "amounts": []}
    )

    def __init__(self) -> None:
        self.identity = ModelIdentity(
            name="STAND-IN (no model)",
            path="",
            sha256="0" * 64,
            quantization="none",
            n_params=0,
            architecture="stand-in",
            runtime="bench/scale.py stand-in",
        )

    n_ctx = 2048

    def render_prompt(self, messages: Messages) -> str:
        return "\n".join(m["content"] for m in messages)

    def count_tokens(self, text: str) -> int:
        return len(text) // 4

    def generate(self, prompt: str, schema_json: str, max_tokens: int | None = None) -> Generation:
        return self.generate_many([prompt], schema_json, max_tokens)[0]

    def generate_many(
        self,
        prompts: list[str],
        schema_json: str,
        max_tokens: int | None = None,
        dry_multiplier: float | None = None,
        ask_again: AskAgain | None = None,
    ) -> list[Generation]:
        return [Generation(self.ANSWER, "stop", len(p) // 4, 20) for p in prompts]

    def generate_groups(self, groups: Sequence[PromptGroup]) -> list[list[Generation]]:
        return [self.generate_many(g.prompts, g.schema_json) for g in groups]

    def model_seconds(self) -> tuple[float, float] | None:
        return None

    def slot_use(self) -> tuple[int, int] | None:
        return None


def _use_stand_in(settings: Settings) -> None:
    """Every run with these settings gets the stand-in instead of loading the model."""
    use_engine(settings.model, StandInEngine())


# -- estates ------------------------------------------------------------------------------------


def make_pdf_estate(folder: Path, pages: int, seed: int) -> tuple[int, int]:
    """Documents of 1-9 real PDF pages until `pages` pages; (documents, pages) written."""
    from pypdf import PdfReader, PdfWriter

    sources = [PdfReader(str(path)) for path in sorted(CORPUS.glob("*.pdf"))]
    pool = [(reader, index) for reader in sources for index in range(len(reader.pages))]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = documents = 0
    while written < pages:
        count = min(rng.randint(1, 9), pages - written)
        writer = PdfWriter()
        for reader, index in rng.sample(pool, count):
            writer.add_page(reader.pages[index])
        writer.add_metadata(
            {"/Title": f"bench document {documents}", "/AssayBench": uuid.UUID(int=rng.getrandbits(128)).hex}
        )
        with open(folder / f"doc-{documents:06d}.pdf", "wb") as handle:
            writer.write(handle)
        written += count
        documents += 1
    return documents, written


def make_text_estate(folder: Path, documents: int) -> None:
    """`documents` small text files, 1,000 per folder, each different."""
    lines = [line for line in (ROOT / "tests" / "fixtures" / "nda" / "labels.jsonl").read_text().split() if line][:200]
    for start in range(0, documents, 1000):
        sub = folder / f"{start // 1000:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        for n in range(start, min(start + 1000, documents)):
            (sub / f"note-{n:07d}.txt").write_text(f"Note {n}. " + " ".join(lines[n % 150 : n % 150 + 40]) + "\n")


# -- runs (each in a fresh process) ---------------------------------------------------------------


class _DescendantPeak:
    """Samples the peak RSS (VmHWM) of this process's descendants (the parsing processes) twice a second."""

    def __init__(self) -> None:
        import threading

        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _descendants(self) -> list[int]:
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                parents[int(stat.parent.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
        found, frontier = [], [os.getpid()]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent]
            found += children
            frontier += children
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for pid in self._descendants():
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.peak_kb = max(self.peak_kb, int(line.split()[1]))
                except OSError:
                    continue

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak_kb / 1024, 1)


def _peak_rss_mb(sampler: _DescendantPeak | None = None) -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return round(own, 1), sampler.stop() if sampler else 0.0


def _settings(data_dir: Path, shard_size: int) -> Any:
    from pipeline.core.settings import load_settings

    return load_settings(data_dir=data_dir, tasks=["key_terms"], shard_size=shard_size)


def _run_job(estate: Path, data_dir: Path, shard_size: int) -> dict[str, Any]:
    """One whole run through the job functions, shards planned as a stream, with the stand-in model."""
    from connectors.registry import resolve_sources
    from pipeline.run.local import run_locally

    settings = _settings(data_dir, shard_size)
    _use_stand_in(settings)
    sampler = _DescendantPeak()
    started = time.perf_counter()
    summary = run_locally(settings, resolve_sources([str(estate)], settings))
    documents = summary.documents_in
    seconds = time.perf_counter() - started
    own, children = _peak_rss_mb(sampler)
    return {
        "seconds": seconds,
        "documents": documents,
        "pages": summary.pages,
        "processed": summary.processed,
        "failed": summary.failed,
        "unchanged": summary.unchanged,
        "answers": summary.answers,
        "stages": summary.stage_seconds,
        "parse_seconds": summary.stage_seconds.get("parse", 0.0),
        "rss_mb": own,
        "parser_rss_mb": children,
    }


def child_full(estate: Path, data_dir: Path) -> dict[str, Any]:
    return _run_job(estate, data_dir, SHARD_SIZE_FULL)


def child_discover(estate: Path, data_dir: Path) -> dict[str, Any]:
    """First discovery, bookkeeping only: list + hash, record in the state store, mark work done."""
    from connectors.registry import resolve_sources
    from pipeline.core.tasks import find_task
    from pipeline.extract.model_files import resolve_model_file
    from pipeline.run.context import get_state, state_url
    from pipeline.run.listing import list_documents
    from pipeline.run.plan import ShardPlan
    from pipeline.state.incremental import extract_fingerprint, parse_fingerprint
    from pipeline.state.store import WorkMark

    settings = _settings(data_dir, SHARD_SIZE_BOOKKEEPING)
    started = time.perf_counter()
    sources = resolve_sources([str(estate)], settings)
    state = get_state(state_url(settings))
    tasks = [find_task(name) for name in settings.tasks]
    model_sha256 = resolve_model_file(settings.model).sha256
    run_id = "discovery-" + uuid.uuid4().hex[:8]
    state.run_started(run_id)
    documents = 0
    for shard in ShardPlan(list_documents(sources), SHARD_SIZE_BOOKKEEPING):
        seen = []
        done = []
        for planned in shard.documents:
            ref = planned.ref
            assert ref.sha256
            seen.append((ref.source, ref.uri, ref.version, ref.sha256, ref.size, None, None))
            parse_fp = parse_fingerprint(ref.sha256, settings)
            done.append(WorkMark(parse_fp, "parse", ref.sha256, None))
            done += [
                WorkMark(extract_fingerprint(parse_fp, t, model_sha256, settings), "extract", ref.sha256, t.name)
                for t in tasks
            ]
        state.record_seen(run_id, seen)
        state.mark_done(run_id, done)
        documents += len(shard.documents)
    state.run_finished(run_id)
    own, _ = _peak_rss_mb()
    return {"seconds": time.perf_counter() - started, "documents": documents, "rss_mb": own}


def child_rerun(estate: Path, data_dir: Path) -> dict[str, Any]:
    """The unchanged nightly re-run through the real job path (with the stand-in, which must not be called)."""
    return _run_job(estate, data_dir, SHARD_SIZE_BOOKKEEPING)


def child_rerun_flow(estate: Path, data_dir: Path) -> dict[str, Any]:
    """The unchanged re-run again, through the Prefect flow (`assay run`, ephemeral Prefect) as operators run it."""
    from flows.assay_run import assay_run, summary_of

    _use_stand_in(_settings(data_dir, SHARD_SIZE_BOOKKEEPING))
    started = time.perf_counter()
    overrides = {"data_dir": str(data_dir), "tasks": ["key_terms"], "shard_size": SHARD_SIZE_BOOKKEEPING}
    summary = summary_of(assay_run([str(estate)], overrides=overrides, return_state=True))
    own, _ = _peak_rss_mb()
    return {
        "seconds": time.perf_counter() - started,
        "documents": summary.documents_in,
        "unchanged": summary.unchanged,
        "processed": summary.processed,
        "rss_mb": own,
    }


CHILDREN = {"full": child_full, "discover": child_discover, "rerun": child_rerun, "rerun-flow": child_rerun_flow}


def _in_child(kind: str, estate: Path, data_dir: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(estate), str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{result.stderr[-4000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", default="1000,10000", help="full-path estate sizes in pages")
    parser.add_argument("--docs", type=int, default=1_000_000, help="bookkeeping estate size in documents")
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-bookkeeping", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "ESTATE", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, estate, data_dir = args.child
        print(json.dumps(CHILDREN[kind](Path(estate), Path(data_dir))))
        return

    print("EXTRACTION: STAND-IN (no model is loaded; every chunk gets the same answer at once)")
    per_page: dict[int, dict[str, Any]] = {}
    if not args.skip_full:
        for pages in [int(p) for p in args.pages.split(",")]:
            estate = CACHE / f"pdf-{pages}"
            if not estate.exists():
                make_pdf_estate(estate, pages, seed=pages)
            data_dir = CACHE / f"data-pdf-{pages}"
            shutil.rmtree(data_dir, ignore_errors=True)
            result = _in_child("full", estate, data_dir)
            rate = result["pages"] / result["seconds"]
            per_page[pages] = {**result, "pages_per_s": rate}
            print(
                f"full path {pages} pages: pages/s={rate:.2f} documents={result['documents']} "
                f"pages={result['pages']} seconds={result['seconds']:.1f} failed={result['failed']} "
                f"peak_rss_mb={result['rss_mb']} largest_parsing_process_peak_rss_mb={result['parser_rss_mb']}"
            )
            print(f"full path {pages} pages: seconds/stage {json.dumps(result['stages'])}")
        sizes = sorted(per_page)
        if len(sizes) >= 2:
            small, large = per_page[sizes[0]], per_page[sizes[-1]]
            print(
                f"full path pages/s ratio {sizes[-1]}/{sizes[0]}={large['pages_per_s'] / small['pages_per_s']:.3f} "
                "(target >= 0.9)"
            )
            print(
                f"full path peak RSS ratio {sizes[-1]}/{sizes[0]}={large['rss_mb'] / small['rss_mb']:.3f} "
                f"parser {large['parser_rss_mb'] / small['parser_rss_mb']:.3f} (target <= 1.2)"
            )
    if not args.skip_bookkeeping:
        estate = CACHE / f"text-{args.docs}"
        marker = CACHE / f"text-{args.docs}.complete"
        if not marker.exists():
            shutil.rmtree(estate, ignore_errors=True)
            started = time.perf_counter()
            make_text_estate(estate, args.docs)
            marker.write_text("ok")
            print(f"bookkeeping: wrote {args.docs} files in {time.perf_counter() - started:.1f} s")
        data_dir = CACHE / f"data-text-{args.docs}"
        shutil.rmtree(data_dir, ignore_errors=True)
        first = _in_child("discover", estate, data_dir)
        print(
            f"bookkeeping {first['documents']} documents, first discovery: seconds={first['seconds']:.1f} "
            f"per_document_ms={1000 * first['seconds'] / first['documents']:.3f} peak_rss_mb={first['rss_mb']}"
        )
        rerun = _in_child("rerun", estate, data_dir)
        per_doc = rerun["seconds"] / rerun["documents"]
        print(
            f"bookkeeping {rerun['documents']} documents, unchanged re-run: seconds={rerun['seconds']:.1f} "
            f"per_document_ms={1000 * per_doc:.3f} peak_rss_mb={rerun['rss_mb']} "
            f"unchanged={rerun['unchanged']} processed={rerun['processed']} model_answers={rerun['answers']} "
            f"parse_seconds={rerun['parse_seconds']}"
        )
        flow = _in_child("rerun-flow", estate, data_dir)
        print(
            f"bookkeeping {flow['documents']} documents, unchanged re-run through the Prefect flow: "
            f"seconds={flow['seconds']:.1f} peak_rss_mb={flow['rss_mb']} unchanged={flow['unchanged']} "
            f"processed={flow['processed']}"
        )
        if per_page:
            full = per_page[max(per_page)]
            full_per_doc = full["seconds"] / full["documents"]
            print(
                f"unchanged re-run per document / full path per document={per_doc / full_per_doc:.4f} (target <= 0.01)"
            )


if __name__ == "__main__":
    main()
