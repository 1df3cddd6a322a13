"""Hostile or accidental input contained: the model loaded is the file that was checked, fault switches
are dead in production, and what Assay creates is readable by its own account only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core import faults
from pipeline.core.errors import ModelIntegrityError
from pipeline.core.hashing import sha256_bytes
from pipeline.core.settings import ModelSettings, load_settings
from pipeline.extract.model_files import resolve_model_file, verified_path
from tests.jobrunner import NO_MODEL
from tests.support import ROOT, nightly_source


def _model(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    return path


def test_the_model_loaded_is_the_bytes_that_were_hashed_even_if_the_path_is_swapped(tmp_path: Path) -> None:
    good = b"GGUF the weights that were approved" * 1000
    path = _model(tmp_path, good)
    checked = resolve_model_file(ModelSettings(path=path, sha256=sha256_bytes(good)))
    with verified_path(checked) as load_from:
        # Swapped after the check, while the loader opens it: the loader still reads the checked bytes.
        (tmp_path / "evil.gguf").write_bytes(b"GGUF other weights")
        os.replace(tmp_path / "evil.gguf", path)
        assert Path(load_from).read_bytes() == good
    # Swapped between the check and the load: refused.
    with pytest.raises(ModelIntegrityError, match="changed after it was checked"), verified_path(checked):
        pass


def test_a_model_rewritten_in_place_is_hashed_again(tmp_path: Path) -> None:
    good = b"GGUF approved" * 100
    path = _model(tmp_path, good)
    checked = resolve_model_file(ModelSettings(path=path, sha256=sha256_bytes(good)))
    with path.open("r+b") as handle:  # same inode, same size, new bytes (its ctime moves)
        handle.write(b"EVIL")
    with pytest.raises(ModelIntegrityError), verified_path(checked):
        pass


def test_fault_switches_are_dead_unless_a_test_arms_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_CRASH_AT", "land")
    monkeypatch.setenv("ASSAY_PARSE_FAULT", "crash:contract.pdf")
    assert not faults._armed  # nothing in this process armed them
    faults.crash_point("land")  # would SIGKILL this test process if armed
    assert faults.parse_fault("contract.pdf") is None
    production = [ROOT / name for name in ("pipeline", "connectors", "flows", "assay")]
    arming = [p for folder in production for p in folder.rglob("*.py") if "faults.arm()" in p.read_text()]
    assert arming == []


def test_a_production_run_ignores_the_crash_switch(tmp_path: Path) -> None:
    """The same job as the crash tests', started as the CLI starts it (not armed): it completes."""
    source = nightly_source(tmp_path)
    script = (
        "import sys; from pathlib import Path; import tests.jobrunner as j; "
        "print(j.run(Path(sys.argv[1]), Path(sys.argv[2]), j.NO_MODEL).model_dump_json())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "data"), str(source), *NO_MODEL],
        cwd=ROOT,
        env=dict(os.environ, ASSAY_CRASH_AT="before-manifest"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"status":"completed"' in done.stdout


def test_files_assay_creates_are_its_accounts_alone(tmp_path: Path) -> None:
    from tests.jobrunner import run

    run(tmp_path / "data", nightly_source(tmp_path), NO_MODEL)
    created = [p for p in (tmp_path / "data").rglob("*")]
    assert any(p.name == "state.sqlite" for p in created) and any(p.suffix == ".parquet" for p in created)
    readable_by_others = [str(p) for p in created if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert readable_by_others == []
    load_settings(file_access="group")  # an installation whose analysts share the account's group
    assert os.umask(0o077) == 0o027
