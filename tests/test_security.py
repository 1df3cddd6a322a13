"""An attacker with an analyst's CLI: every way out of `assay query` and `assay export` that got through
before is refused now, cleanly, and nothing is written; document text never steers the terminal.
Real runs (`patterns_only`, no model), real DuckDB, the CLI; the S3 cases against moto's server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from assay.cli import cli
from tests.jobrunner import NO_MODEL, run
from tests.support import S3Bucket, nightly_source


def _cli(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args])


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One night, read only by these tests (they try to write, and must fail)."""
    tmp_path = tmp_path_factory.mktemp("security")
    source = nightly_source(tmp_path)
    (source / "trap.txt").write_text(
        "Call (555) 123-4567 [/b] [link=http://evil.example]here[/link] \x1b]8;;http://evil.example\x07x\x1b]8;;\x07"
        " \x1b[2J [mailto:someone@example.com] signed 01/02/2026."
    )
    run(tmp_path / "data", source, NO_MODEL)
    return tmp_path / "data"


ESCAPES = {
    "copy to a file": "copy (select * from findings) to '/tmp/assay-leak.csv'",
    "copy to parquet": "copy findings to '/tmp/assay-leak.parquet' (format parquet)",
    "copy into the lake": "copy (select 1) to 'lake/assay-leak.csv'",
    "export database": "export database '/tmp/assay-leak-db'",
    "read a system file": "select * from read_csv('/etc/passwd')",
    "read text": "select * from read_text('/etc/hostname')",
    "read the state store": "select * from read_blob('state.sqlite')",
    "list the disk": "select count(*) from glob('/root/**')",
    "climb out of the lake": "select * from read_text('lake/../state.sqlite')",
    "change a setting": "set enable_external_access = true",
    "pragma": "pragma database_list",
    "checkpoint": "checkpoint",
    "a write behind a select": "select 1; copy (select 1) to '/tmp/assay-leak2.csv'",
    "install an extension": "install httpfs",
    "load an extension": "load httpfs",
    "attach a database": "attach '/tmp/assay-leak.db'",
    "call a function": "call duckdb_settings()",
}


@pytest.mark.parametrize("sql", list(ESCAPES.values()), ids=list(ESCAPES))
def test_the_query_sandbox_refuses_every_way_out(night: Path, sql: str) -> None:
    for command in (["query", sql], ["export", sql, "--out", str(night.parent / "out.csv")]):
        result = _cli(night, *command)
        assert result.exit_code in (1, 2), (command, result.output)
        assert "Traceback" not in result.output
        message = result.output.lower()
        assert any(word in message for word in ("only select", "one statement", "disabled by configuration")), (
            command,
            result.output,
        )
    leaks = [Path(p) for p in ("/tmp/assay-leak.csv", "/tmp/assay-leak.parquet", "/tmp/assay-leak2.csv")]
    assert not any(p.exists() for p in leaks) and not (night / "lake" / "assay-leak.csv").exists()
    assert not (night.parent / "out.csv").exists()


def test_what_an_analyst_may_do_still_works(night: Path) -> None:
    ok = _cli(night, "query", "--format", "json", "with f as (select * from findings) select count(*) as n from f")
    assert ok.exit_code == 0 and json.loads(ok.output)[0]["n"] > 0
    described = _cli(night, "query", "--format", "json", "describe findings")
    assert described.exit_code == 0 and "finding_id" in described.output


def test_document_text_never_steers_the_terminal(night: Path) -> None:
    row = json.loads(
        _cli(
            night,
            "query",
            "--format",
            "json",
            "select f.finding_id, t.text from findings f join texts t using (content_sha256)"
            " where t.text like '%evil%' limit 1",
        ).output
    )[0]
    shown = _cli(night, "show", row["finding_id"])
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output and "\x07" not in shown.output  # no escape or OSC sequence reaches the screen
    assert "[/b]" in shown.output and "[mailto:someone@example.com]" in shown.output  # markup shown as text
    assert "[link=http://evil.example]" in shown.output
    table = _cli(night, "query", "select text from texts where text like '%evil%'")
    assert table.exit_code == 0 and "\x1b" not in table.output and "[/b]" in table.output


def test_over_an_s3_lake_the_analysts_connection_cannot_use_the_runs_credentials(
    s3: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSAY_LAKE_STORE", json.dumps(s3.store_settings("lake")))
    run(tmp_path / "data", nightly_source(tmp_path), NO_MODEL)
    data_dir = tmp_path / "data"
    assert json.loads(_cli(data_dir, "query", "--format", "json", "select count(*) as n from findings").output)[0]["n"]
    s3.client.put_object(Bucket=s3.bucket, Key="secrets/payroll.csv", Body=b"name,salary\nana,1\n")
    for sql in (
        f"copy (select 1) to 's3://{s3.bucket}/lake/forged.csv'",
        f"select * from read_csv('s3://{s3.bucket}/secrets/payroll.csv')",
    ):
        result = _cli(data_dir, "query", sql)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "lake/forged.csv" not in s3.keys("lake/")
