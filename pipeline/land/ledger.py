"""Tamper evidence: manifests chained by hash, and their verification.

Every commit to the lake (a run, a batch of review decisions, a replay
sample) writes one manifest, `lake/_manifests/<seq>.json` (created exclusively),
listing each file it wrote with its SHA-256, size and row count, and the
SHA-256 of the previous manifest's bytes. Files are never rewritten, so
`verify` can re-hash the whole lake and report:

- a file whose bytes differ from its manifest (changed),
- a file in a manifest that is gone (removed),
- a Parquet file that no manifest lists (added),
- a manifest whose `previous_sha256` is not the hash of the manifest before
  it, a gap or fork in the sequence (broken chain).

What a hash chain cannot prove by itself is that the newest manifests were
not removed together with their files: `verify` prints the head hash, and an
operator who records it elsewhere (a ticket, WORM storage) closes that gap.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr

from pipeline.core.hashing import sha256_bytes
from pipeline.land.lake import FileEntry
from pipeline.land.signing import Signer
from pipeline.land.store import MANIFEST_DIR, LakeStore, as_store

FORMAT = "assay-manifest/1"
COMMIT_ATTEMPTS = 5

__all__ = ["FORMAT", "MANIFEST_DIR", "FileEntry", "Ledger", "Manifest", "VerifyReport", "chain_problems", "verify"]


class _ManifestRecord(BaseModel):
    """A manifest as written; strict (its file entries too), so a damaged manifest is refused, not coerced."""

    model_config = ConfigDict(strict=True, extra="ignore")
    sequence: StrictInt
    commit_id: StrictStr
    kind: StrictStr
    run_id: StrictStr | None = None
    created_at: StrictStr
    previous_sha256: StrictStr | None = None
    files: list[FileEntry]


@dataclass(frozen=True)
class Manifest:
    sequence: int
    commit_id: str
    kind: str  # "run", "review", "replay"
    run_id: str | None
    created_at: str
    previous_sha256: str | None
    files: tuple[FileEntry, ...]
    name: str  # the manifest's file name in _manifests/
    sha256: str  # of this manifest file's bytes
    size: int

    @property
    def relative(self) -> str:
        return f"{MANIFEST_DIR}/{self.name}"


class Ledger:
    def __init__(self, lake: LakeStore | Path) -> None:
        self.store = as_store(lake)

    def _names(self) -> list[str]:
        return sorted(r for r in self.store.files(MANIFEST_DIR) if r.endswith(".json"))

    def read(self, relative: str) -> Manifest:
        """One manifest, by its path in the lake (`_manifests/<name>`)."""
        raw = self.store.read_bytes(relative)
        try:
            record = _ManifestRecord.model_validate_json(raw)  # a ValidationError is a ValueError
        except RecursionError as exc:  # found by tests/test_properties.py
            raise ValueError(f"{relative} is nested too deeply to be a manifest") from exc
        return Manifest(
            sequence=record.sequence,
            commit_id=record.commit_id,
            kind=record.kind,
            run_id=record.run_id,
            created_at=record.created_at,
            previous_sha256=record.previous_sha256,
            files=tuple(record.files),
            name=relative.rsplit("/", 1)[-1],
            sha256=sha256_bytes(raw),
            size=len(raw),
        )

    def manifests(self) -> list[Manifest]:
        """Every manifest in the lake, in sequence order (unparseable ones raise)."""
        return sorted((self.read(r) for r in self._names()), key=lambda m: (m.sequence, m.name))

    def head(self) -> Manifest | None:
        """The newest manifest, reading only it (names start with the zero-padded sequence)."""
        names = self._names()
        return self.read(names[-1]) if names else None

    def commit(
        self,
        kind: str,
        files: Iterable[FileEntry],
        run_id: str | None = None,
        commit_id: str | None = None,
        extra: dict[str, Any] | None = None,
        signer: Signer | None = None,
    ) -> Manifest:
        """Write the manifest of `files` (as their writers described them), chained to the current head.

        Manifests are named by their sequence alone and created exclusively: two writers that both
        read head N cannot both write N + 1 (the chain cannot fork); the one that loses reads the new
        head and tries again. Writers also take the state store's commit lock (pipeline/state/locks.py).
        """
        entries = sorted(files, key=lambda e: e.path)
        commit_id = commit_id or run_id or uuid.uuid4().hex[:16]
        for _ in range(COMMIT_ATTEMPTS):
            head = self.head()
            sequence = head.sequence + 1 if head else 1
            document = {
                "format": FORMAT,
                "sequence": sequence,
                "commit_id": commit_id,
                "kind": kind,
                "run_id": run_id,
                "created_at": datetime.now(UTC).isoformat(),
                "previous_sha256": head.sha256 if head else None,
                "files": [entry.__dict__ for entry in entries],
                **(extra or {}),
            }
            if signer is not None:
                document = signer.sign(document)
            raw = json.dumps(document, indent=1, sort_keys=True).encode("utf-8")
            name = f"{sequence:08d}.json"
            try:
                self.store.put(f"{MANIFEST_DIR}/{name}", raw)
            except FileExistsError:
                continue  # another writer took this sequence number: chain to its manifest instead
            return Manifest(
                sequence=sequence,
                commit_id=commit_id,
                kind=kind,
                run_id=run_id,
                created_at=str(document["created_at"]),
                previous_sha256=head.sha256 if head else None,
                files=tuple(entries),
                name=name,
                sha256=sha256_bytes(raw),
                size=len(raw),
            )
        raise FileExistsError(f"could not append to the ledger after {COMMIT_ATTEMPTS} attempts: too many writers")

    def named(self, sequence: int) -> str | None:
        """The manifest of this sequence number, by its path in the lake (None: there is none)."""
        names = [n for n in self._names() if n.rsplit("/", 1)[-1].split("-")[0].split(".")[0] == f"{sequence:08d}"]
        return names[0] if len(names) == 1 else None


@dataclass
class VerifyReport:
    manifests: int = 0
    files_checked: int = 0
    head_sha256: str | None = None
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)  # manifests not signed by a trusted key
    anchors: list[str] = field(default_factory=list)  # where the lake disagrees with the heads recorded outside it
    views: list[str] = field(default_factory=list)  # where the warehouse's views are not the committed SQL's
    notes: list[str] = field(default_factory=list)  # worth knowing, not failures

    @property
    def ok(self) -> bool:
        return not (
            self.changed
            or self.removed
            or self.added
            or self.broken_links
            or self.signatures
            or self.anchors
            or self.views
        )


def chain_problems(manifests: list[Manifest]) -> list[str]:
    """Where the chain of manifests (in sequence order) has a gap, a fork, or a link that does not match."""
    problems = []
    previous: Manifest | None = None
    for manifest in manifests:
        expected_sequence = previous.sequence + 1 if previous else 1
        if manifest.sequence != expected_sequence:
            problems.append(
                f"{manifest.name}: sequence {manifest.sequence}, expected {expected_sequence} (a gap or a fork)"
            )
        expected_hash = previous.sha256 if previous else None
        if manifest.previous_sha256 != expected_hash:
            problems.append(
                f"{manifest.name}: previous_sha256 {manifest.previous_sha256} does not match the manifest "
                f"before it ({expected_hash})"
            )
        previous = manifest
    return problems


def verify(lake: LakeStore | Path) -> VerifyReport:
    """Re-hash every file of the lake and walk the manifest chain."""
    store = as_store(lake)
    report = VerifyReport()
    ledger = Ledger(store)
    try:
        manifests = ledger.manifests()
    except (ValueError, KeyError, TypeError) as exc:
        report.broken_links.append(f"a manifest cannot be read: {exc}")
        return report
    report.manifests = len(manifests)
    report.head_sha256 = manifests[-1].sha256 if manifests else None

    report.broken_links += chain_problems(manifests)

    listed: dict[str, FileEntry] = {}
    for manifest in manifests:
        for entry in manifest.files:
            if entry.path in listed:
                report.broken_links.append(f"{entry.path} is listed by more than one manifest")
            listed[entry.path] = entry
    present = store.data_files()
    for relative, entry in sorted(listed.items()):
        size = present.get(relative)
        if size is None:
            report.removed.append(relative)
            continue
        report.files_checked += 1
        if size != entry.bytes or _sha256(store, relative) != entry.sha256:
            report.changed.append(relative)
    for relative in sorted(set(present) - set(listed)):
        report.added.append(relative)
    return report


def _sha256(store: LakeStore, relative: str) -> str:
    digest = hashlib.sha256()
    for block in store.blocks(relative):
        digest.update(block)
    return digest.hexdigest()
