"""The engine on the real embedded model: integrity, grammar, failures per answer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.core.errors import ContextOverflow, ExtractionError, ModelIntegrityError, Reason
from pipeline.core.settings import ModelSettings
from pipeline.core.tasks import find_task
from pipeline.extract.answers import parse_answer
from pipeline.extract.engine import Generation
from pipeline.extract.model_files import EMBEDDED_MODELS, resolve_model_file
from pipeline.extract.prompts import build_messages
from pipeline.extract.sequential import SequentialEngine

pytestmark = pytest.mark.slow  # the real model

CHUNK = (
    "MUTUAL NONDISCLOSURE AGREEMENT. This Agreement is entered into as of March 3, 2011 by and between "
    "JDA Software Group, Inc. and Compuware Corporation. This Agreement shall be governed by the laws of "
    "the State of Arizona."
)


@pytest.fixture(scope="module")
def engine() -> SequentialEngine:
    settings = ModelSettings(n_threads=1, max_tokens=320)
    return SequentialEngine(resolve_model_file(settings), settings)


def test_embedded_model_is_found_and_verified() -> None:
    model = resolve_model_file(ModelSettings())
    assert model.sha256 == EMBEDDED_MODELS["smollm2-135m-instruct-q4_1"].sha256
    assert model.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_a_changed_model_file_is_refused(tmp_path: Path) -> None:
    original = resolve_model_file(ModelSettings()).path
    copy = tmp_path / "model.gguf"
    shutil.copyfile(original, copy)
    with copy.open("r+b") as handle:  # flip one byte in the middle of the weights
        handle.seek(copy.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    settings = ModelSettings(path=copy, sha256=EMBEDDED_MODELS["smollm2-135m-instruct-q4_1"].sha256)
    with pytest.raises(ModelIntegrityError, match="refusing"):
        resolve_model_file(settings)


def test_a_custom_model_needs_a_declared_hash(tmp_path: Path) -> None:
    with pytest.raises(ModelIntegrityError, match="sha256 must be set"):
        resolve_model_file(ModelSettings(path=tmp_path / "x.gguf"))


def test_identity_is_read_from_the_file(engine: SequentialEngine) -> None:
    identity = engine.identity
    assert identity.quantization == "Q4_1"
    assert 100_000_000 < identity.n_params < 200_000_000
    assert identity.runtime.startswith("llama-cpp-python ")


def test_answer_is_schema_valid_json_with_confidences(engine: SequentialEngine) -> None:
    task = find_task("key_terms")
    generation = engine.generate(engine.render_prompt(build_messages(task, CHUNK)), json.dumps(task.output_schema))
    assert generation.finish_reason == "stop", generation.text
    answer = parse_answer(task, generation)
    assert set(answer) == set(task.output_schema["required"])
    assert generation.token_logprobs and all(lp <= 0 for lp in generation.token_logprobs)
    confidence = generation.confidence()
    assert confidence is not None and 0 < confidence <= 1


def test_greedy_decoding_is_repeatable(engine: SequentialEngine) -> None:
    task = find_task("key_terms")
    prompt = engine.render_prompt(build_messages(task, CHUNK))
    first = engine.generate(prompt, json.dumps(task.output_schema), max_tokens=48)
    second = engine.generate(prompt, json.dumps(task.output_schema), max_tokens=48)
    assert first.text == second.text


def test_a_cut_answer_is_a_truncated_failure_with_its_raw_text(engine: SequentialEngine) -> None:
    task = find_task("key_terms")
    generation = engine.generate(
        engine.render_prompt(build_messages(task, CHUNK)), json.dumps(task.output_schema), max_tokens=8
    )
    assert generation.finish_reason == "length"
    with pytest.raises(ExtractionError) as caught:
        parse_answer(task, generation)
    assert caught.value.reason is Reason.TRUNCATED
    assert caught.value.raw_output == generation.text


def test_an_answer_outside_the_schema_is_rejected() -> None:
    task = find_task("key_terms")
    wrong = Generation(text='{"document_type": 7}', finish_reason="stop", prompt_tokens=1, completion_tokens=5)
    with pytest.raises(ExtractionError) as caught:
        parse_answer(task, wrong)
    assert caught.value.reason is Reason.SCHEMA_INVALID
    assert caught.value.raw_output == wrong.text


def test_a_chunk_longer_than_the_context_is_refused_before_decoding(engine: SequentialEngine) -> None:
    task = find_task("key_terms")
    prompt = engine.render_prompt(build_messages(task, CHUNK * 120))
    with pytest.raises(ContextOverflow):
        engine.generate(prompt, json.dumps(task.output_schema))
