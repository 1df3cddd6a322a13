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


# DRY ("don't repeat yourself", after the sampler of that name in llama.cpp and text-generation-webui),
# for greedy decoding under a grammar: a token that would extend a run of tokens the answer already wrote
# loses `multiplier * base ** (length - allowed)` of its logit, where `length` is how long the repeated
# run already is. Continuing to quote the prompt is never penalised (a value, a key of the schema): only
# what the answer invents and repeats. Off unless `[model] dry_multiplier` > 0.
DRY_PROMPT_NGRAM = 3  # a continuation whose last 3 tokens are in the prompt is a quote, not a repetition
DRY_MAX_LENGTH = 64  # how far back a repeated run is traced


class DryPenalty:
    """Per answer: which next tokens would repeat what it wrote, and by how much their logits are lowered."""

    def __init__(self, prompt: list[int], multiplier: float, base: float, allowed: int) -> None:
        self.multiplier, self.base, self.allowed = multiplier, base, allowed
        self.tokens: list[int] = []
        self._where: dict[int, list[int]] = {}  # token -> positions it was written at
        n = DRY_PROMPT_NGRAM
        self._prompt_grams = {tuple(prompt[i : i + n]) for i in range(len(prompt) - n + 1)}

    def add(self, token: int) -> None:
        self._where.setdefault(token, []).append(len(self.tokens))
        self.tokens.append(token)

    def penalties(self) -> dict[int, float]:
        """Next token -> how much to lower its logit (empty: nothing would repeat)."""
        tokens = self.tokens
        last = len(tokens) - 1
        if last < 0:
            return {}
        found: dict[int, float] = {}
        for position in self._where.get(tokens[last], ()):
            if position == last:
                continue
            length = 1  # tokens[position] == tokens[last]: how far back do the two runs agree?
            while (
                length < DRY_MAX_LENGTH
                and position - length >= 0
                and tokens[position - length] == tokens[last - length]
            ):
                length += 1
            if length < self.allowed:
                continue
            following = tokens[position + 1]
            if (*tokens[max(0, last - DRY_PROMPT_NGRAM + 2) :], following) in self._prompt_grams:
                continue  # quoting the prompt again
            penalty = self.multiplier * self.base ** (length - self.allowed)
            if penalty > found.get(following, 0.0):
                found[following] = penalty
        return found
