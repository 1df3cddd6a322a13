"""Helpers the tests share (fixtures live in conftest.py): where the documents are, service checks, offline runs.

Documents come from `samples/documents` (the demo's, shared so that no file is kept twice) and, for the few
that only tests need, `tests/fixtures/documents` and `tests/fixtures/nda/documents`. Tests never read the
shared corpus beside the project.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

import pipeline  # noqa: F401  (offline switches first)
from pipeline.land.tables import FindingRow

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "documents"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEST_ONLY = FIXTURES / "documents"
NDA = FIXTURES / "nda"
NETGUARD = Path(__file__).resolve().parent / "netguard"

# The end-to-end run's inputs: readable documents of several formats and every kind of hard case.
E2E_DOCUMENTS = (
    "docling__kvp_data_example.html",
    "docling__ocr_test.pdf",
    "docling__qr_bill_example.jpg",
    "enron__jones-t_inbox_773.eml",
    "nda-52d16f549c8c3f0b2a1ebab40576f4dc.pdf",
    "pdfplumber__empty.pdf",
    "unstructured__empty.txt",
    "unstructured__fake-text-utf-16-be.txt",
    "unstructured__handbook-1p.docx",
    "unstructured__password.pdf",
)

# A small estate for nightly-run tests: two documents that process and one that fails.
NIGHTLY_GOOD = ("unstructured__fake-text-utf-16-be.txt", "docling__kvp_data_example.html")
NIGHTLY_BAD = ("unstructured__empty.txt",)


def document(name: str) -> Path:
    """A test document by its file name: the samples' copy, or the tests' own."""
    for folder in (SAMPLES, TEST_ONLY):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no test document {name!r} in {SAMPLES} or {TEST_ONLY}")


def copy_documents(folder: Path, names: Iterable[str]) -> Path:
    """`folder` (created) holding copies of these documents; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(document(name), folder / name)
    return folder


def nightly_source(tmp_path: Path) -> Path:
    """`tmp_path/in` holding the nightly estate."""
    return copy_documents(tmp_path / "in", NIGHTLY_GOOD + NIGHTLY_BAD)


def nda_document(md5: str) -> Path:
    """One of the three labelled Kleister NDAs of the fixtures, by the MD5 name the data set gives it."""
    own = NDA / "documents" / f"{md5}.pdf"
    return own if own.is_file() else document(f"nda-{md5}.pdf")


def nda_gold(folder: Path) -> Path:
    """`folder` holding the three labelled NDAs as the gold file names them; returns the gold file."""
    labels = NDA / "labels.jsonl"
    for line in labels.read_text(encoding="utf-8").splitlines():
        if line.strip():
            relative = Path(json.loads(line)["file"])
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(nda_document(relative.stem), folder / relative)
    shutil.copy(labels, folder / "labels.jsonl")
    return folder / "labels.jsonl"


def finding_row(
    field: str,
    value: str,
    method: str = "model",
    grounded: bool = True,
    confidence: float | None = 0.8,
    start: int = 0,
    finding_id: str | None = None,
    *,
    rule: str | None = None,
) -> FindingRow:
    """A `FindingRow` as reduce sees it (a rule's when `rule` is named; lineage it does not read is placeholders)."""
    method = "rule" if rule else method
    return FindingRow(
        run_id="r",
        finding_id=finding_id or f"{field}-{value}-{rule or method}-{start}",
        task="t",
        task_version="v",
        field=field,
        item_index=0,
        value=value,
        value_json=json.dumps(value),
        method=method,
        rule=rule,
        grounding_status="exact" if grounded else "ungrounded",
        grounding_score=100.0 if grounded else 0.0,
        confidence=confidence if method == "model" else None,
        evidence_text=value if grounded else None,
        evidence_start=start if grounded else None,
        evidence_end=start + len(value) if grounded else None,
        evidence_page=1 if grounded else None,
        content_sha256="c",
        document_uri="file:///d",
        document_version="1",
        text_sha256="t",
        parser="p",
        parser_version="1",
        chunking="{}",
        schema_sha256="s",
        fingerprint="f",
        created_at=datetime(2026, 12, 2, tzinfo=UTC),
    )


