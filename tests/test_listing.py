"""Changes-only listings (issue #14): a night lists what changed since the last completed run.

Runs without the model (tests/fixtures/tasks/patterns_only) over a folder, SQLite and moto's S3
server; the IMAP and SMB cursors are tested against their servers in test_mail_connectors.py and
test_smb_connector.py. Cursors here reach back no further than they were taken (`overlap_s = 0`),
so what a listing leaves out is seen to be left out.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, create_engine, update

from connectors.registry import make_connector, resolve_sources
from pipeline.core.connector import ListsChanges, SourceLimits
from pipeline.core.settings import load_settings
from pipeline.run.context import get_state, state_url
from pipeline.run.local import in_order, run_locally
from pipeline.run.summary import RunSummary
from tests.jobrunner import NO_MODEL, TEST_TASKS
from tests.support import S3Bucket

AGREEMENT = b"This Agreement is governed by the laws of the State of Delaware. Dated 4 March 2026.\n"


def _settings(data_dir: Path, sources: dict[str, dict[str, Any]], **extra: Any) -> Any:
    listing = {"overlap_s": 0, **extra.pop("listing", {})}
    return load_settings(
        data_dir=data_dir, sources=sources, tasks=NO_MODEL, task_dirs=[TEST_TASKS], listing=listing, **extra
    )


def _run(data_dir: Path, sources: dict[str, dict[str, Any]], full_listing: bool = False, **extra: Any) -> RunSummary:
    settings = _settings(data_dir, sources, **extra)
    return run_locally(settings, resolve_sources(list(sources), settings), full_listing=full_listing)


def _listed(summary: RunSummary, data_dir: Path) -> list[str]:
    """The names of the documents a run listed, from its `documents` rows in the warehouse."""
    import duckdb

    search: dict[str, Any] = {"file_search_path": str(data_dir)}  # the views' paths: relative to the data folder
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True, config=search) as con:
        rows = con.execute(
            "select document_uri from document_versions where run_id = ? order by 1", [summary.run_id]
        ).fetchall()
    return sorted(unquote(str(uri).rsplit("/", 1)[-1]) for (uri,) in rows)


def _one_file_share(tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]], Path]:
    """A folder holding a.txt, its source settings, and a data folder for the runs."""
    share = tmp_path / "share"
    share.mkdir()
    (share / "a.txt").write_bytes(AGREEMENT)
    return share, {"share": {"connector": "local", "path": str(share)}}, tmp_path / "data"


def test_a_night_lists_only_what_changed_and_a_full_listing_finds_deletions(tmp_path: Path) -> None:
    share = tmp_path / "Verträge"
    share.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (share / name).write_bytes(AGREEMENT + name.encode())
    sources = {"share": {"connector": "local", "path": str(share)}}
    data = tmp_path / "data"

    first = _run(data, sources)
    assert first.documents_in == 3 and first.processed == 3
    assert first.listing == {"share": "full listing (no completed run saved a cursor for this source)"}

    time.sleep(0.01)
    (share / "b.txt").write_bytes(AGREEMENT + b"amended")
    copied = share / "copied with its old time.txt"
    shutil.copy2(share / "a.txt", copied)  # a copy that keeps the modified time: found by its change time
    copied.write_bytes(AGREEMENT + b"copied")
    os.utime(copied, (1_600_000_000, 1_600_000_000))
    (share / "c.txt").unlink()
    second = _run(data, sources)
    assert second.listing["share"].startswith("changes since cursor time:")
    assert _listed(second, data) == ["b.txt", "copied with its old time.txt"]
    assert second.documents_in == 2 and second.processed == 2 and second.deleted == 0  # c.txt not seen yet

    third = _run(data, sources)  # nothing changed: nothing listed, nothing opened
    assert third.documents_in == 0 and third.status == "completed"

    fourth = _run(data, sources, full_listing=True)
    assert fourth.listing == {"share": "full listing (a full listing was asked for)"}
    assert fourth.documents_in == 3 and fourth.unchanged == 3 and fourth.deleted == 1


def test_a_changes_only_listing_sees_content_and_inode_changes_but_not_the_unchanged(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    for name in ("old.txt", "renamed before.txt", "permissions.txt"):
        (share / name).write_bytes(AGREEMENT + name.encode())
    connector = make_connector("share", {"connector": "local", "path": str(share)}, SourceLimits(cursor_overlap_s=0))
    assert isinstance(connector, ListsChanges)
    time.sleep(0.05)  # file times come from the kernel's coarse clock, a tick behind time.time_ns()
    cursor = connector.cursor()
    assert cursor is not None
    time.sleep(0.05)
    (share / "renamed before.txt").rename(share / "renamed after.txt")
    (share / "permissions.txt").chmod(0o640)
    (share / "new.txt").write_bytes(AGREEMENT + b"new")
    changed = sorted(ref.name for ref in connector.list_changes(cursor))
    assert changed == ["new.txt", "permissions.txt", "renamed after.txt"]
    time.sleep(0.05)
    later = connector.cursor()
    assert later is not None
    time.sleep(0.05)
    assert list(connector.list_changes(later)) == []


def test_a_run_that_does_not_complete_saves_no_cursor(tmp_path: Path) -> None:
    share, sources, data = _one_file_share(tmp_path)
    first = _run(data, sources)
    settings = _settings(data, sources)
    saved = get_state(state_url(settings)).cursors.get("share")
    assert saved is not None and saved.cursor_run_id == first.run_id and saved.full_listing_at is not None

    time.sleep(0.01)
    (share / "b.txt").write_bytes(AGREEMENT + b"b")
    (share / "c.txt").write_bytes(AGREEMENT + b"c")
    lost_a_shard = run_locally(  # fault injection: the shard's report never arrives
        settings.model_copy(update={"shard_size": 1}),
        resolve_sources(list(sources), settings),
        execute=lambda context, plan: in_order(context, plan)[:1],
    )
    assert lost_a_shard.status == "incomplete"
    assert get_state(state_url(settings)).cursors.get("share") == saved  # not moved past c.txt

    again = _run(data, sources)
    assert again.status == "completed" and _listed(again, data) == ["b.txt", "c.txt"]
    assert again.unchanged == 1  # b.txt landed in the incomplete run


def test_new_work_a_due_full_listing_and_the_settings_list_everything_again(tmp_path: Path) -> None:
    _, sources, data = _one_file_share(tmp_path)
    _run(data, sources)
    assert _run(data, sources).documents_in == 0

    rechunked = _run(data, sources, chunking={"max_characters": 900})
    assert rechunked.listing["share"].startswith("full listing (the work or the source's settings changed since")
    assert rechunked.documents_in == 1 and rechunked.processed == 1

    time.sleep(1.0)
    due = _run(data, sources, chunking={"max_characters": 900}, listing={"full_every_days": 0.5 / 86400})
    assert due.listing["share"].startswith("full listing (the last full listing was 0 days ago")
    assert due.documents_in == 1

    off = _run(data, sources, chunking={"max_characters": 900}, listing={"changes_only": False})
    assert off.listing == {"share": "full listing (listing.changes_only = false)"} and off.documents_in == 1


def test_a_sql_table_lists_only_rows_at_or_past_the_cursor(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.sqlite'}"
    engine = create_engine(url)
    rows = Table(
        "records",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(200)),
        Column("body", LargeBinary),
        Column("row_version", Integer),
    )
    rows.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            rows.insert(),
            [
                {"id": i, "name": f"record {i}.txt", "body": AGREEMENT + bytes([48 + i]), "row_version": i}
                for i in (1, 2, 3)
            ],
        )
    source = {
        "connector": "sql",
        "url": url,
        "table": "records",
        "content_column": "body",
        "name_column": "name",
        "version_column": "row_version",
    }
    data = tmp_path / "data"
    first = _run(data, {"records": source})
    assert first.documents_in == 3

    with engine.begin() as connection:
        connection.execute(update(rows).where(rows.c.id == 1).values(body=AGREEMENT + b"amended", row_version=4))
        connection.execute(rows.insert().values(id=5, name="record 5.txt", body=AGREEMENT + b"5", row_version=5))
    second = _run(data, {"records": source})
    # rows at or past the cursor (3, the largest version then): row 3 again, unchanged, read from nothing
    assert _listed(second, data) == ["record 1.txt", "record 3.txt", "record 5.txt"]
    assert second.processed == 2 and second.unchanged == 1 and second.deleted == 0

    without_versions = make_connector("records", {**source, "version_column": None})
    assert isinstance(without_versions, ListsChanges) and without_versions.cursor() is None
    plain = _run(data, {"records": {**source, "version_column": None}})
    assert plain.listing == {"records": "full listing (the sql source keeps no cursor as configured)"}
    engine.dispose()


def test_an_s3_prefix_lists_only_objects_written_since_the_cursor(s3: S3Bucket, tmp_path: Path) -> None:
    for index in range(3):
        s3.client.put_object(Bucket=s3.bucket, Key=f"inbox/contract {index}.txt", Body=AGREEMENT + bytes([48 + index]))
    source = {
        "connector": "s3",
        "url": f"s3://{s3.bucket}/inbox",
        "endpoint_url": s3.endpoint,
        "access_key_id": "test",
        "secret_access_key": "test",
    }
    data = tmp_path / "data"
    assert _run(data, {"store": source}).documents_in == 3
    time.sleep(1.1)  # S3 keeps LastModified to the second
    s3.client.put_object(Bucket=s3.bucket, Key="inbox/contract 9.txt", Body=AGREEMENT + b"9")
    second = _run(data, {"store": source})
    assert _listed(second, data) == ["contract 9.txt"] and second.processed == 1


def test_a_cursor_of_another_kind_is_a_clear_error(tmp_path: Path) -> None:
    from pipeline.core.errors import ConfigError

    connector = make_connector("share", {"connector": "local", "path": str(tmp_path)})
    assert isinstance(connector, ListsChanges)
    with pytest.raises(ConfigError, match="--full-listing"):
        list(connector.list_changes("int:4"))


def test_a_read_error_is_tried_again_every_night_until_it_reads(tmp_path: Path) -> None:
    share = tmp_path / "share"
    (share / "vault").mkdir(parents=True)
    (share / "a.txt").write_bytes(AGREEMENT)
    (share / "contract.txt").symlink_to(share / "vault" / "contract.txt")  # its target is not there yet
    sources = {"share": {"connector": "local", "path": str(share), "exclude": ["vault/**"]}}
    data = tmp_path / "data"
    first = _run(data, sources)
    assert first.processed == 1 and first.document_failures == {"read_error": 1}

    second = _run(data, sources)  # nothing changed, but the failed read is listed again from the state store
    assert second.listing["share"].startswith("changes since")
    assert _listed(second, data) == ["contract.txt"] and second.document_failures == {"read_error": 1}

    (share / "vault" / "contract.txt").write_bytes(AGREEMENT + b"signed")
    third = _run(data, sources)
    assert _listed(third, data) == ["contract.txt"] and third.processed == 1 and third.failed == 0
    assert _run(data, sources).documents_in == 0  # read: not listed again


def test_a_source_whose_globs_widen_is_listed_in_full(tmp_path: Path) -> None:
    """Found with `assay eval --limit 10` then 40: the 30 files the wider globs selected were never listed."""
    share = tmp_path / "share"
    share.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (share / name).write_bytes(AGREEMENT + name.encode())
    data = tmp_path / "data"
    narrow = {"share": {"connector": "local", "path": str(share), "include": ["a.txt"]}}
    assert _run(data, narrow).documents_in == 1
    wide = {"share": {"connector": "local", "path": str(share), "include": ["a.txt", "b.txt", "c.txt"]}}
    widened = _run(data, wide)
    assert widened.listing["share"].startswith("full listing (the work or the source's settings changed")
    assert _listed(widened, data) == ["a.txt", "b.txt", "c.txt"] and widened.processed == 2
    assert _run(data, wide).documents_in == 0  # and the next night lists only changes again
