"""What this process may use: cores and memory."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity and cgroup pinning)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
