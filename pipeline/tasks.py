"""Extraction tasks, declared as data (YAML files), versioned by their content hash."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict

from pipeline.errors import ConfigError
from pipeline.hashing import canonical_json, sha256_bytes, sha256_text

BUILTIN_TASK_DIR = Path(__file__).parent / "task_library"


class Task(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    instructions: str
    answer_template: str = ""
    output_schema: dict[str, Any]
    evidence_fields: tuple[str, ...] = ()
    examples: tuple[dict[str, Any], ...] = ()
    version: str  # SHA-256 of the task file's bytes
    source_path: str
    definition: str  # the file's text, landed with every run (table `tasks`)

    @cached_property
    def schema_sha256(self) -> str:
        return sha256_text(canonical_json(self.output_schema))

    @cached_property
    def validator(self) -> Draft202012Validator:
        return Draft202012Validator(self.output_schema)


def load_task_file(path: Path) -> Task:
    return parse_task(path.read_bytes(), str(path))


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
    return Task(
        name=data["name"],
        description=data.get("description", ""),
        instructions=data["instructions"],
        answer_template=str(data.get("answer_template", "")).strip(),
        output_schema=schema,
        evidence_fields=tuple(data.get("evidence_fields", ())),
        examples=tuple(data.get("examples", ())),
        version=sha256_bytes(raw),
        source_path=source,
        definition=raw.decode("utf-8"),
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
