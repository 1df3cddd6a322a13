"""The model engine seam: what every engine is (`Engine`), what it returns (`Generation`), and the factory.

Two engines run a GGUF through llama-cpp-python, grammar-constrained, greedy by
default: `BatchedEngine` (pipeline/extract/batched.py, the default: N sequences
decoded together) and `SequentialEngine` (pipeline/extract/sequential.py, one
prompt at a time through the high-level `Llama` API). `get_engine` makes one
per model configuration per process and keeps it: loading costs seconds, and
every shard of a run reuses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.core.settings import ModelSettings
from pipeline.core.tasks import Task
from pipeline.extract.device import check_offload
from pipeline.extract.model_files import resolve_model_file

Messages = Sequence[dict[str, str]]


@dataclass(frozen=True)
class ModelIdentity:
    """Everything about the model that lineage records."""

    name: str
    path: str
    sha256: str
    quantization: str
    n_params: int
    architecture: str
    runtime: str  # e.g. "llama-cpp-python 0.3.36 / llama.cpp 0.5.0-dev"


@dataclass
class Generation:
    """One answer: its text, why it stopped, and per-token log-probabilities."""

    text: str
    finish_reason: str  # "stop" | "length" (budget) | "repetition" (loop) | "dead_end" (grammar) | "overflow"
    prompt_tokens: int
    completion_tokens: int
    token_offsets: list[int] = field(default_factory=list)  # start char of each scored token in text
    token_logprobs: list[float] = field(default_factory=list)
    loop_from: int | None = None  # "repetition": the character of `text` where the loop began
    asked_again: bool = False  # the second answer to its prompt (`AskAgain`): the first was not kept
    first_try_tokens: int = 0  # asked again: the tokens the first answer generated (its prompt was read once)

    def confidence(self, start: int | None = None, end: int | None = None) -> float | None:
        """exp(mean log-prob) of the tokens overlapping characters [start, end) of `text`."""
        values = [
            lp
            for offset, lp in zip(self.token_offsets, self.token_logprobs, strict=True)
            if (start is None or offset >= start - 1) and (end is None or offset < end)
        ]
        if not values:
            return None
        return math.exp(sum(values) / len(values))


def sampling_settings(settings: ModelSettings) -> dict[str, Any]:
    """The settings that decide which tokens come out (part of lineage and fingerprints).

    The DRY penalty appears only when it is on, so that turning it on changes the fingerprints and
    leaving it off keeps those of every run before it existed.
    """
    sampling: dict[str, Any] = {
        "temperature": settings.temperature,
        "seed": settings.seed,
        "max_tokens": settings.max_tokens,
        "top_k": 1 if settings.temperature == 0 else 40,
        "grammar": "json_schema",
    }
    if settings.dry_multiplier > 0:
        sampling["dry"] = {
            "multiplier": settings.dry_multiplier,
            "base": settings.dry_base,
            "allowed_length": settings.dry_allowed_length,
        }
    return sampling


def task_decoding(task: Task, settings: ModelSettings) -> ModelSettings:
    """The model settings a task's answers decode with: its own `max_tokens` and `dry_multiplier` where it sets them."""
    update: dict[str, Any] = {}
    if task.max_tokens is not None:
        update["max_tokens"] = task.max_tokens
    if task.dry_multiplier is not None:
        update["dry_multiplier"] = task.dry_multiplier
    return settings.model_copy(update=update) if update else settings


def sampling_update(sampling: dict[str, Any]) -> dict[str, Any]:
    """Model settings to decode again as a recorded `sampling` says (replay)."""
    dry = sampling.get("dry") or {}  # absent: recorded without the penalty (off)
    defaults = ModelSettings.model_fields
    return {
        "temperature": sampling["temperature"],
        "seed": sampling["seed"],
        "max_tokens": sampling["max_tokens"],
        "dry_multiplier": dry.get("multiplier", 0.0),
        "dry_base": dry.get("base", defaults["dry_base"].default),
        "dry_allowed_length": dry.get("allowed_length", defaults["dry_allowed_length"].default),
    }


