"""pipeline/ is the pure core: importing all of it, with everything it imports, loads no Prefect.

The import contract (pyproject.toml, `lint-imports`) checks the import statements; this checks what
actually gets loaded, third-party packages included.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT


def test_importing_the_whole_core_and_connectors_loads_no_prefect() -> None:
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
