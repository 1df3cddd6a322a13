"""The `s3` and `sql` connectors against real servers (moto's S3 on loopback; SQLite and PostgreSQL).

Each runs end to end through a run that asks no model (tests/fixtures/tasks/patterns_only): every object
or row is accounted for, an unchanged night reads nothing, a changed one re-reads only what changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column as SqlColumn
from sqlalchemy import Integer as SqlInteger
from sqlalchemy import LargeBinary, String, create_engine
from sqlalchemy import MetaData as SqlMetaData
from sqlalchemy import Table as SqlTable

from connectors.registry import make_connector, resolve_sources
from pipeline.core.connector import SourceLimits
from pipeline.core.errors import ConfigError, DocumentError, Reason, TransientError
from pipeline.core.settings import load_settings
from pipeline.run.local import run_locally
from pipeline.run.summary import RunSummary
from tests.jobrunner import NO_MODEL, TEST_TASKS
from tests.support import S3Bucket, fresh_postgres_database

FIXTURES = Path(__file__).resolve().parent / "fixtures"
AGREEMENT = b"This Agreement is governed by the laws of the State of Delaware. Dated 4 March 2026.\n"


def _run(data_dir: Path, sources: dict[str, dict[str, Any]], full_listing: bool = False) -> RunSummary:
    settings = load_settings(data_dir=data_dir, sources=sources, tasks=NO_MODEL, task_dirs=[TEST_TASKS], shard_size=2)
    return run_locally(settings, resolve_sources(list(sources), settings), full_listing=full_listing)


# -- S3 ---------------------------------------------------------------------------------------------


def _s3_source(s3: S3Bucket, **extra: Any) -> dict[str, Any]:
    return {
        "connector": "s3",
        "url": f"s3://{s3.bucket}/inbox",
        "endpoint_url": s3.endpoint,
        "access_key_id": "test",
        "secret_access_key": "test",
        **extra,
    }


def test_s3_lists_pages_filters_keys_and_reads_the_listed_version(s3: S3Bucket) -> None:
    s3.client.put_bucket_versioning(Bucket=s3.bucket, VersioningConfiguration={"Status": "Enabled"})
    for index in range(7):
        s3.client.put_object(Bucket=s3.bucket, Key=f"inbox/2026/contract {index} é#%.txt", Body=AGREEMENT)
    s3.client.put_object(Bucket=s3.bucket, Key="inbox/notes.tmp", Body=b"scratch")
    s3.client.put_object(Bucket=s3.bucket, Key="elsewhere/other.txt", Body=b"not this source's")
    connector = make_connector("docs", _s3_source(s3, page_size=2, exclude=["*.tmp"], versions=True))
    refs = list(connector.list())  # four pages of two
    assert sorted(ref.name for ref in refs) == sorted(f"contract {i} é#%.txt" for i in range(7))
    assert all(";version:" in ref.version and ref.version.startswith("etag:") for ref in refs)

    first = refs[0]
    key = "inbox/2026/" + first.name
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=b"a newer version")
    assert connector.read(first) == AGREEMENT  # the version that was listed, not the newest

    with pytest.raises(DocumentError) as outside:
        connector.read(first.model_copy(update={"uri": f"s3://{s3.bucket}/elsewhere/other.txt"}))
    assert outside.value.reason is Reason.REFUSED
    small = make_connector("docs", _s3_source(s3), SourceLimits(max_file_bytes=10))
    with pytest.raises(DocumentError) as large:
        small.read(next(iter(small.list())))
    assert large.value.reason is Reason.TOO_LARGE


def test_s3_errors_are_typed(s3: S3Bucket) -> None:
    with pytest.raises(ConfigError, match="NoSuchBucket"):
        list(make_connector("docs", {**_s3_source(s3), "url": "s3://no-such-bucket/x"}).list())
    s3.client.put_object(Bucket=s3.bucket, Key="inbox/a.txt", Body=AGREEMENT)
    connector = make_connector("docs", _s3_source(s3))
    ref = next(iter(connector.list()))
    s3.client.delete_object(Bucket=s3.bucket, Key="inbox/a.txt")
    with pytest.raises(DocumentError, match="gone"):
        connector.read(ref)
    dead = make_connector("docs", {**_s3_source(s3), "endpoint_url": "http://127.0.0.1:9"})  # nothing listens
    with pytest.raises(TransientError):
        dead.read(ref)


def test_an_s3_source_runs_end_to_end_and_an_unchanged_night_reads_nothing(s3: S3Bucket, tmp_path: Path) -> None:
    names = ["a.txt", "b.txt", "empty.txt", "c.txt"]
    for name in names:
        s3.client.put_object(
            Bucket=s3.bucket, Key=f"inbox/{name}", Body=b"" if name == "empty.txt" else AGREEMENT + name.encode()
        )
    sources = {"bucket": _s3_source(s3)}
    first = _run(tmp_path / "data", sources)
    assert first.status == "completed" and first.documents_in == 4
    assert first.processed == 3 and first.document_failures == {"empty_file": 1}

    again = _run(tmp_path / "data", sources)
    assert again.unchanged == 3 and again.processed == 0 and again.stage_seconds.get("parse", 0.0) == 0.0

    s3.client.put_object(Bucket=s3.bucket, Key="inbox/b.txt", Body=AGREEMENT + b"amended")
    s3.client.delete_object(Bucket=s3.bucket, Key="inbox/c.txt")
    third = _run(tmp_path / "data", sources, full_listing=True)  # only a full listing sees a deletion
    assert third.processed == 1 and third.unchanged == 1 and third.deleted == 1


# -- SQL --------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file, or a fresh database on the PostgreSQL .ci/run starts."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'documents.sqlite'}"
        return
    with fresh_postgres_database("assay_docs") as url:
        yield url


def _filings(url: str) -> SqlTable:
    engine = create_engine(url)
    metadata = SqlMetaData()
    filings = SqlTable(
        "filings",
        metadata,
        SqlColumn("doc_id", SqlInteger, primary_key=True),
        SqlColumn("file_name", String(200)),
        SqlColumn("body", LargeBinary),
        SqlColumn("row_version", SqlInteger),
    )
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            filings.insert(),
            [
                {"doc_id": 1, "file_name": "nda one.txt", "body": AGREEMENT + b"one", "row_version": 1},
                {"doc_id": 2, "file_name": "notice.html", "body": b"<p>" + AGREEMENT + b"</p>", "row_version": 1},
                {"doc_id": 3, "file_name": "blank.txt", "body": b"", "row_version": 1},
                {"doc_id": 4, "file_name": "three.txt", "body": AGREEMENT + b"three", "row_version": 1},
            ],
        )
    engine.dispose()
    return filings


def _sql_source(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "connector": "sql",
        "url": url,
        "table": "filings",
        "id_column": "doc_id",
        "content_column": "body",
        "name_column": "file_name",
        **extra,
    }


def test_rows_of_a_table_run_end_to_end_and_only_changed_rows_are_read_again(database: str, tmp_path: Path) -> None:
    filings = _filings(database)
    sources = {"filings": _sql_source(database, version_column="row_version", batch_size=2)}
    first = _run(tmp_path / "data", sources)
    assert first.status == "completed" and first.documents_in == 4
    assert first.processed == 3 and first.document_failures == {"empty_file": 1}

    again = _run(tmp_path / "data", sources)
    assert again.unchanged == 3 and again.processed == 0

    engine = create_engine(database)
    with engine.begin() as connection:
        connection.execute(
            filings.update().where(filings.c.doc_id == 4).values(body=AGREEMENT + b"amended", row_version=2)
        )
        connection.execute(filings.delete().where(filings.c.doc_id == 1))
    engine.dispose()
    third = _run(tmp_path / "data", sources, full_listing=True)  # only a full listing sees a deletion
    assert third.processed == 1 and third.unchanged == 1 and third.deleted == 1


def test_without_a_version_column_rows_are_hashed_and_the_url_password_is_never_shown(database: str) -> None:
    _filings(database)
    connector = make_connector("filings", _sql_source(database))
    refs = list(connector.list())
    assert [ref.name for ref in refs] == ["nda one.txt", "notice.html", "blank.txt", "three.txt"]
    assert all(ref.sha256 and ref.version == f"sha256:{ref.sha256}" for ref in refs)
    assert connector.read(refs[0]) == AGREEMENT + b"one"
    assert "**********" in repr(connector.config) and database not in repr(connector.config)
    with pytest.raises(ConfigError, match="cannot list no_such_table"):
        list(make_connector("filings", _sql_source(database, table="no_such_table")).list())


def test_an_s3_source_behind_dropped_connections_completes_with_nothing_lost(s3: S3Bucket, tmp_path: Path) -> None:
    """Fault injection on the wire: every third new connection to the real S3 server is reset."""
    from urllib.parse import urlsplit

    from tests.support import FlakyProxy

    for index in range(6):
        s3.client.put_object(Bucket=s3.bucket, Key=f"inbox/{index}.txt", Body=AGREEMENT + str(index).encode())
    endpoint = urlsplit(s3.endpoint)
    proxy = FlakyProxy((endpoint.hostname or "127.0.0.1", endpoint.port or 80), drop=lambda n: n % 3 == 1)
    try:
        sources = {"bucket": {**_s3_source(s3), "endpoint_url": f"http://127.0.0.1:{proxy.port}"}}
        summary = _run(tmp_path / "data", sources)
    finally:
        proxy.close()
    assert proxy.dropped >= 1  # the faults happened
    assert summary.status == "completed" and summary.documents_in == 6 and summary.processed == 6


def test_an_s3_store_that_stops_answering_is_timed_out_and_tried_again(s3: S3Bucket, tmp_path: Path) -> None:
    """Fault injection on the wire: the first two connections are accepted and never answered."""
    from urllib.parse import urlsplit

    from tests.support import FlakyProxy

    for index in range(3):
        s3.client.put_object(Bucket=s3.bucket, Key=f"inbox/{index}.txt", Body=AGREEMENT + str(index).encode())
    endpoint = urlsplit(s3.endpoint)
    proxy = FlakyProxy(
        (endpoint.hostname or "127.0.0.1", endpoint.port or 80), drop=lambda n: False, stall=lambda n: n <= 2
    )
    try:
        source = {**_s3_source(s3), "endpoint_url": f"http://127.0.0.1:{proxy.port}", "timeout_s": 2}
        summary = _run(tmp_path / "data", {"bucket": source})
    finally:
        proxy.close()
    assert len(proxy.stalled) == 2 and proxy.connections > 2
    assert summary.status == "completed" and summary.processed == 3


def _postgres_port(url: str) -> tuple[str, int]:
    from sqlalchemy import make_url

    parsed = make_url(url)
    return parsed.host or "127.0.0.1", parsed.port or 5432


def _through(url: str, port: int) -> str:
    from sqlalchemy import make_url

    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def test_a_database_behind_dropped_connections_completes_with_nothing_lost(tmp_path: Path) -> None:
    """Fault injection on the wire: every other new connection to the real PostgreSQL is reset."""
    from tests.support import FlakyProxy

    with fresh_postgres_database("assay_flaky") as url:
        filings = _filings(url)
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(
                filings.insert(),
                [
                    {"doc_id": i, "file_name": f"filing {i}.txt", "body": AGREEMENT + bytes([48 + i]), "row_version": 1}
                    for i in range(5, 10)
                ],
            )
        engine.dispose()
        proxy = FlakyProxy(_postgres_port(url), drop=lambda n: n % 2 == 1)
        try:
            source = _sql_source(_through(url, proxy.port), version_column="row_version", batch_size=3)
            summary = _run(tmp_path / "data", {"filings": source})
        finally:
            proxy.close()
    assert proxy.dropped >= 1  # the faults happened
    assert summary.status == "completed" and summary.documents_in == 9
    assert summary.processed == 8 and summary.document_failures == {"empty_file": 1}


def test_a_database_that_stops_answering_is_timed_out_and_tried_again(tmp_path: Path) -> None:
    """Fault injection on the wire: the first two connections are accepted and never answered."""
    from tests.support import FlakyProxy

    with fresh_postgres_database("assay_stall") as url:
        _filings(url)
        proxy = FlakyProxy(_postgres_port(url), drop=lambda n: False, stall=lambda n: n <= 2)
        try:
            source = _sql_source(_through(url, proxy.port), version_column="row_version", timeout_s=2)
            summary = _run(tmp_path / "data", {"filings": source})
        finally:
            proxy.close()
    assert len(proxy.stalled) == 2 and proxy.connections > 2
    assert summary.status == "completed" and summary.documents_in == 4 and summary.processed == 3
