"""Local folder or mounted file share (NFS, a mounted SMB share): the `local` connector.

A real share holds names with spaces, accents, `%`, `#` and bytes that are not
UTF-8; links that dangle or leave the share; pipes and devices; files that
vanish or change while a night runs; folders the service account may not open.
The rules:

- URIs are standard `file://` URIs (percent-encoded bytes of the path) and are
  decoded back to the exact bytes when read.
- Only regular files are read. A link is resolved and read only when its target
  is a regular file inside the source's folder; a link that leaves the folder,
  a linked folder (never followed: no loops, no double listing), a pipe, socket
  or device is listed with the reason `refused`.
- An entry that cannot be examined (vanished, no permission, a dangling link)
  or a folder that cannot be opened is listed with the reason `read_error`.
- Files are opened without following links and without blocking, checked to be
  regular through the open descriptor, and read up to `max_file_bytes` (a file
  that grew past it after listing is `too_large`, not read whole).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import unquote_to_bytes, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from connectors.base import changed_since, time_cursor
from connectors.globs import matches, selected
from pipeline.core.connector import SourceLimits
from pipeline.core.documents import DocumentRef, ListingProblem
from pipeline.core.errors import ConfigError, DocumentError, Reason

_BLOCK = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


class LocalFolderConfig(BaseModel):
    """`connector = "local"`: a folder (or one file) on this machine or a mounted share."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    connector: Literal["local"] = "local"
    path: str = Field(description="The folder (or file) to read, absolute or relative to the working directory.")
    include: list[str] = Field(default_factory=lambda: ["**/*"], description="Globs on the path under the folder.")
    exclude: list[str] = Field(default_factory=list, description="Globs of files to leave out.")


def path_of(uri: str) -> Path:
    """The exact path a `file://` URI names (percent-decoded to the original bytes)."""
    return Path(os.fsdecode(unquote_to_bytes(urlsplit(uri).path)))


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _links_to_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _change_time(path: Path) -> int:
    """The entry's own inode change time (a link's, not its target's), in ns; 0 when it is gone."""
    try:
        return path.lstat().st_ctime_ns
    except OSError:
        return 0


def _changed(path: Path, since_ns: int | None) -> bool:
    """Whether an entry that is listed as a problem changed since `since_ns` (a vanished one did)."""
    if since_ns is None:
        return True
    found = _change_time(path)
    return found == 0 or found >= since_ns


class _Unreadable(Exception):
    def __init__(self, reason: Reason, message: str, size: int = 0) -> None:
        super().__init__(message)
        self.reason, self.message, self.size = reason, message, size


