"""Extraction tasks are data: loaded from YAML, versioned by content, validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.errors import ConfigError
from pipeline.core.hashing import sha256_bytes
from pipeline.core.settings import ModelSettings
from pipeline.core.tasks import BUILTIN_TASK_DIR, find_task
from pipeline.extract.findings import TaskLineage


def test_builtin_key_terms() -> None:
    task = find_task("key_terms")
    assert task.version == sha256_bytes((BUILTIN_TASK_DIR / "key_terms.yaml").read_bytes())
    assert set(task.evidence_fields) == set(task.output_schema["required"])
    assert len(task.schema_sha256) == 64


def test_user_task_folder_overrides_and_versions_change(tmp_path: Path) -> None:
    text = (BUILTIN_TASK_DIR / "key_terms.yaml").read_text()
    (tmp_path / "key_terms.yaml").write_text(text.replace("Read the text", "Read the contract"))
    mine = find_task("key_terms", [tmp_path])
    assert mine.version != find_task("key_terms").version
    assert "Read the contract" in mine.instructions


def test_a_task_decodes_with_its_own_budget_and_dry_penalty_and_its_lineage_says_so(tmp_path: Path) -> None:
    """`max_tokens` and `dry_multiplier` of a task file override the model settings for its answers only;
    `retry_loops` gives the answers asked again a lineage of their own."""
    model = ModelSettings(max_tokens=320, dry_multiplier=0.0)
    model_on = ModelSettings(max_tokens=320, dry_multiplier=0.5)

    def sampling(
        name: str, dirs: list[Path] | None = None, model: ModelSettings = model, again: bool = False
    ) -> dict[str, object]:
        return TaskLineage.of("run", None, find_task(name, dirs), "chunking", model, asked_again=again).sampling

    text = (BUILTIN_TASK_DIR / "key_terms.yaml").read_text()
    assert "dry" not in sampling("key_terms")  # its first answers decode as the model settings say
    assert sampling("key_terms")["max_tokens"] == 320
    again = sampling("key_terms", again=True)
    assert again["dry"] == {"multiplier": 0.8, "base": 1.75, "allowed_length": 2}
    assert again["asked_again"] == "repetition"
    with pytest.raises(AssertionError, match="does not ask"):
        sampling("nda_key_terms", again=True)
    assert "dry" not in sampling("nda_key_terms")  # a task that does not set it keeps the model's
    assert sampling("nda_key_terms", model=model_on)["dry"]["multiplier"] == 0.5  # type: ignore[index]
    assert sampling("nda_key_terms")["max_tokens"] == find_task("nda_key_terms").max_tokens
    (tmp_path / "key_terms.yaml").write_text(f"{text}\ndry_multiplier: 0.7\n")
    assert sampling("key_terms", [tmp_path])["dry"]["multiplier"] == 0.7  # type: ignore[index]
    (tmp_path / "key_terms.yaml").write_text(f"{text}\ndry_multiplier: 0\n")
    assert "dry" not in sampling("key_terms", [tmp_path], model_on)  # 0 turns it off, whatever the model says
    for wrong in ("dry_multiplier: -1", "retry_loops: {dry_multiplier: 0}", "retry_loops: {dry: 1}"):
        (tmp_path / "key_terms.yaml").write_text(f"{text}\n{wrong}\n")
        with pytest.raises(ConfigError, match="dry"):
            find_task("key_terms", [tmp_path])


def test_invalid_tasks_are_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("name: broken\ninstructions: x\nschema: {type: 12}\n")
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        find_task("broken", [tmp_path])
    (tmp_path / "partial.yaml").write_text("name: partial\n")
    with pytest.raises(ConfigError, match="lacks"):
        find_task("partial", [tmp_path])
    with pytest.raises(ConfigError, match="unknown task"):
        find_task("no_such_task")


def test_a_run_pins_its_task_definitions_when_it_starts(tmp_path: Path) -> None:
    """A task file edited while a run goes on does not change the tasks of that run's later shards."""
    from pipeline.core.settings import Settings
    from pipeline.run.context import abort_run, new_run

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    text = (BUILTIN_TASK_DIR / "key_terms.yaml").read_text()
    (tasks / "key_terms.yaml").write_text(text)
    settings = Settings(data_dir=tmp_path / "data", task_dirs=[tasks])
    context = new_run(settings, {})
    try:
        pinned = context.tasks[0].version
        (tasks / "key_terms.yaml").write_text(text.replace("Read the text", "Read the contract"))
        assert context.tasks[0].version == pinned == sha256_bytes(text.encode())
        assert find_task("key_terms", [tasks]).version != pinned
    finally:
        abort_run(context)
