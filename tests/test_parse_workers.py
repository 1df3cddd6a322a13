"""Parsing in worker processes: same results as in-process, long PDFs in page ranges, and files
that hang, leak or crash their worker recorded with a reason while the pool goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.core.errors import DocumentError, Reason
from pipeline.core.hashing import sha256_bytes
from pipeline.core.settings import ChunkingSettings, ParsingSettings
from pipeline.parse.partition import partition_bytes
from pipeline.parse.workers import ParsePool, _Size
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


@pytest.mark.slow  # a pool of its own
def test_a_parse_too_large_to_hand_back_fails_as_too_large_in_the_worker_and_across_pdf_parts() -> None:
    """A decompression bomb's text never reaches the run's process: the worker measures it first, and the
    parent sums the parts of a long PDF (each part under the cap, all of them over it)."""
    pdf = THREE_PAGES.read_bytes()
    whole = partition_bytes(pdf, THREE_PAGES.name, sha256_bytes(pdf)).document
    longest_page = max(sum(s.end - s.start for s in whole.element_spans if s.page == page) for page in (1, 2, 3))
    cap = longest_page + 10
    assert cap < len(whole.text)
    capped = ParsePool(ParsingSettings(workers=1, pdf_pages_per_part=1, max_text_chars=cap))
    bomb = ("A paragraph of the bomb. " * 40 + "\n\n") * (cap // 1000 + 2)
    try:
        with pytest.raises(DocumentError, match=rf"more than parsing.max_text_chars={cap:,} ") as in_worker:
            capped.submit(bomb.encode(), "bomb.txt", sha256_bytes(bomb.encode()), "fast", ChunkingSettings()).result()
        assert in_worker.value.reason is Reason.TOO_LARGE
        with pytest.raises(DocumentError, match=rf"more than parsing.max_text_chars={cap:,} ") as long_pdf:
            _submit(capped, THREE_PAGES).result()
        assert long_pdf.value.reason is Reason.TOO_LARGE and long_pdf.value.filetype == "pdf"
        small = b"Signed on 1 February 2026."
        parsed, _ = capped.submit(small, "small.txt", sha256_bytes(small), "fast", ChunkingSettings()).result()
        assert parsed.text == small.decode()  # the pool goes on
    finally:
        capped.close()


def test_too_many_elements_is_too_large() -> None:
    element = SimpleNamespace(text="x")
    size = _Size()
    size.add([element] * 3, (3, 100), "html")
    with pytest.raises(DocumentError, match=r"more than parsing.max_elements=3 elements \(4\)"):
        size.add([element], (3, 100), "html")


EARLY_START = """
import json, psutil
from pipeline.core.hashing import sha256_bytes
from pipeline.core.settings import ChunkingSettings, ParsingSettings
from pipeline.parse.workers import ParsePool, start_parsing_processes

me = psutil.Process()
start_parsing_processes(ParsingSettings(workers=0))
in_process = [c.pid for c in me.children()]
limits = ParsingSettings(workers=1)
start_parsing_processes(limits)
early = [c.pid for c in me.children()]
preloads = ["pipeline.parse.preload" in " ".join(psutil.Process(pid).cmdline()) for pid in early]
pool = ParsePool(limits)
data = b"One line of text to parse."
parsed, _ = pool.submit(data, "a.txt", sha256_bytes(data), "fast", ChunkingSettings()).result()
workers = [c.ppid() for c in me.children(recursive=True) if c.pid not in early]
after = [c.pid for c in me.children()]
print(json.dumps({"in_process": in_process, "early": early, "preloads": preloads, "after": after,
                  "workers_parents": workers, "text": parsed.text}))
pool.close()
"""


def test_the_parsing_processes_start_early_and_the_pool_forks_its_workers_from_them() -> None:
    """`start_parsing_processes` (the CLI calls it before it imports Prefect) starts the fork server at once;
    the pool made later forks its workers from that same server, so its preload is paid once, early."""
    done = subprocess.run([sys.executable, "-c", EARLY_START], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    assert seen["in_process"] == []  # parsing in the run's own process: nothing to start
    assert seen["early"], "no fork server was started"
    assert sum(seen["preloads"]) == 1  # the server started early loads the parsers (and the tracker does not)
    assert seen["after"] == seen["early"]  # the pool started no server of its own
    assert seen["workers_parents"] and set(seen["workers_parents"]) <= set(seen["early"])
    assert seen["text"] == "One line of text to parse."


CTRL_C_EARLY = """
import os, signal, time
from pipeline.core.settings import ParsingSettings
from pipeline.parse.workers import start_parsing_processes

start_parsing_processes(ParsingSettings(workers=1))
time.sleep(0.5)  # the server's preload (seconds) is under way
try:
    os.killpg(0, signal.SIGINT)  # Ctrl-C: the terminal interrupts every process of the command
    time.sleep(5)
except KeyboardInterrupt:
    print("interrupted")
"""


def test_ctrl_c_while_the_parsers_load_interrupts_the_run_and_prints_no_traceback_from_them() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_EARLY],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        start_new_session=True,  # its own process group, as a command at a terminal has
    )
    assert done.stdout.strip() == "interrupted"
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


CANNOT_START = """
from pipeline.core.errors import ConfigError
from pipeline.core.settings import ParsingSettings
from pipeline.parse.workers import ParsePool, start_parsing_processes

limits = ParsingSettings(workers=1)
start_parsing_processes(limits)  # a head start only: it says nothing
try:
    ParsePool(limits)
