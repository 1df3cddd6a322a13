"""Publishing the lake to an S3-compatible store, file for file, in the same layout.

After a run's manifest is committed, every file that a manifest lists, and
then the manifests themselves, are copied from the lake (a local folder, or
an S3 store of its own: pipeline/lake_store.py) to `lake_mirror.url`
(`s3://bucket/prefix`) under the same relative keys
(`findings/run_date=YYYY-MM-DD/<run_id>-<part>.parquet`, `_manifests/...`).
Data files go up before the manifest that lists them, so a reader who trusts
manifests never finds one whose files are missing; an object already there with
the same size is not sent again, so publishing is idempotent and the next run
fills whatever an interrupted one left out. Files in no manifest (an unfinished
run's) are never published. `check_hashes` (`assay mirror --check-hashes`, for a
weekly job) reads every object back and re-sends any whose SHA-256 is not the one
its manifest records: a same-size object that was damaged or replaced is repaired.

A mirror is a second copy (another site, another vendor's store); to write
the lake to S3 in the first place, set `[lake_store]` instead. Other engines
(Spark, Trino, DuckDB with httpfs) read either as a hive-partitioned Parquet
lake. Tested against a local S3 server (moto) in tests/test_lake_mirror.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pipeline.core.errors import TransientError
from pipeline.core.retry import retry_transient
from pipeline.core.secrets import redact
from pipeline.core.settings import S3StoreSettings
from pipeline.land.ledger import Ledger
from pipeline.land.store import LakeStore, s3_store


@dataclass(frozen=True)
class Published:
    uploaded: int
    already_there: int
    bytes_uploaded: int
    repaired: tuple[str, ...] = ()  # objects that were there with the size but not the SHA-256 they must have


@retry_transient
def publish(lake: LakeStore, settings: S3StoreSettings, check_hashes: bool = False) -> Published:
    """Copy what the manifests list and the mirror lacks (or, checking hashes, holds wrong); manifests last."""
    mirror = s3_store(settings, "lake_mirror")
    try:
        present = mirror.files()
        manifests = Ledger(lake).manifests()
        wanted = [(entry.path, entry.bytes, entry.sha256) for m in manifests for entry in m.files]
        wanted += [(m.relative, m.size, m.sha256) for m in manifests]
        uploaded = already = sent = 0
        repaired = []
        for relative, size, sha256 in wanted:
            if present.get(relative) == size:
                if not check_hashes or _sha256(mirror, relative) == sha256:
                    already += 1
                    continue
                repaired.append(relative)
            with mirror.filesystem.open_output_stream(mirror.path(relative)) as sink:
                for block in lake.blocks(relative):
                    sink.write(block)
            uploaded += 1
            sent += size
    except OSError as exc:  # pyarrow raises OSError for network and server errors
        raise TransientError(redact(f"publishing the lake to {settings.url} failed: {exc}")) from exc
    return Published(uploaded, already, sent, tuple(repaired))


def _sha256(store: LakeStore, relative: str) -> str:
    digest = hashlib.sha256()
    for block in store.blocks(relative):
        digest.update(block)
    return digest.hexdigest()
