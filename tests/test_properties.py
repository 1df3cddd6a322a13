"""Property tests (hypothesis) for the parts that read what others wrote: the model's answer, a quote to
ground, a value to normalise, a settings file, a manifest. Each either works or fails with its own
typed error; none crashes, hangs or leaks a secret, whatever the input."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.core.errors import AssayError, ExtractionError
from pipeline.core.settings import ValueConventions, load_settings
from pipeline.core.tasks import find_task
from pipeline.extract.answers import parse_answer
from pipeline.extract.engine import Generation
from pipeline.extract.grounding import GroundingStatus, ground, normalise_text
from pipeline.land.ledger import Ledger, verify
from pipeline.land.store import local_store
from pipeline.reduce.normalise import KINDS, dedupe_key, normalise

TASK = find_task("key_terms")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
FIELDS = st.sampled_from(sorted(TASK.output_schema.get("properties", {})) or ["x"])
ANSWERS = st.one_of(
    st.text(max_size=200),
    JSON.map(json.dumps),
    st.dictionaries(FIELDS, JSON, max_size=6).map(json.dumps),
)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(text=ANSWERS, finish=st.sampled_from(["stop", "length", "repetition", "dead_end", "overflow"]))
@example(text='{"parties": [' * 2000, finish="stop")  # deep nesting: an error, not a RecursionError
def test_an_answer_is_schema_valid_data_or_an_extraction_error(text: str, finish: str) -> None:
    try:
        data = parse_answer(TASK, Generation(text, finish, 10, 10))
    except ExtractionError as exc:
        assert exc.reason.value in {"schema_invalid", "truncated", "repetition", "context_overflow"}
        return
    assert finish == "stop" and isinstance(data, dict)
    assert not list(TASK.validator.iter_errors(data))


@FAST
@given(
    document=st.text(max_size=400),
    quote=st.text(max_size=40),
    bounds=st.tuples(st.integers(0, 400), st.integers(0, 400)),
    within_chunk=st.booleans(),
)
def test_a_grounding_points_into_the_text_and_an_exact_one_spells_the_quote(
    document: str, quote: str, bounds: tuple[int, int], within_chunk: bool
) -> None:
    start, end = sorted(min(b, len(document)) for b in bounds)
    found = ground(quote, document, start, end, within_chunk=within_chunk)
    if found.status is GroundingStatus.UNGROUNDED:
        assert found.start is None and found.end is None
        return
    assert found.start is not None and found.end is not None
    assert 0 <= found.start <= found.end <= len(document)
    if found.status is GroundingStatus.EXACT:
        assert document[found.start : found.end] == quote.strip()
    if found.status is GroundingStatus.FUZZY or within_chunk:
        assert start <= found.start and found.end <= end  # never outside the chunk


@FAST
@given(document=st.text(min_size=1, max_size=300), data=st.data())
def test_a_quote_taken_from_the_chunk_is_found_exactly(document: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(document) - 1))
    end = data.draw(st.integers(start + 1, len(document)))
    quote = document[start:end]
    assume(quote.strip())
    found = ground(quote, document, 0, len(document), within_chunk=True)
    assert found.status is GroundingStatus.EXACT
    assert document[found.start : found.end] == quote.strip()


@FAST
@given(text=st.text(max_size=200))
def test_normalising_text_for_matching_is_idempotent(text: str) -> None:
    once = normalise_text(text)
    assert normalise_text(once) == once


VALUE_TEXT = st.one_of(
    st.text(max_size=60),
    st.from_regex(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}", fullmatch=True),
    st.from_regex(r"[$€£]? ?\d{1,3}([,.]\d{3})*([.,]\d{2})?( (USD|EUR|dollars))?", fullmatch=True),
    st.from_regex(r"[A-Z][a-z]+ (Inc|LLC|Ltd|GmbH|S\.A\.)\.?", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), value=VALUE_TEXT, order=st.sampled_from(["MDY", "DMY", "YMD"]))
def test_a_normaliser_gives_a_stable_canonical_value_or_none(kind: str, value: str, order: str) -> None:
    conventions = ValueConventions(date_order=order)  # type: ignore[arg-type]
    canonical = normalise(kind, value, conventions)
    if canonical is None:
        return
    assert isinstance(canonical, str) and canonical == canonical.strip()
    assert normalise(kind, canonical, conventions) == canonical  # canonical values read back as themselves
    assert isinstance(dedupe_key(kind, canonical), str)


SECRET = "hypothesis-secret-7f3a"  # only ever a password: in a URL, or as secret_access_key
TOML_VALUES = st.one_of(
    st.integers(-(2**40), 2**40),
    st.booleans(),
    st.text(max_size=20),
    st.lists(st.text(max_size=10), max_size=3),
    st.just(f"postgresql://u:{SECRET}@db/x"),
    st.just(f"https://u:{SECRET}@minio:9000"),
)
KEYS = st.sampled_from(
    ["tasks", "shard_size", "state_url", "routing", "file_access", "max_file_bytes", "reviewer", "nope"]
)
SECTIONS = st.sampled_from(["model", "parsing", "locks", "signing", "lake_store", "lake_mirror", "values", "chunking"])
SECTION_KEYS = st.sampled_from(
    ["n_threads", "name", "sha256", "timeout_s", "url", "secret_access_key", "endpoint_url", "date_order", "typo"]
)


def _toml(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    top=st.dictionaries(KEYS, TOML_VALUES, max_size=4),
    sections=st.dictionaries(
        SECTIONS,
        st.dictionaries(SECTION_KEYS, TOML_VALUES, max_size=3).map(
            lambda values: {k: SECRET if k == "secret_access_key" else v for k, v in values.items()}
        ),
        max_size=3,
    ),
    garbage=st.one_of(st.just(""), st.text(max_size=20)),
)
def test_a_settings_file_loads_or_fails_with_a_message_that_names_no_secret(
    tmp_path_factory: pytest.TempPathFactory, top: dict[str, Any], sections: dict[str, Any], garbage: str
) -> None:
    lines = [f"{key} = {_toml(value)}" for key, value in top.items()]
    for name, values in sections.items():
        lines += [f"[{name}]", *(f"{key} = {_toml(value)}" for key, value in values.items())]
    path = tmp_path_factory.mktemp("settings") / "assay.toml"
    path.write_text("\n".join(lines) + "\n" + garbage)
    try:
        loaded = load_settings(path)
    except (ValidationError, AssayError, tomllib.TOMLDecodeError, ValueError) as exc:
        assert SECRET not in str(exc)
        return
    assert SECRET not in repr(loaded) and SECRET not in json.dumps(loaded.redacted())


MANIFEST = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({"sequence": JSON, "commit_id": JSON, "kind": JSON, "created_at": JSON, "files": JSON}).map(
        lambda value: json.dumps(value).encode()
    ),
    st.just(b"[" * 100_000),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=MANIFEST)
def test_a_damaged_manifest_is_reported_by_verify_never_a_crash(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    lake = tmp_path_factory.mktemp("lake")
    (lake / "_manifests").mkdir()
    (lake / "_manifests" / "00000001.json").write_bytes(raw)
    report = verify(local_store(lake))
    assert not report.ok and report.broken_links
    with pytest.raises((ValueError, KeyError, TypeError)):
        Ledger(local_store(lake)).manifests()


def test_the_property_tests_see_the_files_they_write(tmp_path: Path) -> None:
    """The manifest property above writes where `verify` reads (a guard against a test that cannot fail)."""
    (tmp_path / "_manifests").mkdir()
    Ledger(local_store(tmp_path)).commit("run", [], run_id="r")
    assert verify(local_store(tmp_path)).ok
