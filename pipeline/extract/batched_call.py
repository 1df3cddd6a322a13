"""One call of the batched engine: the rules its answers decode by, and the state of each answer in its slot.

The batched engine turns each prompt group (a task's prompts in `generate_groups`, or the prompts of
`generate_many`) into one `DecodeCall` (schema, budget, penalty, loop watch, asking again); each prompt
becomes a `Sequence` in a slot. The engine owns the model, the KV cache and the batch; this module owns
what a sequence starts with, how an answer found wanting starts again in the same slot, and the answer
a finished sequence gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.core.settings import ModelSettings
from pipeline.extract.decoding import DryPenalty, LoopWatch
from pipeline.extract.engine import AskAgain, Generation


@dataclass
class Sequence:
    """One request in flight in one slot."""

    request: int
    seq_id: int
    tokens: list[int]
    call: DecodeCall
    sampler: Any
    n_past: int = 0
    prompt_left: list[int] = field(default_factory=list)
    next_token: int | None = None
    generated: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    logits_index: int | None = None
    loops: LoopWatch | None = None
    dry: DryPenalty | None = None
    asked_again: bool = False
    first_try_tokens: int = 0

    def answer(self, reason: str, pieces: list[bytes], loop_from: int | None = None) -> Generation:
        """The finished answer: its text from the generated tokens' `pieces`, each token's character offset,
        and (`loop_from`, a token index) where a loop it was stopped in began, as a character offset."""
        offsets: list[int] = []
        produced = b""
        for piece in pieces:
            offsets.append(len(produced.decode("utf-8", "ignore")))
            produced += piece
        return Generation(
            text=produced.decode("utf-8", "replace"),
            finish_reason=reason,
            prompt_tokens=len(self.tokens),
            completion_tokens=len(self.generated),
            token_offsets=offsets,
            token_logprobs=list(self.logprobs),
            loop_from=offsets[loop_from] if loop_from is not None else None,
            asked_again=self.asked_again,
            first_try_tokens=self.first_try_tokens,
        )


@dataclass(frozen=True)
class DecodeCall:
    """The rules of one prompt group, shared by all its sequences."""

    schema_json: str | None  # None: no grammar (benchmarks)
    budget: int  # tokens per answer
    dry_multiplier: float  # 0: no penalty
    dry_base: float
    dry_allowed_length: int
    stop_loops: bool  # end an answer that repeats itself (finish_reason "repetition")
    ignore_eos: bool = False  # spend the whole budget (benchmarks)
    ask_again: AskAgain | None = None

    @classmethod
    def of(
        cls,
        model: ModelSettings,
        stop_loops: bool,
        schema_json: str | None,
        max_tokens: int | None,
        dry_multiplier: float | None,
        ignore_eos: bool = False,
        ask_again: AskAgain | None = None,
    ) -> DecodeCall:
        """A call's rules: its own budget and penalty where it has them (a task's), else the model settings'."""
        return cls(
            schema_json,
            max_tokens or model.max_tokens,
            model.dry_multiplier if dry_multiplier is None else dry_multiplier,
            model.dry_base,
            model.dry_allowed_length,
            stop_loops,
            ignore_eos,
            ask_again,
        )

    def start(self, request: int, seq_id: int, tokens: list[int], n_past: int, sampler: Any) -> Sequence:
        """A prompt's sequence, its first `n_past` tokens already in its KV cache."""
        return Sequence(
            request=request,
            seq_id=seq_id,
            tokens=tokens,
            call=self,
            sampler=sampler,
            n_past=n_past,
            prompt_left=tokens[n_past:],
            loops=LoopWatch(tokens) if self.stop_loops else None,
            dry=self._penalty(tokens, self.dry_multiplier),
        )

    def asks_again(self, sequence: Sequence, answer: Generation) -> bool:
        """Whether this finished answer is decoded once more (at most once per prompt)."""
        return self.ask_again is not None and not sequence.asked_again and self.ask_again.needed(answer)

    def again(self, first: Sequence, answer: Generation, sampler: Any) -> Sequence:
        """The same prompt once more, with `ask_again`'s penalty, its KV cache kept but for the last
        prompt token (read again for the first logits): the caller removes the rest from the cache."""
        assert self.ask_again is not None
        again = self.start(first.request, first.seq_id, first.tokens, len(first.tokens) - 1, sampler)
        again.dry = self._penalty(first.tokens, self.ask_again.dry_multiplier)
        again.asked_again, again.first_try_tokens = True, answer.completion_tokens
        return again

    def _penalty(self, prompt: list[int], multiplier: float) -> DryPenalty | None:
        if multiplier <= 0:
            return None
        return DryPenalty(prompt, multiplier, self.dry_base, self.dry_allowed_length)
