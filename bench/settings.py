"""The model settings a bench runs with: the ones `assay run` would use on this machine (assay.toml,
`ASSAY_*` variables such as `ASSAY_MODEL__N_GPU_LAYERS` or `ASSAY_MODEL__PATH`), with the bench's own
overrides on top. Every side of a bench (a peer, the engine, llama.cpp's own C++ reference) takes them
from here, so that all of them run the same model file on the same device."""

from __future__ import annotations

from typing import Any

from pipeline.core.settings import ModelSettings, load_settings


def model_settings(**overrides: Any) -> ModelSettings:
    """`[model]` as a run would read it, with `overrides` (None: keep the configured value)."""
    configured = load_settings().model.model_dump()
    configured.update({key: value for key, value in overrides.items() if value is not None})
    return ModelSettings.model_validate(configured)
