"""Extraction tasks, declared as data (YAML files), versioned by their content hash.

A task file holds the instructions and the JSON Schema of the model's answer, and
optionally: what each field is (`fields`: kind and cardinality, used to normalise
and reduce values per document), cheap signals that route only promising chunks to
the model (`routing`), patterns that rules find without the model (`rules`), and
the answer's token budget (`max_tokens`), its repetition penalty (`dry_multiplier`) and whether a
looping answer is asked again with it (`retry_loops`). See docs/tasks.md.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.core.errors import ConfigError
from pipeline.core.hashing import canonical_json, sha256_bytes, sha256_text
from pipeline.core.rankers import Ranker, load_ranker

BUILTIN_TASK_DIR = Path(__file__).resolve().parent.parent / "task_library"


FieldKind = Literal[
    "text",
    "date",
    "jurisdiction",
    "party",
    "person",
    "address",
    "duration",
    "amount",
    "email",
    "phone",
    "iban",
    "payment_card",
    "vat",
    "language",
]
RuleCheck = Literal["luhn", "iban", "eu_vat", "us_ssn"]


class FieldSpec(BaseModel):
    """What one answer field holds: how its values are normalised and reduced per document."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FieldKind = "text"
    many: bool = False  # a list of values (parties) rather than one (effective date)
    max_values: int | None = Field(default=None, ge=1)  # a list field keeps at most this many, best first


class RuleSpec(BaseModel):
    """A pattern that finds a field's values without the model (group `value`, or the whole match)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    field: str
    pattern: str = ""
    detector: Literal["language"] | None = None  # instead of a pattern: a built-in detector
    ignore_case: bool = False
    check: RuleCheck | None = None  # a checksum every match must pass
    first_chars: int | None = Field(default=None, ge=1)  # look only at the start of the text (a title page)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _pattern_or_detector(self) -> RuleSpec:
        if bool(self.pattern) == bool(self.detector):
            raise ValueError(f"rule {self.name!r} needs exactly one of pattern and detector")
        return self

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)


class Routing(BaseModel):
    """Which chunks go to the model: the first `first_chunks`, and any chunk where a signal matches; at most
    `max_chunks` of a document (in document order; the rest are recorded as over the budget)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first_chunks: int = Field(default=0, ge=0)
    max_chunks: int | None = Field(default=None, ge=1)
    signals: dict[str, tuple[str, ...]] = Field(default_factory=dict)  # field -> case-insensitive patterns

    @field_validator("signals")
    @classmethod
    def _signals_compile(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for name, patterns in value.items():
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"signal {pattern!r} of {name} does not compile: {exc}") from exc
        return value

    @cached_property
    def compiled(self) -> list[tuple[str, re.Pattern[str]]]:
        return [(name, re.compile(p, re.IGNORECASE)) for name, patterns in self.signals.items() for p in patterns]


class RetryLoops(BaseModel):
    """`retry_loops:` in a task file: an answer that looped before it finished any field is asked once more,
    with the DRY penalty (docs/tasks.md, "Answer shape")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dry_multiplier: float = Field(gt=0)


class RankerRef(BaseModel):
    """`ranker:` in a task file: the trained ranker's file (relative to the task file) and its SHA-256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Task(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    instructions: str
    answer_template: str = ""
    output_schema: dict[str, Any]
    evidence_fields: tuple[str, ...] = ()
    examples: tuple[dict[str, Any], ...] = ()
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    routing: Routing | None = None  # None: every chunk goes to the model
    rules: tuple[RuleSpec, ...] = ()
    max_tokens: int | None = None  # the answer's budget; None: the model settings' max_tokens
    dry_multiplier: float | None = Field(default=None, ge=0)  # the DRY penalty; None: the model settings'
    retry_loops: RetryLoops | None = None  # None: a looping answer that kept nothing stays failed
    ranker_ref: RankerRef | None = None  # a learned ranker chooses the values (None: the hand order)
    version: str  # SHA-256 of the task file's bytes
    source_path: str
    definition: str  # the file's text, landed with every run (table `tasks`)

    @property
    def ranker(self) -> Ranker | None:
        """The learned ranker the task names, read from beside the task file and checked, or None.

        Read and checked once per file, SHA-256 and task (a copy of the task without `ranker_ref` has none)."""
        if self.ranker_ref is None:
            return None
        path = str(Path(self.source_path).parent / self.ranker_ref.file)
        return _load_ranker(path, self.ranker_ref.sha256, self.name, frozenset(self.fields))

    @cached_property
    def schema_sha256(self) -> str:
        return sha256_text(canonical_json(self.output_schema))

    @cached_property
    def validator(self) -> Draft202012Validator:
        return Draft202012Validator(self.output_schema)


