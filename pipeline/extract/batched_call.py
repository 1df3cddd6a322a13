"""One call of the batched engine: the rules its answers decode by, and the state of each answer in its slot.

`BatchedEngine.generate_many` turns its arguments into one `DecodeCall` (schema, budget, penalty, loop
watch, asking again); each prompt becomes a `Sequence` in a slot. The engine owns the model, the KV
cache and the batch; this module owns what a sequence starts with and how an answer found wanting
starts again in the same slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class DecodeCall:
    """The rules of one `generate_many` call, shared by all its sequences."""

    schema_json: str | None  # None: no grammar (benchmarks)
    budget: int  # tokens per answer
    dry_multiplier: float  # 0: no penalty
    dry_base: float
    dry_allowed_length: int
    stop_loops: bool  # end an answer that repeats itself (finish_reason "repetition")
    ignore_eos: bool = False  # spend the whole budget (benchmarks)
    ask_again: AskAgain | None = None

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