except ConfigError as exc:
    print(exc)
"""


def test_parsing_processes_that_cannot_start_stop_with_what_to_do_instead_of_failing_every_document(
    tmp_path: Path,
) -> None:
    """Their fork server's Unix socket lives under TMPDIR, and such a path must stay under 108 bytes. Before,
    every document of the run failed as `internal_error` with a BrokenProcessPool traceback."""
    long_tmp = tmp_path / ("t" * 110)
    long_tmp.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", CANNOT_START],
        env=dict(os.environ, TMPDIR=str(long_tmp)),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("the parsing processes cannot start: AF_UNIX path too long")
    assert f"TMPDIR ({long_tmp})" in done.stdout and "set TMPDIR to a shorter folder" in done.stdout


def test_what_the_parser_warns_about_a_file_comes_back_with_that_file(pool: ParsePool) -> None:
    """unstructured guesses a BOM-less UTF-16 file's encoding and warns: the warning belongs to that
    document (the run writes it into the document's `message`), not to a worker's stderr."""
    utf16 = document("unstructured__fake-text-utf-16-be.txt")
    guessed = [_submit(pool, utf16, f"{n}.txt") for n in range(3)]  # two of them share a process
    plain = _submit(pool, DOCX)
    for job in [*guessed, plain]:
        job.result()
    for job in guessed:  # each file's own warning, though its process warned the same before
        assert len(job.warnings) == 1 and "inferred as 'utf_16_be'" in job.warnings[0]
        assert job.warnings[0].startswith("EncodingDetectionWarning: ")
    assert plain.warnings == []


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
from pipeline.core import faults
from pipeline.core.errors import DocumentError
from pipeline.core.hashing import sha256_bytes
from pipeline.parse.workers import ParsePool, _Size
from pipeline.core.settings import ChunkingSettings, ParsingSettings

faults.arm()
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


def test_legacy_word_and_powerpoint_files_convert_with_libreoffice_in_the_parsing_processes(pool: ParsePool) -> None:
    """Conversions at the same time, in two parsing processes (each with its own home and profile)."""
    import shutil

    from tests.support import skip_or_fail

    if shutil.which("soffice") is None:
        skip_or_fail("LibreOffice is not installed here (Debian: libreoffice-writer-nogui, libreoffice-impress-nogui)")
    legacy = document("unstructured__duplicate-paragraphs.doc")
    slides = document("docling__powerpoint_sample.ppt")
    jobs = [_submit(pool, legacy, "first.doc"), _submit(pool, slides, "slides.ppt"), _submit(pool, legacy, "again.doc")]
    expected = [("doc", "This document contains duplicates"), ("ppt", "Test Table Slide"), ("doc", "some text")]
    for job, (filetype, words) in zip(jobs, expected, strict=True):
        parsed, chunks = job.result()
        assert parsed.filetype == filetype and words in parsed.text and chunks


def test_rtf_opendocument_and_strict_ooxml_are_read_through_libreoffice_writer(pool: ParsePool) -> None:
    """Before: RTF and ODT were unsupported_type ("needs pandoc"), a Strict OOXML .docx a parse_error (python-docx
    knows only the transitional namespaces). Each keeps its own type in the records."""
    import shutil

    from tests.support import skip_or_fail

    if shutil.which("soffice") is None:
        skip_or_fail("LibreOffice is not installed here (Debian: libreoffice-writer-nogui)")
    names = ("assay__agreement.rtf", "assay__agreement.odt", "assay__agreement-strict.docx")
    jobs = [_submit(pool, document(name), name) for name in names]
    for job, filetype in zip(jobs, ("rtf", "odt", "docx"), strict=True):
        parsed, chunks = job.result()
        assert parsed.filetype == filetype and chunks
        assert "made on 4 March 2026 between Acme AG, Zürich, and Beta GmbH" in parsed.text
        assert "governed by the laws of Switzerland" in parsed.text


def test_without_libreoffice_writer_an_rtf_file_names_what_would_read_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.core.errors import DocumentError
    from pipeline.parse import convert, partition

    monkeypatch.setattr(partition, "libreoffice_has", lambda component: False)
    monkeypatch.setattr(convert, "libreoffice_has", lambda component: False)
    for name, reason in (
        ("assay__agreement.rtf", "unsupported_type"),
        ("assay__agreement-strict.docx", "unsupported_type"),
    ):
        with pytest.raises(DocumentError) as caught:
            partition.partition_bytes(document(name).read_bytes(), name, "sha")
        assert caught.value.reason == reason and "libreoffice-writer-nogui" in str(caught.value)


def test_a_file_that_failed_for_want_of_a_converter_is_tried_again_once_one_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The failed-parse fingerprint names the converters installed: installing LibreOffice Writer changes it,
    so `.rtf` and `.doc` files recorded as unsupported_type are parsed again on the next night."""
    from pipeline.core.settings import load_settings
    from pipeline.parse import partition
    from pipeline.state.incremental import failed_fingerprint

    settings = load_settings()
    monkeypatch.setattr(partition, "libreoffice_has", lambda component: False)
    without = failed_fingerprint("parse-fp", settings)
    assert failed_fingerprint("parse-fp", settings) == without  # stable while nothing is installed
    monkeypatch.setattr(partition, "libreoffice_has", lambda component: component == "libswlo.so")
    assert "rtf" in partition.converters() and "ppt" not in partition.converters()
    assert failed_fingerprint("parse-fp", settings) != without