@functools.lru_cache(maxsize=64)
def _load_ranker(path: str, sha256: str, task: str, fields: frozenset[str]) -> Ranker:
    """The ranker at `path`, refused when its SHA-256 differs, it was trained for another task, or it
    scores fields the task does not have."""
    ranker = load_ranker(Path(path), sha256)
    if ranker.task != task:
        raise ConfigError(f"task {task}: its ranker {Path(path).name} was trained for {ranker.task!r}")
    unknown = set(ranker.fields) - fields
    if unknown:
        raise ConfigError(f"task {task}: its ranker scores unknown field(s) {', '.join(sorted(unknown))}")
    return ranker


def load_task_file(path: Path) -> Task:
    task = parse_task(path.read_bytes(), str(path))
    if task.ranker_ref is not None:
        # A ranker that is missing, altered or for another task fails the load, not the run: read afresh
        # here (reduce then uses the copy read once per file and SHA-256).
        _load_ranker.cache_clear()
        _ = task.ranker
    return task


def parse_task(raw: bytes, source: str) -> Task:
    """A task from the bytes of its YAML file (`source` names where they came from)."""
    path = source
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"task file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"task file {path} must hold a mapping")
    missing = {"name", "instructions", "schema"} - set(data)
    if missing:
        raise ConfigError(f"task file {path} lacks {', '.join(sorted(missing))}")
    schema = data["schema"]
    try:
        Draft202012Validator.check_schema(schema)
    except Exception as exc:
        raise ConfigError(f"task file {path}: schema is not a valid JSON Schema: {exc}") from exc
    # Fields: the schema's properties (what the model answers) plus any field only rules fill.
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    declared = data.get("fields") or {}
    fields: dict[str, Any] = {
        name: {"many": isinstance(prop, dict) and prop.get("type") == "array"} for name, prop in properties.items()
    }
    fields.update(declared)
    rules = data.get("rules") or []
    for rule in rules:
        if isinstance(rule, dict) and rule.get("field") not in fields:
            raise ConfigError(f"task file {path}: rule {rule.get('name')!r} names unknown field {rule.get('field')!r}")
    try:
        return Task(
            name=data["name"],
            description=data.get("description", ""),
            instructions=data["instructions"],
            answer_template=str(data.get("answer_template", "")).strip(),
            output_schema=schema,
            evidence_fields=tuple(data.get("evidence_fields", ())),
            examples=tuple(data.get("examples", ())),
            fields=fields,
            routing=data.get("routing"),
            rules=tuple(rules),
            max_tokens=data.get("max_tokens"),
            dry_multiplier=data.get("dry_multiplier"),
            retry_loops=data.get("retry_loops"),
            ranker_ref=data.get("ranker"),
            version=sha256_bytes(raw),
            source_path=source,
            definition=raw.decode("utf-8"),
        )
    except ValidationError as exc:
        raise ConfigError(f"task file {path}: {exc}") from exc


def unrouted(tasks: Sequence[Task]) -> str | None:
    """The warning a run and `assay doctor` give for tasks that send every chunk to the model, or None."""
    names = [task.name for task in tasks if task.routing is None]
    if not names:
        return None
    return (
        f"task(s) {', '.join(names)} have no routing: every chunk of every document goes to the model "
        "(add `routing:` with signals and max_chunks to the task file: docs/tasks.md, Routing)"
    )


def find_task(name: str, extra_dirs: list[Path] | None = None) -> Task:
    """Load a task by name: user folders first (they may override), then the built-in library."""
    for folder in [*(extra_dirs or []), BUILTIN_TASK_DIR]:
        for suffix in (".yaml", ".yml"):
            path = Path(folder) / f"{name}{suffix}"
            if path.is_file():
                task = load_task_file(path)
                if task.name != name:
                    raise ConfigError(f"{path} declares name {task.name!r}, expected {name!r}")
                return task
    known = sorted(p.stem for p in BUILTIN_TASK_DIR.glob("*.yaml"))
    raise ConfigError(f"unknown task {name!r} (built-in: {', '.join(known)})")
