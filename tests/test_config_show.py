"""`assay config show` (every value, where it came from, secrets masked) and assay.example.toml (every setting,
each documented, and it loads)."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from assay.cli import cli
from connectors.registry import CONNECTORS, source_config
from pipeline.core.settings import Settings, load_settings
from tests.support import ROOT

EXAMPLE = ROOT / "assay.example.toml"
SECRETS = ("hunter2-config-secret", "s3-config-secret-key", "AKIA-CONFIG-ID")
# A line the example leaves switched off: "# key = value" or "# [section]" (prose never starts that way).
_SWITCHED_OFF = re.compile(r"^# (?=\[|[A-Za-z_][\w-]*\s*=)")


def test_config_show_says_where_each_value_comes_from_and_masks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "assay.toml"
    config.write_text(
        f'shard_size = 3\nstate_url = "postgresql+psycopg://assay:{SECRETS[0]}@db.internal/assay"\n'
        "[model]\nmax_tokens = 100\nn_ctx = 4096\n"
        f'[lake_store]\nurl = "s3://lake/nightly"\naccess_key_id = "{SECRETS[2]}"\n'
        f'secret_access_key = "{SECRETS[1]}"\n',
        encoding="utf-8",
    )
    monkeypatch.delenv("ASSAY_CONFIG", raising=False)
    monkeypatch.delenv("ASSAY_MODEL__N_CTX", raising=False)
    monkeypatch.setenv("ASSAY_MODEL__MAX_TOKENS", "50")  # the environment beats the file
    data_dir = tmp_path / "data"
    args = ["--config", str(config), "--data-dir", str(data_dir), "config", "show"]

    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert not [secret for secret in SECRETS if secret in result.output]
    report = json.loads(result.output)
    assert report["config_file"] == str(config.resolve())
    shown = {entry["key"]: entry for entry in report["settings"]}
    assert set(shown) >= {"data_dir", "model.n_threads", "parsing.workers", "lake_store.url", "values.date_order"}
    file = str(config.resolve())
    assert shown["shard_size"] == {"key": "shard_size", "value": 3, "origin": "file", "where": file, "secret": False}
    assert shown["model.n_ctx"] | {"value": 4096, "origin": "file", "where": file} == shown["model.n_ctx"]
    assert shown["model.max_tokens"]["value"] == 50
    assert (shown["model.max_tokens"]["origin"], shown["model.max_tokens"]["where"]) == (
        "environment",
        "ASSAY_MODEL__MAX_TOKENS",
    )
    assert shown["model.temperature"] == {
        "key": "model.temperature",
        "value": 0.0,
        "origin": "default",
        "where": None,
        "secret": False,
    }
    assert (shown["data_dir"]["origin"], shown["data_dir"]["where"]) == ("override", "--data-dir")
    # (not compared whole: a test before may have registered "test", moto's key, as a secret of this process)
    assert shown["data_dir"]["value"].endswith("/data")
    assert (
        shown["state_url"] | {"value": "postgresql+psycopg://assay:***@db.internal/assay", "secret": True}
        == (shown["state_url"])
    )
    assert shown["state_url"]["origin"] == "file"
    for key in ("lake_store.access_key_id", "lake_store.secret_access_key"):
        assert (shown[key]["value"], shown[key]["secret"], shown[key]["origin"]) == ("***", True, "file")

    table = CliRunner().invoke(cli, args)
    assert table.exit_code == 0, table.output
    assert not [secret for secret in SECRETS if secret in table.output]
    assert f"settings file: {file}" in table.output
    rows = {line.split("│")[1].strip(): line for line in table.output.splitlines() if line.count("│") == 4}
    assert "environment ASSAY_MODEL__MAX_TOKENS" in rows["model.max_tokens"]
    assert "flag --data-dir" in rows["data_dir"] and "default" in rows["model.temperature"]
    assert "***" in rows["lake_store.secret_access_key"]


def test_config_show_names_a_key_it_does_not_know(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASSAY_CONFIG", raising=False)
    config = tmp_path / "assay.toml"
    config.write_text("[parsing]\nworkerz = 2\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "show"])
    assert result.exit_code == 1 and "parsing.workerz" in result.output


# -- assay.example.toml ---------------------------------------------------------------------------


def _switched_on(text: str) -> str:
    """The example with every setting and section it leaves switched off switched on ("# " removed)."""
    return "\n".join(_SWITCHED_OFF.sub("", line) for line in text.splitlines()) + "\n"


def test_the_example_loads_as_it_is_and_with_every_optional_setting_on(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    config = tmp_path / "assay.toml"
    for variant in (text, _switched_on(text)):
        config.write_text(variant, encoding="utf-8")
        settings = load_settings(config, data_dir=tmp_path / "data")  # an unknown key fails here ...
        for name, options in settings.sources.items():
            source_config(name, options)  # ... or here, against its connector's own settings
    assert settings.lake_store is not None and settings.lake_mirror is not None and settings.state_url is not None
    assert {options.connector for options in settings.sources.values()} == set(CONNECTORS)
    as_it_is = tomllib.loads(text)
    assert set(as_it_is["sources"]) == {"contracts"} and "lake_store" not in as_it_is  # optional parts stay off


def _section(annotation: Any) -> type[BaseModel] | None:
    for candidate in getattr(annotation, "__args__", (annotation,)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _missing(model: type[BaseModel], data: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every field of `model` (and of its sections, walked) that `data` lacks, as a dotted key."""
    for name, info in model.model_fields.items():
        if name not in data:
            yield prefix + name
        elif name != "sources" and (section := _section(info.annotation)) is not None:
            yield from _missing(section, data[name], f"{prefix}{name}.")


def test_the_example_names_every_setting_and_every_connector_setting() -> None:
    example = tomllib.loads(_switched_on(EXAMPLE.read_text(encoding="utf-8")))
    missing = list(_missing(Settings, example))
    sources = example["sources"]
    for kind_name, kind in CONNECTORS.items():
        named = {key for options in sources.values() if options.get("connector") == kind_name for key in options}
        missing += [f"sources.<{kind_name}>.{key}" for key in kind.config.model_fields if key not in named]
    if not any("values" in options for options in sources.values()):
        missing.append("sources.<any>.values")
    assert not missing, f"assay.example.toml lacks {missing}: add each with a one-line comment"


def test_every_setting_in_the_example_has_its_comment() -> None:
    lines = _switched_on(EXAMPLE.read_text(encoding="utf-8")).splitlines()
    bare = [
        f"line {number}: {line}"
        for number, line in enumerate(lines, 1)
        if re.match(r"\[|[A-Za-z_][\w-]*\s*=", line) and not re.search(r"\s#\s*\S", line)
    ]
    assert not bare, bare
