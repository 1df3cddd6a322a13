"""Archives and e-mails: their members become child documents with their parent's lineage (issue #14).

Limits hold against bombs: too many members, too many bytes, too high a ratio, nesting too deep. A
member that cannot be read becomes a child that fails with its reason; nothing inside is dropped unseen.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from assay.cli import cli
from pipeline.core.errors import DocumentError, Reason
from pipeline.core.settings import ContainerSettings
from pipeline.parse.containers import expand
from tests.jobrunner import NO_MODEL, run

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "documents"
AGREEMENT = "This Agreement is governed by the laws of the State of Delaware, dated 4 March 2026.\n"
LIMITS = ContainerSettings()


def _zip(members: dict[str, bytes], encrypted: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        offsets = {info.filename: info.header_offset for info in archive.infolist()}
    raw = bytearray(buffer.getvalue())
    for name in encrypted:  # set the "encrypted" flag as an encrypting tool would (zipfile cannot encrypt)
        raw[offsets[name] + 6] |= 0x1  # the member's local header
        central = raw.find(b"PK\x01\x02")
        while central != -1:
            length = int.from_bytes(raw[central + 28 : central + 30], "little")
            if raw[central + 46 : central + 46 + length] == name.encode():
                raw[central + 8] |= 0x1  # ... and its central directory entry
            central = raw.find(b"PK\x01\x02", central + 4)
    return bytes(raw)


def _tar_gz(members: dict[str, bytes], links: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return buffer.getvalue()


def _7z(members: dict[str, bytes], password: str | None = None, header_encryption: bool = False) -> bytes:
    import py7zr

    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w", password=password, header_encryption=header_encryption) as archive:
        for name, data in members.items():
            archive.writestr(data, name)
    return buffer.getvalue()


def test_a_7z_gives_its_members_and_says_what_it_cannot_read() -> None:
    expansion = expand(_7z({"Verträge/NDA 1.txt": b"one", "two.txt": b"two"}), "Akten 2026.7z", LIMITS)
    assert expansion is not None and expansion.kind == "7z"
    assert {m.path: m.data for m in expansion.members} == {"Verträge/NDA 1.txt": b"one", "two.txt": b"two"}

    locked = expand(_7z({"a.txt": b"secret"}, password="pw"), "locked.7z", LIMITS)
    assert locked is not None and [(m.path, m.problem) for m in locked.members] == [
        ("a.txt", (Reason.ENCRYPTED, "an encrypted archive member"))
    ]
    with pytest.raises(DocumentError) as hidden:  # even the names are encrypted
        expand(_7z({"a.txt": b"secret"}, password="pw", header_encryption=True), "hidden.7z", LIMITS)
    assert hidden.value.reason == Reason.ENCRYPTED


def test_a_7z_bomb_is_refused_before_and_while_it_expands() -> None:
    zeros = _7z({"zeros.bin": b"\0" * 20_000_000})
    with pytest.raises(DocumentError, match="decompression bomb") as declared:
        expand(zeros, "zeros.7z", LIMITS)
    assert declared.value.reason == Reason.REFUSED
    with pytest.raises(DocumentError, match="max_total_bytes") as total:
        expand(_7z({"a.txt": b"a" * 5000}), "a.7z", ContainerSettings(max_total_bytes=1000))
    assert total.value.reason == Reason.TOO_LARGE
    with pytest.raises(DocumentError, match="not a readable 7z") as damaged:
        expand(b"7z\xbc\xaf\x27\x1c garbage", "broken.7z", LIMITS)
    assert damaged.value.reason == Reason.CORRUPT


def test_a_zip_gives_its_members_and_names_what_it_cannot_read() -> None:
    data = _zip(
        {"a.txt": b"one", "deep/b.txt": b"two", "../../etc/evil.txt": b"three", "secret.txt": b"x"},
        encrypted=("secret.txt",),
    )
    expansion = expand(data, "Bundle.ZIP", LIMITS)
    assert expansion is not None and expansion.kind == "zip" and not expansion.parse_self
    members = {m.path: m for m in expansion.members}
    assert members["a.txt"].data == b"one" and members["deep/b.txt"].data == b"two"
    assert members["etc/evil.txt"].data == b"three"  # a name, never a path written anywhere
    assert members["secret.txt"].problem == (Reason.ENCRYPTED, "an encrypted archive member")
    assert expand(b"%PDF-1.4", "contract.pdf", LIMITS) is None  # not a container
    assert expand(_zip({"word/document.xml": b"<w/>"}), "memo.docx", LIMITS) is None  # OOXML is a document


def test_a_tar_gz_refuses_links_inside_it() -> None:
    expansion = expand(_tar_gz({"x.txt": b"ex"}, {"link.txt": "/etc/passwd"}), "set.tar.gz", LIMITS)
    assert expansion is not None
    assert [(m.path, m.data, m.problem) for m in expansion.members] == [
        ("x.txt", b"ex", None),
        ("link.txt", b"", (Reason.REFUSED, "a link inside the archive")),
    ]


@pytest.mark.parametrize(
    ("data", "limits", "reason", "words"),
    [
        (_zip({"zeros.bin": b"\0" * 20_000_000}), LIMITS, Reason.REFUSED, "decompression bomb"),
        (
            _zip({f"{i}.txt": b"x" for i in range(11)}),
            ContainerSettings(max_members=10),
            Reason.TOO_LARGE,
            "max_members",
        ),
        (
            _zip({"a.txt": b"a" * 600, "b.txt": b"b" * 600}),
            ContainerSettings(max_total_bytes=1000),
            Reason.TOO_LARGE,
            "max_total_bytes",
        ),
        (b"PK\x03\x04 not really a zip", LIMITS, Reason.CORRUPT, "not a readable zip"),
        (b"\x1f\x8b garbage", LIMITS, Reason.CORRUPT, "tar"),
    ],
    ids=["ratio", "members", "bytes", "corrupt-zip", "corrupt-tar"],
)
def test_a_container_over_a_limit_or_damaged_fails_with_its_reason(
    data: bytes, limits: ContainerSettings, reason: Reason, words: str
) -> None:
    name = "bomb.tar.gz" if data.startswith(b"\x1f\x8b") else "bomb.zip"
    with pytest.raises(DocumentError) as failed:
        expand(data, name, limits)
    assert failed.value.reason is reason and words in str(failed.value)


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    with pytest.raises(DocumentError) as failed:
        expand(_zip({"a.txt": b"a"}), "inner.zip", ContainerSettings(max_depth=2), depth=2)
    assert failed.value.reason is Reason.REFUSED and "max_depth=2" in str(failed.value)


def test_an_e_mail_keeps_its_message_and_gives_its_attachments() -> None:
    expansion = expand((FIXTURES / "unstructured__fake-email-attachment.eml").read_bytes(), "mail.eml", LIMITS)
    assert expansion is not None and expansion.parse_self  # the message itself is parsed as usual
    assert [m.path for m in expansion.members] == ["fake-attachment.txt"]
    assert expansion.members[0].data.strip() == b"Hey this is a fake attachment!"


def _rows(data_dir: Path, sql: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "query", "--format", "json", sql])
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


def test_a_run_accounts_for_every_member_with_its_parent_and_an_unchanged_archive_is_not_opened_again(
    tmp_path: Path,
) -> None:
    source = tmp_path / "share"
    source.mkdir()
    inner = _zip({"c.txt": AGREEMENT.encode() + b"inner"})
    (source / "bundle 2026.zip").write_bytes(
        _zip(
            {
                "a.txt": AGREEMENT.encode() + b"a",
                "b/notes.html": f"<p>{AGREEMENT}</p>".encode(),
                "inner.zip": inner,
                "locked.txt": b"x",
                "empty.txt": b"",
            },
            encrypted=("locked.txt",),
        )
    )
    (source / "mail.eml").write_bytes((FIXTURES / "unstructured__fake-email-attachment.eml").read_bytes())
    (source / "Akten.7z").write_bytes(_7z({"Verträge/NDA.txt": AGREEMENT.encode() + b"7z"}))
    summary = run(tmp_path / "data", source, NO_MODEL)
    assert summary.status == "completed" and summary.documents_in == 3
    assert summary.children == 5 + 1 + 1 + 1  # the zip's five, the inner zip's one, the e-mail's, the 7z's
    assert summary.processed + summary.failed + summary.skipped == 3 + 8
    assert summary.document_failures == {"encrypted": 1, "empty_file": 1}

    rows = _rows(tmp_path / "data", "select document_uri, parent_uri, status, reason from documents")
    by_uri = {row["document_uri"]: row for row in rows}
    bundle = (source / "bundle 2026.zip").as_uri()
    nested = f"{bundle}!/inner.zip!/c.txt"
    assert by_uri[nested]["parent_uri"] == f"{bundle}!/inner.zip" and by_uri[nested]["status"] == "processed"
    assert by_uri[f"{bundle}!/b/notes.html"]["parent_uri"] == bundle
    assert by_uri[f"{bundle}!/locked.txt"]["reason"] == "encrypted"
    assert by_uri[f"{(source / 'mail.eml').as_uri()}!/fake-attachment.txt"]["status"] == "processed"
    assert by_uri[bundle]["status"] == "processed" and by_uri[bundle]["parent_uri"] is None
    seven = (source / "Akten.7z").as_uri()
    assert by_uri[f"{seven}!/Vertr%C3%A4ge/NDA.txt"]["status"] == "processed"
    runs = _rows(tmp_path / "data", "select documents_in, documents_children from runs")
    assert runs == [{"documents_in": 3, "documents_children": 8}]

    again = run(tmp_path / "data", source, NO_MODEL, full_listing=True)  # nothing changed: not opened again
    assert again.status == "completed" and again.children == 0 and again.unchanged == 3
