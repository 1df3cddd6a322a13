"""A bounded fuzz run over the parse entry point: real files (PDF, DOCX, XLSX, HTML, e-mail, UTF-16 text),
mutated by hypothesis (bytes flipped, cut, spliced, repeated), parsed in the worker pool exactly as a run
parses them. Each gives a document with exact chunks, or a `DocumentError` with its reason: never another
exception, never a dead pool. A small budget in CI (`ASSAY_FUZZ_EXAMPLES`, default 40); crashes found
become regression tests (tests/test_properties.py names the ones found so far)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.errors import DocumentError
from pipeline.core.hashing import sha256_bytes
from pipeline.core.settings import ChunkingSettings, ParsingSettings
from pipeline.parse.workers import ParsePool
from tests.support import document

pytestmark = pytest.mark.slow  # a pool of parsing processes and a few dozen parses

SEEDS = {
    name: document(name).read_bytes()
    for name in (
        "nda-52d16f549c8c3f0b2a1ebab40576f4dc.pdf",
        "unstructured__handbook-1p.docx",
        "unstructured__vodafone.xlsx",
        "docling__kvp_data_example.html",
        "enron__jones-t_inbox_773.eml",
        "unstructured__fake-text-utf-16-be.txt",
    )
}
EXAMPLES = int(os.environ.get("ASSAY_FUZZ_EXAMPLES", "40"))


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        operation = draw(st.sampled_from(["flip", "cut", "truncate", "insert", "repeat"]))
        if operation == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif operation == "cut":
            del data[at : at + draw(st.integers(1, 512))]
        elif operation == "truncate":
            del data[at:]
        elif operation == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:  # a stretch repeated: deep nesting, long runs
            data[at:at] = bytes(data[at : at + 64]) * draw(st.integers(2, 200))
    return name, bytes(data)


@pytest.fixture(scope="module")
def pool() -> Iterator[ParsePool]:
    parse_pool = ParsePool(ParsingSettings(workers=1, timeout_s=30, memory_mb=1536, files_per_worker=50))
    yield parse_pool
    parse_pool.close()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # the same budget every time in CI: no replay of a stored corpus
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(sample=mutated())
def test_a_mutated_file_parses_or_fails_with_a_reason(pool: ParsePool, sample: tuple[str, bytes]) -> None:
    name, data = sample
    try:
        parsed, chunks = pool.submit(data, name, sha256_bytes(data), "fast", ChunkingSettings()).result()
    except DocumentError as exc:
        assert exc.reason.value and str(exc)
        return
    assert parsed.text
    assert all(parsed.text[c.start : c.end] == c.text for c in chunks)
