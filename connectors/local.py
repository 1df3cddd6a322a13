"""Local (or mounted file-share) folder connector."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.core.documents import DocumentRef
from pipeline.core.errors import ConfigError, DocumentError, Reason
from pipeline.core.hashing import sha256_file


class LocalFolderConfig(BaseModel):
    """`connector = "local"`: a folder (or one file) on this machine or a mounted share."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    connector: Literal["local"] = "local"
    path: str = Field(description="The folder (or file) to read, absolute or relative to the working directory.")
    include: list[str] = Field(default_factory=lambda: ["**/*"], description="Globs on the path under the folder.")
    exclude: list[str] = Field(default_factory=list, description="Globs of files to leave out.")


class LocalFolderConnector:
    """Walks a folder recursively; `include`/`exclude` are globs on the path relative to the root.

    Each ref carries the file's URI (`file://` absolute path), size, modified
    time (also its version marker) and the SHA-256 of its bytes.
    """

    def __init__(self, source_name: str, config: LocalFolderConfig) -> None:
        self.source_name = source_name
        self.config = config
        self.root = Path(config.path).expanduser().resolve()
        self.include = config.include or ["**/*"]
        self.exclude = config.exclude
        if not self.root.exists():
            raise ConfigError(f"source {source_name!r}: path does not exist: {self.root}")

    def _selected(self, relative: str) -> bool:
        def match(patterns: list[str]) -> bool:
            return any(
                fnmatch.fnmatch(relative, p) or (p.startswith("**/") and fnmatch.fnmatch(relative, p[3:]))
                for p in patterns
            )

        return match(self.include) and not match(self.exclude)

    def _files(self) -> Iterator[Path]:
        if self.root.is_file():
            yield self.root
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for filename in sorted(filenames):
                path = Path(dirpath) / filename
                if self._selected(path.relative_to(self.root).as_posix()):
                    yield path

    def list(self) -> Iterator[DocumentRef]:
        for path in self._files():
            stat = path.stat()
            modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
            yield DocumentRef(
                source=self.source_name,
                uri=path.as_uri(),
                version=f"mtime:{stat.st_mtime_ns}",
                size=stat.st_size,
                modified_at=modified,
                sha256=sha256_file(path),
            )

    def read(self, ref: DocumentRef) -> bytes:
        path = Path(ref.uri.removeprefix("file://"))
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise DocumentError(Reason.READ_ERROR, f"file vanished before it was read: {path}") from exc
        except PermissionError as exc:
            raise DocumentError(Reason.READ_ERROR, f"no permission to read {path}") from exc
