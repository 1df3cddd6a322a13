"""The sections of the settings: each stage's own knobs, one model per `[section]` of assay.toml.

`pipeline/core/settings.py` assembles them into `Settings` (with loading, precedence and secrets);
a stage that gains a setting changes its section here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from pipeline.core.resources import available_cores
from pipeline.core.secrets import MASK, is_secret_name, redact_url, url_secrets

EngineName = Literal["batched", "sequential"]
ParserStrategy = Literal["fast", "ocr_only", "auto"]


def _redacted_repr_args(model: BaseModel) -> Iterator[tuple[str | None, Any]]:
    """A model's repr without a URL's password (SecretStr fields mask themselves)."""
    for name, value in BaseModel.__repr_args__(model):
        yield name, redact_url(value) if isinstance(value, str) and url_secrets(value) else value


class _Section(BaseModel):
    """A nested settings section: an unknown key (a typo) is an error that names it."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        return _redacted_repr_args(self)


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
    max_elements: int = Field(
        default=200_000, ge=1, description="A file whose parse gives more elements fails as too_large (a bomb)."
    )
    max_text_chars: int = Field(
        default=50_000_000, ge=1, description="A file whose text is longer (characters) fails as too_large."
    )
    ahead: bool = Field(
        default=False,
        description=(
            "Parse the next shard while the model works on this one; split the cores "
            "([model] n_threads + workers <= cores). Off: parse, then decode, each with every core."
        ),
    )
    ocr: bool = Field(
        default=True, description="Read images, and PDF pages without a text layer, with tesseract (when installed)."
    )
    ocr_languages: list[str] = Field(
        default_factory=lambda: ["eng"], description="tesseract language packs to read with (Debian: tesseract-ocr-*)."
    )

    @property
    def processes(self) -> int:
        return available_cores() if self.workers is None else self.workers


class ContainerSettings(_Section):
    """Archives and e-mails whose members become child documents (pipeline/parse/containers.py)."""

    max_members: int = Field(default=10_000, ge=1, description="A container with more members fails as too_large.")
    max_total_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1, description="A container expanding to more bytes fails as too_large."
    )
    max_ratio: float = Field(
        default=200.0, gt=1, description="Expanded bytes per packed byte beyond which a container is refused (a bomb)."
    )
    max_depth: int = Field(default=3, ge=1, description="Containers inside containers deeper than this are refused.")


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


class OrchestrationSettings(_Section):
    """How a scheduled run behaves under Prefect (flows/): shard retries and time limits, model slots."""

    shard_retries: int = Field(
        default=2, ge=0, description="A shard that fails on a transient error (network, store) is tried again."
    )
    shard_retry_delay_s: float = Field(default=30.0, ge=0, description="Seconds before a shard is tried again.")
    shard_timeout_s: float = Field(
        default=4 * 3600.0,
        gt=0,
        description="A shard still running after this fails; its documents are left for the next run.",
    )
    model_slots: str | None = Field(
        default="assay-model-slots",
        description="Prefect global concurrency limit each shard takes a slot of, so runs of several "
        "deployments never share the cores or a GPU (created by `assay serve`; None: no limit taken).",
    )


class ListingSettings(_Section):
    """How a night lists its sources: only what changed since the last completed run, or everything."""

    changes_only: bool = Field(
        default=True,
        description="List only what changed since the last completed run, where the connector keeps a cursor "
        "(local, smb, s3, sql with version_column, imap); a full listing still runs every full_every_days.",
    )
    full_every_days: float = Field(
        default=7.0,
        ge=0,
        description="Days between full listings, which find deleted documents and whatever a cursor cannot see "
        "(a file copied in with an old time stamp); 0: every run lists in full.",
    )
    overlap_s: float = Field(
        default=3600.0,
        ge=0,
        description="A time-stamp cursor lists from this many seconds before it was taken (clock skew between "
        "this machine and the store, uploads still being written).",
    )


NotifyOn = Literal["completed", "incomplete", "failed", "crashed"]
NOTIFY_BY_DEFAULT: tuple[NotifyOn, ...] = ("incomplete", "failed", "crashed")


class NotifySettings(_Section):
    """Who is told when a run ends badly: a webhook (JSON POST of the run's summary) and/or a command."""

    webhook_url: SecretStr | None = Field(
        default=None, description="POSTed the run's summary as JSON (a secret: such URLs often carry a token)."
    )
    command: list[str] | None = Field(
        default=None, description="Run with the summary as JSON on its standard input, e.g. ['/usr/local/bin/page']."
    )
    on: list[NotifyOn] = Field(default_factory=lambda: list(NOTIFY_BY_DEFAULT), description="Which outcomes notify.")
    timeout_s: float = Field(default=10.0, gt=0, description="Time allowed to the webhook or the command.")


class LearningSettings(_Section):
    """What `assay learn` trains a task's ranker from (besides the review decisions in the data folder)."""

    gold_sets: list[Path] = Field(
        default_factory=list,
        description="Gold label files (assay eval's format) whose documents an `assay eval` has landed.",
    )
    rankers_dir: Path | None = Field(default=None, description="Where new ranker files go (None: DATA_DIR/rankers).")


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
    dry_multiplier: float = Field(
        default=0.0,
        ge=0,
        description=(
            "DRY penalty: a token that would extend a run the answer already wrote, and that is not a "
            "quote of the prompt, loses multiplier x base^(length - allowed) of its logit. 0: off "
            "(docs/performance.md measures it against F1). A task file's own `dry_multiplier` wins for its answers."
        ),
    )
    dry_base: float = Field(default=1.75, gt=1, description="DRY: how fast the penalty grows with the run's length.")
    dry_allowed_length: int = Field(default=2, ge=1, description="DRY: runs shorter than this are not penalised.")
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

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

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

    model_config = ConfigDict(extra="allow", frozen=True, hide_input_in_errors=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in _redacted_repr_args(self):
            yield name, MASK if value and name and is_secret_name(name) else value

    connector: str = "local"
    values: ValueConventions | None = Field(
        default=None, description="How this source writes dates and amounts (default: the top-level [values])."
    )

    def options(self) -> dict[str, Any]:
        """The connector's own keys, `connector` included (not `values`, which the core reads)."""
        return self.model_dump(exclude={"values"})
