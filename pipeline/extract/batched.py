"""The batched engine: one model, one context, N sequences decoded together (llama.cpp low-level API).

How a call of `generate_groups(groups)` (one group per task: its prompts, schema
and budget) or `generate_many(prompts, schema)` (one group) runs:

- Shared prefix. The prompts of one task differ only after the chunk starts,
  so their longest common token prefix (system prompt, instructions, answer
  shape) is evaluated once into a reserved sequence and copied into each new
  sequence's KV cache (`llama_memory_seq_cp`); each sequence then prefills
  only its own suffix. Groups are admitted one after the other; a group's
  prefix is loaded when its first prompt takes a slot.
- Continuous batching. Every step builds one `llama_batch` holding the next
  token of every decoding sequence plus, in the room left (`n_batch`), prompt
  pieces of sequences still prefilling, and makes one `llama_decode`. A
  finished sequence frees its slot at once for the next prompt, the next
  group's when a group has none left: slots stay full across tasks.
- Cheap grammar. Each sequence has its own grammar sampler (cloned from one
  compiled per schema). Greedy decoding takes the arg-max token and asks the
  grammar about that one token only; when it is rejected, the next best
  candidates are asked one by one, and only if none is allowed does the grammar
  filter the whole vocabulary. The result is the token a full pass would pick.
- Per-sequence failures (`finish_reason`): `length` (token budget spent),
  `repetition` (the answer ends in the same tokens repeated back to back: a
  loop that would only run to the budget), `dead_end` (the grammar allows no
  token), `overflow` (prompt + budget do not fit the sequence's context,
  refused before any work). The others go on.
- Log-probabilities of the chosen tokens come from the raw logits, as in the
  sequential engine, so values carry the same kind of confidence.

Memory: the KV cache is sized from the model's shape and the settings, reported,
and checked against free memory before the context is created; a configuration
that does not fit is refused with a message, not an out-of-memory crash.
"""

from __future__ import annotations

import ctypes
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence as Sequence_
from typing import Any

import numpy as np

from pipeline.core.errors import ModelError
from pipeline.core.settings import ModelSettings
from pipeline.extract.batched_call import DecodeCall, Sequence
from pipeline.extract.decoding import common_prefix, plan_kv
from pipeline.extract.engine import AskAgain, Generation, Messages, ModelIdentity, PromptGroup, render_chat
from pipeline.extract.grammar import CheapGrammar
from pipeline.extract.model_files import GGUF_FILE_TYPES, ModelFile, verified_path
from pipeline.extract.prompts import split_document

logger = logging.getLogger(__name__)


