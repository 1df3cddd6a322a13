"""A disk that fills while a run lands: the run fails cleanly (or completes, with what it could not do as a
warning), no partial file is visible, and the next run completes and accounts for every document.

The data folder lives on a small filesystem of its own (`ASSAY_TEST_SMALL_FS`, a tmpfs that .ci/run
mounts), filled up to a few hundred KiB before the run, at several sizes so that the disk runs out at
different points: creating the state store, landing Parquet, committing, rebuilding the catalog.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from sqlalchemy.exc import OperationalError

from pipeline.core.errors import AssayError
from pipeline.core.settings import load_settings
from pipeline.land import warehouse
from pipeline.land.ledger import Ledger, verify
from tests.jobrunner import NO_MODEL, run
from tests.support import nightly_source, skip_or_fail

pytestmark = pytest.mark.slow  # six nights, two runs each

# Space left free before the run, in KiB: below what the state store needs, then across the landing.
FREE_KIB = [100, 160, 220, 280, 340, 900]
LOCKS = {"heartbeat_s": 0.2, "stale_after_s": 1.0}  # a failed run's lock goes stale at once


@pytest.fixture
def small_fs() -> Path:
    folder = os.environ.get("ASSAY_TEST_SMALL_FS")
    if not folder or not Path(folder).is_dir():
        skip_or_fail("no small filesystem to fill (set ASSAY_TEST_SMALL_FS to a tmpfs of ~16 MiB; .ci/run mounts one)")
    assert folder is not None
    return Path(folder)


def _fill(small_fs: Path, leave_kib: int) -> Path:
    stats = os.statvfs(small_fs)
    filler = small_fs / "filler"
    filler.write_bytes(bytes(stats.f_bavail * stats.f_frsize - leave_kib * 1024))
    return filler


def _visible_files_are_whole(lake: Path) -> None:
    for path in lake.rglob("*"):
        if path.is_file():
            assert not path.name.startswith("."), f"a temporary file is visible: {path}"
            if path.suffix == ".parquet":
                pq.read_metadata(path)  # a truncated file has no footer


@pytest.mark.parametrize("free_kib", FREE_KIB)
def test_a_full_disk_fails_the_run_cleanly_and_the_next_run_completes(
    small_fs: Path, tmp_path: Path, free_kib: int
) -> None:
    source = nightly_source(tmp_path)
    data_dir = small_fs / f"night-{free_kib}"
    try:
        filler = _fill(small_fs, free_kib)
        try:
            first = run(data_dir, source, NO_MODEL, locks=LOCKS)
            # It completed: then only what follows a commit (the catalog) may have been left undone.
            assert first.status == "completed"
            assert all("warehouse was not rebuilt" in w for w in first.warnings), first.warnings
            assert free_kib > 300, "the disk was full, and nothing noticed"
        except (OSError, OperationalError, AssayError, duckdb.Error) as exc:
            assert "No space left" in str(exc) or "disk is full" in str(exc) or "space" in str(exc).lower(), exc
        finally:
            filler.unlink()
        if (data_dir / "lake").is_dir():
            _visible_files_are_whole(data_dir / "lake")
        time.sleep(LOCKS["stale_after_s"] + 0.5)

        again = run(data_dir, source, NO_MODEL, locks=LOCKS)
        assert again.status == "completed" and not again.warnings, again.warnings
        assert again.documents_in == again.processed + again.failed + again.skipped == 3
        report = verify(data_dir / "lake")
        assert report.ok, report
        settings = load_settings(data_dir=data_dir)
        with warehouse.read_only(settings) as con:
            documents = con.execute("select count(distinct document_uri) from documents").fetchone()
            findings = con.execute("select count(*), count(distinct finding_id) from findings").fetchone()
        assert documents == (3,)  # every input, once
        assert findings is not None and findings[0] == findings[1] > 0  # no finding twice
        assert len(Ledger(data_dir / "lake").manifests()) >= 1
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
