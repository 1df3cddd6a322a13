"""The checks CI runs besides the tests, as tests: lint, format, types, and the import contract.

Each is also a make target (`make lint`, `make typecheck`, `make imports`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],  # strict, over pipeline/, connectors/, flows/, assay/, bench/ and tests/ (pyproject.toml)
        ["lint-imports"],  # the layers of pipeline/ and what connectors/ may import (pyproject.toml)
    ],
    ids=["ruff", "ruff-format", "mypy", "import-contract"],
)
def test_the_tree_passes(command: list[str]) -> None:
    result = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
