"""Mail kept in files: an mbox file or a Maildir folder (the `mbox` and `maildir` connectors).

Each message is one document, named `<key>.eml`, its bytes the message as
stored; the run opens it as an e-mail, so its attachments become child
documents (pipeline/parse/containers.py). A Maildir message's key is its
unique file name (stable when its flags change); an mbox has no stable keys (a
message's position moves when an earlier one is deleted), so there the key is
the start of the message's SHA-256. Listing hashes each message.
"""

from __future__ import annotations

import hashlib
import mailbox
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from pipeline.core.connector import SourceLimits
from pipeline.core.documents import DocumentRef
from pipeline.core.errors import ConfigError, DocumentError, Reason


class MboxConfig(BaseModel):
    """`connector = "mbox"`: one mbox file."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    connector: Literal["mbox"] = "mbox"
    path: str = Field(description="The mbox file.")


class MaildirConfig(BaseModel):
    """`connector = "maildir"`: a Maildir folder (its `new` and `cur` messages; sub-folders with `folders`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    connector: Literal["maildir"] = "maildir"
    path: str = Field(description="The Maildir folder (holding cur/, new/, tmp/).")
    folders: bool = Field(default=True, description="Also the Maildir++ sub-folders (.Sent, .Archive, ...).")


class _MailConnector:
    """What mbox and Maildir share: URIs `mailbox://<source>/<folder>/<key>.eml`, reads by key."""

    source_name: str
    limits: SourceLimits
    _open: dict[str, mailbox.Mailbox[mailbox.Message]]  # the folders reads use, opened once (a folder's table
    # of contents is read when it is opened: a mailbox opened per read costs the whole folder each time)

    def _boxes(self) -> Iterator[tuple[str, mailbox.Mailbox[mailbox.Message]]]:
        raise NotImplementedError

    def _folder(self, name: str, fresh: bool = False) -> mailbox.Mailbox[mailbox.Message] | None:
        if fresh or name not in self._open:
            self._open = dict(self._boxes())
        return self._open.get(name)

    def _name(self, box_key: str, data: bytes) -> str:
        """The message's name in its URI."""
        return box_key

    def _find(self, folder: str, name: str) -> bytes:
        box = self._folder(folder)
        if box is None:
            raise KeyError(folder)
        return box.get_bytes(name)

    def _uri(self, folder: str, key: str) -> str:
        return f"mailbox://{quote(self.source_name, safe='')}/{quote(folder, safe='')}/{quote(key, safe='')}.eml"

    def list(self) -> Iterator[DocumentRef]:
        for folder, box in self._boxes():
            seen: set[str] = set()
            for key in sorted(box.keys(), key=str):
                try:
                    data = box.get_bytes(key)
                except (KeyError, OSError):  # removed since the folder was read
                    continue
                name = self._name(str(key), data)
                if name in seen:  # the same message twice in one mbox: one document, the other a duplicate
                    continue
                seen.add(name)
                yield DocumentRef(
                    source=self.source_name,
                    uri=self._uri(folder, name),
                    version=f"message:{name};bytes:{len(data)}",
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                )

    def read(self, ref: DocumentRef) -> bytes:
        parts = urlsplit(ref.uri).path.strip("/").split("/")
        if urlsplit(ref.uri).netloc != quote(self.source_name, safe="") or len(parts) != 2:
            raise DocumentError(Reason.REFUSED, f"{ref.uri} is not a message of source {self.source_name!r}")
        folder, key = unquote(parts[0]), unquote(parts[1]).removesuffix(".eml")
        try:
            data = self._find(folder, key)
        except KeyError:
            raise DocumentError(Reason.READ_ERROR, f"the message or its folder is gone: {ref.uri}") from None
        if len(data) > self.limits.max_file_bytes:
            raise DocumentError(Reason.TOO_LARGE, f"{len(data)} bytes exceeds max_file_bytes")
        return data


class MboxConnector(_MailConnector):
    def __init__(self, source_name: str, config: MboxConfig, limits: SourceLimits | None = None) -> None:
        self.source_name, self.config, self.limits = source_name, config, limits or SourceLimits()
        self.path = Path(config.path).expanduser().resolve()
        self._index: dict[str, str] = {}
        self._open = {}
        if not self.path.is_file():
            raise ConfigError(f"source {source_name!r}: no mbox file at {self.path}")

    def _name(self, box_key: str, data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:24]

    def _find(self, folder: str, name: str) -> bytes:
        """A message by its name: one pass over the file builds the index the run's later reads use.

        If the file changed since (the indexed message is not the one named), it is opened and indexed again.
        """
        for fresh in (False, True):
            box = self._folder(folder, fresh)
            if box is None:
                break
            if fresh or name not in self._index:
                self._index = {self._name(str(key), box.get_bytes(key)): key for key in box.keys()}
            if name in self._index and self._name("", data := box.get_bytes(self._index[name])) == name:
                return data
        raise KeyError(name)

    def _boxes(self) -> Iterator[tuple[str, mailbox.Mailbox[mailbox.Message]]]:
        yield "inbox", mailbox.mbox(self.path, create=False)  # read only; its file closes with the object


class MaildirConnector(_MailConnector):
    def __init__(self, source_name: str, config: MaildirConfig, limits: SourceLimits | None = None) -> None:
        self.source_name, self.config, self.limits = source_name, config, limits or SourceLimits()
        self.path = Path(config.path).expanduser().resolve()
        self._open = {}
        if not (self.path / "cur").is_dir():
            raise ConfigError(f"source {source_name!r}: {self.path} is not a Maildir (no cur/ folder)")

    def _boxes(self) -> Iterator[tuple[str, mailbox.Mailbox[mailbox.Message]]]:
        root = mailbox.Maildir(os.fspath(self.path), factory=None, create=False)
        yield "inbox", root
        if self.config.folders:
            for name in sorted(root.list_folders()):
                yield name, root.get_folder(name)
