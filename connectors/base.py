"""What every connector provides: the `Connector` protocol of the core (pipeline/core/connector.py),
and the time-stamp cursor that the file-share, SMB and S3 connectors hand out (`ListsChanges`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from pipeline.core.connector import Connector, ListsChanges, SourceLimits
from pipeline.core.errors import ConfigError

__all__ = ["Connector", "ListsChanges", "changed_since", "time_cursor"]


def time_cursor(limits: SourceLimits) -> str:
    """Now on this machine's clock, less the overlap (clock skew, files still being written), in ns."""
    return f"time:{time.time_ns() - int(limits.cursor_overlap_s * 1e9)}"


def changed_since(cursor: str) -> datetime:
    """The moment a time-stamp cursor names (UTC)."""
    kind, _, value = cursor.partition(":")
    if kind != "time" or not value.lstrip("-").isdigit():
        raise ConfigError(f"not a time-stamp listing cursor: {cursor!r} (run once with --full-listing)")
    return datetime.fromtimestamp(int(value) / 1e9, tz=UTC)
