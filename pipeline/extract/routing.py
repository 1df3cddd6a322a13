"""Which chunks of a document go to the model for a task, and why the others do not.

Cheap signals declared by the task (case-insensitive patterns per field) route a
chunk when any of them matches; the task's first `first_chunks` chunks always go
(titles and parties live there). A task without `routing` sends every chunk.
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
    """One decision per chunk, in order; at most `budget` chunks are routed (the rest say so)."""
    decisions = []
    routed = 0
    for chunk in chunks:
        decision = _decide(task, chunk, enabled)
        if decision.routed and budget is not None and routed >= budget:
            decision = RouteDecision(chunk, False, f"over max_chunks_per_document = {budget}")
        routed += decision.routed
        decisions.append(decision)
    return decisions
