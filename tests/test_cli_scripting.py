"""The CLI for scripts: `--json` where a script reads the answer, CSV with LF, one document's whole story.

`assay run --json` is tested on a real flow run in tests/test_quality_e2e.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from assay.cli import cli
from tests.jobrunner import NO_MODEL, run
from tests.support import ROOT, assay_command, nightly_source


def _cli(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args])


@pytest.fixture
def night(tmp_path: Path) -> tuple[Path, Path]:
    source = nightly_source(tmp_path)
    run(tmp_path / "data", source, NO_MODEL)
    return source, tmp_path / "data"


def test_json_answers_parse(night: tuple[Path, Path]) -> None:
    source, data_dir = night
    runs = json.loads(_cli(data_dir, "runs", "--json").output)
    assert len(runs) == 1 and runs[0]["status"] == "completed" and runs[0]["in"] == 3

    verified = _cli(data_dir, "verify", "--json")
    assert verified.exit_code == 0 and json.loads(verified.output)["ok"] is True

    finding_id = json.loads(_cli(data_dir, "query", "--format", "json", "select finding_id from findings").output)
    shown = json.loads(_cli(data_dir, "show", finding_id[0]["finding_id"], "--json").output)
    assert shown["finding_id"] == finding_id[0]["finding_id"]
    assert shown["evidence_text"] in shown["context"] and shown["content_sha256"] and shown["task_version"]

    by_path = json.loads(_cli(data_dir, "documents", str(source / "docling__kvp_data_example.html"), "--json").output)
    assert by_path["document"]["status"] == "processed" and len(by_path["runs"]) == 1
    assert {v["field"] for v in by_path["values"]} == {"dates", "phone_numbers"}
    assert all(v["grounded_on"] == "rule" for v in by_path["values"])  # each value's grounding, as for findings
    assert all(f["grounded_on"] == "rule" for f in by_path["findings"])
    failed = json.loads(_cli(data_dir, "documents", (source / "unstructured__empty.txt").as_uri(), "--json").output)
    assert failed["document"]["reason"] == "empty_file" and failed["values"] == []
    missing = _cli(data_dir, "documents", "file:///nowhere.pdf")
    assert missing.exit_code == 1 and "no document" in missing.output

    # replay (rule findings: the recorded task's rules run again, no model), last: it commits
    run_id = runs[0]["run_id"]
    replayed = _cli(data_dir, "replay", "--sample", "2", "--run", run_id, "--json")
    assert replayed.exit_code == 0, replayed.output
    results = json.loads(replayed.output)
    assert len(results) == 2 and {r["run_id"] for r in results} == {run_id}
    assert all(r["status"] == "replayed" and r["reproduced"] is True for r in results), results
    one = json.loads(_cli(data_dir, "replay", finding_id[0]["finding_id"], "--json").output)
    assert [r["finding_id"] for r in one] == [finding_id[0]["finding_id"]]


def test_csv_lines_end_with_lf_so_a_pasted_id_carries_no_cr(night: tuple[Path, Path]) -> None:
    _, data_dir = night
    result = subprocess.run(
        [*assay_command(), "--data-dir", str(data_dir), "query", "--format", "csv", "select run_id from runs"],
        cwd=ROOT,
        capture_output=True,
    )
    assert result.returncode == 0 and b"\r" not in result.stdout
    run_id = result.stdout.decode().splitlines()[1]
    assert _cli(data_dir, "report", run_id, "--out", str(data_dir / "r.html")).exit_code == 0


def test_each_command_is_loaded_by_its_own_name_and_only_when_asked_for() -> None:
    """`COMMANDS` names each command where it lives; `assay query` imports neither `doctor` nor `run`."""
    import click

    from assay.cli import COMMANDS

    root = click.Context(cli, info_name="assay")
    assert isinstance(cli, click.Group) and cli.list_commands(root) == sorted(COMMANDS)
    for name in COMMANDS:
        command = cli.get_command(root, name)
        assert command is not None and command.name == name, (name, command)
    probe = (
        "import sys\nfrom click.testing import CliRunner\nfrom assay.cli import cli\n"
        "result = CliRunner().invoke(cli, ['query', '--help'])\nassert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('assay.doctor_commands', 'assay.run_commands', 'flows.assay_run', 'prefect')"
        " if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr
