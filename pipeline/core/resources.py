"""What this process may use: cores and memory."""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity and cgroup pinning)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPUs this process's cgroup CPU quota allows (a container's `--cpus`), or None when there is none.

    cgroup v2: `cpu.max` ("200000 100000" is 2 CPUs, "max 100000" no quota); cgroup v1: `cpu.cfs_quota_us`
    over `cpu.cfs_period_us` (-1: no quota). The tightest quota of the process's cgroup and its ancestors
    counts. Affinity (`available_cores`) does not see a quota: 16 cores may be visible and 2 CPUs allowed.
    """
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    places: list[tuple[bool, Path, str]] = []  # (cgroup v2?, where the hierarchy is mounted, the cgroup in it)
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            places.append((True, cgroup_root, path))
        elif "cpu" in controllers.split(","):
            mount = cgroup_root / controllers
            places.append((False, mount if mount.is_dir() else cgroup_root / "cpu", path))
    if not places:
        places = [(True, cgroup_root, "/"), (False, cgroup_root / "cpu", "/")]
    limits = [
        limit
        for v2, mount, path in places
        for folder in _folder_and_ancestors(mount, path)
        if (limit := (_v2_quota(folder) if v2 else _v1_quota(folder))) is not None
    ]
    return min(limits) if limits else None


def _folder_and_ancestors(mount: Path, cgroup: str) -> list[Path]:
    """`mount/<cgroup>` and each of its parents up to `mount` (a cgroup namespace shows "/": the mount itself)."""
    parts = [part for part in cgroup.split("/") if part and part not in (".", "..")]
    return [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text(encoding="utf-8").split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text(encoding="utf-8"))
        period = int((folder / "cpu.cfs_period_us").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period
