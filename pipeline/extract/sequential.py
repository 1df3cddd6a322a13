"""The sequential engine: one prompt at a time through llama-cpp-python's high-level `Llama` API.

The grammar of each task's JSON Schema is compiled once and reused. Per-token
log-probabilities are taken from the raw logits (before the grammar masks them)
by a logits processor: they measure how sure the model itself was, and become
each value's confidence.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.core.errors import ContextOverflow, ModelError, ModelIntegrityError
from pipeline.core.settings import ModelSettings
from pipeline.extract.decoding import DryPenalty
from pipeline.extract.engine import AskAgain, Generation, Messages, ModelIdentity, PromptGroup, render_chat
from pipeline.extract.model_files import GGUF_FILE_TYPES, ModelFile, verified_path
from pipeline.extract.prompts import split_document


class _LogprobRecorder:
    """A logits processor that records log p(chosen token) under the raw logits.

    At each step it sees the token chosen at the previous step as the last input
    id, so it scores that token with the previous step's log-softmax.
    """

    def __init__(self, prompt_len: int) -> None:
        self.prompt_len = prompt_len
        self.previous: np.ndarray | None = None
        self.logprobs: list[float] = []
        self.token_ids: list[int] = []

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self.previous is not None and len(input_ids) > self.prompt_len:
            token = int(input_ids[-1])
            self.token_ids.append(token)
            self.logprobs.append(float(self.previous[token]))
        shifted = scores.astype(np.float64) - float(np.max(scores))
        self.previous = shifted - math.log(float(np.exp(shifted).sum()))
        return scores


class _DryProcessor:
    """A logits processor that lowers the logits of tokens that would repeat the answer (the DRY penalty).

    Runs after `_LogprobRecorder`, so the recorded log-probabilities stay the model's own."""

    def __init__(self, prompt: list[int], multiplier: float, base: float, allowed: int) -> None:
        self.prompt_len = len(prompt)
        self.penalty = DryPenalty(prompt, multiplier, base, allowed)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        for token in input_ids[self.prompt_len + len(self.penalty.tokens) :]:
            self.penalty.add(int(token))
        penalties = self.penalty.penalties()
        if not penalties:
            return scores
        lowered = scores.copy()
        for token, amount in penalties.items():
            lowered[token] -= amount
        return lowered


