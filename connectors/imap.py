"""A mailbox on an IMAP server (Exchange, Dovecot, Gmail with an app password): the `imap` connector.

Each message of the named folders is one document, `<uid>.eml`; the run opens it
as an e-mail, so its attachments become child documents. A message on an IMAP
server never changes under its UID, so the version marker is the folder's
UIDVALIDITY and the UID: an unchanged mailbox is listed (UIDs and sizes, one
request per folder) and nothing is fetched. Messages are fetched with
`BODY.PEEK[]`, so reading never marks them seen. The connection is TLS
(`security = "tls"`, the default) or STARTTLS; `"none"` is for a server on
loopback only. Lost connections and timeouts are transient (the run retries);
a refused login stops the run before anything is planned.
"""

from __future__ import annotations

import imaplib
import json
import re
import ssl
from collections.abc import Iterator, Sequence
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pipeline.core.connector import SourceLimits
from pipeline.core.documents import DocumentRef
from pipeline.core.errors import ConfigError, DocumentError, Reason, TransientError
from pipeline.core.retry import call_with_retry

_FETCH_SIZE = re.compile(rb"UID (\d+) RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+) UID (\d+)")
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class ImapConfig(BaseModel):
    """`connector = "imap"`: folders of one account on an IMAP server."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    connector: Literal["imap"] = "imap"
    host: str = Field(description="The IMAP server.")
    port: int | None = Field(default=None, description="Default: 993 with tls, else 143.")
    security: Literal["tls", "starttls", "none"] = Field(default="tls", description="none: loopback only.")
    username: str = Field(description="The account.")
    password: SecretStr = Field(description="Its password (or app password).")
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], description="Folders to read.")
    timeout_s: float = Field(default=60.0, gt=0, description="Socket timeout of each request.")


class ImapConnector:
    """URIs `imap://<user>@<host>/<folder>/<uidvalidity>/<uid>.eml` (the name says it is an e-mail)."""

    def __init__(self, source_name: str, config: ImapConfig, limits: SourceLimits | None = None) -> None:
        self.source_name, self.config, self.limits = source_name, config, limits or SourceLimits()
        if config.security == "none" and config.host not in LOOPBACK:
            raise ConfigError(f"source {source_name!r}: security = 'none' sends the password in clear; loopback only")
        self._connection: imaplib.IMAP4 | None = None

    # -- the session -------------------------------------------------------------------------------

    def _connect(self) -> imaplib.IMAP4:
        config = self.config
        try:
            if config.security == "tls":
                client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    config.host, config.port or 993, ssl_context=ssl.create_default_context(), timeout=config.timeout_s
                )
            else:
                client = imaplib.IMAP4(config.host, config.port or 143, timeout=config.timeout_s)
                if config.security == "starttls":
                    client.starttls(ssl.create_default_context())
        except (OSError, imaplib.IMAP4.error) as exc:
            raise TransientError(f"source {self.source_name!r}: cannot reach {config.host}: {exc}") from None
        try:
            client.login(config.username, config.password.get_secret_value())
        except imaplib.IMAP4.error as exc:
            raise ConfigError(f"source {self.source_name!r}: login refused for {config.username}: {exc}") from None
        return client

    def _client(self) -> imaplib.IMAP4:
        if self._connection is None:
            self._connection = call_with_retry(self._connect)
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.logout()
            except (OSError, imaplib.IMAP4.error):
                pass
            self._connection = None

    def _select(self, client: imaplib.IMAP4, folder: str) -> str:
        status, _ = client.select(_quoted(folder), readonly=True)
        if status != "OK":
            raise ConfigError(f"source {self.source_name!r}: no folder {folder!r}")
        _, values = client.response("UIDVALIDITY")
        return values[0].decode() if values and isinstance(values[0], bytes) else "0"

    # -- listing and reading -----------------------------------------------------------------------

    def _uri(self, folder: str, validity: str, uid: str) -> str:
        user = quote(self.config.username, safe="")
        return f"imap://{user}@{self.config.host}/{quote(folder, safe='')}/{validity}/{uid}.eml"

    def list(self) -> Iterator[DocumentRef]:
        """Each folder's UIDs (one request), then their sizes 500 at a time; each request retried on its own."""
        for folder in self.config.folders:
            yield from self._folder(folder, None)

    def cursor(self) -> str:
        """Each folder's UIDVALIDITY and UIDNEXT: messages never change under a UID, so the messages at
        or past UIDNEXT are all that a later listing needs (unless the folder was recreated)."""
        return json.dumps({folder: call_with_retry(self._next_uid, folder) for folder in self.config.folders})

    def list_changes(self, since: str) -> Iterator[DocumentRef]:
        try:
            saved = json.loads(since)
        except ValueError:
            raise ConfigError(f"not a listing cursor of the imap connector: {since!r}") from None
        for folder in self.config.folders:
            yield from self._folder(folder, saved.get(folder))

    def _next_uid(self, folder: str) -> tuple[str, str]:
        try:
            status, data = self._client().status(_quoted(folder), "(UIDVALIDITY UIDNEXT)")
        except (OSError, imaplib.IMAP4.abort) as exc:
            self._drop()
            raise TransientError(f"source {self.source_name!r}: {folder}: {exc}") from None
        line = data[0] if status == "OK" and data and isinstance(data[0], bytes) else b""
        validity, next_uid = re.search(rb"UIDVALIDITY (\d+)", line), re.search(rb"UIDNEXT (\d+)", line)
        if validity is None or next_uid is None:
            raise ConfigError(f"source {self.source_name!r}: no folder {folder!r} (STATUS: {line[:200]!r})")
        return validity.group(1).decode(), next_uid.group(1).decode()

    def _folder(self, folder: str, since: Sequence[str] | None) -> Iterator[DocumentRef]:
        """The folder's messages; with `since` ([UIDVALIDITY, UIDNEXT] of a cursor) only the newer ones,
        unless the folder was recreated since (a new UIDVALIDITY: every message is new)."""
        validity, uids = call_with_retry(self._uids, folder)
        if since is not None and since[0] == validity:
            uids = [uid for uid in uids if int(uid) >= int(since[1])]
        for start in range(0, len(uids), 500):
            sizes = call_with_retry(self._sizes, folder, validity, uids[start : start + 500])
            for uid, size in sorted(sizes, key=lambda pair: int(pair[0])):
                yield DocumentRef(
                    source=self.source_name,
                    uri=self._uri(folder, validity, uid),
                    version=f"uidvalidity:{validity};uid:{uid}",
                    size=size,
                )

    def _uids(self, folder: str) -> tuple[str, Sequence[bytes]]:
        try:
            client = self._client()
            validity = self._select(client, folder)
            status, data = client.uid("SEARCH", "ALL")
        except (OSError, imaplib.IMAP4.abort) as exc:
            self._drop()
            raise TransientError(f"source {self.source_name!r}: listing {folder} failed: {exc}") from None
        return validity, (data[0].split() if status == "OK" and data and data[0] else [])

    def _sizes(self, folder: str, validity: str, uids: Sequence[bytes]) -> tuple[tuple[str, int], ...]:
        try:
            client = self._client()
            if self._select(client, folder) != validity:
                raise ConfigError(f"source {self.source_name!r}: {folder} was recreated while it was listed")
            _, response = client.uid("FETCH", b",".join(uids).decode(), "(RFC822.SIZE)")
        except (OSError, imaplib.IMAP4.abort) as exc:
            self._drop()
            raise TransientError(f"source {self.source_name!r}: listing {folder} failed: {exc}") from None
        return tuple(_sizes(response))

    def read(self, ref: DocumentRef) -> bytes:
        folder, validity, uid = _parts(ref.uri)
        if urlsplit(ref.uri).netloc != f"{quote(self.config.username, safe='')}@{self.config.host}":
            raise DocumentError(Reason.REFUSED, f"{ref.uri} is not a message of source {self.source_name!r}")
        if ref.size > self.limits.max_file_bytes:
            raise DocumentError(Reason.TOO_LARGE, f"{ref.size} bytes exceeds max_file_bytes")
        try:
            client = self._client()
            if self._select(client, folder) != validity:
                raise DocumentError(Reason.READ_ERROR, f"the folder was recreated (UIDVALIDITY changed): {ref.uri}")
            _, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
        except (OSError, imaplib.IMAP4.abort) as exc:
            self._drop()
            raise TransientError(f"reading {ref.uri}: {exc}") from None
        for item in data or []:
            if isinstance(item, tuple) and len(item) == 2:
                return bytes(item[1])
        raise DocumentError(Reason.READ_ERROR, f"the message is gone: {ref.uri}")


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sizes(response: list[object]) -> Iterator[tuple[str, int]]:
    for item in response:
        line = item[0] if isinstance(item, tuple) else item
        if isinstance(line, bytes) and (match := _FETCH_SIZE.search(line)):
            uid = match.group(1) or match.group(4)
            size = match.group(2) or match.group(3)
            yield uid.decode(), int(size)


def _parts(uri: str) -> tuple[str, str, str]:
    path = urlsplit(uri).path.lstrip("/")
    match = re.fullmatch(r"([^/]*)/(\d+)/(\d+)\.eml", path)
    if match is None:
        raise DocumentError(Reason.REFUSED, f"not an IMAP message URI: {uri}")
    return unquote(match.group(1)), match.group(2), match.group(3)
