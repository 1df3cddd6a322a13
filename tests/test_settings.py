"""Settings: defaults, TOML file, environment, overrides, and secrets kept out of records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.core.settings import load_settings


def test_defaults_need_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASSAY_CONFIG", raising=False)
    settings = load_settings()
    assert settings.data_dir == Path("data")
    assert settings.warehouse_path == Path("data/warehouse.duckdb")
    assert settings.tasks == ["key_terms"]
    assert settings.model.path is None and settings.model.temperature == 0.0
    assert settings.model.n_threads >= 1


def test_precedence_overrides_env_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "assay.toml"
    config.write_text(
        'data_dir = "from-toml"\nshard_size = 3\n[model]\nmax_tokens = 100\n'
        '[sources.contracts]\nconnector = "local"\npath = "/srv/contracts"\ninclude = ["**/*.pdf"]\n'
    )
    monkeypatch.setenv("ASSAY_SHARD_SIZE", "5")
    monkeypatch.setenv("ASSAY_MODEL__N_THREADS", "1")
    settings = load_settings(config, data_dir="from-flag")
    assert settings.data_dir == Path("from-flag")  # flag beats everything
    assert settings.shard_size == 5  # env beats TOML
    assert settings.model.max_tokens == 100  # TOML beats default
    assert settings.model.n_threads == 1
    assert settings.sources["contracts"].options() == {
        "connector": "local",
        "path": "/srv/contracts",
        "include": ["**/*.pdf"],
    }


def test_assay_config_env_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "other.toml"
    config.write_text("shard_size = 11\n")
    monkeypatch.setenv("ASSAY_CONFIG", str(config))
    assert load_settings().shard_size == 11


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "nope.toml")


def test_unknown_keys_are_rejected_and_named(tmp_path: Path) -> None:
    config = tmp_path / "assay.toml"
    config.write_text("shard_sise = 3\n")
    with pytest.raises(ValidationError, match="shard_sise"):
        load_settings(config)
    config.write_text("[model]\nn_thread = 2\n")  # a typo in a nested section
    with pytest.raises(ValidationError, match=r"model\.n_thread\s+Extra inputs are not permitted"):
        load_settings(config)
    config.write_text('[model]\nengine = "turbo"\n')
    with pytest.raises(ValidationError, match="'batched' or 'sequential'"):
        load_settings(config)


def test_secrets_never_appear_in_the_redacted_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(state_url="postgresql://assay:hunter2@db.internal/assay")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.redacted())
    assert settings.redacted()["state_url"] == "postgresql://assay:***@db.internal/assay"


def test_an_empty_prefect_api_url_is_taken_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """`export PREFECT_API_URL=` means "no server": Prefect's client agrees (its ephemeral server),
    but its events worker would take "" for a server and log an error for every event of a run."""
    from pipeline.core import offline

    monkeypatch.setenv("PREFECT_API_URL", "")
    offline.enforce()
    assert "PREFECT_API_URL" not in os.environ
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    offline.enforce()
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"  # a server named is kept
