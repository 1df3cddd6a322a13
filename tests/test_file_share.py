"""The `local` connector on a folder as real shares hold them (issue #14): odd names, links, pipes, races.

Each case was a failure before: percent-encoded names read back undecoded, a dangling link aborted the
whole listing, a pipe hung the run, a link out of the folder was ingested, a growing file was read whole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from assay.cli import cli
from connectors.local import path_of
from connectors.registry import make_connector
from pipeline.core.connector import SourceLimits
from pipeline.core.documents import DocumentRef
from pipeline.core.errors import DocumentError, Reason
from tests.jobrunner import NO_MODEL, run

ODD_NAMES = [
    "contract with spaces.txt",
    "Vertrag für Müller.txt",
    "100% sure.txt",
    "memo #4.txt",
    "naïve café é.txt",  # composed accents
    "tab\tin name.txt",
]
NON_UTF8 = os.fsdecode(b"legacy-\xe9t\xe9.txt")  # a Latin-1 name on a UTF-8 system


def _odd_share(root: Path) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    for index, name in enumerate([*ODD_NAMES, NON_UTF8]):
        data = f"Document {index}: this agreement is governed by the laws of Ruritania.\n".encode()
        (root / name).write_bytes(data)
        contents[name] = data
    return contents


def test_names_with_spaces_accents_percent_hash_and_non_utf8_bytes_list_and_read_back(tmp_path: Path) -> None:
    contents = _odd_share(tmp_path)
    connector = make_connector("share", {"path": str(tmp_path)})
    refs = list(connector.list())
    assert len(refs) == len(contents) and all(ref.problem is None for ref in refs)
    for ref in refs:
        path = path_of(ref.uri)
        assert path.parent == tmp_path
        assert ref.name == os.fsencode(path.name).decode("utf-8", "replace")  # for people: undecodable bytes as �
        assert connector.read(ref) == contents[path.name]
        assert ref.uri.isascii() and " " not in ref.uri  # a standard URI, whatever the name


def _problems(refs: list[DocumentRef]) -> dict[str, tuple[str, str]]:
    return {ref.name: (ref.problem.reason, ref.problem.message) for ref in refs if ref.problem is not None}


def test_links_pipes_and_folders_are_listed_with_a_reason_and_never_followed_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "share", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "real.txt").write_text("inside")
    (outside / "secret.txt").write_text("outside the share")
    (root / "dangling.txt").symlink_to(root / "gone.txt")
    (root / "escape.txt").symlink_to(outside / "secret.txt")
    (root / "zero.bin").symlink_to("/dev/zero")
    (root / "alias.txt").symlink_to(root / "real.txt")
    (root / "linked-folder").symlink_to(outside)
    (root / "sub-again").symlink_to(root / "sub")
    (root / "loop").symlink_to(root / "loop")
    os.mkfifo(root / "pipe.txt")

    connector = make_connector("share", {"path": str(root)})
    refs = list(connector.list())  # returns at all: a pipe or /dev/zero would hang a naive reader
    problems = _problems(refs)
    assert problems["dangling.txt"][0] == Reason.READ_ERROR.value
    assert problems["loop"][0] == Reason.READ_ERROR.value
    assert problems["escape.txt"][0] == Reason.REFUSED.value and "outside the source" in problems["escape.txt"][1]
    assert problems["zero.bin"][0] == Reason.REFUSED.value
    assert problems["linked-folder"][0] == Reason.REFUSED.value and "outside" in problems["linked-folder"][1]
    assert problems["sub-again"][0] == Reason.REFUSED.value and "linked folder" in problems["sub-again"][1]
    assert problems["pipe.txt"] == (
        Reason.REFUSED.value,
        f"a named pipe, not a regular file: {str(root / 'pipe.txt')!r}",
    )
    readable = {ref.name: ref for ref in refs if ref.problem is None}
    assert set(readable) == {"real.txt", "alias.txt"}  # a link inside the share reads its target
    assert connector.read(readable["alias.txt"]) == b"inside"
    assert all(b"outside the share" != connector.read(ref) for ref in readable.values())


def test_a_file_that_vanishes_during_the_listing_is_listed_as_a_read_error(tmp_path: Path) -> None:
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_text(name)
    listing = make_connector("share", {"path": str(tmp_path)}).list()
    first = next(listing)  # the folder has been read; its entries are examined one by one
    (tmp_path / "b.txt").unlink()
    rest = list(listing)
    assert first.name == "a.txt" and [ref.name for ref in rest] == ["b.txt", "c.txt"]
    assert rest[0].problem is not None and rest[0].problem.reason == Reason.READ_ERROR.value
    assert "vanished" in rest[0].problem.message and rest[1].problem is None


def test_a_file_the_service_cannot_open_is_listed_as_a_read_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ok.txt").write_text("ok")
    (tmp_path / "locked.txt").write_text("locked")
    real_open = os.open

    def denied(path: object, flags: int, *args: object) -> int:  # fault injection: tests run as root
        if str(path).endswith("locked.txt"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", denied)
    problems = _problems(list(make_connector("share", {"path": str(tmp_path)}).list()))
    assert problems == {
        "locked.txt": (
            Reason.READ_ERROR.value,
            f"cannot be opened (Permission denied): {str(tmp_path / 'locked.txt')!r}",
        )
    }


def test_reads_are_bounded_and_stay_inside_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "share"
    root.mkdir()
    (root / "small.txt").write_bytes(b"x" * 10)
    (root / "big.txt").write_bytes(b"x" * 100)
    connector = make_connector("share", {"path": str(root)}, SourceLimits(max_file_bytes=50))
    refs = {ref.name: ref for ref in connector.list()}
    assert refs["big.txt"].sha256 is None and refs["big.txt"].size == 100  # not hashed: it fails as too_large

    (root / "small.txt").write_bytes(b"x" * 80)  # grew after it was listed
    with pytest.raises(DocumentError) as grown:
        connector.read(refs["small.txt"])
    assert grown.value.reason is Reason.TOO_LARGE

    (tmp_path / "elsewhere.txt").write_text("not the share's")
    forged = refs["small.txt"].model_copy(update={"uri": (tmp_path / "elsewhere.txt").as_uri()})
    with pytest.raises(DocumentError) as outside:
        connector.read(forged)
    assert outside.value.reason is Reason.REFUSED


@pytest.mark.timeout(120)
def test_a_run_over_a_hostile_share_accounts_for_every_entry(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    _odd_share(share)
    (share / "dangling.txt").symlink_to(share / "gone.txt")
    (share / "escape.txt").symlink_to("/etc/hostname")
    os.mkfifo(share / "pipe.txt")
    summary = run(tmp_path / "data", share, NO_MODEL)
    assert summary.status == "completed"
    assert summary.documents_in == len(ODD_NAMES) + 1 + 3
    assert summary.processed == len(ODD_NAMES) + 1  # every odd name parsed, none "vanished"
    assert summary.document_failures == {"read_error": 1, "refused": 2}

    result = CliRunner().invoke(
        cli,
        [
            "--data-dir",
            str(tmp_path / "data"),
            "query",
            "--format",
            "json",
            "select document_uri as uri, status from documents",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == summary.documents_in
    assert {path_of(row["uri"]).name for row in rows if row["status"] == "processed"} == {*ODD_NAMES, NON_UTF8}

    again = run(tmp_path / "data", share, NO_MODEL)  # the next night: nothing to redo, the refusals stand
    assert again.unchanged == len(ODD_NAMES) + 1 and again.document_failures == {"read_error": 1, "refused": 2}


def test_a_read_that_keeps_failing_transiently_is_recorded_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.local import LocalFolderConnector
    from pipeline.core.errors import TransientError

    share = tmp_path / "share"
    share.mkdir()
    (share / "flaky.txt").write_text("This agreement is governed by the laws of Ruritania.")
    (share / "fine.txt").write_text("This agreement is governed by the laws of Freedonia.")
    real_read = LocalFolderConnector.read
    attempts: list[str] = []

    def flaky(self: LocalFolderConnector, ref: DocumentRef) -> bytes:  # fault injection: a share that keeps timing out
        if ref.name == "flaky.txt":
            attempts.append(ref.uri)
            raise TransientError("timed out")
        return real_read(self, ref)

    monkeypatch.setattr(LocalFolderConnector, "read", flaky)
    summary = run(tmp_path / "data", share, NO_MODEL)
    assert summary.status == "completed" and summary.processed == 1
    assert summary.document_failures == {"read_error": 1} and len(attempts) == 4  # retried, then recorded
    result = CliRunner().invoke(
        cli, ["--data-dir", str(tmp_path / "data"), "query", "--format", "json", "select message from failures"]
    )
    assert json.loads(result.output) == [{"message": "gave up after 4 attempts: timed out"}]
