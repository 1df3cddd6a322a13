"""Documents that hold other documents: archives (.zip, .tar and its compressed forms, .7z) and e-mail.

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
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from py7zr.io import WriterFactory


from pipeline.core.errors import DocumentError, Reason
from pipeline.core.settings import ContainerSettings

ARCHIVE_SUFFIXES = (".zip", ".7z", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
MAIL_SUFFIXES = (".eml",)


@dataclass(frozen=True)
class Member:
    """One document inside a container: its path there, and its bytes or why it cannot be read."""

    path: str
    data: bytes = b""
    problem: tuple[Reason, str] | None = None


@dataclass
class Expansion:
    kind: str  # "zip", "7z", "tar", "eml"
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
    if lowered.endswith(".7z"):
        return _sevenzip(data, limits)
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
        self.count(len(data))
        return data

    def count(self, size: int) -> None:
        """`size` more bytes expanded: past a limit, the whole container fails."""
        self.expanded += size
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


def _sevenzip(data: bytes, limits: ContainerSettings) -> Expansion:
    """A 7-Zip archive (py7zr): its declared sizes checked first, then every byte counted as it expands."""
    import py7zr
    from py7zr.exceptions import ArchiveError, PasswordRequired

    budget = _Budget(limits, len(data))
    expansion = Expansion("7z")
    try:
        archive = py7zr.SevenZipFile(io.BytesIO(data), mode="r")
    except PasswordRequired:
        raise DocumentError(Reason.ENCRYPTED, "a 7z archive whose names are encrypted", filetype="7z") from None
    except (ArchiveError, OSError, ValueError, EOFError, KeyError) as exc:
        raise DocumentError(Reason.CORRUPT, f"not a readable 7z archive: {exc}", filetype="7z") from None
    seen: set[str] = set()
    with archive:
        infos = [info for info in archive.list() if not info.is_directory]
        declared = sum(info.uncompressed for info in infos)
        if declared > limits.max_total_bytes:
            raise DocumentError(
                Reason.TOO_LARGE,
                f"declares {declared} bytes, more than containers.max_total_bytes={limits.max_total_bytes}",
            )
        if declared > 1_000_000 and declared / max(len(data), 1) > limits.max_ratio:
            raise DocumentError(
                Reason.REFUSED,
                f"declares a compression ratio of {declared / max(len(data), 1):.0f} "
                f"(containers.max_ratio={limits.max_ratio}: a decompression bomb)",
            )
        encrypted = archive.needs_password()
        wanted: dict[str, str] = {}
        for info in infos:
            budget.member()
            path = _unique(_clean(info.filename), seen)
            if encrypted:
                expansion.members.append(Member(path, problem=(Reason.ENCRYPTED, "an encrypted archive member")))
            elif info.is_symlink or not info.is_file:
                expansion.members.append(Member(path, problem=(Reason.REFUSED, "a link inside the archive")))
            else:
                wanted[info.filename] = path
        if not wanted:
            return expansion
        factory, products = _counted_factory(budget)
        try:
            archive.extract(targets=list(wanted), factory=factory)
        except DocumentError:
            raise
        except (ArchiveError, OSError, ValueError, EOFError, KeyError, NotImplementedError) as exc:
            raise DocumentError(Reason.CORRUPT, f"the 7z archive is damaged: {exc}", filetype="7z") from None
        for name, path in wanted.items():
            written = products.get(name)
            if written is None:
                expansion.members.append(Member(path, problem=(Reason.CORRUPT, "not found when the archive was read")))
            else:
                expansion.members.append(Member(path, written.getvalue()))
    return expansion


def _counted_factory(budget: _Budget) -> tuple[WriterFactory, dict[str, io.BytesIO]]:
    """Where py7zr writes each member: in memory, every byte counted against the container's budget
    (py7zr imported here: it takes a third of a second, and only a run with a .7z file pays it)."""
    from py7zr.io import Py7zIO
    from py7zr.io import WriterFactory as Base

    products: dict[str, io.BytesIO] = {}

    class Counted(Py7zIO):
        def __init__(self, buffer: io.BytesIO) -> None:
            self.buffer = buffer

        def write(self, s: bytes | bytearray) -> int:
            budget.count(len(s))
            return self.buffer.write(s)

        def read(self, size: int | None = None) -> bytes:
            return self.buffer.read(size)

        def seek(self, offset: int, whence: int = 0) -> int:
            return self.buffer.seek(offset, whence)

        def flush(self) -> None:
            self.buffer.flush()

        def size(self) -> int:
            return len(self.buffer.getbuffer())

    class Factory(Base):
        def create(self, filename: str) -> Py7zIO:
            products[filename] = io.BytesIO()
            return Counted(products[filename])

    return Factory(), products


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
