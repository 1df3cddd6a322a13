"""Where each effective setting came from: a default, the TOML file, an `ASSAY_*` variable, or a flag.

pydantic-settings builds `Settings` from a chain of sources (`Settings.settings_customise_sources`:
overrides, the environment, the TOML file) deep-merged over the defaults. `explain` asks each source of
that same chain for what it holds, separately, and gives every leaf of the effective settings the first
source in the chain that holds it; no source holding it means the default. Nothing is parsed here that
pydantic-settings does not parse itself. Values come from `Settings.redacted()`: secrets are masked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr
from pydantic_settings import (
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    TomlConfigSettingsSource,
)

from pipeline.core.secrets import MASK, is_secret_name
from pipeline.core.settings import Settings

OriginKind = Literal["default", "file", "environment", "override"]


@dataclass(frozen=True)
class SettingOrigin:
    """One effective setting: its dotted key, its value (secrets masked) and where it came from."""

    key: str  # e.g. "model.n_threads", "sources.contracts.path"
    value: Any  # JSON-ready; a secret is masked
    origin: OriginKind
    where: str | None  # the file's path, the variable's name, the flag; None for a default
    secret: bool = False

    def describe(self) -> str:
        """`default`, `file /etc/assay/assay.toml`, `environment ASSAY_MODEL__N_THREADS`, `flag --data-dir`."""
        if self.origin == "default":
            return "default"
        label = "flag" if self.origin == "override" and (self.where or "").startswith("--") else self.origin
        return f"{label} {self.where}" if self.where else label


def explain(
    settings: Settings,
    overrides: Mapping[str, Any] | None = None,
    flags: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[SettingOrigin]:
    """Every leaf of `settings` (as `load_settings` built them, with these `overrides`) and its origin.

    `flags` names the CLI flag behind an override (`{"data_dir": "--data-dir"}`). The TOML file is the one
    `load_settings` chose (`Settings._toml_file`), so call this right after loading the settings.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    chain = Settings.settings_customise_sources(
        Settings,
        init_settings=InitSettingsSource(Settings, init_kwargs=dict(overrides)),
        env_settings=EnvSettingsSource(Settings),
        dotenv_settings=DotEnvSettingsSource(Settings, env_file=None),
        file_secret_settings=SecretsSettingsSource(Settings),
    )
    held = [(source, source()) for source in chain]
    raw = settings.model_dump()
    found = []
    for path, value in _leaves(settings.redacted()):
        origin: OriginKind = "default"
        where: str | None = None
        for source, values in held:
            if _holds(values, path):
                origin, where = _describe_source(source, path, flags or {}, environ)
                break
        secret = _is_secret(path, _get(raw, path), value)
        if secret and isinstance(value, str) and value and "://" not in value:
            value = MASK  # one mask for every secret (a SecretStr dumps as ten stars)
        found.append(SettingOrigin(".".join(path), value, origin, where, secret))
    return found


def _describe_source(
    source: PydanticBaseSettingsSource, path: tuple[str, ...], flags: Mapping[str, str], environ: Mapping[str, str]
) -> tuple[OriginKind, str | None]:
    if isinstance(source, TomlConfigSettingsSource):  # before InitSettingsSource: it is one
        files = source.toml_file_path
        named = files if isinstance(files, list | tuple) else [files]
        return "file", ", ".join(str(Path(str(file)).resolve()) for file in named if file)
    if isinstance(source, InitSettingsSource):
        return "override", flags.get(path[0])
    if isinstance(source, EnvSettingsSource):  # DotEnvSettingsSource is one too; the chain holds none
        return "environment", _variable(path, environ)
    return "override", type(source).__name__  # a source added to the chain later: named, at least


def _variable(path: tuple[str, ...], environ: Mapping[str, str]) -> str | None:
    """The variable that set `path`: `ASSAY_MODEL__N_THREADS`, or a section's JSON in `ASSAY_MODEL`."""
    config = Settings.model_config
    prefix, delimiter = config.get("env_prefix") or "", config.get("env_nested_delimiter") or "__"
    names = {name.upper(): name for name in environ}
    for depth in range(len(path), 0, -1):
        wanted = (prefix + delimiter.join(path[:depth])).upper()
        if wanted in names:
            return names[wanted]
    return None


def _leaves(data: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, value) of every leaf: a dict is walked (an empty one is a leaf), anything else is a leaf."""
    if isinstance(data, dict) and data:
        for key, value in data.items():
            yield from _leaves(value, (*path, str(key)))
    else:
        yield path, data


def _holds(values: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    """Whether a source's values hold `path`, or a value at a prefix of it that is not a section (a JSON list)."""
    current: Any = values
    for key in path:
        if not isinstance(current, Mapping):
            return True  # the source gives the whole of what is above this key
        matches = [k for k in current if str(k).lower() == key.lower()]  # environment names are case-blind
        if not matches:
            return False
        current = current[matches[0]]
    return True


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _is_secret(path: tuple[str, ...], raw: Any, shown: Any) -> bool:
    if isinstance(raw, SecretStr) or (path and is_secret_name(path[-1])):
        return True
    return isinstance(raw, str) and raw != shown  # a URL whose password was masked
