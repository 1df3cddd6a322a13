"""Review decisions: a reviewer accepts, rejects or corrects a finding. Appended, never edited."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pipeline.core.errors import ConfigError
from pipeline.core.settings import Settings
from pipeline.land import warehouse
from pipeline.land.lake import Lake
from pipeline.land.ledger import Ledger
from pipeline.land.store import open_store
from pipeline.land.tables import ReviewDecisionRow


class Decision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    CORRECT = "correct"


@dataclass(frozen=True)
class ReviewDecision:
    decision_id: str
    finding_id: str
    decision: Decision
    corrected_value: str | None
    reviewer: str
    comment: str | None
    decided_at: datetime


def record_decision(
    settings: Settings,
    finding_id: str,
    decision: Decision,
    reviewer: str,
    corrected_value: str | None = None,
    comment: str | None = None,
) -> ReviewDecision:
    """Check the finding exists, then append the decision to the lake and commit it to the ledger."""
    if decision is Decision.CORRECT and not corrected_value:
        raise ConfigError("a correction needs the corrected value")
    if decision is not Decision.CORRECT and corrected_value:
        raise ConfigError("only a correction takes a value")
    if not reviewer.strip():
        raise ConfigError("a review decision needs a reviewer")
    with warehouse.read_only(settings) as con:
        found = con.execute("SELECT 1 FROM findings WHERE finding_id = ? LIMIT 1", [finding_id]).fetchone()
    if found is None:
        raise ConfigError(f"no finding {finding_id!r}")
    record = ReviewDecision(
        decision_id=uuid.uuid4().hex[:16],
        finding_id=finding_id,
        decision=decision,
        corrected_value=corrected_value,
        reviewer=reviewer,
        comment=comment,
        decided_at=datetime.now(UTC),
    )
    commit_id = f"review-{record.decision_id}"
    row = ReviewDecisionRow(
        decision_id=record.decision_id,
        finding_id=record.finding_id,
        decision=record.decision.value,
        corrected_value=record.corrected_value,
        reviewer=record.reviewer,
        comment=record.comment,
        decided_at=record.decided_at,
    )
    store = open_store(settings)
    written = Lake(store).write("review_decisions", [row], commit_id, "0", record.decided_at.date())
    Ledger(store).commit("review", [written], commit_id=commit_id)
    warehouse.refresh(settings.warehouse_path, store)  # committed: a catalog problem is only a warning
    return record


__all__ = ["Decision", "ReviewDecision", "record_decision"]
