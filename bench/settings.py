"""The model settings a bench runs with: the ones `assay run` would use on this machine (assay.toml,
`ASSAY_*` variables such as `ASSAY_MODEL__N_GPU_LAYERS` or `ASSAY_MODEL__PATH`), with the bench's own
overrides on top. Every side of a bench (a peer, the engine, llama.cpp's own C++ reference) takes them
from here, so that all of them run the same model file on the same device.

Reading them as a run does also sets this process up as a run's: its umask from `file_access`, and its
secrets masked in its logs."""

from __future__ import annotations

from typing import Any

from pipeline.core.settings import ModelSettings, load_settings
from pipeline.extract.device import check_offload


def model_settings(**overrides: Any) -> ModelSettings:
    """`[model]` as a run would read it, with `overrides` (None: keep the configured value). A GPU asked
    for where llama.cpp finds none stops the bench before it measures anything (`ModelError`)."""
    settings = load_settings(model={key: value for key, value in overrides.items() if value is not None}).model
    check_offload(settings)
    return settings
