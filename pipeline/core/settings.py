"""One settings object for the whole job.

Precedence, highest first: values passed in code or on the CLI, `ASSAY_*`
environment variables (nested with `__`, e.g. `ASSAY_MODEL__N_THREADS=1`),
the TOML file (`--config`, `ASSAY_CONFIG`, or `./assay.toml`), then defaults.
Secrets are `SecretStr`; `Settings.redacted()` masks them and every URL's password (what run
records and logs see), and `Settings.secret_values()` lists them for `pipeline.core.secrets.protect`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pipeline.core.errors import ConfigError
from pipeline.core.secrets import MASK, is_secret_name, protect, redact_data, redact_url, url_secrets
from pipeline.core.settings_sections import (  # re-exported: the sections are part of the settings' API
    ChunkingSettings,
    ContainerSettings,
    EngineName,
    LearningSettings,
    ListingSettings,
    LockSettings,
    ModelSettings,
    NotifyOn,
    NotifySettings,
    OrchestrationSettings,
    ParserStrategy,
    ParsingSettings,
    S3StoreSettings,
    SigningSettings,
    SourceSettings,
    ValueConventions,
    _redacted_repr_args,
)

__all__ = [
    "CLEARABLE",
    "ChunkingSettings",
    "ContainerSettings",
    "EngineName",
    "LearningSettings",
    "ListingSettings",
    "LockSettings",
    "ModelSettings",
    "NotifyOn",
    "NotifySettings",
    "OrchestrationSettings",
    "ParserStrategy",
    "ParsingSettings",
    "S3StoreSettings",
    "Settings",
    "SigningSettings",
    "SourceSettings",
    "ValueConventions",
    "find_config_file",
    "load_settings",
    "secrets_in_overrides",
    "settings_from_parameters",
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASSAY_",
        env_nested_delimiter="__",
        extra="forbid",
        hide_input_in_errors=True,  # a validation error must not print a secret it was given
    )

    # Class-level: which TOML file to read (set by `load_settings`).
    _toml_file: ClassVar[Path | None] = None

    data_dir: Path = Path("data")
    tasks: list[str] = Field(default_factory=lambda: ["key_terms"])
    task_dirs: list[Path] = Field(
        default_factory=list, description="Extra folders of task files (*.yaml) besides the built-in ones."
    )
    shard_size: int = Field(default=8, ge=1, description="Documents per Prefect task run.")
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    max_chunks_per_document: int | None = Field(
        default=None,
        ge=1,
        description="Extract from at most this many chunks per document (the rest are recorded as skipped).",
    )
    routing: bool = Field(
        default=True,
        description="Send to the model only the chunks where a task's signals match (tasks without signals: all).",
    )
    parser_strategy: ParserStrategy = Field(
        default="fast", description="unstructured's strategy (hi_res needs layout models from a hub: not offered)."
    )
    retry_failed: bool = Field(
        default=False,
        description="Parse again documents that failed in a way the same bytes would fail again (encrypted, "
        "empty, parse timeout, ...); by default they are recorded as failed again without parsing.",
    )
    parsing: ParsingSettings = Field(default_factory=ParsingSettings)
    containers: ContainerSettings = Field(default_factory=ContainerSettings)
    listing: ListingSettings = Field(default_factory=ListingSettings)
    locks: LockSettings = Field(default_factory=LockSettings)
    signing: SigningSettings = Field(default_factory=SigningSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    learning: LearningSettings = Field(default_factory=LearningSettings)
    sources: dict[str, SourceSettings] = Field(default_factory=dict)
    values: ValueConventions = Field(default_factory=ValueConventions)
    lake_store: S3StoreSettings | None = Field(
        default=None,
        description="Write the lake (Parquet and manifests) to this S3-compatible store instead of data_dir/lake.",
    )
    lake_mirror: S3StoreSettings | None = Field(
        default=None, description="Publish the committed lake to this S3-compatible store after every run."
    )
    file_access: Literal["owner", "group"] = Field(
        default="owner",
        description="Who may read the files Assay creates (lake, state, warehouse, reports): the account that "
        "runs it (umask 077), or its group too (umask 027).",
    )
    reviewer: str | None = Field(
        default=None,
        description="Who records review decisions from this installation; default: <login>@<host> of the account.",
    )
    state_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL of the state store; None: SQLite at <data_dir>/state.sqlite (docs/operations.md).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        return _redacted_repr_args(self)

    def conventions(self, source: str) -> ValueConventions:
        """How the source of this name writes values: its own `values`, else the top-level ones."""
        configured = self.sources.get(source)
        return configured.values if configured is not None and configured.values is not None else self.values

    @property
    def lake_dir(self) -> Path:
        """The local lake folder, used when `lake_store` is not set (see pipeline/lake_store.py)."""
        return self.data_dir / "lake"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON-ready data with every secret masked (what run records and logs see)."""
        data = self.model_dump(mode="json")  # SecretStr fields come out masked
        if self.state_url is not None:
            data["state_url"] = redact_url(self.state_url.get_secret_value())
        redacted: dict[str, Any] = redact_data(data)
        return redacted

    def without_secrets(self) -> Settings:
        """A copy holding no secret: each is masked (a URL keeps its user and host), for a pickle that
        leaves this process (`RunContext` sent to Dask workers). `with_secrets_from` puts them back."""
        masked: Settings = _mask(self)
        return masked

    def public_values(self) -> dict[str, Any]:
        """These settings as keyword arguments, without their secrets (masked or not)."""

        def public(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: public(v) for k, v in value.items() if not _is_secret_value(str(k), v)}
            if isinstance(value, list):
                return [public(item) for item in value]
            return value

        values: dict[str, Any] = public(self.model_dump())
        return values

    def with_secrets_from(self, own: Settings) -> Settings:
        """These settings, their masked secrets taken from `own` (a worker's settings from its environment).

        A secret `own` lacks, or one for another place (a state URL of another host, user or database),
        is a `ConfigError`: a worker never guesses where its credentials go.
        """
        restored: Settings = _restore(self, own, "settings")
        return restored

    def secret_values(self) -> list[str]:
        """Every secret these settings hold: to be masked wherever it might be printed (`secrets.protect`)."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                found.extend([secret, *url_secrets(secret)])
            elif isinstance(value, BaseModel):
                walk({name: getattr(value, name) for name in type(value).model_fields} | (value.model_extra or {}))
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(item, str) and is_secret_name(str(key)):
                        found.append(item)
                    walk(item)
            elif isinstance(value, list | tuple):
                for item in value:
                    walk(item)
            elif isinstance(value, str):
                found.extend(url_secrets(value))

        walk(self)
        return [value for value in found if value]


def _masked_secret(secret: str) -> str:
    return redact_url(secret) if url_secrets(secret) else secret if "://" in secret else MASK


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return SecretStr(_masked_secret(value.get_secret_value()))
    if isinstance(value, BaseModel):
        update = {name: _mask(getattr(value, name)) for name in type(value).model_fields}
        return value.model_copy(update=update | _mask(value.model_extra or {}))
    if isinstance(value, dict):
        return {k: MASK if isinstance(v, str) and v and is_secret_name(str(k)) else _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(item) for item in value]
    if isinstance(value, str) and url_secrets(value):
        return redact_url(value)
    return value


def _restore(masked: Any, own: Any, where: str) -> Any:
    if isinstance(masked, SecretStr | str) and MASK in _plain(masked):
        if not isinstance(own, SecretStr | str) or _plain(_mask(own)) != _plain(masked):
            raise ConfigError(
                f"{where} is a secret, and secrets are not sent to workers: this worker's own settings (its "
                f"environment or config file) must give it, for {_plain(masked)!r}"
            )
        return own
    if isinstance(masked, BaseModel):
        extra = masked.model_extra or {}
        update = {
            name: _restore(getattr(masked, name), getattr(own, name, None), f"{where}.{name}")
            for name in [*type(masked).model_fields, *extra]
        }
        return masked.model_copy(update=update)
    if isinstance(masked, dict):
        mine = own if isinstance(own, dict) else {}
        return {k: _restore(v, mine.get(k), f"{where}.{k}") for k, v in masked.items()}
    if isinstance(masked, list):
        return [_restore(item, None, where) for item in masked]
    return masked


def _is_secret_value(name: str, value: Any) -> bool:
    if isinstance(value, SecretStr):
        return True
    if isinstance(value, str):
        return bool(value) and (is_secret_name(name) or bool(url_secrets(value)) or MASK in value)
    return False


def _plain(value: SecretStr | str) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def secrets_in_overrides(overrides: dict[str, Any], where: str = "overrides") -> list[str]:
    """Where `overrides` (a Prefect parameter, stored and shown by Prefect) hold a secret."""
    found = []
    for key, value in overrides.items():
        path = f"{where}.{key}"
        if isinstance(value, dict):
            found += secrets_in_overrides(value, path)
        elif value and (key in _SECRET_FIELDS or is_secret_name(str(key))):
            found.append(path)
        elif isinstance(value, str) and url_secrets(value):
            found.append(path)
    return found


def find_config_file(explicit: Path | None = None) -> Path | None:
    """The TOML file to read: the explicit one, `$ASSAY_CONFIG`, or `./assay.toml`."""
    if explicit is not None:
        if not explicit.is_file():
            raise FileNotFoundError(f"config file not found: {explicit}")
        return explicit
    env = os.environ.get("ASSAY_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"ASSAY_CONFIG points to a missing file: {path}")
        return path
    default = Path("assay.toml")
    return default if default.is_file() else None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from the TOML file, the environment and `overrides` (CLI flags), and set up the
    process for them: their secrets are masked in its logs, and the files it creates get `file_access`.

    An override of None is ignored, except for the settings in `CLEARABLE`, where it switches the
    setting off (an evaluation run keeps its own local lake and state, whatever the config says).
    """
    Settings._toml_file = find_config_file(config_file)
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None or k in CLEARABLE})
    protect(settings.secret_values())  # masked in every log line and recorded error of this process
    os.umask(0o077 if settings.file_access == "owner" else 0o027)  # files created from now on
    return settings


def _secret_fields(model: type[BaseModel]) -> set[str]:
    names = set()
    for name, info in model.model_fields.items():
        if "SecretStr" in str(info.annotation):
            names.add(name)
        for candidate in getattr(info.annotation, "__args__", (info.annotation,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                names |= _secret_fields(candidate)
    return names


_SECRET_FIELDS = frozenset(_secret_fields(Settings))


def settings_from_parameters(config_file: str | None, overrides: dict[str, Any] | None) -> Settings:
    """The settings of a flow run, from its parameters. Parameters are stored and shown by Prefect, so a
    secret in `overrides` is refused: secrets come from the config file or the environment of the
    process that runs the flow (docs/security.md)."""
    found = secrets_in_overrides(overrides or {})
    if found:
        raise ConfigError(
            f"{', '.join(found)}: a secret cannot be a flow parameter (Prefect stores and shows parameters); "
            "set it in the config file or the environment (e.g. ASSAY_STATE_URL) of the flow's process"
        )
    return load_settings(Path(config_file) if config_file else None, **(overrides or {}))


# Settings an override may switch off with an explicit None (other None overrides mean "not given").
CLEARABLE = frozenset({"state_url", "lake_store", "lake_mirror"})
