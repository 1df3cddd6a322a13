"""A learned ranker as data: per field, a logistic regression over candidate features, and its file.

The trained ranker is a JSON file (coefficients, thresholds, how it was trained), never a pickle:
loading it runs no code. A task names it with its SHA-256 (`ranker: {file, sha256}`); a file that
does not match is refused. The features it reads are computed in `pipeline/reduce/ranker.py`; it is
trained by `pipeline/audit/learning.py` (`assay learn`).
"""

from __future__ import annotations

import json
import math
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.core.errors import ConfigError
from pipeline.core.hashing import sha256_bytes

RANKER_FORMAT = "assay-ranker/1"


class FieldModel(BaseModel):
    """One field's logistic regression: P(right) = sigmoid(intercept + sum(coefficient * feature))."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    intercept: float
    threshold: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_coefficient_per_feature(self) -> FieldModel:
        if len(self.features) != len(self.coefficients):
            raise ValueError(f"{len(self.features)} features but {len(self.coefficients)} coefficients")
        return self

    def probability(self, values: dict[str, float]) -> float:
        z = self.intercept + sum(
            c * values.get(name, 0.0) for name, c in zip(self.features, self.coefficients, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


class Reviewed(BaseModel):
    """What reviewers decided about one field of one document: values right and wrong (their label keys)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    document: str  # content SHA-256
    field: str
    right: tuple[str, ...] = ()
    wrong: tuple[str, ...] = ()


class Ranker(BaseModel):
    """A trained ranker as its file holds it, and the file's SHA-256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = RANKER_FORMAT
    task: str
    fields: dict[str, FieldModel]
    # Reviewers' decisions, kept as facts about their documents: on a document a reviewer saw, a value
    # they rejected is never chosen and one they accepted or corrected to is (when it is a candidate).
    reviewed: tuple[Reviewed, ...] = ()
    training: dict[str, Any] = Field(default_factory=dict)  # what it learned from and its scores
    sha256: str = ""  # of the file's bytes; set when loaded or written

    def decisions(self, document: str, field: str) -> Reviewed | None:
        """The reviewers' decisions on that field of that document, if any."""
        return self._reviewed_index.get((document, field))

    @cached_property
    def _reviewed_index(self) -> dict[tuple[str, str], Reviewed]:
        return {(r.document, r.field): r for r in self.reviewed}

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(exclude={"sha256"}), indent=1, sort_keys=True) + "\n").encode()


def load_ranker(path: Path, sha256: str | None = None) -> Ranker:
    """The ranker in `path`; refused when its SHA-256 is not `sha256` (when given) or it is not a ranker file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"ranker file {path} cannot be read: {exc}") from exc
    digest = sha256_bytes(raw)
    if sha256 is not None and digest != sha256.lower():
        raise ConfigError(f"ranker file {path} has SHA-256 {digest}, the task names {sha256}: refused")
    try:
        data = json.loads(raw)
        ranker = Ranker.model_validate({**data, "sha256": digest})
    except (UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
        raise ConfigError(f"ranker file {path} is not a ranker ({exc})") from exc
    if ranker.format != RANKER_FORMAT:
        raise ConfigError(f"ranker file {path} is {ranker.format!r}, this version reads {RANKER_FORMAT!r}")
    return ranker
