"""One settings object for the whole job.

Precedence, highest first: values passed in code or on the CLI, `ASSAY_*`
environment variables (nested with `__`, e.g. `ASSAY_MODEL__N_THREADS=1`),
the TOML file (`--config`, `ASSAY_CONFIG`, or `./assay.toml`), then defaults.
Secrets are `SecretStr` and URLs have their passwords masked in
`Settings.redacted()`, which is what run records and logs see.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url

from pipeline.core.resources import available_cores

EngineName = Literal["batched", "sequential"]
ParserStrategy = Literal["fast", "ocr_only", "auto"]


class _Section(BaseModel):
    """A nested settings section: an unknown key (a typo) is an error that names it."""

    model_config = ConfigDict(extra="forbid")


class ChunkingSettings(_Section):
    """Arguments of unstructured's `chunk_by_title` (characters, not tokens)."""

    max_characters: int = 1200
    new_after_n_chars: int = 1000
    combine_text_under_n_chars: int = 200
    overlap: int = 0


class ParsingSettings(_Section):
    """Partitioning in worker processes (pipeline/parse/workers.py): how many, and their limits."""

    workers: int | None = Field(
        default=None,
        ge=0,
        description="Parsing processes; None = one per available core; 0 = parse inside the run's own process.",
    )
    timeout_s: float = Field(default=300.0, gt=0, description="A file (or PDF part) still parsing after this fails.")
    memory_mb: int = Field(default=4096, ge=256, description="Address-space cap of each parsing process (MiB).")
    files_per_worker: int = Field(default=200, ge=1, description="A parsing process is replaced after this many.")
    pdf_pages_per_part: int = Field(default=200, ge=1, description="Longer PDFs are parsed in page ranges this long.")

    @property
    def processes(self) -> int:
        return available_cores() if self.workers is None else self.workers


class LockSettings(_Section):
    """The run's lock on its data directory (pipeline/state/locks.py)."""

    heartbeat_s: float = Field(default=20.0, gt=0, description="How often a run renews its lock.")
    stale_after_s: float = Field(
        default=120.0, gt=0, description="A lock whose heartbeat is older than this is taken over (its run died)."
    )


class SigningSettings(_Section):
    """The key every manifest is signed with, and the keys `assay verify` trusts (pipeline/land/signing.py)."""

    key_file: Path = Field(
        default=Path("~/.config/assay/signing-key.pem"),
        description="Ed25519 private key (PEM), outside the lake; created with mode 0600 on first use.",
    )
    trusted_keys: list[Path] = Field(
        default_factory=list, description="Public keys (PEM) whose signatures verify besides this installation's."
    )


class S3StoreSettings(_Section):
    """A place in an S3-compatible store (AWS S3, MinIO, Ceph, ...): the lake itself, or its mirror."""

    url: str = Field(description="s3://bucket/prefix: the lake's root (its tables are folders under it)")
    endpoint_url: str | None = Field(default=None, description="e.g. https://minio.internal:9000; None: AWS")
    region: str = "us-east-1"
    access_key_id: SecretStr | None = Field(default=None, description="None: the AWS_* environment variables")
    secret_access_key: SecretStr | None = None


class ModelSettings(_Section):
    """Which GGUF to run and how. `path=None` means the embedded SmolLM2-135M."""

    name: str = "smollm2-135m-instruct-q4_1"
    path: Path | None = None
    sha256: str | None = Field(
        default=None,
        description="Expected SHA-256 of the file; required for a custom path, known for the embedded model.",
    )
    engine: EngineName = Field(default="batched", description="batched (N sequences together) or sequential")
    n_parallel: int = Field(
        default=0,
        ge=0,
        description="Sequences decoded together by the batched engine; 0 = choose: 4 on CPU, 16 with GPU offload.",
    )
    n_ctx: int = Field(default=2048, description="Context (tokens) of each sequence: prompt + answer.")
    n_batch: int = 512
    n_threads: int = Field(default_factory=available_cores)
    n_gpu_layers: int = 0
    max_tokens: int = 320
    temperature: float = 0.0
    seed: int = 0

    @model_validator(mode="after")
    def _choose_parallelism(self) -> ModelSettings:
        # On CPU, prompt processing is already batched and generation gains ~2x from batching: 4 sequences
        # take most of it (docs/performance.md). On a GPU, batching is what fills the device.
        if self.n_parallel == 0:
            self.n_parallel = 16 if self.n_gpu_layers != 0 else 4
        return self


class ValueConventions(_Section):
    """How a source writes its values: dates and amounts are read by these (and each value records them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date_order: Literal["MDY", "DMY", "YMD"] = Field(
        default="MDY", description="How to read a date like 03/04/2026: MDY (March 4), DMY (3 April) or YMD."
    )
    languages: list[str] = Field(
        default_factory=lambda: ["en"],
        description="ISO 639-1 codes of the languages dates are written in (e.g. 'le 4 mars 2026': fr).",
    )
    decimal_separator: Literal[".", ","] | None = Field(
        default=None, description="In amounts; None: read from the number (1.000.000,00 and 1,000,000.00 both work)."
    )

    def describe(self) -> str:
        """One line for lineage: `date_order=DMY languages=fr,en decimal=,`."""
        return (
            f"date_order={self.date_order} languages={','.join(self.languages)}"
            f" decimal={self.decimal_separator or 'auto'}"
        )


class SourceSettings(BaseModel):
    """A named source as the settings file holds it: `connector` names a module of connectors/, the other keys
    are that connector's own settings. The core does not read them: connectors/registry.py validates them
    against the connector's config model (an unknown connector or key is an error that names it)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    connector: str = "local"
    values: ValueConventions | None = Field(
        default=None, description="How this source writes dates and amounts (default: the top-level [values])."
    )

    def options(self) -> dict[str, Any]:
        """The connector's own keys, `connector` included (not `values`, which the core reads)."""
        return self.model_dump(exclude={"values"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASSAY_",
        env_nested_delimiter="__",
        extra="forbid",
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
    locks: LockSettings = Field(default_factory=LockSettings)
    signing: SigningSettings = Field(default_factory=SigningSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    sources: dict[str, SourceSettings] = Field(default_factory=dict)
    values: ValueConventions = Field(default_factory=ValueConventions)
    lake_store: S3StoreSettings | None = Field(
        default=None,
        description="Write the lake (Parquet and manifests) to this S3-compatible store instead of data_dir/lake.",
    )
    lake_mirror: S3StoreSettings | None = Field(
        default=None, description="Publish the committed lake to this S3-compatible store after every run."
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
        """The settings as JSON-ready data with every secret masked."""
        data = self.model_dump(mode="json")
        if self.state_url is not None:
            data["state_url"] = make_url(self.state_url.get_secret_value()).render_as_string(hide_password=True)
        return data


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
    """Build the settings from the TOML file, the environment and `overrides` (CLI flags).

    An override of None is ignored, except for the settings in `CLEARABLE`, where it switches the
    setting off (an evaluation run keeps its own local lake and state, whatever the config says).
    """
    Settings._toml_file = find_config_file(config_file)
    return Settings(**{k: v for k, v in overrides.items() if v is not None or k in CLEARABLE})


# Settings an override may switch off with an explicit None (other None overrides mean "not given").
CLEARABLE = frozenset({"state_url", "lake_store", "lake_mirror"})
