"""A Windows or Samba file share read directly over SMB 2/3, without mounting it: the `smb` connector.

Walks the share (or a folder in it) in a stable order, a folder's files then its
sub-folders, with `include`/`exclude` globs on the path under the folder. The
version marker is the file's last-write time and size, as the server reports
them while listing: nothing is read to list, and the run takes the content hash
from the state store when the same file was read before at the same version, so
an unchanged share reads nothing the next night. Encryption is required by
default (`encrypt = true`, SMB 3). Links are the server's to resolve (Samba and
Windows keep them inside the share unless configured otherwise).

URIs are `smb://<server>/<share>/<path>` with the path percent-encoded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.base import changed_since, time_cursor
from connectors.globs import selected
from pipeline.core.connector import SourceLimits
from pipeline.core.documents import DocumentRef, ListingProblem
from pipeline.core.errors import ConfigError, DocumentError, Reason, TransientError
from pipeline.core.retry import call_with_retry

_BLOCK = 1 << 20


class SmbConfig(BaseModel):
    """`connector = "smb"`: a folder on an SMB share."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    connector: Literal["smb"] = "smb"
    server: str = Field(description="The file server's host name or address.")
    port: int = Field(default=445, description="SMB port.")
    share: str = Field(description="The share's name.")
    path: str = Field(default="", description="A folder inside the share ('' = the whole share).")
    username: str = Field(description="The account (DOMAIN\\user or user@domain for a domain account).")
    password: SecretStr = Field(description="Its password.")
    encrypt: bool = Field(default=True, description="Require SMB 3 encryption of everything on the wire.")
    include: list[str] = Field(default_factory=lambda: ["**/*"], description="Globs on the path under the folder.")
    exclude: list[str] = Field(default_factory=list, description="Globs of files to leave out.")
    timeout_s: float = Field(default=30.0, gt=0, description="Connecting may take this long (a server that hangs).")


