"""The `smb` connector against a real Samba server on loopback (Debian's samba, which .ci/run installs).

A share read without mounting it: odd names, sub-folders, globs, encryption required; an unchanged
share reads nothing the next night; a changed file is read again; a wrong password stops the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connectors.registry import make_connector, resolve_sources
from pipeline.core.connector import ListsChanges, SourceLimits
from pipeline.core.errors import ConfigError
from pipeline.core.settings import load_settings
from pipeline.run.local import run_locally
from pipeline.run.summary import RunSummary
from tests.jobrunner import NO_MODEL, TEST_TASKS
from tests.support import skip_or_fail, wait_for_port

PASSWORD = "smb-secret-pw-7731"
AGREEMENT = b"This Agreement is governed by the laws of the State of Delaware. Dated 4 March 2026.\n"


@dataclass(frozen=True)
class Share:
    port: int
    folder: Path

    def source(self, **extra: Any) -> dict[str, Any]:
        return {
            "connector": "smb",
            "server": "127.0.0.1",
            "port": self.port,
            "share": "docs",
            "username": "root",
            "password": PASSWORD,
            **extra,
        }


@pytest.fixture
def share() -> Iterator[Share]:
    smbd, smbpasswd = shutil.which("smbd") or "/usr/sbin/smbd", shutil.which("smbpasswd") or ""
    if not Path(smbd).exists() or not smbpasswd:
        skip_or_fail("no SMB server: Samba (Debian's samba) is not installed here")
    if os.geteuid() != 0:
        skip_or_fail("the Samba test server runs as root (as .ci/run does)")
    home = Path(tempfile.mkdtemp(prefix="assay-samba-"))
    for name in ("run", "lock", "state", "cache", "private", "share"):
        (home / name).mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = home / "smb.conf"
    config.write_text(
        f"""[global]
  server role = standalone server
  interfaces = 127.0.0.1
  bind interfaces only = yes
  smb ports = {port}
  pid directory = {home}/run
  lock directory = {home}/lock
  state directory = {home}/state
  cache directory = {home}/cache
  private dir = {home}/private
  ncalrpc dir = {home}/run/ncalrpc
  passdb backend = tdbsam:{home}/private/passdb.tdb
  log file = {home}/log.%m
  disable netbios = yes
  server min protocol = SMB2_10
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
[docs]
  path = {home}/share
  read only = yes
