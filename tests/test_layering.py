"""pipeline/ is the pure core: it must not import Prefect, directly or through its imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_prefect_import_in_pipeline_source() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imported_modules(path) if m.split(".")[0] == "prefect")
        for path in (ROOT / "pipeline").rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}


def test_no_prefect_import_in_connectors_source() -> None:
    for path in (ROOT / "connectors").rglob("*.py"):
        assert not any(m.split(".")[0] == "prefect" for m in _imported_modules(path)), path


def test_importing_the_whole_core_loads_no_prefect() -> None:
    code = (
        "import sys, pkgutil, importlib, pipeline, connectors\n"
        "for pkg in (pipeline, connectors):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "loaded = sorted(n for n in sys.modules if n == 'prefect' or n.startswith('prefect.'))\n"
        "print(len(loaded)); assert not loaded, loaded[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
