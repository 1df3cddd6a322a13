"""Fault injection for the crash-safety tests, in one place, and disarmed unless a test arms it.

A production process never honours the switches below, whatever its environment says: only a process
that called `arm()` does (tests/jobrunner.py and the parse-fault test's script do; nothing under
pipeline/, connectors/, flows/ or assay/ calls it, which tests/test_security.py checks).

- `ASSAY_CRASH_AT=<point>` kills the process with SIGKILL when it reaches that point: parse, extract,
  mid-write, land, before-manifest, after-manifest (tests/test_incremental.py).
- `ASSAY_PARSE_FAULT=<hang|leak|crash>:<file name>` makes the parsing worker misbehave on that file
  (tests/test_parse_workers.py). The parent decides, when it hands the file over: the worker only obeys.
"""

from __future__ import annotations

import os
import signal
import time

_armed = False


def arm() -> None:
    """Honour the fault switches in this process (tests only)."""
    global _armed
    _armed = True


def crash_point(name: str) -> None:
    if _armed and os.environ.get("ASSAY_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def parse_fault(filename: str) -> str | None:
    """The fault the worker parsing `filename` is to show, when armed: hang, leak or crash."""
    if not _armed:
        return None
    kind, _, target = os.environ.get("ASSAY_PARSE_FAULT", "").partition(":")
    return kind if kind and target == filename else None


def misbehave(kind: str | None) -> None:
    """In a parsing worker: hang, fill memory, or crash, as the parent asked."""
    if kind == "hang":
        while True:
            time.sleep(1)
    if kind == "leak":
        hoard = []
        while True:
            hoard.append(bytearray(64 * 1024 * 1024))
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