class SmbConnector:
    def __init__(self, source_name: str, config: SmbConfig, limits: SourceLimits | None = None) -> None:
        self.source_name, self.config, self.limits = source_name, config, limits or SourceLimits()
        self._cache: dict[str, Any] = {}  # this connector's own SMB connections (not the process-wide pool)
        self._session = False
        self.folder = config.path.strip("/\\").replace("\\", "/")

    # -- the session -------------------------------------------------------------------------------

    def _kwargs(self) -> dict[str, Any]:
        if not self._session:
            call_with_retry(self._register)
            self._session = True
        return {"port": self.config.port, "connection_cache": self._cache}

    def _register(self) -> None:
        import smbclient
        from smbprotocol.exceptions import SMBAuthenticationError, SMBException

        config = self.config
        try:
            smbclient.register_session(
                config.server,
                username=config.username,
                password=config.password.get_secret_value(),
                port=config.port,
                encrypt=config.encrypt,
                connection_cache=self._cache,
                connection_timeout=max(1, round(config.timeout_s)),
            )
        except SMBAuthenticationError as exc:
            raise ConfigError(f"source {self.source_name!r}: login refused for {config.username}: {exc}") from None
        except SMBException as exc:
            message = str(exc)
            if "LOGON_FAILURE" in message or "ACCESS_DENIED" in message:
                raise ConfigError(f"source {self.source_name!r}: login refused for {config.username}") from None
            raise TransientError(f"source {self.source_name!r}: {message}") from None
        except Exception as exc:
            if not _connection_lost(exc):
                raise
            raise TransientError(f"source {self.source_name!r}: cannot reach {config.server}: {exc}") from None

    def _unc(self, relative: str) -> str:
        parts = [p for p in (self.folder, relative) if p]
        return f"\\\\{self.config.server}\\{self.config.share}" + "".join("\\" + p.replace("/", "\\") for p in parts)

    def _uri(self, relative: str) -> str:
        path = "/".join(p for p in (self.folder, relative) if p)
        return f"smb://{self.config.server}/{quote(self.config.share, safe='')}/{quote(path)}"

    # -- listing -----------------------------------------------------------------------------------

    def list(self) -> Iterator[DocumentRef]:
        return self._walk(None)

    def cursor(self) -> str:
        return time_cursor(self.limits)

    def list_changes(self, since: str) -> Iterator[DocumentRef]:
        """The files written, created or changed (a rename) since the cursor, by the server's times."""
        return self._walk(changed_since(since))

    def _walk(self, since: datetime | None) -> Iterator[DocumentRef]:
        import smbclient

        folders = [""]
        while folders:
            folder = folders.pop()
            try:
                entries = call_with_retry(self._scan, smbclient, folder)
            except OSError as exc:
                if not folder:
                    raise ConfigError(f"source {self.source_name!r}: cannot list {self._unc('')}: {exc}") from None
                yield self._problem(folder, f"cannot list this folder: {exc}")
                continue
            below = []
            for entry in entries:
                relative = f"{folder}/{entry.name}" if folder else entry.name
                if entry.is_dir():
                    below.append(relative)
                elif selected(relative, self.config.include, self.config.exclude):
                    info = entry.smb_info
                    if since is not None and max(info.last_write_time, info.change_time, info.creation_time) < since:
                        continue
                    yield DocumentRef(
                        source=self.source_name,
                        uri=self._uri(relative),
                        version=f"mtime:{info.last_write_time.isoformat()};bytes:{info.end_of_file}",
                        size=int(info.end_of_file),
                        modified_at=info.last_write_time,
                    )
            folders.extend(reversed(below))

    def _scan(self, smbclient: Any, folder: str) -> Sequence[Any]:
        try:  # the session is registered again after a lost connection
            return sorted(smbclient.scandir(self._unc(folder), **self._kwargs()), key=lambda entry: entry.name)
        except Exception as exc:
            if not _connection_lost(exc):
                raise
            raise self._lost(f"listing {self._unc(folder)}", exc) from None

    def _lost(self, what: str, exc: BaseException) -> TransientError:
        """The connection is gone: forget it (the next call connects and logs in again) and say what failed."""
        self._cache.clear()
        self._session = False
        return TransientError(f"{what}: {exc}")

    def _problem(self, relative: str, message: str) -> DocumentRef:
        return DocumentRef(
            source=self.source_name,
            uri=self._uri(relative),
            version="unreadable",
            size=0,
            problem=ListingProblem(reason=Reason.READ_ERROR.value, message=message),
        )

    # -- reading -----------------------------------------------------------------------------------

    def read(self, ref: DocumentRef) -> bytes:
        import smbclient
        from smbprotocol.exceptions import SMBOSError

        url = urlsplit(ref.uri)
        prefix = "/".join(p for p in (quote(self.config.share, safe=""), quote(self.folder)) if p) + "/"
        if url.netloc != self.config.server or not url.path.lstrip("/").startswith(prefix):
            raise DocumentError(Reason.REFUSED, f"{ref.uri} is not inside this source's share and folder")
        relative = unquote(url.path.lstrip("/")[len(prefix) :])
        if ".." in relative.split("/"):
            raise DocumentError(Reason.REFUSED, f"{ref.uri} leaves the source's folder")
        limit = self.limits.max_file_bytes
        try:
            with smbclient.open_file(self._unc(relative), mode="rb", **self._kwargs()) as handle:
                data: bytes = handle.read(limit + 1)
        except Exception as exc:
            if not _connection_lost(exc):
                if isinstance(exc, SMBOSError):  # the server's answer about this file
                    raise DocumentError(Reason.READ_ERROR, f"{ref.uri}: {exc.strerror or exc}") from None
                raise
            raise self._lost(f"reading {ref.uri}", exc) from None
        if len(data) > limit:
            raise DocumentError(Reason.TOO_LARGE, f"{ref.uri} is larger than max_file_bytes={limit}")
        return data


def _connection_lost(exc: BaseException) -> bool:
    """Whether `exc` is the connection failing rather than the server answering: worth a new connection.

    smbprotocol reports a closed connection as `SMBConnectionClosed`, a failed reconnect as
    `ValueError`, and a socket reset or closed under a send as a plain `OSError` (EBADF when its
    receiving thread closed the socket first); `SMBOSError` is an `OSError` too, but it is the
    server's status for a path (not found, access denied), not a lost connection.
    """
    from smbprotocol.exceptions import SMBConnectionClosed, SMBOSError

    if isinstance(exc, SMBOSError):
        return False
    return isinstance(exc, SMBConnectionClosed | ValueError | OSError)