class LocalFolderConnector:
    """Walks a folder in a stable order (a folder's files, then its sub-folders, by name).

    Each ref carries the file's URI, size, modified time (also its version
    marker) and the SHA-256 of its bytes.
    """

    def __init__(self, source_name: str, config: LocalFolderConfig, limits: SourceLimits | None = None) -> None:
        self.source_name = source_name
        self.config = config
        self.limits = limits or SourceLimits()
        self.root = Path(config.path).expanduser().resolve()
        self.include = config.include or ["**/*"]
        self.exclude = config.exclude
        if not self.root.exists():
            raise ConfigError(f"source {source_name!r}: path does not exist: {self.root}")

    def _selected(self, relative: str) -> bool:
        return selected(relative, self.include, self.exclude)

    # -- listing ---------------------------------------------------------------------------------

    def list(self) -> Iterator[DocumentRef]:
        return self._walk(None)

    def cursor(self) -> str:
        return time_cursor(self.limits)

    def list_changes(self, since: str) -> Iterator[DocumentRef]:
        """The files whose content or inode changed since the cursor (a copy or a rename sets the change
        time even when it keeps the modified time); still a walk of every folder, but nothing unchanged
        is opened or hashed."""
        return self._walk(int(changed_since(since).timestamp() * 1e9))

    def _walk(self, since_ns: int | None) -> Iterator[DocumentRef]:
        if self.root.is_file():
            if (ref := self._ref(self.root, since_ns)) is not None:
                yield ref
            return
        folders = [self.root]
        while folders:
            folder = folders.pop()
            try:
                with os.scandir(folder) as scan:
                    entries = sorted(scan, key=lambda entry: os.fsencode(entry.name))
            except OSError as exc:
                if folder == self.root:
                    raise ConfigError(f"source {self.source_name!r}: cannot list {folder}: {exc.strerror}") from exc
                yield self._problem(folder, Reason.READ_ERROR, f"cannot list this folder: {exc.strerror}")
                continue
            below: list[Path] = []
            for entry in entries:
                path = Path(entry.path)
                relative = path.relative_to(self.root).as_posix()
                try:
                    real_folder = entry.is_dir(follow_symlinks=False)
                except OSError:
                    real_folder = False
                if real_folder:
                    below.append(path)
                elif self._selected(relative):
                    if (ref := self._ref(path, since_ns)) is not None:
                        yield ref
                elif entry.is_symlink() and not matches(relative, self.exclude) and _links_to_folder(entry):
                    # a folder link is never followed; say so (the globs on its files cannot be known)
                    if _changed(path, since_ns):
                        yield self._problem(path, Reason.REFUSED, "a linked folder (not followed; name its target)")
            folders.extend(reversed(below))

    def _problem(self, path: Path, reason: Reason, message: str, size: int = 0) -> DocumentRef:
        return DocumentRef(
            source=self.source_name,
            uri=path.as_uri(),
            version="unreadable",
            size=size,
            problem=ListingProblem(reason=reason.value, message=f"{message}: {os.fsdecode(path)!r}"),
        )

    def _ref(self, path: Path, since_ns: int | None = None) -> DocumentRef | None:
        """The file's ref; None when it has not changed since `since_ns` (then it is not even opened)."""
        try:
            target, status = self._target(path)
        except _Unreadable as exc:
            return self._problem(path, exc.reason, exc.message, exc.size) if _changed(path, since_ns) else None
        if since_ns is not None:
            changed = max(status.st_mtime_ns, status.st_ctime_ns)
            if target != path:  # a new link to an old file is a change too
                changed = max(changed, _change_time(path))
            if changed < since_ns:
                return None
        sha256: str | None = None
        size = status.st_size
        if size <= self.limits.max_file_bytes:  # a larger file fails as too_large without being hashed
            try:
                digest, size = self._hash(target)
            except _Unreadable as exc:
                return self._problem(path, exc.reason, exc.message, size)
            sha256 = digest if size <= self.limits.max_file_bytes else None
        return DocumentRef(
            source=self.source_name,
            uri=path.as_uri(),
            version=f"mtime:{status.st_mtime_ns}",
            size=size,
            modified_at=datetime.fromtimestamp(status.st_mtime, tz=UTC),
            sha256=sha256,
        )

    def _target(self, path: Path) -> tuple[Path, os.stat_result]:
        """The regular file inside the root that `path` is (or links to), and its status."""
        try:
            status = path.lstat()
        except FileNotFoundError:
            raise _Unreadable(Reason.READ_ERROR, "vanished while the source was listed") from None
        except OSError as exc:
            raise _Unreadable(Reason.READ_ERROR, f"cannot be examined ({exc.strerror})") from None
        target = path
        if stat.S_ISLNK(status.st_mode):
            try:
                target = path.resolve(strict=True)
                status = target.stat()
            except (OSError, RuntimeError):
                raise _Unreadable(Reason.READ_ERROR, "a link whose target does not exist or loops") from None
            if not target.is_relative_to(self.root):
                raise _Unreadable(Reason.REFUSED, f"a link to {os.fsdecode(target)!r}, outside the source's folder")
            if stat.S_ISDIR(status.st_mode):
                raise _Unreadable(Reason.REFUSED, "a linked folder (not followed; name its target)")
        if not stat.S_ISREG(status.st_mode):
            raise _Unreadable(Reason.REFUSED, f"{_kind(status.st_mode)}, not a regular file")
        return target, status

    def _open(self, target: Path) -> int:
        try:
            fd = os.open(target, _OPEN_FLAGS)
        except FileNotFoundError:
            raise _Unreadable(Reason.READ_ERROR, "vanished before it was read") from None
        except OSError as exc:
            raise _Unreadable(Reason.READ_ERROR, f"cannot be opened ({exc.strerror})") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # replaced by something else since it was examined
            os.close(fd)
            raise _Unreadable(Reason.REFUSED, f"{_kind(mode)}, not a regular file")
        return fd

    def _blocks(self, target: Path) -> Iterator[bytes]:
        """The file's bytes, in blocks, up to one byte past the limit (which marks it too large)."""
        fd = self._open(target)
        try:
            left = self.limits.max_file_bytes + 1
            while left > 0:
                try:
                    block = os.read(fd, min(_BLOCK, left))
                except OSError as exc:
                    raise _Unreadable(Reason.READ_ERROR, f"read failed ({exc.strerror})") from None
                if not block:
                    return
                left -= len(block)
                yield block
        finally:
            os.close(fd)

    def _hash(self, target: Path) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0
        for block in self._blocks(target):
            digest.update(block)
            size += len(block)
        return digest.hexdigest(), size

    # -- reading ---------------------------------------------------------------------------------

    def read(self, ref: DocumentRef) -> bytes:
        path = path_of(ref.uri)
        if path != self.root and not path.is_relative_to(self.root):
            raise DocumentError(Reason.REFUSED, f"{ref.uri} is not inside the source's folder {self.root}")
        try:
            target, _ = self._target(path)
            data = b"".join(self._blocks(target))
        except _Unreadable as exc:
            raise DocumentError(exc.reason, f"{exc.message}: {os.fsdecode(path)!r}") from None
        if len(data) > self.limits.max_file_bytes:
            raise DocumentError(
                Reason.TOO_LARGE,
                f"grew past max_file_bytes={self.limits.max_file_bytes} after it was listed: {os.fsdecode(path)!r}",
            )
        return data
