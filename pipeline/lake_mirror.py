"""Publishing the lake to an S3-compatible store, file for file, in the same layout.

The local lake stays the place a run writes to (atomic renames, recovery, the
DuckDB catalog's views); after a run's manifest is committed, every file that
a manifest lists, and then the manifests themselves, are uploaded to
`lake_mirror.url` (`s3://bucket/prefix`) under the same relative keys
(`findings/run_date=YYYY-MM-DD/<run_id>-<part>.parquet`, `_manifests/...`).
Data files go up before the manifest that lists them, so a reader who trusts
manifests never finds one whose files are missing; an object already there with
the same size is not sent again, so publishing is idempotent and the next run
fills whatever an interrupted one left out. Files in no manifest (an unfinished
run's) are never published.

Other engines (Spark, Trino, DuckDB with httpfs) read the mirror as a
hive-partitioned Parquet lake. Written with pyarrow's S3 filesystem; tested
against a local S3 server (moto) in tests/test_lake_mirror.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pyarrow import fs

from pipeline.errors import ConfigError, TransientError
from pipeline.ledger import MANIFEST_DIR, Ledger
from pipeline.retry import retry_transient
from pipeline.settings import LakeMirrorSettings


@dataclass(frozen=True)
class Published:
    uploaded: int
    already_there: int
    bytes_uploaded: int


def mirror_filesystem(settings: LakeMirrorSettings) -> tuple[fs.S3FileSystem, str]:
    """The pyarrow S3 filesystem and the base path (`bucket/prefix`) of the mirror."""
    url = urlparse(settings.url)
    if url.scheme != "s3" or not url.netloc:
        raise ConfigError(f"lake_mirror.url must look like s3://bucket/prefix, not {settings.url!r}")
    options: dict[str, object] = {"region": settings.region}
    if settings.endpoint_url:
        endpoint = urlparse(settings.endpoint_url)
        options.update(endpoint_override=endpoint.netloc or endpoint.path, scheme=endpoint.scheme or "https")
    if settings.access_key_id and settings.secret_access_key:
        options.update(
            access_key=settings.access_key_id.get_secret_value(),
            secret_key=settings.secret_access_key.get_secret_value(),
        )
    return fs.S3FileSystem(**options), f"{url.netloc}/{url.path.strip('/')}".rstrip("/")


@retry_transient
def publish(lake_dir: Path, settings: LakeMirrorSettings) -> Published:
    """Upload what the manifests list and the mirror lacks; manifests last."""
    filesystem, base = mirror_filesystem(settings)
    try:
        present = {
            info.path[len(base) + 1 :]: info.size
            for info in filesystem.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True))
            if info.type == fs.FileType.File
        }
        manifests = Ledger(lake_dir).manifests()
        wanted = [(entry.path, entry.bytes) for m in manifests for entry in m.files]
        wanted += [(f"{MANIFEST_DIR}/{m.path.name}", m.path.stat().st_size) for m in manifests]
        uploaded = already = sent = 0
        for relative, size in wanted:
            if present.get(relative) == size:
                already += 1
                continue
            with open(lake_dir / relative, "rb") as source, filesystem.open_output_stream(f"{base}/{relative}") as sink:
                while block := source.read(8 * 1024 * 1024):
                    sink.write(block)
            uploaded += 1
            sent += size
    except OSError as exc:  # pyarrow raises OSError for network and server errors
        raise TransientError(f"publishing the lake to {settings.url} failed: {exc}") from exc
    return Published(uploaded, already, sent)
