"""Build llama.cpp's own `llama-batched-bench` from the source vendored in the llama-cpp-python sdist
of the installed version, once, into bench/.cache/. It is the C++ reference the engine is measured against.

    .venv/bin/python bench/cpp_reference.py      # builds (a few minutes on 2 cores) and prints the path
"""

from __future__ import annotations

import glob
import re
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"


def _sdist(version_: str) -> Path:
    """The sdist from pip's registry (bench-time only; nothing at pipeline run time)."""
    target = CACHE / "sdist"
    found = sorted(target.glob(f"llama_cpp_python-{version_}.tar.gz"))
    if found:
        return found[0]
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"llama-cpp-python=={version_}",
            "-d",
            str(target),
        ],
        check=True,
    )
    return sorted(target.glob(f"llama_cpp_python-{version_}.tar.gz"))[0]


def _source(version_: str) -> Path:
    """The vendored llama.cpp tree: from uv's cache when present, else from the sdist."""
    cached = sorted(glob.glob(str(Path.home() / f".cache/uv/sdists-v*/pypi/llama-cpp-python/{version_}/*/src")))
    for candidate in cached:
        tree = Path(candidate) / "vendor" / "llama.cpp"
        if (tree / "tools" / "batched-bench").is_dir():
            return tree
    unpacked = CACHE / f"llama_cpp_python-{version_}"
    if not unpacked.is_dir():
        with tarfile.open(_sdist(version_)) as archive:
            archive.extractall(CACHE, filter="data")
    return unpacked / "vendor" / "llama.cpp"


def batched_bench() -> Path:
    version_ = version("llama-cpp-python")
    build = CACHE / f"build-{version_}"
    binary = build / "bin" / "llama-batched-bench"
    if binary.exists():
        return binary
    source = _source(version_)
    # The same defaults as the Python wheel's build (curl off, native CPU features, Release).
    subprocess.run(
        [
            "cmake",
            "-S",
            str(source),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_SERVER=OFF",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "llama-batched-bench", "-j", "2"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return binary


def bench_row(
    binary: Path, model: Path, pp: int, tg: int, parallel: int, threads: int, n_batch: int
) -> dict[str, float]:
    """llama-batched-bench at one shape (prompt `pp`, generate `tg`, `parallel` sequences): its last table row
    as {column: value}, columns as it names them (`S_PP t/s`, `S_TG t/s`, `S t/s`, ...)."""
    command = [str(binary), "-m", str(model), "-c", str((pp + tg) * parallel + 16), "-b", str(n_batch)]
    command += ["-ub", str(n_batch), "-npp", str(pp), "-ntg", str(tg), "-npl", str(parallel)]
    command += ["-t", str(threads), "-tb", str(threads)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    header = next(r for r in output.splitlines() if re.match(r"^\|\s+PP\s+\|", r))
    rows = [r for r in output.splitlines() if re.match(r"^\|\s+\d+", r)]
    names = [c.strip() for c in header.strip().strip("|").split("|")]
    cells = [float(c.strip()) for c in rows[-1].strip().strip("|").split("|")]
    print(f"  llama-batched-bench: {rows[-1].strip()}", flush=True)
    return dict(zip(names, cells, strict=True))


if __name__ == "__main__":
    print(batched_bench())
