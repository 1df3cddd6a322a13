"""The committed lake published to a real S3 endpoint (moto's server on loopback), same layout."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from assay.cli import cli
from pipeline.land.ledger import Ledger
from tests.jobrunner import NO_MODEL, run
from tests.support import S3Bucket, document


def test_a_run_publishes_its_committed_lake_to_s3_in_the_same_layout(
    s3: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, client, bucket = s3.endpoint, s3.client, s3.bucket
    source = tmp_path / "in"
    source.mkdir()
    for name in ["docling__kvp_data_example.html", "unstructured__empty.txt"]:
        shutil.copy(document(name), source / name)
    mirror = {"url": f"s3://{bucket}/nightly", "endpoint_url": endpoint, "access_key_id": "test"}
    monkeypatch.setenv("ASSAY_LAKE_MIRROR", json.dumps({**mirror, "secret_access_key": "test"}))
    data_dir = tmp_path / "data"
    summary = run(data_dir, source, NO_MODEL)
    assert summary.mirror is not None and summary.mirror.endswith("0 already there"), summary.mirror

    lake = data_dir / "lake"
    manifests = Ledger(lake).manifests()
    expected = {f"nightly/{entry.path}" for m in manifests for entry in m.files}
    expected |= {f"nightly/{m.relative}" for m in manifests}
    listed = client.list_objects_v2(Bucket=bucket, Prefix="nightly/")
    keys = {item["Key"] for item in listed["Contents"]}
    assert keys == expected  # every committed file and manifest; nothing else (no temporary files)
    findings = next(k for k in keys if k.startswith("nightly/findings/run_date="))
    body = client.get_object(Bucket=bucket, Key=findings)["Body"].read()
    assert body == (lake / findings.removeprefix("nightly/")).read_bytes()
    assert pq.read_table(io.BytesIO(body)).num_rows == pq.read_table(lake / findings.removeprefix("nightly/")).num_rows
    manifest_key = max(k for k in keys if "/_manifests/" in k)
    manifest = json.loads(client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    assert manifest["run_id"] == summary.run_id

    # An object lost on the store (or never sent by a run cut short) is sent again by the next run.
    client.delete_object(Bucket=bucket, Key=findings)
    again = run(data_dir, source, NO_MODEL)
    assert again.unchanged == 1
    newest = Ledger(lake).manifests()[-1]
    assert newest.run_id == again.run_id
    # Sent: the lost file, the new run's files, and its manifest; everything else was already there.
    assert again.mirror is not None and again.mirror.startswith(f"{len(newest.files) + 2} files uploaded")
    head = client.head_object(Bucket=bucket, Key=findings)
    assert head["ContentLength"] == (lake / findings.removeprefix("nightly/")).stat().st_size

    # An object replaced on the store by other bytes of the same size: a publish by sizes leaves it,
    # `assay mirror --check-hashes` finds it and sends the committed bytes again.
    committed = (lake / findings.removeprefix("nightly/")).read_bytes()
    client.put_object(Bucket=bucket, Key=findings, Body=bytes(len(committed)))
    by_size = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "mirror"])
    assert by_size.exit_code == 0 and by_size.output.startswith("0 files uploaded"), by_size.output
    checked = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "mirror", "--check-hashes"])
    assert checked.exit_code == 0, checked.output
    assert (
        checked.output.startswith("1 files uploaded")
        and f"repaired (its SHA-256 was wrong): {findings.removeprefix('nightly/')}" in checked.output
    )
    assert client.get_object(Bucket=bucket, Key=findings)["Body"].read() == committed


def test_an_unreachable_mirror_is_reported_and_the_run_still_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(document("unstructured__empty.txt"), source / "empty.txt")
    mirror = {
        "url": "s3://assay-lake/x",
        "endpoint_url": "http://127.0.0.1:9",
        "access_key_id": "a",
        "secret_access_key": "b",
    }
    monkeypatch.setenv("ASSAY_LAKE_MIRROR", json.dumps(mirror))
    summary = run(tmp_path / "data", source, NO_MODEL)
    assert summary.status == "completed" and summary.failed == 1
    assert summary.mirror is not None and summary.mirror.startswith("failed: publishing the lake to s3://assay-lake/x")
