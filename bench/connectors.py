"""Connector benchmark: listing and reading throughput, and the cost of an unchanged nightly listing.

    .venv/bin/python bench/connectors.py                        # 100,000 objects and rows
    .venv/bin/python bench/connectors.py --objects 20000        # quicker
    ASSAY_TEST_POSTGRES_URL=postgresql+psycopg://... .venv/bin/python bench/connectors.py   # with PostgreSQL

Each part runs against a real server on loopback: moto's S3 server (in this process's threads, as the
tests use it), the PostgreSQL that .ci/run starts (skipped when ASSAY_TEST_POSTGRES_URL is unset), and
a folder on the local disk. Side by side in one run, because these machines are shared and noisy:

1. Reading: documents/s and MB/s through each connector's `read` (1,000 documents of 20 KB).
2. An unchanged night at N objects / rows: the server's own listing (boto3's paginator; a plain
   SELECT of ids and versions) beside the connector's listing plus the run's lookup of every
   listed version in the state store (`known_contents`, what lets a run skip reading). Printed:
   the extra milliseconds per object beyond the server's own listing (target <= 1 ms), and the peak
   of Python's traced memory at N/4 and N (target: flat, the ratio near 1).
3. The same unchanged night listed only for what changed since a cursor (`list_changes`, what a
   night does between weekly full listings), beside the full night: seconds, documents listed, and
   how many times faster.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pipeline  # noqa: F401  (offline switches first)
from connectors.registry import make_connector
from pipeline.core.connector import Connector, ListsChanges, SourceLimits
from pipeline.core.documents import DocumentRef
from pipeline.state.store import StateStore

BODY = b"This Agreement is governed by the laws of the State of Delaware. " * 310  # ~20 KB


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def timed_and_traced(fn: Callable[[], Any]) -> tuple[float, int]:
    """Seconds of `fn` (untraced), then the peak of Python's allocations in a second, traced pass."""
    seconds, _ = timed(fn)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak


def unchanged_night(connector: Connector, state: StateStore, source: str) -> int:
    """List, and look every listed version up in the state store in batches, as a run's shards do."""
    count, batch = 0, {}
    for ref in connector.list():
        batch[ref.uri] = ref.version
        count += 1
        if len(batch) == 500:
            state.known_contents(source, batch)
            batch = {}
    if batch:
        state.known_contents(source, batch)
    return count


def remember(state: StateStore, refs: Iterator[DocumentRef]) -> None:
    """What a first night leaves: every document seen, with its content hash."""
    rows = [(ref.source, ref.uri, ref.version, "0" * 64, ref.size, None, None) for ref in refs]
    state.record_seen("first-night", rows)


def read_throughput(name: str, connector: Connector, refs: list[DocumentRef]) -> None:
    seconds, sizes = timed(lambda: [len(connector.read(ref)) for ref in refs])
    megabytes = sum(sizes) / 1e6
    rate = f"{len(refs) / seconds:8.1f} documents/s, {megabytes / seconds:6.1f} MB/s"
    print(f"read  {name:6s} {len(refs)} documents: {rate}")


def changes_report(name: str, n: int, connector: Connector, full_s: float) -> None:
    """An unchanged night listed since a cursor taken now (no overlap), beside the full night's seconds."""
    assert isinstance(connector, ListsChanges)
    cursor = connector.cursor()
    assert cursor is not None
    time.sleep(0.05)  # file and object times come from coarse clocks
    seconds, listed = timed(lambda: sum(1 for _ in connector.list_changes(cursor)))
    print(
        f"list  {name:6s} {n} unchanged, changes only: {seconds:.2f} s, {listed} listed "
        f"(the full night: {full_s:.2f} s, {full_s / max(seconds, 1e-9):.1f}x as long)"
    )


def listing_report(name: str, n: int, server_s: float, night_s: float, peak_small: int, peak_full: int) -> None:
    extra_ms = (night_s - server_s) / n * 1000
    print(
        f"list  {name:6s} {n} unchanged: server's own listing {server_s:.2f} s, connector + state lookup "
        f"{night_s:.2f} s -> {extra_ms:.3f} ms per object beyond the server's (target <= 1 ms); "
        f"peak traced memory {peak_small / 1e6:.1f} MB at N/4, {peak_full / 1e6:.1f} MB at N "
        f"(ratio {peak_full / max(peak_small, 1):.2f})"
    )


