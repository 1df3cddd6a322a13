"""What an `assay doctor` check reports: `Check`, its name, status, what it found and the fix.

Shared by the checks of this machine (`pipeline.run.doctor`) and of the services this installation talks to
(`pipeline.run.doctor_services`), so that neither imports the other for it.

A check's status is `ok`, `warning` (worth knowing; the night still runs), `problem` (fix it before
the night: `assay doctor` exits 1) or `skipped` (not configured here, or switched off).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["ok", "warning", "problem", "skipped"]


@dataclass(frozen=True)
class Check:
    """One check's outcome: what was checked, what was found, and for a problem or warning what to do."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