@dataclass(frozen=True)
class AskAgain:
    """Ask a prompt once more, with the DRY penalty, when `needed(first answer)` says so (a task's
    `retry_loops`). The second answer is the prompt's answer; the first is not returned."""

    needed: Callable[[Generation], bool]
    dry_multiplier: float


@dataclass(frozen=True)
class PromptGroup:
    """Prompts that decode by one set of rules: one task's chunks, its schema, budget, penalty and
    asking again (`max_tokens` and `dry_multiplier` None: the engine's model settings)."""

    prompts: list[str]
    schema_json: str
    max_tokens: int | None = None
    dry_multiplier: float | None = None
    ask_again: AskAgain | None = None


class Engine(Protocol):
    """A loaded model that answers prompts under a JSON-Schema grammar. Not thread-safe: one caller at a time."""

    @property
    def identity(self) -> ModelIdentity: ...

    @property
    def n_ctx(self) -> int:
        """Tokens one sequence holds: prompt and answer."""
        ...

    def render_prompt(self, messages: Messages) -> str:
        """The exact prompt text the model sees (its own chat template applied)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def generate(self, prompt: str, schema_json: str, max_tokens: int | None = None) -> Generation: ...

    def generate_many(
        self,
        prompts: list[str],
        schema_json: str,
        max_tokens: int | None = None,
        dry_multiplier: float | None = None,
        ask_again: AskAgain | None = None,
    ) -> list[Generation]:
        """One answer per prompt, in order; a prompt that does not fit gets `finish_reason = "overflow"`.

        `max_tokens` and `dry_multiplier` are a task's own (None: the engine's model settings); with
        `ask_again`, an answer it finds wanting is replaced by a second one, decoded with its penalty."""
        ...

    def generate_groups(self, groups: Sequence[PromptGroup]) -> list[list[Generation]]:
        """One list of answers per group, in order, as `generate_many` gives them for each group alone;
        an engine with slots keeps them full across the groups (one group's last answers decode beside
        the next group's first)."""
        ...

    def model_seconds(self) -> tuple[float, float] | None:
        """(prefill, decode) seconds spent inside llama.cpp so far, when the engine measures them."""
        ...

    def slot_use(self) -> tuple[int, int] | None:
        """(slots busy, slots available) summed over the decode steps so far, when the engine has slots."""
        ...


def render_chat(template: str, bos: str, eos: str, messages: Messages) -> str:
    """Apply a model's Jinja2 chat template (from its GGUF) to messages, with the generation prompt."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
    return str(formatter(messages=list(messages)).prompt)  # type: ignore[arg-type]


def system_info() -> str:
    """llama.cpp's view of the CPU features it uses (different kernels can change the logits)."""
    import llama_cpp

    return str(llama_cpp.llama_print_system_info().decode().strip(" |"))


# One engine per model configuration per process.
_ENGINES: dict[str, Engine] = {}


def _key(settings: ModelSettings) -> str:
    return settings.model_dump_json()


def get_engine(settings: ModelSettings) -> Engine:
    """The process's engine for these model settings, loaded (after its file's SHA-256 is checked) on first use."""
    key = _key(settings)
    if key not in _ENGINES:
        check_offload(settings)
        model_file = resolve_model_file(settings)
        if settings.engine == "batched":
            from pipeline.extract.batched import BatchedEngine

            _ENGINES[key] = BatchedEngine(model_file, settings)
        else:
            from pipeline.extract.sequential import SequentialEngine

            _ENGINES[key] = SequentialEngine(model_file, settings)
    return _ENGINES[key]


def loaded_engine(settings: ModelSettings) -> Engine | None:
    """The engine for these settings if this process has loaded it (a run that needed no model has not)."""
    return _ENGINES.get(_key(settings))


def use_engine(settings: ModelSettings, engine: Engine) -> None:
    """Make `engine` the one these settings get (benchmarks measure the rest of the path with a stand-in)."""
    _ENGINES[_key(settings)] = engine