def bench_s3(objects: int, work: Path) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="b", aws_secret_access_key="b", region_name="us-east-1"
    )
    try:
        client.create_bucket(Bucket="estate")
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: client.put_object(Bucket="estate", Key=f"all/{i:07d}.txt", Body=b"x"), range(objects)
                )
            )
            list(
                pool.map(
                    lambda i: client.put_object(Bucket="estate", Key=f"quarter/{i:07d}.txt", Body=b"x"),
                    range(objects // 4),
                )
            )
            list(
                pool.map(lambda i: client.put_object(Bucket="estate", Key=f"read/{i:04d}.txt", Body=BODY), range(1000))
            )
        print(f"setup s3     {objects + objects // 4 + 1000} objects put in {time.perf_counter() - started:.0f} s")

        def source(prefix: str, limits: SourceLimits | None = None) -> Connector:
            options = {
                "connector": "s3",
                "url": f"s3://estate/{prefix}",
                "endpoint_url": endpoint,
                "access_key_id": "b",
                "secret_access_key": "b",
            }
            return make_connector(prefix, options, limits)

        read_throughput("s3", source("read"), list(source("read").list()))
        peaks = {}
        for prefix, n in (("quarter", objects // 4), ("all", objects)):
            state = StateStore(f"sqlite:///{work / f's3-{prefix}.sqlite'}")
            remember(state, source(prefix).list())

            def server_listing(prefix: str = prefix) -> int:
                pages = client.get_paginator("list_objects_v2").paginate(Bucket="estate", Prefix=f"{prefix}/")
                return sum(len(page.get("Contents", [])) for page in pages)

            server_s, listed = timed(server_listing)
            assert listed == n

            def night(prefix: str = prefix, state: StateStore = state) -> int:
                return unchanged_night(source(prefix), state, prefix)

            night_s, peak = timed_and_traced(night)
            peaks[prefix] = (server_s, night_s, peak)
        listing_report("s3", objects, peaks["all"][0], peaks["all"][1], peaks["quarter"][2], peaks["all"][2])
        changes_report("s3", objects, source("all", SourceLimits(cursor_overlap_s=0)), peaks["all"][1])
    finally:
        server.stop()


def bench_sql(rows: int, work: Path) -> None:
    from sqlalchemy import create_engine, text

    base = os.environ.get("ASSAY_TEST_POSTGRES_URL")
    if not base:
        print("sql          skipped: set ASSAY_TEST_POSTGRES_URL (.ci/run starts a PostgreSQL)")
        return
    name = f"assay_bench_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + "/" + name
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for table, n, body in (
                ("docs_all", rows, "x"),
                ("docs_quarter", rows // 4, "x"),
                ("docs_read", 1000, BODY.decode()),
            ):
                connection.execute(
                    text(f"CREATE TABLE {table} (id bigint primary key, name text, content text, row_version bigint)")
                )
                connection.execute(
                    text(f"INSERT INTO {table} SELECT g, g || '.txt', :body, g FROM generate_series(1, :n) AS g"),
                    {"body": body, "n": n},
                )

        def source(table: str, limits: SourceLimits | None = None) -> Connector:
            options = {
                "connector": "sql",
                "url": url,
                "table": table,
                "name_column": "name",
                "version_column": "row_version",
            }
            return make_connector(table, options, limits)

        read_throughput("sql", source("docs_read"), list(source("docs_read").list()))
        results = {}
        for table in ("docs_quarter", "docs_all"):
            state = StateStore(f"sqlite:///{work / f'{table}.sqlite'}")
            remember(state, source(table).list())

            def server_listing(table: str = table) -> int:
                with engine.connect() as connection:
                    result = connection.execution_options(stream_results=True, yield_per=1000)
                    return sum(
                        1
                        for _ in result.execute(
                            text(f"SELECT id, row_version, length(content) FROM {table} ORDER BY id")
                        )
                    )

            server_s, _ = timed(server_listing)

            def night(table: str = table, state: StateStore = state) -> int:
                return unchanged_night(source(table), state, table)

            night_s, peak = timed_and_traced(night)
            results[table] = (server_s, night_s, peak)
        listing_report(
            "sql",
            rows,
            results["docs_all"][0],
            results["docs_all"][1],
            results["docs_quarter"][2],
            results["docs_all"][2],
        )
        changes_report("sql", rows, source("docs_all", SourceLimits(cursor_overlap_s=0)), results["docs_all"][1])
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


def bench_local(work: Path) -> None:
    folder = work / "share"
    folder.mkdir()
    for index in range(1000):
        (folder / f"contract {index:04d}.txt").write_bytes(BODY)
    connector = make_connector("share", {"path": str(folder)})
    seconds, refs = timed(lambda: list(connector.list()))
    megabytes = sum(ref.size for ref in refs) / 1e6
    rate = f"{len(refs) / seconds:8.1f} files/s, {megabytes / seconds:6.1f} MB/s"
    print(f"list  local  {len(refs)} files listed and hashed: {rate}")
    read_throughput("local", connector, refs)
    changes_report(
        "local", len(refs), make_connector("share", {"path": str(folder)}, SourceLimits(cursor_overlap_s=0)), seconds
    )


def main() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=100_000, help="Objects in the bucket and rows in the table.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="assay-bench-connectors-") as folder:
        work = Path(folder)
        bench_local(work)
        bench_sql(args.objects, work)
        bench_s3(args.objects, work)


if __name__ == "__main__":
    main()
