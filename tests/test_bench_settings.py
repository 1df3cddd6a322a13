"""The benches run every side on the model and device a run would use here, llama.cpp's C++ reference
included (a GPU node measures a GPU against a GPU, a customer's GGUF against the same GGUF)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cpp_reference import bench_command, build_folder, cmake_args
from bench.settings import model_settings
from pipeline.core.errors import ModelError
from pipeline.extract.device import llama_finds_gpu


@pytest.fixture(autouse=True)
def _no_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./assay.toml
    monkeypatch.delenv("ASSAY_CONFIG", raising=False)
    monkeypatch.delenv("ASSAY_MODEL__N_GPU_LAYERS", raising=False)
    monkeypatch.delenv("ASSAY_MODEL__N_PARALLEL", raising=False)


def test_a_bench_reads_the_model_settings_a_run_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = model_settings(n_threads=1)
    assert (cpu.n_gpu_layers, cpu.n_parallel, cpu.n_threads) == (0, 4, 1)
    Path("assay.toml").write_text("[model]\nn_parallel = 6\nn_threads = 3\n")
    assert (model_settings().n_parallel, model_settings().n_threads) == (6, 3)
    assert model_settings(n_parallel=32, n_threads=None).n_threads == 3  # a bench's flag wins; None keeps
    assert model_settings(n_parallel=32, n_threads=None).n_parallel == 32
    Path("assay.toml").unlink()

    monkeypatch.setenv("ASSAY_MODEL__N_GPU_LAYERS", "-1")  # what docs/performance.md tells a GPU node to set
    if llama_finds_gpu():
        gpu = model_settings(n_threads=1)
        assert (gpu.n_gpu_layers, gpu.n_parallel, gpu.n_threads) == (-1, 16, 1)
    else:  # a bench asked for a GPU that llama.cpp cannot find stops before it measures anything
        with pytest.raises(ModelError, match=r"asks for a GPU, but llama\.cpp finds none"):
            model_settings(n_threads=1)


def test_the_cpp_reference_runs_on_the_engines_device_and_builds_with_its_cmake_args(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def ngl(n_gpu_layers: int) -> str:
        command = bench_command(Path("bb"), Path("m.gguf"), 400, 70, 4, 2, 512, n_gpu_layers)
        return command[command.index("-ngl") + 1]

    # The engine reads a negative n_gpu_layers as every layer; llama-batched-bench reads -1 as "auto".
    assert (ngl(0), ngl(-1), ngl(12)) == ("0", "all", "12")

    monkeypatch.setenv("CMAKE_ARGS", '-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES="80;90"')
    assert cmake_args() == ["-DGGML_CUDA=on", "-DCMAKE_CUDA_ARCHITECTURES=80;90"]
    cuda = build_folder("0.3.36", cmake_args())
    monkeypatch.delenv("CMAKE_ARGS")
    assert cmake_args() == []
    cpu = build_folder("0.3.36", cmake_args())
    assert cpu.name == "build-0.3.36" and cuda.name.startswith("build-0.3.36-") and cuda.parent == cpu.parent
