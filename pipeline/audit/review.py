"""Review decisions: a reviewer accepts, rejects or corrects a finding or a document's value.

Appended, never edited: the latest decision on a finding or value counts, the
earlier ones stay. A decision is recorded with the reviewer's identity as the
installation knows it (`reviewer` in the settings, else the operating system's
login name), never a name typed on the command line. Decisions are committed to
the ledger like a run's files, one commit per batch.
"""

from __future__ import annotations

import getpass
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pipeline.core.errors import ConfigError
from pipeline.core.settings import Settings
from pipeline.land import warehouse
from pipeline.land.lake import Lake
from pipeline.land.store import open_store
from pipeline.land.tables import ReviewDecisionRow
from pipeline.run.context import commit


class Decision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    CORRECT = "correct"


@dataclass(frozen=True)
class Proposed:
    """A decision before it is recorded: on a finding, or on a value."""

    decision: Decision
    finding_id: str | None = None
    value_id: str | None = None
    corrected_value: str | None = None
    comment: str | None = None

    def problem(self) -> str | None:
        """What is wrong with it on its face (None: nothing)."""
        if (self.finding_id is None) == (self.value_id is None):
            return "a decision is on one finding or one value"
        if self.decision is Decision.CORRECT and not (self.corrected_value or "").strip():
            return "a correction needs the corrected value"
        if self.decision is not Decision.CORRECT and self.corrected_value:
            return f"only a correction takes a value (this is '{self.decision.value}')"
        return None


def reviewer_identity(settings: Settings) -> str:
    """Who decides: the configured reviewer, else `<login>@<host>` of the account running Assay."""
    if settings.reviewer:
        return settings.reviewer
    return f"{getpass.getuser()}@{socket.gethostname()}"


def record_decisions(settings: Settings, proposed: Sequence[Proposed]) -> list[ReviewDecisionRow]:
    """Check every decision and what it names, then land them all in one commit (or none of them)."""
    if not proposed:
        raise ConfigError("no decision to record")
    for one in proposed:
        problem = one.problem()
        if problem:
            raise ConfigError(problem)
    reviewer = reviewer_identity(settings)
    with warehouse.read_only(settings) as con:
        for one in proposed:
            table, column, key = (
                ("findings", "finding_id", one.finding_id)
                if one.finding_id
                else ("document_values", "value_id", one.value_id)
            )
            if con.execute(f"SELECT 1 FROM {table} WHERE {column} = ? LIMIT 1", [key]).fetchone() is None:
                raise ConfigError(f"no {column.removesuffix('_id')} {key!r}")
    now = datetime.now(UTC)
    rows = [
        ReviewDecisionRow(
            decision_id=uuid.uuid4().hex[:16],
            finding_id=one.finding_id,
            value_id=one.value_id,
            decision=one.decision.value,
            corrected_value=one.corrected_value,
            reviewer=reviewer,
            comment=one.comment,
            decided_at=now,
        )
        for one in proposed
    ]
    commit_id = f"review-{rows[0].decision_id}"
    store = open_store(settings)
    written = Lake(store).write("review_decisions", rows, commit_id, "0", now.date())
    commit(settings, store, "review", [written], commit_id=commit_id)
    warehouse.refresh(settings.warehouse_path, store)  # committed: a catalog problem is only a warning
    return rows


__all__ = ["Decision", "Proposed", "record_decisions", "reviewer_identity"]