class SequentialEngine:
    """One model, one sequence at a time. Not thread-safe: calls are serialised by a lock."""

    def __init__(self, model_file: ModelFile, settings: ModelSettings) -> None:
        import llama_cpp
        from llama_cpp import Llama, __version__

        self.settings = settings
        try:
            with verified_path(model_file) as path:
                self._llm = Llama(
                    model_path=path,
                    n_ctx=settings.n_ctx,
                    n_batch=settings.n_batch,
                    n_threads=settings.n_threads,
                    n_threads_batch=settings.n_threads,
                    n_gpu_layers=settings.n_gpu_layers,
                    seed=settings.seed,
                    verbose=False,
                )
        except ModelIntegrityError:
            raise
        except Exception as exc:
            raise ModelError(f"cannot load {model_file.path}: {exc}") from exc
        metadata = self._llm.metadata
        file_type = int(metadata.get("general.file_type", -1))
        self.identity = ModelIdentity(
            name=model_file.name,
            path=str(model_file.path),
            sha256=model_file.sha256,
            quantization=GGUF_FILE_TYPES.get(file_type, f"file_type={file_type}"),
            n_params=int(self._llm._model.n_params()),
            architecture=str(metadata.get("general.architecture", "unknown")),
            runtime=f"llama-cpp-python {__version__} / llama.cpp {llama_cpp.llama_version().decode()}",
        )
        self._grammars: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def n_ctx(self) -> int:
        return int(self._llm.n_ctx())

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def tokenize(self, text: str) -> list[int]:
        """A prompt's tokens: control tokens parsed in the template, never in the fenced document."""
        head, document, tail = split_document(text)
        return [
            token
            for part, special in ((head, True), (document, False), (tail, True))
            if part
            for token in self._llm.tokenize(part.encode("utf-8"), add_bos=False, special=special)
        ]

    def _grammar(self, schema_json: str) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar

        grammar = self._grammars.get(schema_json)
        if grammar is None:
            grammar = LlamaGrammar.from_json_schema(schema_json, verbose=False)
            self._grammars[schema_json] = grammar
        return grammar

    def render_prompt(self, messages: Messages) -> str:
        """The exact prompt text the model sees (its own chat template applied)."""
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError("the model file has no chat template")
        eos = self._llm.detokenize([self._llm.token_eos()]).decode("utf-8", "replace")
        bos = self._llm.detokenize([self._llm.token_bos()]).decode("utf-8", "replace")
        return render_chat(template, bos, eos, messages)

    def model_seconds(self) -> tuple[float, float] | None:
        """Not measured by this engine: its whole call counts as extraction time."""
        return None

    def slot_use(self) -> tuple[int, int] | None:
        """One prompt at a time: no slots to fill."""
        return None

    def generate_many(
        self,
        prompts: list[str],
        schema_json: str,
        max_tokens: int | None = None,
        dry_multiplier: float | None = None,
        ask_again: AskAgain | None = None,
    ) -> list[Generation]:
        """One prompt after the other (the batched engine decodes them together). A prompt asked again is
        read from llama-cpp-python's prefix cache (the same prompt as the call before)."""
        results = []
        for prompt in prompts:
            try:
                generation = self.generate(prompt, schema_json, max_tokens, dry_multiplier)
                if ask_again is not None and ask_again.needed(generation):
                    first = generation
                    generation = self.generate(prompt, schema_json, max_tokens, ask_again.dry_multiplier)
                    generation.asked_again, generation.first_try_tokens = True, first.completion_tokens
                results.append(generation)
            except ContextOverflow as exc:
                results.append(Generation("", "overflow", exc.prompt_tokens, 0))
        return results

    def generate_groups(self, groups: Sequence[PromptGroup]) -> list[list[Generation]]:
        """Group after group: one prompt at a time has no slots to keep full."""
        return [
            self.generate_many(g.prompts, g.schema_json, g.max_tokens, g.dry_multiplier, g.ask_again) for g in groups
        ]

    def generate(
        self, prompt: str, schema_json: str, max_tokens: int | None = None, dry_multiplier: float | None = None
    ) -> Generation:
        """Complete `prompt` under the grammar of `schema_json`; greedy when temperature is 0.

        `max_tokens` and `dry_multiplier` are a task's own (None: the model settings')."""
        from llama_cpp import LogitsProcessorList

        settings = self.settings
        budget = max_tokens or settings.max_tokens
        dry = settings.dry_multiplier if dry_multiplier is None else dry_multiplier
        with self._lock:
            prompt_tokens = self.tokenize(prompt)
            if len(prompt_tokens) + budget > self.n_ctx:
                raise ContextOverflow(len(prompt_tokens), budget, self.n_ctx)
            recorder = _LogprobRecorder(prompt_len=len(prompt_tokens))
            processors: list[Any] = [recorder]
            if dry > 0:
                processors.append(_DryProcessor(prompt_tokens, dry, settings.dry_base, settings.dry_allowed_length))
            result = self._llm.create_completion(
                prompt=prompt_tokens,
                max_tokens=budget,
                temperature=self.settings.temperature,
                top_k=1 if self.settings.temperature == 0 else 40,
                seed=self.settings.seed,
                grammar=self._grammar(schema_json),
                logits_processor=LogitsProcessorList(processors),
            )
        choice = result["choices"][0]  # type: ignore[index]
        text = str(choice["text"])
        usage = result["usage"]  # type: ignore[index]
        offsets = self._token_offsets(recorder.token_ids)
        return Generation(
            text=text,
            finish_reason=str(choice.get("finish_reason") or "stop"),
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
            token_offsets=offsets,
            token_logprobs=recorder.logprobs[: len(offsets)],
        )

    def _token_offsets(self, token_ids: list[int]) -> list[int]:
        """Start offset in the answer text of each scored generated token."""
        offsets: list[int] = []
        produced = b""
        for token in token_ids:
            offsets.append(len(produced.decode("utf-8", "ignore")))
            produced += self._llm.detokenize([token])
        return offsets
