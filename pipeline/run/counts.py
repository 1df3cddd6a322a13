"""What a run counts, in one model: each shard's report adds to the run's summary the same way."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Self

from pydantic import BaseModel, Field

from pipeline.land.lake import FileEntry
from pipeline.state.store import WorkMark


class Counts(BaseModel):
    """Documents, pages, chunks, answers, findings and values, failures by reason, and seconds per stage.

    Every listed document, and every child found inside a container, ends as exactly one of
    processed, failed or skipped (`documents`); `unchanged` is the part of `skipped` that needed
    no work since its last run.
    """

    processed: int = 0
    failed: int = 0
    skipped: int = 0
    unchanged: int = 0
    children: int = 0  # documents found inside containers (archives, e-mails); each also ends as one of the three
    pages: int = 0
    chunks: int = 0
    answers: int = 0
    answers_failed: int = 0
    answers_partial: int = 0  # cut or looping, but the fields finished before it were kept
    answers_asked_again: int = 0  # looped before finishing a field; asked once more with DRY (task retry_loops)
    findings: int = 0
    values: int = 0
    disagreements: int = 0
    chunks_routed: int = 0
    # The batched engine's slots: decode steps x slots (what could have run) and the busy part of it.
    slot_steps: int = 0
    slots_busy: int = 0
    chunks_not_routed: int = 0
    shards_parsed_ahead: int = 0  # shards read and parsed while the one before them was with the model
    document_failures: dict[str, int] = Field(default_factory=dict)
    answer_failures: dict[str, int] = Field(default_factory=dict)
    stage_seconds: dict[str, float] = Field(default_factory=dict)

    @property
    def documents(self) -> int:
        return self.processed + self.failed + self.skipped

    @property
    def slot_fill(self) -> float | None:
        """The share of the engine's slots that held a sequence, over its decode steps (None: not measured)."""
        return self.slots_busy / self.slot_steps if self.slot_steps else None

    def failure(self, stage: Literal["document", "extract"], reason: str) -> None:
        counts = self.document_failures if stage == "document" else self.answer_failures
        counts[reason] = counts.get(reason, 0) + 1

    def time(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def add(self, other: Counts) -> Self:
        """Add `other`'s counts to these (numbers, failures by reason, seconds by stage)."""
        for name, info in Counts.model_fields.items():
            mine, theirs = getattr(self, name), getattr(other, name)
            if info.annotation is int:
                setattr(self, name, mine + theirs)
            else:
                for key, value in theirs.items():
                    mine[key] = mine.get(key, 0) + value
        return self

    @classmethod
    def total(cls, parts: Iterable[Counts]) -> Counts:
        summed = Counts()
        for part in parts:
            summed.add(part)
        return summed


class ShardReport(Counts):
    """What processing one shard did: its counts, the lake files it wrote and the work it landed."""

    shard_index: int
    files: list[FileEntry] = Field(default_factory=list)  # as their manifest entries
    done: list[WorkMark] = Field(default_factory=list)  # marked done when the run commits
    worker: str = ""  # host:pid of the process that did the shard
