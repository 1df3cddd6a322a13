"""Which chunks of a document go to the model for a task, and why the others do not.

Cheap signals declared by the task (case-insensitive patterns per field) route a
chunk when any of them matches; the task's first `first_chunks` chunks always go
(titles and parties live there). A document sends at most the task's
`routing.max_chunks` chunks, and at most `max_chunks_per_document` of the
settings (the smaller wins; the first routed chunks in document order go).
A task without `routing` sends every chunk (and a run says so: a warning).
Every decision is kept with its reason and landed (lake table `routing`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.documents import Chunk
from pipeline.core.tasks import Task

MAX_REASON_CHARS = 160


@dataclass(frozen=True)
class RouteDecision:
    chunk: Chunk
    routed: bool
    reason: str


def _decide(task: Task, chunk: Chunk, enabled: bool) -> RouteDecision:
    routing = task.routing
    if routing is None:
        return RouteDecision(chunk, True, "the task routes every chunk")
    if not enabled:
        return RouteDecision(chunk, True, "routing switched off (settings.routing = false)")
    if chunk.ordinal < routing.first_chunks:
        return RouteDecision(chunk, True, f"among the first {routing.first_chunks} chunk(s)")
    for field_name, pattern in routing.compiled:
        match = pattern.search(chunk.text)
        if match:
            quote = " ".join(match.group(0).split())
            return RouteDecision(chunk, True, f"signal for {field_name}: {quote!r}"[:MAX_REASON_CHARS])
    return RouteDecision(chunk, False, "no signal of any field matched")


def route(task: Task, chunks: list[Chunk], enabled: bool = True, budget: int | None = None) -> list[RouteDecision]:
    """One decision per chunk, in order; at most `budget` (settings) and the task's `routing.max_chunks`
    chunks are routed when routing is on (the rest say which budget they were over)."""
    limits = [(budget, f"over max_chunks_per_document = {budget}")] if budget is not None else []
    if enabled and task.routing is not None and task.routing.max_chunks is not None:
        cap = task.routing.max_chunks
        limits.append((cap, f"over the task's chunk budget (routing.max_chunks = {cap})"))
    decisions = []
    routed = 0
    for chunk in chunks:
        decision = _decide(task, chunk, enabled)
        over = [why for limit, why in limits if routed >= limit]
        if decision.routed and over:
            decision = RouteDecision(chunk, False, over[0])
        routed += decision.routed
        decisions.append(decision)
    return decisions
