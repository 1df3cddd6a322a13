"""Where the model runs. `model.n_gpu_layers` asks llama.cpp to put the model's layers on a GPU; where
llama.cpp finds no GPU (llama-cpp-python built for the CPU, the usual slip on a new GPU node, or a GPU
not visible to the process, a container started without its reservation) it ignores the request and
runs the model on the CPU, with the run sized for a GPU (16 sequences, few threads) and nothing in its
output to say so. Such settings are refused where the engine is loaded and where a shard worker joins a
run, and named by `assay doctor`. (llama.cpp counts a build with its RPC backend as able to offload
even with no RPC server: such a build passes this check.)"""

from __future__ import annotations

from pipeline.core.errors import ModelError
from pipeline.core.settings import ModelSettings

GPU_FIX = (
    'build llama-cpp-python for the GPU on this node (CMAKE_ARGS="-DGGML_CUDA=on" .tools/bin/uv sync --frozen '
    '--reinstall-package llama-cpp-python; docs/operations.md, "GPU nodes") and let this process see the GPU '
    "(nvidia-smi; a container's GPU reservation); or set model.n_gpu_layers = 0 (ASSAY_MODEL__N_GPU_LAYERS=0) "
    "to run on the CPU"
)


def llama_finds_gpu() -> bool:
    """Whether the installed llama.cpp can offload here: built with a GPU backend (CUDA, Metal, Vulkan, ...)
    that finds a device (llama.cpp's `llama_supports_gpu_offload`)."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def offload_problem(settings: ModelSettings, gpu_found: bool | None = None) -> str | None:
    """Why the model cannot run where these settings put it, or None. `gpu_found`: whether llama.cpp finds
    a GPU (None: ask the installed llama.cpp, only when the settings ask for one)."""
    if settings.n_gpu_layers == 0 or (llama_finds_gpu() if gpu_found is None else gpu_found):
        return None
    return (
        f"model.n_gpu_layers = {settings.n_gpu_layers} asks for a GPU, but llama.cpp finds none (built for the "
        "CPU, or no GPU visible to this process): the model would run on the CPU"
    )


def check_offload(settings: ModelSettings) -> None:
    """Raise `ModelError` (with what to do) when the model cannot run where the settings put it."""
    problem = offload_problem(settings)
    if problem is not None:
        raise ModelError(f"{problem}; {GPU_FIX}")
