"""Documents that hold other documents: archives (.zip, .tar and its compressed forms) and e-mail.

`expand` opens a container's bytes and returns its members, each to become a
child document with its parent's lineage (pipeline/run/documents.py). An
archive has no text of its own; an e-mail has its message (parsed as usual) and
its attachments as children. Nothing is written to disk: member names are only
names.

Limits hold against decompression bombs and lying headers: the number of
members, the total expanded bytes (counted as read, not as declared), the
compression ratio, and how deeply containers nest. An archive over a limit
fails as a whole with the reason; a member that cannot be read (encrypted, a
link, a device) becomes a child that fails with its own reason, so nothing
inside is dropped unseen.
"""

from __future__ import annotations

import email
import email.policy
import io
import mimetypes
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import PurePosixPath
from typing import IO

from pipeline.core.errors import DocumentError, Reason
from pipeline.core.settings import ContainerSettings

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
MAIL_SUFFIXES = (".eml",)


@dataclass(frozen=True)
class Member:
    """One document inside a container: its path there, and its bytes or why it cannot be read."""

    path: str
    data: bytes = b""
    problem: tuple[Reason, str] | None = None


@dataclass
class Expansion:
    kind: str  # "zip", "tar", "eml"
    members: list[Member] = field(default_factory=list)
    parse_self: bool = False  # the container has text of its own (an e-mail's message)


def is_container(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith(ARCHIVE_SUFFIXES + MAIL_SUFFIXES)


def expand(data: bytes, name: str, limits: ContainerSettings, depth: int = 0) -> Expansion | None:
    """The members of `data` when `name` says it is a container; None when it is not one.

    `depth` is how many containers hold this one; one nested deeper than `limits.max_depth` is refused.
    """
    if not is_container(name):
        return None
    if depth >= limits.max_depth:
        raise DocumentError(
            Reason.REFUSED, f"a container nested {depth} deep (containers.max_depth={limits.max_depth})"
        )
    lowered = name.lower()
    if lowered.endswith(MAIL_SUFFIXES):
        return _mail(data, limits)
    if lowered.endswith(".zip"):
        return _zip(data, limits)
    return _tar(data, limits)


class _Budget:
    """Counts members and expanded bytes against the limits, and the ratio to the container's size."""

    def __init__(self, limits: ContainerSettings, packed: int) -> None:
        self.limits, self.packed = limits, max(packed, 1)
        self.members = 0
        self.expanded = 0

    def member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise DocumentError(Reason.TOO_LARGE, f"more than containers.max_members={self.limits.max_members} members")

    def read(self, reader: IO[bytes]) -> bytes:
        """A member's bytes, read against what is left of the budget (a header's sizes may lie)."""
        left = self.limits.max_total_bytes - self.expanded
        data = reader.read(left + 1) or b""
        self.expanded += len(data)
        if self.expanded > self.limits.max_total_bytes:
            raise DocumentError(
                Reason.TOO_LARGE,
                f"expands to more than containers.max_total_bytes={self.limits.max_total_bytes}",
            )
        if self.expanded > 1_000_000 and self.expanded / self.packed > self.limits.max_ratio:
            raise DocumentError(
                Reason.REFUSED,
                f"expands more than containers.max_ratio={self.limits.max_ratio} times its size (a decompression bomb)",
            )
        return data


def _zip(data: bytes, limits: ContainerSettings) -> Expansion:
    budget = _Budget(limits, len(data))
    expansion = Expansion("zip")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DocumentError(Reason.CORRUPT, f"not a readable zip archive: {exc}", filetype="zip") from None
    seen: set[str] = set()
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            budget.member()
            path = _unique(_clean(info.filename), seen)
            if info.flag_bits & 0x1:
                expansion.members.append(Member(path, problem=(Reason.ENCRYPTED, "an encrypted archive member")))
                continue
            declared_ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > 1_000_000 and declared_ratio > limits.max_ratio:
                raise DocumentError(
                    Reason.REFUSED,
                    f"{path} declares a compression ratio of {declared_ratio:.0f} "
                    f"(containers.max_ratio={limits.max_ratio}: a decompression bomb)",
                )
            try:
                with archive.open(info) as reader:
                    content = budget.read(reader)
            except DocumentError:
                raise
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
                expansion.members.append(Member(path, problem=(Reason.CORRUPT, f"cannot be decompressed: {exc}")))
                continue
            expansion.members.append(Member(path, content))
    return expansion


def _tar(data: bytes, limits: ContainerSettings) -> Expansion:
    budget = _Budget(limits, len(data))
    expansion = Expansion("tar")
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DocumentError(Reason.CORRUPT, f"not a readable tar archive: {exc}", filetype="tar") from None
    seen: set[str] = set()
    with archive:
        try:
            for info in archive:
                if info.isdir():
                    continue
                budget.member()
                path = _unique(_clean(info.name), seen)
                if not info.isreg():
                    what = "a link" if info.issym() or info.islnk() else "not a regular file"
                    expansion.members.append(Member(path, problem=(Reason.REFUSED, f"{what} inside the archive")))
                    continue
                reader = archive.extractfile(info)
                content = budget.read(reader) if reader is not None else b""
                expansion.members.append(Member(path, content))
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DocumentError(Reason.CORRUPT, f"the tar archive is damaged: {exc}", filetype="tar") from None
    return expansion


def _mail(data: bytes, limits: ContainerSettings) -> Expansion:
    """An e-mail's attachments (and attached e-mails, as .eml); its own message is parsed as usual."""
    budget = _Budget(limits, len(data))
    expansion = Expansion("eml", parse_self=True)
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # the default policy makes EmailMessages
    seen: set[str] = set()
    for index, part in enumerate(message.iter_attachments(), start=1):
        budget.member()
        content_type = part.get_content_type()
        name = part.get_filename() or ""
        if content_type == "message/rfc822" and not name:
            name = f"attachment-{index}.eml"
        if not name:
            name = f"attachment-{index}{mimetypes.guess_extension(content_type) or '.bin'}"
        path = _unique(_clean(name), seen)
        try:
            payload = _payload(part)
        except (LookupError, ValueError, AssertionError) as exc:
            expansion.members.append(Member(path, problem=(Reason.CORRUPT, f"the attachment cannot be decoded: {exc}")))
            continue
        expansion.members.append(Member(path, budget.read(io.BytesIO(payload))))
    return expansion


def _payload(part: EmailMessage) -> bytes:
    if part.get_content_type() == "message/rfc822":
        attached = part.get_content()
        return attached.as_bytes() if hasattr(attached, "as_bytes") else str(attached).encode()
    decoded = part.get_payload(decode=True)
    if isinstance(decoded, bytes):
        return decoded
    content = part.get_content()
    return content.encode("utf-8") if isinstance(content, str) else bytes(content)


def _clean(name: str) -> str:
    """A member's name as a relative path (no root, no `..`): it names, it is never written."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("/", "..", ".", "")]
    return "/".join(parts) or "unnamed"


def _unique(path: str, seen: set[str]) -> str:
    candidate, counter = path, 1
    while candidate in seen:
        counter += 1
        stem, dot, suffix = path.rpartition(".")
        candidate = f"{stem}-{counter}.{suffix}" if dot else f"{path}-{counter}"
    seen.add(candidate)
    return candidate
