"""Where the lake's files live: a local folder or an S3-compatible store, behind one small interface.

Everything that reads or writes lake files (pipeline/lake.py, the ledger,
recovery, incremental reuse, the DuckDB catalog, the mirror) goes through a
`LakeStore`, a pyarrow filesystem plus the lake's root inside it:

- local (the default): `<data_dir>/lake`; a file is written under a hidden
  temporary name, fsynced and renamed into place; quarantined files go to
  `<data_dir>/quarantine`.
- S3 (`[lake_store] url = "s3://bucket/prefix"`): the same layout under the
  prefix. An object appears whole or not at all (a PUT, or a multipart upload
  that only becomes visible when completed), so no temporary name is needed;
  quarantined files go to `<prefix>/_quarantine/`.

DuckDB reads the S3 lake through this process's pyarrow filesystem
(`register`), so no DuckDB extension is needed or downloaded; extension
auto-install is switched off on every connection Assay opens.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import duckdb
from fsspec.implementations.arrow import ArrowFSWrapper
from pyarrow import fs

from pipeline.core.errors import ConfigError
from pipeline.core.settings import S3StoreSettings, Settings

MANIFEST_DIR = "_manifests"
QUARANTINE_DIR = "_quarantine"  # inside an S3 lake's root; a local lake's quarantine is beside it
_BLOCK = 8 * 1024 * 1024

# DuckDB must never fetch an extension from the internet (it would, for s3:// paths, without this).
DUCKDB_CONFIG: dict[str, str | bool] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


class _ReadOnlyArrowFS(ArrowFSWrapper):  # type: ignore[misc]
    """The lake's filesystem for DuckDB, refusing every write (an analyst's connection never writes)."""

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise PermissionError("this connection reads the lake; it writes nothing")

    cp_file = mv = rm_file = rm = mkdir = makedirs = rmdir = _refuse

    def _open(self, path: str, mode: str = "rb", *args: object, **kwargs: object) -> object:
        if mode not in ("rb", "r"):
            self._refuse()
        return super()._open(path, mode, *args, **kwargs)


@dataclass(frozen=True)
class LakeStore:
    filesystem: fs.FileSystem
    root: str  # the lake's root inside `filesystem` (an absolute folder, or bucket/prefix)
    url: str  # the root as DuckDB and people name it: the folder, or s3://bucket/prefix
    quarantine_root: str

    @property
    def local(self) -> bool:
        return isinstance(self.filesystem, fs.LocalFileSystem)

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def describe(self, relative: str) -> str:
        """A lake file's full name, for messages."""
        return f"{self.url}/{relative}"

    def files(self, prefix: str = "") -> dict[str, int]:
        """Every file under `prefix` (relative to the root, recursive): relative path -> size in bytes."""
        base = self.path(prefix).rstrip("/") if prefix else self.root
        selector = fs.FileSelector(base, recursive=True, allow_not_found=True)
        found = {}
        for info in self.filesystem.get_file_info(selector):
            if info.type == fs.FileType.File:
                found[info.path[len(self.root) + 1 :]] = int(info.size or 0)
        return found

    def quarantined_files(self) -> dict[str, int]:
        """Every file recovery moved out of the lake: `<stamp>/<lake path>` -> size in bytes."""
        selector = fs.FileSelector(self.quarantine_root, recursive=True, allow_not_found=True)
        return {
            info.path[len(self.quarantine_root) + 1 :]: int(info.size or 0)
            for info in self.filesystem.get_file_info(selector)
            if info.type == fs.FileType.File
        }

    def data_files(self) -> dict[str, int]:
        """Every file of the lake that a manifest should list (not manifests, not quarantine)."""
        skip = {MANIFEST_DIR}
        if self.quarantine_root.startswith(self.root + "/"):
            skip.add(self.quarantine_root[len(self.root) + 1 :].split("/", 1)[0])
        return {relative: size for relative, size in self.files().items() if relative.split("/", 1)[0] not in skip}

    def exists(self, relative: str) -> bool:
        return self.filesystem.get_file_info(self.path(relative)).type == fs.FileType.File

    def read_bytes(self, relative: str) -> bytes:
        with self.filesystem.open_input_stream(self.path(relative)) as handle:
            return bytes(handle.read())

    def blocks(self, relative: str) -> Iterator[bytes]:
        with self.filesystem.open_input_stream(self.path(relative)) as handle:
            while block := handle.read(_BLOCK):
                yield bytes(block)

    def put(self, relative: str, data: bytes, before_visible: Callable[[], None] | None = None) -> None:
        """Write a whole file so that no reader (and no crash) ever sees part of it; never overwrite.

        A file that exists already is a FileExistsError: locally the file gets its name by a hard link,
        which fails when the name is taken (two writers cannot both create it); on S3 the store is asked
        first (writers of manifests hold the commit lock). `before_visible` is called after the bytes are
        durable and before the file has its name (the crash-test hook; on S3 the upload is the naming).
        """
        if self.exists(relative):
            raise FileExistsError(f"refusing to overwrite lake file {self.describe(relative)}")
        if not self.local:
            with self.filesystem.open_output_stream(self.path(relative)) as sink:
                sink.write(data)
            return
        final = Path(self.path(relative))
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.parent / f".{final.name}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if before_visible is not None:
                before_visible()
            os.link(temporary, final)  # atomic, and fails if the name exists
        except FileExistsError as exc:
            raise FileExistsError(f"refusing to overwrite lake file {self.describe(relative)}") from exc
        finally:
            temporary.unlink(missing_ok=True)
        _sync_folder(final.parent)  # the new name survives a power loss

    def quarantine(self, relative: str, stamp: str) -> str:
        """Move a file out of the lake (where no view or manifest sees it). Returns where it went."""
        target = f"{self.quarantine_root}/{stamp}/{relative}"
        if self.local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        self.filesystem.move(self.path(relative), target)
        return target

    def register(self, con: duckdb.DuckDBPyConnection, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """Let DuckDB read this store's s3:// paths through pyarrow (nothing to do for a local folder)."""
        if not self.local:
            con.register_filesystem((_ReadOnlyArrowFS if read_only else ArrowFSWrapper)(self.filesystem))
        return con

    def connect(
        self, database: str = ":memory:", read_only: bool = False, config: dict[str, str] | None = None
    ) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection that can read this lake and never downloads an extension."""
        settings: dict[str, str | bool | int | float | list[str]] = {**DUCKDB_CONFIG, **(config or {})}
        return self.register(duckdb.connect(database, read_only=read_only, config=settings), read_only=read_only)


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def local_store(lake_dir: Path, quarantine_dir: Path | None = None) -> LakeStore:
    root = str(lake_dir.resolve())
    quarantine = quarantine_dir.resolve() if quarantine_dir else lake_dir.resolve().parent / "quarantine"
    return LakeStore(fs.LocalFileSystem(), root, root, str(quarantine))


def s3_store(settings: S3StoreSettings, what: str = "lake_store") -> LakeStore:
    """An S3-compatible store (AWS, MinIO, Ceph, ...) rooted at `settings.url`."""
    url = urlparse(settings.url)
    if url.scheme != "s3" or not url.netloc:
        raise ConfigError(f"{what}.url must look like s3://bucket/prefix, not {settings.url!r}")
    keys = settings.access_key_id and settings.secret_access_key
    filesystem = fs.S3FileSystem(
        region=settings.region,
        # host:port only: credentials belong in access_key_id / secret_access_key, never in the URL
        endpoint_override=_host_and_port(settings.endpoint_url) if settings.endpoint_url else None,
        scheme="http" if (settings.endpoint_url or "").startswith("http://") else "https",
        access_key=settings.access_key_id.get_secret_value() if keys and settings.access_key_id else None,
        secret_key=settings.secret_access_key.get_secret_value() if keys and settings.secret_access_key else None,
    )
    root = f"{url.netloc}/{url.path.strip('/')}".rstrip("/")
    return LakeStore(filesystem, root, f"s3://{root}", f"{root}/{QUARANTINE_DIR}")


def _host_and_port(endpoint_url: str) -> str:
    if "://" not in endpoint_url:  # "minio.internal:9000"
        return endpoint_url
    endpoint = urlparse(endpoint_url)
    host = endpoint.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{endpoint.port}" if endpoint.port else host


def open_store(settings: Settings) -> LakeStore:
    """The lake of these settings: `[lake_store]` when set, else `<data_dir>/lake`."""
    if settings.lake_store is not None:
        return s3_store(settings.lake_store)
    return local_store(settings.lake_dir, settings.data_dir / "quarantine")


def as_store(lake: LakeStore | Path) -> LakeStore:
    """Accept a store or a local lake folder (the quarantine then goes beside it)."""
    return lake if isinstance(lake, LakeStore) else local_store(Path(lake))
