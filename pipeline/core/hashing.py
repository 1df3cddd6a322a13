"""SHA-256 helpers: content identity and fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_BLOCK = 1024 * 1024


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def sha256_fd(fd: int) -> str:
    """SHA-256 of an open file's bytes, read from its start through the descriptor (which stays open)."""
    digest = hashlib.sha256()
    offset = 0
    while block := os.pread(fd, _BLOCK, offset):
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(*parts: Any) -> str:
    """Hash of everything that can change a result (see docs/architecture.md#identity)."""
    return sha256_text(canonical_json(list(parts)))


def short_id(*parts: Any) -> str:
    """A 16-hex-digit id derived from `parts` (stable across runs)."""
    return fingerprint(*parts)[:16]