def open_warehouse(data_dir: Path) -> duckdb.DuckDBPyConnection:
    """A data folder's warehouse as a plain DuckDB client opens it (read-only, its views' paths from there)."""
    return duckdb.connect(
        str(data_dir / "warehouse.duckdb"), read_only=True, config={"file_search_path": str(data_dir)}
    )


def require_services() -> bool:
    """Under ASSAY_REQUIRE_SERVICES=1 (CI), a missing system service fails instead of skipping."""
    return os.environ.get("ASSAY_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    if require_services():
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def network_namespace_prefix() -> list[str]:
    """`unshare` into a network namespace with only loopback, when this machine allows it."""
    unshare = shutil.which("unshare")
    ip = shutil.which("ip")
    if not unshare or not ip:
        return []
    probe = subprocess.run([unshare, "-n", ip, "link", "set", "lo", "up"], capture_output=True)
    if probe.returncode != 0:
        return []
    return [unshare, "-n", "sh", "-c", f'{ip} link set lo up && exec "$@"', "netns"]


def offline_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment for a subprocess with outbound connections blocked and logged."""
    log = tmp_path / "netguard.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(NETGUARD), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["ASSAY_NETGUARD_LOG"] = str(log)
    env.pop("PREFECT_API_URL", None)
    # Strip the offline switches so the test proves Assay sets them itself.
    for key in ("DO_NOT_TRACK", "HF_HUB_OFFLINE", "PREFECT_SERVER_ANALYTICS_ENABLED", "SCARF_NO_ANALYTICS"):
        env.pop(key, None)
    return env, log


def assay_command() -> list[str]:
    return [sys.executable, "-m", "assay"]


@dataclass(frozen=True)
class S3Bucket:
    endpoint: str
    client: Any  # a boto3 S3 client (boto3 ships no type information)
    bucket: str

    def keys(self, prefix: str) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def store_settings(self, prefix: str) -> dict[str, str]:
        """The `[lake_store]` / `[lake_mirror]` settings of s3://<bucket>/<prefix> on this endpoint."""
        return {
            "url": f"s3://{self.bucket}/{prefix}",
            "endpoint_url": self.endpoint,
            "access_key_id": "test",
            "secret_access_key": "test",
        }


class FlakyProxy:
    """A TCP proxy on loopback in front of a real server that drops the connections it is told to.

    Fault injection for the connectors' retries: `drop` decides, by the 1-based number of each new
    connection, whether to close it at once (as a reset connection or a restarting server would);
    `stall`, whether to accept it and then never answer (as a hung server or a black-holed route).
    """

    def __init__(
        self, target: tuple[str, int], drop: Callable[[int], bool], stall: Callable[[int], bool] = lambda n: False
    ) -> None:
        import socket
        import threading

        self.target, self.drop, self.stall = target, drop, stall
        self.connections = 0
        self.dropped = 0
        self.stalled: list[Any] = []  # held open, never answered
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            if self.drop(self.connections):
                self.dropped += 1
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()  # an RST, as a dropped connection looks
                continue
            if self.stall(self.connections):
                self.stalled.append(client)
                continue
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                self._threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: Any, sink: Any) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._server.close()
        for client in self.stalled:
            client.close()


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty database on the PostgreSQL `.ci/run` starts, dropped afterwards.

    Skips (fails under ASSAY_REQUIRE_SERVICES=1) when ASSAY_TEST_POSTGRES_URL is not set.
    """
    import uuid

    from sqlalchemy import create_engine, text

    base = os.environ.get("ASSAY_TEST_POSTGRES_URL")
    if not base:
        skip_or_fail("PostgreSQL is not running here (set ASSAY_TEST_POSTGRES_URL; .ci/run starts one)")
    assert base is not None
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def wait_for_port(port: int, what: str, seconds: float = 10.0) -> None:
    """Return once something accepts connections on 127.0.0.1:`port`; fail the test after `seconds`."""
    import socket
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{what} did not start listening on 127.0.0.1:{port}")


def free_port() -> int:
    """A TCP port free on loopback now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class HookCatcher:
    """A webhook receiver on loopback: records the JSON body of every POST (a failure hook's target)."""

    def __init__(self) -> None:
        import http.server
        import threading

        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
