"""Build llama.cpp's own `llama-batched-bench` from the source vendored in the llama-cpp-python sdist
of the installed version, once, into bench/.cache/. It is the C++ reference the engine is measured against.

    .venv/bin/python bench/cpp_reference.py      # builds (a few minutes on 2 cores) and prints the path
    CMAKE_ARGS="-DGGML_CUDA=on" .venv/bin/python bench/cpp_reference.py     # the CUDA build, for a GPU node

`CMAKE_ARGS` is the variable llama-cpp-python's own build reads (docs/operations.md): the reference is built
with the same arguments as the engine it is measured against, each set of arguments in a folder of its own.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shlex
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


def cmake_args() -> list[str]:
    """The extra CMake arguments of this build: `$CMAKE_ARGS`, as llama-cpp-python's build reads them."""
    return shlex.split(os.environ.get("CMAKE_ARGS", ""))


def build_folder(version_: str, extra: list[str]) -> Path:
    """Where the reference is built: one folder per llama.cpp version and set of CMake arguments."""
    if not extra:
        return CACHE / f"build-{version_}"
    return CACHE / f"build-{version_}-{hashlib.sha256(shlex.join(extra).encode()).hexdigest()[:12]}"


def gpu_layers_flag(n_gpu_layers: int) -> str:
    """`-ngl`'s value for the engine's `n_gpu_layers`: the engine reads a negative number as every layer
    (llama.h); the C++ tools read -1 as "auto" and want "all" for that."""
    return "all" if n_gpu_layers < 0 else str(n_gpu_layers)


def batched_bench() -> Path:
    version_ = version("llama-cpp-python")
    extra = cmake_args()
    build = build_folder(version_, extra)
    binary = build / "bin" / "llama-batched-bench"
    if binary.exists():
        return binary
    source = _source(version_)
    # The same defaults as the Python wheel's build (curl off, native CPU features, Release), then $CMAKE_ARGS.
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
            *extra,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "llama-batched-bench", "-j", str(len(os.sched_getaffinity(0)))],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return binary


def bench_command(
    binary: Path, model: Path, pp: int, tg: int, parallel: int, threads: int, n_batch: int, n_gpu_layers: int = 0
) -> list[str]:
    """The llama-batched-bench command line for one shape, on the device the engine uses (`n_gpu_layers`)."""
    command = [str(binary), "-m", str(model), "-c", str((pp + tg) * parallel + 16), "-b", str(n_batch)]
    command += ["-ub", str(n_batch), "-npp", str(pp), "-ntg", str(tg), "-npl", str(parallel)]
    command += ["-t", str(threads), "-tb", str(threads), "-ngl", gpu_layers_flag(n_gpu_layers)]
    return command


def bench_row(
    binary: Path, model: Path, pp: int, tg: int, parallel: int, threads: int, n_batch: int, n_gpu_layers: int = 0
) -> dict[str, float]:
    """llama-batched-bench at one shape (prompt `pp`, generate `tg`, `parallel` sequences): its last table row
    as {column: value}, columns as it names them (`S_PP t/s`, `S_TG t/s`, `S t/s`, ...)."""
    command = bench_command(binary, model, pp, tg, parallel, threads, n_batch, n_gpu_layers)
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    if n_gpu_layers != 0 and "no usable GPU found" in done.stderr:  # a CPU build measured against a GPU engine
        raise SystemExit(
            f"{binary} was built for the CPU: build the reference for the GPU "
            '(CMAKE_ARGS="-DGGML_CUDA=on", as llama-cpp-python was built) and run the bench with CMAKE_ARGS set'
        )
    output = done.stdout
    header = next(r for r in output.splitlines() if re.match(r"^\|\s+PP\s+\|", r))
    rows = [r for r in output.splitlines() if re.match(r"^\|\s+\d+", r)]
    names = [c.strip() for c in header.strip().strip("|").split("|")]
    cells = [float(c.strip()) for c in rows[-1].strip().strip("|").split("|")]
    print(f"  llama-batched-bench: {rows[-1].strip()}", flush=True)
    return dict(zip(names, cells, strict=True))


if __name__ == "__main__":
    print(batched_bench())
