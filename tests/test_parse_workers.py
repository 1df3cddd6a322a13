"""Parsing in worker processes: same results as in-process, long PDFs in page ranges, and files
that hang, leak or crash their worker recorded with a reason while the pool goes on."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.core.errors import DocumentError, Reason
from pipeline.core.hashing import sha256_bytes
from pipeline.core.settings import ChunkingSettings, ParsingSettings
from pipeline.parse.partition import partition_bytes
from pipeline.parse.workers import ParsePool
from tests.support import document, nda_document

THREE_PAGES = nda_document("5fef505c7e8c60c597f150f2f2976684")
DOCX = document("unstructured__handbook-1p.docx")
EML = document("enron__jones-t_inbox_773.eml")
ROOT = Path(__file__).resolve().parent.parent


def _submit(pool: ParsePool, path: Path, name: str | None = None):  # type: ignore[no-untyped-def]
    data = path.read_bytes()
    return pool.submit(data, name or path.name, sha256_bytes(data), "fast", ChunkingSettings())


@pytest.fixture(scope="module")
def pool() -> Iterator[ParsePool]:
    parse_pool = ParsePool(ParsingSettings(workers=2, timeout_s=120, files_per_worker=2, pdf_pages_per_part=1))
    yield parse_pool
    parse_pool.close()


def test_worker_results_equal_in_process_results(pool: ParsePool) -> None:
    # Three documents through two processes recycled every 2 files.
    paths = [DOCX, EML, DOCX]
    jobs = [_submit(pool, path) for path in paths]
    for job, path in zip(jobs, paths, strict=True):
        parsed, chunks = job.result()
        data = path.read_bytes()
        expected = partition_bytes(data, path.name, sha256_bytes(data)).document
        assert parsed == expected
        assert chunks and all(parsed.text[c.start : c.end] == c.text for c in chunks)


def test_a_long_pdf_is_parsed_in_page_ranges_with_true_page_numbers(pool: ParsePool) -> None:
    parsed, chunks = _submit(pool, THREE_PAGES).result()  # 3 pages, 1 page per part: 3 jobs
    data = THREE_PAGES.read_bytes()
    whole = partition_bytes(data, THREE_PAGES.name, sha256_bytes(data)).document
    assert parsed.page_count == whole.page_count == 3
    assert {s.page for s in parsed.element_spans} == {1, 2, 3}
    # pdfminer reads page by page, so the page ranges give the same text, page for page.
    assert parsed.text == whole.text
    assert parsed.element_spans == whole.element_spans
    assert chunks[-1].pages[-1] == 3


def test_bad_files_fail_with_their_reason_in_a_worker(pool: ParsePool) -> None:
    with pytest.raises(DocumentError) as empty:
        _submit(pool, document("unstructured__empty.txt")).result()
    assert empty.value.reason is Reason.EMPTY_FILE
    with pytest.raises(DocumentError) as locked:
        _submit(pool, document("unstructured__password.pdf")).result()
    assert locked.value.reason is Reason.ENCRYPTED and locked.value.filetype == "pdf"


FAULTS = """
import sys
from pathlib import Path
import pipeline
from pipeline.core.errors import DocumentError
from pipeline.core.hashing import sha256_bytes
from pipeline.parse.workers import ParsePool
from pipeline.core.settings import ChunkingSettings, ParsingSettings

pool = ParsePool(ParsingSettings(workers=1, timeout_s=float(sys.argv[2]), memory_mb=2048))
data = Path(sys.argv[1]).read_bytes()
for name in ["bad.docx", "good.docx"]:
    try:
        document, _ = pool.submit(data, name, sha256_bytes(data), "fast", ChunkingSettings()).result()
        print(name, "ok", len(document.text))
    except DocumentError as exc:
        print(name, exc.reason.value, exc)
pool.close()
"""


@pytest.mark.slow  # waits out a time limit, fills a memory cap, kills a worker
@pytest.mark.parametrize(
    ("fault", "reason", "words"),
    [
        ("hang", "parse_timeout", "took longer than parsing.timeout_s=8"),
        ("leak", "parse_out_of_memory", "needed more than 2048 MiB (parsing.memory_mb)"),
        ("crash", "parser_crashed", "signal SIGSEGV"),
    ],
)
def test_a_file_that_hangs_leaks_or_crashes_its_worker_is_recorded_and_the_next_file_parses(
    fault: str, reason: str, words: str
) -> None:
    # In a child process, so the fault switch reaches the pool's fork server from the start.
    env = {**os.environ, "ASSAY_PARSE_FAULT": f"{fault}:bad.docx"}
    result = subprocess.run(
        [sys.executable, "-c", FAULTS, str(DOCX), "8" if fault == "hang" else "120"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"bad.docx {reason} ") and words in lines[0], result.stdout
    assert lines[1].startswith("good.docx ok "), result.stdout