"""
    )
    subprocess.run(
        [smbpasswd, "-c", str(config), "-s", "-a", "root"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        text=True,
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [smbd, "--foreground", "--no-process-group", "-s", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # smbd signals its whole process group when it stops: not ours
    )
    try:
        wait_for_port(port, "smbd")
        yield Share(port, home / "share")
    finally:
        server.terminate()
        server.wait(timeout=20)
        shutil.rmtree(home, ignore_errors=True)


def _run(data_dir: Path, sources: dict[str, dict[str, Any]]) -> RunSummary:
    settings = load_settings(data_dir=data_dir, sources=sources, tasks=NO_MODEL, task_dirs=[TEST_TASKS])
    return run_locally(settings, resolve_sources(list(sources), settings))


def test_an_smb_share_runs_end_to_end_encrypted_and_an_unchanged_night_reads_nothing(
    share: Share, tmp_path: Path
) -> None:
    (share.folder / "Verträge 2026").mkdir()
    (share.folder / "Verträge 2026" / "NDA #4 mit Müller.txt").write_bytes(AGREEMENT + b"4")
    (share.folder / "Verträge 2026" / "draft.tmp").write_bytes(b"scratch")
    (share.folder / "100% final.txt").write_bytes(AGREEMENT + b"final")
    (share.folder / "empty.txt").write_bytes(b"")
    sources = {"share": share.source(exclude=["**/*.tmp"])}

    connector = make_connector("share", sources["share"])
    refs = list(connector.list())
    sessions = [s for c in connector._cache.values() for s in c.session_table.values()]  # type: ignore[attr-defined]
    assert sessions and all(session.encrypt_data for session in sessions)  # SMB 3 encryption on the wire
    assert [ref.name for ref in refs] == ["100% final.txt", "empty.txt", "NDA #4 mit Müller.txt"]
    assert all(ref.uri.startswith("smb://127.0.0.1/docs/") and ref.uri.isascii() for ref in refs)

    first = _run(tmp_path / "data", sources)
    assert first.status == "completed" and first.documents_in == 3
    assert first.processed == 2 and first.document_failures == {"empty_file": 1}

    again = _run(tmp_path / "data", sources)
    assert again.unchanged == 2 and again.processed == 0 and again.stage_seconds.get("parse", 0.0) == 0.0

    time.sleep(0.01)
    (share.folder / "100% final.txt").write_bytes(AGREEMENT + b"amended")
    third = _run(tmp_path / "data", sources)
    assert third.processed == 1 and third.unchanged == 1


def test_an_smb_share_refuses_a_wrong_password(share: Share) -> None:
    with pytest.raises(ConfigError, match="login refused"):
        list(make_connector("share", {**share.source(), "password": "wrong"}).list())


def test_an_smb_cursor_lists_what_was_written_since_and_a_full_listing_the_rest(share: Share) -> None:
    (share.folder / "kept.txt").write_bytes(AGREEMENT + b"kept")
    (share.folder / "moved.txt").write_bytes(AGREEMENT + b"moved")
    connector = make_connector("share", share.source(), SourceLimits(cursor_overlap_s=0))
    assert isinstance(connector, ListsChanges)
    time.sleep(0.05)  # the server's file times come from a coarse clock
    cursor = connector.cursor()
    assert cursor is not None
    time.sleep(0.05)
    assert list(connector.list_changes(cursor)) == []
    (share.folder / "kept.txt").write_bytes(AGREEMENT + b"kept, amended")
    (share.folder / "moved.txt").rename(share.folder / "moved here.txt")
    (share.folder / "new.txt").write_bytes(AGREEMENT + b"new")
    # Samba reports a file's change time as its last-write time, so a renamed file (or one copied in
    # with its old times) is not seen until the next full listing (docs/connectors.md says so)
    assert sorted(ref.name for ref in connector.list_changes(cursor)) == ["kept.txt", "new.txt"]
    assert "moved here.txt" in {ref.name for ref in connector.list()}


def test_an_smb_share_behind_dropped_connections_completes_with_nothing_lost(share: Share, tmp_path: Path) -> None:
    """Fault injection on the wire: the first connection to the real Samba server is reset."""
    from tests.support import FlakyProxy

    for index in range(3):
        (share.folder / f"contract {index}.txt").write_bytes(AGREEMENT + bytes([48 + index]))
    proxy = FlakyProxy(("127.0.0.1", share.port), drop=lambda n: n == 1)
    try:
        summary = _run(tmp_path / "data", {"share": share.source(port=proxy.port)})
    finally:
        proxy.close()
    assert proxy.dropped == 1 and proxy.connections >= 2
    assert summary.status == "completed" and summary.processed == 3 and summary.failed == 0


def test_an_smb_server_that_stops_answering_is_timed_out_and_tried_again(share: Share, tmp_path: Path) -> None:
    """Fault injection on the wire: the first connection is accepted and never answered."""
    from tests.support import FlakyProxy

    (share.folder / "contract.txt").write_bytes(AGREEMENT)
    proxy = FlakyProxy(("127.0.0.1", share.port), drop=lambda n: False, stall=lambda n: n == 1)
    try:
        summary = _run(tmp_path / "data", {"share": share.source(port=proxy.port, timeout_s=2)})
    finally:
        proxy.close()
    assert len(proxy.stalled) == 1 and proxy.connections >= 2
    assert summary.status == "completed" and summary.processed == 1


@pytest.mark.parametrize("step", ["negotiate", "listing", "reading"])
def test_a_socket_closed_under_a_send_is_a_lost_connection_and_tried_again(
    share: Share, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """Fault injection: the send fails with EBADF, as when smbprotocol's receiving thread saw a reset
    and closed the socket first (a race a dropped connection sometimes wins; it once failed CI)."""
    import errno

    from smbprotocol.transport import Tcp

    (share.folder / "contract.txt").write_bytes(AGREEMENT)
    original, sends = Tcp.send, []
    fail_at = {"negotiate": 1, "listing": 5, "reading": 9}[step]  # 1: negotiate; then session, tree, listing, ...

    def send(self: Tcp, header: bytes) -> None:
        sends.append(step)
        if len(sends) == fail_at:
            raise OSError(errno.EBADF, "Bad file descriptor")
        original(self, header)

    monkeypatch.setattr(Tcp, "send", send)
    summary = _run(tmp_path / "data", {"share": share.source()})
    assert len(sends) > fail_at
    assert summary.status == "completed" and summary.processed == 1 and summary.failed == 0