class BatchedEngine:
    """N parallel sequences in one llama.cpp context. Not thread-safe: calls are serialised by a lock."""

    def __init__(self, model_file: ModelFile, settings: ModelSettings) -> None:
        import llama_cpp
        from llama_cpp import _logger as llama_logger

        if settings.temperature != 0:
            raise ModelError("the batched engine decodes greedily: set model.temperature = 0 or engine = sequential")
        llama_logger.set_verbose(False)  # llama.cpp's own logging: errors only
        self._ll = llama_cpp
        self.settings = settings
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = settings.n_gpu_layers
        with verified_path(model_file) as path:
            model = llama_cpp.llama_model_load_from_file(path.encode(), params)
        if not model:
            raise ModelError(f"cannot load {model_file.path}")
        self._model = model
        self.kv_plan = plan_kv(
            llama_cpp.llama_model_n_layer(model),
            llama_cpp.llama_model_n_embd(model),
            llama_cpp.llama_model_n_head(model),
            llama_cpp.llama_model_n_head_kv(model),
            llama_cpp.llama_model_size(model) if settings.n_gpu_layers == 0 else 0,
            settings,
        )
        logger.info("%s", self.kv_plan.describe())
        if not self.kv_plan.fits:
            llama_cpp.llama_model_free(model)
            raise ModelError(
                f"this configuration does not fit in memory: {self.kv_plan.describe()}. "
                "Lower model.n_parallel or model.n_ctx."
            )
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = self.kv_plan.n_ctx_total
        cparams.n_batch = settings.n_batch
        cparams.n_ubatch = settings.n_batch
        cparams.n_seq_max = settings.n_parallel + 1
        cparams.n_threads = settings.n_threads
        cparams.n_threads_batch = settings.n_threads
        # One KV stream per sequence: attention then spans only its own cells (a unified cache was ~9%
        # slower here, and more so as sequences are added). The prefix is copied whole (see _admit).
        cparams.kv_unified = False
        cparams.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise ModelError(f"cannot create a context for {model_file.path} ({self.kv_plan.describe()})")
        self._ctx = ctx
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._batch = llama_cpp.llama_batch_init(settings.n_batch, 0, settings.n_parallel + 1)
        self._prefix_seq = settings.n_parallel
        self._prefix: list[int] = []
        self.grammar = CheapGrammar(llama_cpp, self._vocab, self._n_vocab)
        self._lock = threading.Lock()
        self.stop_loops = True  # end a sequence that repeats itself (finish_reason "repetition")
        # Time inside llama_decode: steps that carried prompt tokens (prefill, with the decoding tokens
        # that rode along) and steps that only generated (decode). The rest of a run is sampling + grammar.
        self.seconds_prefill = 0.0
        self.seconds_decode = 0.0
        # Slots: per llama_decode, how many of the n_parallel slots held a sequence (the fill rate).
        self.slots_busy = 0
        self.slot_steps = 0

        file_type = int(self._meta("general.file_type") or -1)
        self.identity = ModelIdentity(
            name=model_file.name,
            path=str(model_file.path),
            sha256=model_file.sha256,
            quantization=GGUF_FILE_TYPES.get(file_type, f"file_type={file_type}"),
            n_params=int(llama_cpp.llama_model_n_params(model)),
            architecture=self._meta("general.architecture") or "unknown",
            runtime=f"llama-cpp-python {llama_cpp.__version__} / llama.cpp {llama_cpp.llama_version().decode()}",
        )
        self._chat_template = self._meta("tokenizer.chat_template")

    # -- model facts -------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        size = 1 << 16
        buffer = ctypes.create_string_buffer(size)
        written = self._ll.llama_model_meta_val_str(self._model, key.encode(), buffer, size)
        return buffer.value.decode("utf-8", "replace") if written >= 0 else None

    @property
    def n_ctx(self) -> int:
        return self.settings.n_ctx

    def tokenize(self, text: str) -> list[int]:
        """A prompt's tokens: control tokens parsed in the template, never in the fenced document."""
        head, document, tail = split_document(text)
        return self._tokens(head, True) + self._tokens(document, False) + self._tokens(tail, True)

    def _tokens(self, text: str, special: bool) -> list[int]:
        if not text:
            return []
        raw = text.encode("utf-8")
        room = len(raw) + 16
        buffer = (self._ll.llama_token * room)()
        count = self._ll.llama_tokenize(self._vocab, raw, len(raw), buffer, room, False, special)
        if count < 0:
            raise ModelError(f"tokenizer needs {-count} tokens, had room for {room}")
        return list(buffer[:count])

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        written = self._ll.llama_token_to_piece(self._vocab, token, buffer, 64, 0, False)
        if written < 0:
            buffer = ctypes.create_string_buffer(-written)
            written = self._ll.llama_token_to_piece(self._vocab, token, buffer, -written, 0, False)
        return buffer.raw[:written]

    def render_prompt(self, messages: Messages) -> str:
        if not self._chat_template:
            raise ModelError("the model file has no chat template")
        eos = self._piece(self._ll.llama_vocab_eos(self._vocab)).decode("utf-8", "replace")
        bos = self._piece(self._ll.llama_vocab_bos(self._vocab)).decode("utf-8", "replace")
        return render_chat(self._chat_template, bos, eos, messages)

    # -- decoding ----------------------------------------------------------------------------

    def model_seconds(self) -> tuple[float, float] | None:
        return self.seconds_prefill, self.seconds_decode

    def slot_use(self) -> tuple[int, int]:
        return self.slots_busy, self.slot_steps

    def generate(self, prompt: str, schema_json: str, max_tokens: int | None = None) -> Generation:
        return self.generate_many([prompt], schema_json, max_tokens)[0]

    def generate_many(
        self,
        prompts: list[str],
        schema_json: str | None,
        max_tokens: int | None = None,
        dry_multiplier: float | None = None,
        ask_again: AskAgain | None = None,
        ignore_eos: bool = False,
    ) -> list[Generation]:
        """Complete every prompt under the grammar of `schema_json`; results in the order of `prompts`.

        `max_tokens` and `dry_multiplier` are a task's own (None: the model settings'). An answer that
        `ask_again` finds wanting is decoded once more in its slot, from the prompt's KV cache (only its
        last token is read again), with `ask_again`'s penalty. `schema_json=None`
        decodes without a grammar and `ignore_eos` always spends the whole budget: both exist for
        benchmarks at a fixed shape (bench/engine.py), not for extraction.
        """
        call = DecodeCall.of(
            self.settings, self.stop_loops, schema_json, max_tokens, dry_multiplier, ignore_eos, ask_again
        )
        with self._lock:
            return self._run([[(self.tokenize(p), call) for p in prompts]])[0]

    def generate_groups(self, groups: Sequence_[PromptGroup]) -> list[list[Generation]]:
        """Every group's prompts through the same slots: a group's last answers decode beside the next
        group's first, so the slots stay full across tasks. Each answer is decoded by its group's rules."""
        calls = [
            DecodeCall.of(
                self.settings, self.stop_loops, g.schema_json, g.max_tokens, g.dry_multiplier, False, g.ask_again
            )
            for g in groups
        ]
        with self._lock:
            return self._run(
                [[(self.tokenize(p), call) for p in g.prompts] for g, call in zip(groups, calls, strict=True)]
            )

    def generate_tokens(
        self, token_lists: list[list[int]], max_tokens: int, ignore_eos: bool = True
    ) -> list[Generation]:
        """Decode prompts given as tokens, without a grammar (benchmarks at llama-batched-bench's shape)."""
        call = DecodeCall.of(self.settings, self.stop_loops, None, max_tokens, None, ignore_eos)
        with self._lock:
            return self._run([[(tokens, call) for tokens in token_lists]])[0]

    def _run(self, groups: list[list[tuple[list[int], DecodeCall]]]) -> list[list[Generation]]:
        """Each group's (prompt tokens, rules) through the slots, group after group; answers per group, in order."""
        ll = self._ll
        requests = [(tokens, call, group) for group, items in enumerate(groups) for tokens, call in items]
        results: list[Generation | None] = [None] * len(requests)
        runnable = []
        for index, (tokens, call, _) in enumerate(requests):
            if len(tokens) + call.budget > self.settings.n_ctx:
                results[index] = Generation(
                    text="", finish_reason="overflow", prompt_tokens=len(tokens), completion_tokens=0
                )
            else:
                runnable.append(index)
        prefixes = [
            common_prefix([requests[i][0] for i in runnable if requests[i][2] == group]) for group in range(len(groups))
        ]
        queue = deque(runnable)  # group after group: a group's prefix is loaded once, when its first prompt is admitted
        slots: list[Sequence | None] = [None] * self.settings.n_parallel
        while queue or any(slots):
            for slot_index, slot in enumerate(slots):
                if slot is None and queue:
                    request = queue.popleft()
                    tokens, call, group = requests[request]
                    if self._prefix != prefixes[group]:
                        self._load_prefix(prefixes[group])
                    slots[slot_index] = self._admit(request, slot_index, tokens, call)
            active = [s for s in slots if s is not None]
            self._step(active)
            self.slots_busy += len(active)
            self.slot_steps += len(slots)
            for slot_index, slot in enumerate(slots):
                if slot is not None and slot.logits_index is not None:
                    finished = self._sample(slot)
                    if finished is not None:
                        if slot.sampler is not None:
                            ll.llama_sampler_free(slot.sampler)
                        call = slot.call
                        if call.asks_again(slot, finished):  # in the same slot, from the prompt's KV cache
                            ll.llama_memory_seq_rm(self._memory, slot.seq_id, len(slot.tokens) - 1, -1)
                            slots[slot_index] = call.again(slot, finished, self._sampler(call))
                            continue
                        results[slot.request] = finished
                        ll.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
                        slots[slot_index] = None
        answers: list[list[Generation]] = [[] for _ in groups]
        for (_, _, group), result in zip(requests, results, strict=True):
            assert result is not None
            answers[group].append(result)
        return answers

    def _load_prefix(self, prefix: list[int]) -> None:
        """Evaluate the shared prefix into the reserved sequence (kept across calls while it matches)."""
        ll = self._ll
        keep = len(common_prefix([self._prefix, prefix])) if self._prefix else 0
        if keep < len(self._prefix):
            ll.llama_memory_seq_rm(self._memory, self._prefix_seq, keep, -1)
        position = keep
        started = time.perf_counter()
        while position < len(prefix):
            piece = prefix[position : position + self.settings.n_batch]
            self._batch.n_tokens = 0
            for offset, token in enumerate(piece):
                self._add(token, position + offset, self._prefix_seq, False)
            self._decode()
            position += len(piece)
        if position > keep:
            self.seconds_prefill += time.perf_counter() - started
        self._prefix = list(prefix)

    def _admit(self, request: int, slot_index: int, tokens: list[int], call: DecodeCall) -> Sequence:
        ll = self._ll
        seq_id = slot_index
        ll.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        shared = min(len(common_prefix([self._prefix, tokens])), len(tokens) - 1)
        if shared > 0:
            # Whole-sequence copies work with per-sequence KV streams too (partial ones need a unified cache).
            ll.llama_memory_seq_cp(self._memory, self._prefix_seq, seq_id, -1, -1)
            if shared < len(self._prefix):
                ll.llama_memory_seq_rm(self._memory, seq_id, shared, -1)
        return call.start(request, seq_id, tokens, shared, self._sampler(call))

    def _sampler(self, call: DecodeCall) -> Any:
        return self.grammar.sampler(call.schema_json) if call.schema_json is not None else None

    def _step(self, active: list[Sequence]) -> None:
        """One llama_decode: a token for every decoding sequence, prompt pieces in the room left."""
        self._batch.n_tokens = 0
        room = self.settings.n_batch
        for sequence in active:
            sequence.logits_index = None
            if sequence.next_token is not None:
                sequence.logits_index = self._batch.n_tokens
                self._add(sequence.next_token, sequence.n_past, sequence.seq_id, True)
                sequence.n_past += 1
                sequence.next_token = None
                room -= 1
        prompt_tokens = 0
        for sequence in active:
            if sequence.prompt_left and room > 0:
                take = sequence.prompt_left[:room]
                sequence.prompt_left = sequence.prompt_left[len(take) :]
                for offset, token in enumerate(take):
                    last = offset == len(take) - 1 and not sequence.prompt_left
                    if last:
                        sequence.logits_index = self._batch.n_tokens
                    self._add(token, sequence.n_past + offset, sequence.seq_id, last)
                sequence.n_past += len(take)
                room -= len(take)
                prompt_tokens += len(take)
        if self._batch.n_tokens:
            started = time.perf_counter()
            self._decode()
            if prompt_tokens:
                self.seconds_prefill += time.perf_counter() - started
            else:
                self.seconds_decode += time.perf_counter() - started

    def _sample(self, sequence: Sequence) -> Generation | None:
        """Pick the next token of a sequence; return its Generation when it is finished."""
        ll = self._ll
        assert sequence.logits_index is not None
        pointer = ll.llama_get_logits_ith(self._ctx, sequence.logits_index)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        choosing = logits  # what the choice reads: the model's logits, less the DRY penalty where it bites
        if sequence.dry is not None and (penalties := sequence.dry.penalties()):
            choosing = logits.copy()
            for penalised, penalty in penalties.items():
                choosing[penalised] -= penalty
        token = int(np.argmax(choosing))
        if sequence.sampler is not None:
            chosen = self.grammar.choose(sequence.sampler, token, choosing)
            if chosen is None:
                return self._finish(sequence, "dead_end")
            token = chosen
        top = float(np.max(logits))
        log_z = top + math.log(float(np.exp(logits - np.float32(top)).sum(dtype=np.float64)))
        if ll.llama_vocab_is_eog(self._vocab, token) and not sequence.call.ignore_eos:
            return self._finish(sequence, "stop")
        if sequence.sampler is not None:
            ll.llama_sampler_accept(sequence.sampler, token)
        sequence.generated.append(token)
        sequence.logprobs.append(float(logits[token]) - log_z)  # the model's own, before any penalty
        if sequence.dry is not None:
            sequence.dry.add(token)
        if len(sequence.generated) >= sequence.call.budget:
            return self._finish(sequence, "length")
        if sequence.loops is not None:
            start = sequence.loops.add(token)
            if start is not None:
                return self._finish(sequence, "repetition", loop_from=start)
        sequence.next_token = token
        return None

    def _finish(self, sequence: Sequence, reason: str, loop_from: int | None = None) -> Generation:
        return sequence.answer(reason, [self._piece(t) for t in sequence.generated], loop_from)

    def _add(self, token: int, position: int, seq_id: int, logits: bool) -> None:
        batch = self._batch
        i = batch.n_tokens
        batch.token[i] = token
        batch.pos[i] = position
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq_id
        batch.logits[i] = logits
        batch.n_tokens = i + 1

    def _decode(self) -> None:
        status = self._ll.llama_decode(self._ctx, self._batch)
        if status != 0:
            raise ModelError(f"llama_decode failed with status {status} (KV cache full?)")

    def close(self) -> None:
        ll = self._ll
        self.grammar.close()
        if getattr(self, "_batch", None) is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            ll.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            ll.llama_model_free(self._model)
            self._model = None
