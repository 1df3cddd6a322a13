"""Mailboxes: IMAP against a real Dovecot on loopback, and mbox / Maildir files (issue #14).

Each message is a document and each attachment a child document with its parent's lineage; an
unchanged mailbox fetches nothing the next night; reading never marks a message seen.
"""

from __future__ import annotations

import imaplib
import mailbox
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connectors.registry import make_connector, resolve_sources
from pipeline.core.connector import ListsChanges
from pipeline.core.errors import ConfigError
from pipeline.core.settings import load_settings
from pipeline.run.local import run_locally
from pipeline.run.summary import RunSummary
from tests.jobrunner import NO_MODEL, TEST_TASKS
from tests.support import skip_or_fail, wait_for_port

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "documents"
WITH_ATTACHMENT = (FIXTURES / "unstructured__fake-email-attachment.eml").read_bytes()
PASSWORD = "imap-secret-pw-0451"


def _message(subject: str) -> bytes:
    return (
        f"From: counsel@example.com\r\nTo: legal@example.com\r\nSubject: {subject}\r\n\r\n"
        "This Agreement is governed by the laws of the State of New York.\r\n"
    ).encode()


def _run(data_dir: Path, sources: dict[str, dict[str, Any]], full_listing: bool = False) -> RunSummary:
    settings = load_settings(data_dir=data_dir, sources=sources, tasks=NO_MODEL, task_dirs=[TEST_TASKS])
    return run_locally(settings, resolve_sources(list(sources), settings), full_listing=full_listing)


@dataclass(frozen=True)
class Imap:
    port: int
    user: str = "assay"

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port)
        client.login(self.user, PASSWORD)
        return client

    def source(self, **extra: Any) -> dict[str, Any]:
        return {
            "connector": "imap",
            "host": "127.0.0.1",
            "port": self.port,
            "security": "none",
            "username": self.user,
            "password": PASSWORD,
            **extra,
        }


