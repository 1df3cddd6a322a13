"""The arithmetic of decoding, apart from any model: KV-cache sizing, loop detection, shared prefixes."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from pipeline.core.settings import ModelSettings

KV_BYTES_PER_VALUE = 2  # f16 cache
MEMORY_HEADROOM = 0.8  # never plan to use more than this share of the free memory


@dataclass(frozen=True)
class KvPlan:
    """The KV-cache arithmetic for one configuration."""

    n_parallel: int
    ctx_per_sequence: int
    n_ctx_total: int
    kv_bytes: int
    model_bytes: int
    available_bytes: int

    @property
    def fits(self) -> bool:
        return self.kv_bytes + self.model_bytes <= self.available_bytes * MEMORY_HEADROOM

    def describe(self) -> str:
        mib = 1024 * 1024
        return (
            f"KV cache {self.kv_bytes / mib:.0f} MiB for {self.n_parallel} sequences x {self.ctx_per_sequence} "
            f"tokens (+ shared prefix) = {self.n_ctx_total} cells; model {self.model_bytes / mib:.0f} MiB; "
            f"memory available {self.available_bytes / mib:.0f} MiB"
        )


def plan_kv(
    n_layer: int,
    n_embd: int,
    n_head: int,
    n_head_kv: int,
    model_bytes: int,
    settings: ModelSettings,
    available_bytes: int | None = None,
) -> KvPlan:
    head_dim = n_embd // max(1, n_head)
    n_ctx_total = settings.n_ctx * (settings.n_parallel + 1)  # +1: the shared-prefix sequence
    kv_bytes = 2 * n_layer * n_ctx_total * head_dim * n_head_kv * KV_BYTES_PER_VALUE
    available = psutil.virtual_memory().available if available_bytes is None else available_bytes
    return KvPlan(settings.n_parallel, settings.n_ctx, n_ctx_total, kv_bytes, model_bytes, available)


LOOP_MIN_TOKENS = 16  # a loop must span at least this many tokens...
LOOP_MIN_REPEATS = 3  # ...and repeat its period at least this often, back to back
LOOP_MAX_PERIOD = 32
# A run of this many tokens that the prompt does not hold, written for the third time, is a loop too:
# a small model that has lost the thread copies one invented string into every field and list item.
COPY_NGRAM = 10
COPY_REPEATS = 3


def loop_start(tokens: list[int]) -> int | None:
    """Where the loop the answer ends in began (index into `tokens`), or None when it does not end in one.

    A loop is one run of tokens repeated back to back (a small model's failure mode). Checked after
    every token, so only periods ending at the last token need looking at; the loop's start is traced
    back past the repeats the check needed, to the first token of the repeated run.
    """
    for period in range(1, LOOP_MAX_PERIOD + 1):
        repeats = max(LOOP_MIN_REPEATS, -(-LOOP_MIN_TOKENS // period))
        span = period * repeats
        if len(tokens) < span:
            break
        tail = tokens[-span:]
        if all(tail[i] == tail[i % period] for i in range(period, span)):
            start = len(tokens) - span
            while start > 0 and tokens[start - 1] == tokens[start - 1 + period]:
                start -= 1
            return start
    return None


class LoopWatch:
    """Watches an answer's tokens as they are generated and says, as soon as it sees one, where a loop began.

    Two kinds: the answer ends in one run of tokens repeated back to back (`loop_start`), or it writes,
    for the `COPY_REPEATS`-th time, a run of `COPY_NGRAM` tokens that is not in its prompt (an invented
    value copied from field to field: "2023-01-01T00:00:00Z" as the date, the law and every party). A
    quote from the document may recur as often as it likes: it is in the prompt. The loop is said to
    begin at the first occurrence of the repeated run for back-to-back loops and at the third writing
    for copies, so that what came before can be kept. Costs a small constant per token.
    """

    def __init__(self, prompt: list[int]) -> None:
        self.tokens: list[int] = []
        self._prompt_grams = {tuple(prompt[i : i + COPY_NGRAM]) for i in range(len(prompt) - COPY_NGRAM + 1)}
        self._seen: dict[tuple[int, ...], int] = {}

    def add(self, token: int) -> int | None:
        """Take the next token; the index (into the answer's tokens) where a loop began, or None."""
        self.tokens.append(token)
        start = loop_start(self.tokens)
        if start is not None:
            return start
        if len(self.tokens) >= COPY_NGRAM:
            gram = tuple(self.tokens[-COPY_NGRAM:])
            if gram not in self._prompt_grams:
                seen = self._seen[gram] = self._seen.get(gram, 0) + 1
                if seen >= COPY_REPEATS:
                    return len(self.tokens) - COPY_NGRAM
        return None


def common_prefix(token_lists: list[list[int]]) -> list[int]:
    if not token_lists:
        return []
    first = token_lists[0]
    length = len(first)
    for tokens in token_lists[1:]:
        length = min(length, len(tokens))
        for i in range(length):
            if tokens[i] != first[i]:
                length = i
                break
    return first[:length]
