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


LOOP_MIN_TOKENS = 24  # a loop must span at least this many tokens...
LOOP_MIN_REPEATS = 3  # ...and repeat its period at least this often, back to back
LOOP_MAX_PERIOD = 32


def looping(tokens: list[int]) -> bool:
    """Does the answer end in the same run of tokens repeated back to back (a small model's loop)?

    Checked after every token, so only periods ending at the last token need looking at.
    """
    for period in range(1, LOOP_MAX_PERIOD + 1):
        repeats = max(LOOP_MIN_REPEATS, -(-LOOP_MIN_TOKENS // period))
        span = period * repeats
        if len(tokens) < span:
            break
        tail = tokens[-span:]
        if all(tail[i] == tail[i % period] for i in range(period, span)):
            return True
    return False


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