@pytest.fixture
def imap() -> Iterator[Imap]:
    """Dovecot (Debian's dovecot-imapd, which .ci/run installs) on a free loopback port, one account."""
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
    if binary is None or os.geteuid() != 0:
        skip_or_fail("no IMAP server: Dovecot (dovecot-imapd) is not installed here, or not run as root")
    assert binary is not None
    home = Path(tempfile.mkdtemp(prefix="assay-dovecot-"))  # readable by Dovecot's own users
    home.chmod(0o755)
    for name in ("run", "state", "mail"):
        (home / name).mkdir()
    (home / "mail").chmod(0o777)
    (home / "users").write_text(f"assay:{{PLAIN}}{PASSWORD}::::::\n")
    (home / "users").chmod(0o644)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (home / "dovecot.conf").write_text(
        f"""protocols = imap
listen = 127.0.0.1
base_dir = {home}/run
state_dir = {home}/state
log_path = {home}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 0
mail_location = maildir:{home}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {home}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={home}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""
    )
    server = subprocess.Popen([binary, "-F", "-c", str(home / "dovecot.conf")], stderr=subprocess.PIPE)
    try:
        wait_for_port(port, "Dovecot")
        yield Imap(port)
    finally:
        server.terminate()
        server.wait(timeout=20)
        shutil.rmtree(home, ignore_errors=True)


def test_an_imap_mailbox_runs_end_to_end_without_marking_mail_seen_and_an_unchanged_night_fetches_nothing(
    imap: Imap, tmp_path: Path
) -> None:
    client = imap.client()
    client.create("Legal")
    client.append("INBOX", None, None, _message("NDA signed"))
    client.append("INBOX", None, None, WITH_ATTACHMENT)
    client.append("Legal", None, None, _message("Governing law"))
    sources = {"mail": imap.source(folders=["INBOX", "Legal"])}

    refs = list(make_connector("mail", sources["mail"]).list())
    assert [ref.name for ref in refs] == ["1.eml", "2.eml", "1.eml"]
    assert [ref.uri.split("/")[3] for ref in refs] == ["INBOX", "INBOX", "Legal"]
    assert all(ref.version.startswith("uidvalidity:") and ref.sha256 is None for ref in refs)

    first = _run(tmp_path / "data", sources)
    assert first.status == "completed" and first.documents_in == 3 and first.children == 1
    assert first.processed == 4 and first.failed == 0
    client.select("INBOX", readonly=True)
    _, flags = client.uid("FETCH", "1:*", "(FLAGS)")
    assert all(b"\\Seen" not in line for line in flags if isinstance(line, bytes))  # read with BODY.PEEK

    again = _run(tmp_path / "data", sources)  # only messages past UIDNEXT are listed: none
    assert again.status == "completed" and again.documents_in == 0 and again.processed == 0
    full = _run(tmp_path / "data", sources, full_listing=True)  # listed, but nothing fetched or parsed
    assert full.unchanged == 3 and full.processed == 0 and full.stage_seconds.get("parse", 0.0) == 0.0

    client.select("INBOX")
    client.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
    client.expunge()
    client.logout()
    third = _run(tmp_path / "data", sources, full_listing=True)  # only a full listing sees a deletion
    assert third.deleted == 1 and third.unchanged == 2


def test_imap_refuses_a_wrong_password_and_clear_text_off_loopback(imap: Imap) -> None:
    with pytest.raises(ConfigError, match="login refused"):
        list(make_connector("mail", {**imap.source(), "password": "wrong"}).list())
    with pytest.raises(ConfigError, match="loopback only"):
        make_connector("mail", {**imap.source(), "host": "mail.example.com"})


def test_mbox_and_maildir_messages_and_attachments_run_end_to_end(tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "archive.mbox")
    for data in (_message("first"), WITH_ATTACHMENT, _message("third")):
        box.add(data)
    box.flush()
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(_message("maildir one"))
    maildir.add_folder("Sent").add(WITH_ATTACHMENT)
    sources = {
        "archive": {"connector": "mbox", "path": str(tmp_path / "archive.mbox")},
        "maildir": {"connector": "maildir", "path": str(tmp_path / "Maildir")},
    }
    summary = _run(tmp_path / "data", sources)
    assert summary.status == "completed" and summary.documents_in == 5 and summary.children == 2
    assert summary.processed == 7

    mbox_refs = list(make_connector("archive", sources["archive"]).list())
    box.remove(next(iter(box.keys())))  # an earlier message deleted: the others keep their URIs
    box.flush()
    box.close()
    after = list(make_connector("archive", sources["archive"]).list())
    assert len(after) == 2 and {ref.uri for ref in after} < {ref.uri for ref in mbox_refs}
    connector = make_connector("archive", sources["archive"])
    read = [connector.read(ref) for ref in after]
    assert any(b"Subject: third" in data for data in read) and not any(b"Subject: first" in data for data in read)


def test_an_imap_source_behind_dropped_connections_completes_with_nothing_lost(imap: Imap, tmp_path: Path) -> None:
    """Fault injection on the wire: the first connection is reset; the connector connects again."""
    from tests.support import FlakyProxy

    client = imap.client()
    for index in range(4):
        client.append("INBOX", None, None, _message(f"message {index}"))
    client.logout()
    proxy = FlakyProxy(("127.0.0.1", imap.port), drop=lambda n: n == 1)
    try:
        summary = _run(tmp_path / "data", {"mail": {**imap.source(), "port": proxy.port}})
    finally:
        proxy.close()
    assert proxy.dropped >= 1
    assert summary.status == "completed" and summary.processed == 4 and summary.failed == 0


def test_an_imap_server_that_stops_answering_is_timed_out_and_tried_again(imap: Imap, tmp_path: Path) -> None:
    """Fault injection on the wire: the first connection is accepted and never answered (a hung server)."""
    from tests.support import FlakyProxy

    client = imap.client()
    client.append("INBOX", None, None, _message("after the stall"))
    client.logout()
    proxy = FlakyProxy(("127.0.0.1", imap.port), drop=lambda n: False, stall=lambda n: n == 1)
    try:
        summary = _run(tmp_path / "data", {"mail": {**imap.source(), "port": proxy.port, "timeout_s": 2}})
    finally:
        proxy.close()
    assert len(proxy.stalled) == 1 and proxy.connections >= 2  # it waited, gave up, connected again
    assert summary.status == "completed" and summary.processed == 1


def test_an_imap_cursor_lists_only_messages_newer_than_uidnext_unless_the_folder_was_recreated(imap: Imap) -> None:
    client = imap.client()
    client.create("Board")
    client.append("Board", None, None, _message("Minutes"))
    connector = make_connector("mail", imap.source(folders=["Board"]))
    assert isinstance(connector, ListsChanges)
    cursor = connector.cursor()
    assert cursor is not None
    assert list(connector.list_changes(cursor)) == []  # nothing new since
    client.append("Board", None, None, _message("Resolution"))
    assert [ref.name for ref in connector.list_changes(cursor)] == ["2.eml"]

    client.delete("Board")  # recreated: a new UIDVALIDITY, every message is new
    client.create("Board")
    client.append("Board", None, None, _message("Minutes again"))
    client.logout()
    assert [ref.name for ref in connector.list_changes(cursor)] == ["1.eml"]
