"""`assay config`: the settings as this installation sees them (`show`: each value and where it came from)."""

from __future__ import annotations

import json
from typing import Any

import click
from pydantic import ValidationError

from assay.context import CliContext
from assay.output import print_json, print_table
from pipeline.core.settings import find_config_file
from pipeline.core.settings_origins import explain


@click.group(name="config")
def config_group() -> None:
    """The settings: what they are and where each value comes from."""


@config_group.command(name="show")
@click.option("--json", "as_json", is_flag=True, help="Print the settings as JSON: key, value, origin, where, secret.")
@click.pass_obj
def show(obj: CliContext, as_json: bool) -> None:
    """Every effective setting, secrets masked, with where it came from.

    Origins, highest precedence first: a flag (--data-dir), an ASSAY_* environment variable (named), the
    settings file (its path: --config, $ASSAY_CONFIG or ./assay.toml), the default. assay.example.toml
    documents every setting.
    """
    try:
        overrides: dict[str, Any] = {"data_dir": obj.data_dir} if obj.data_dir is not None else {}
        settings = obj.settings()
        config_file = find_config_file(obj.config)
    except ValidationError as exc:  # a typo or a wrong value: the message names it (secrets are not echoed)
        raise click.ClickException(str(exc)) from None
    shown = explain(settings, overrides, flags={"data_dir": "--data-dir"})
    if as_json:
        print_json(
            {
                "config_file": str(config_file.resolve()) if config_file else None,
                "settings": [
                    {"key": s.key, "value": s.value, "origin": s.origin, "where": s.where, "secret": s.secret}
                    for s in shown
                ],
            }
        )
        return
    click.echo(f"settings file: {config_file.resolve() if config_file else 'none (defaults and ASSAY_* variables)'}")
    print_table(("setting", "value", "from"), [(s.key, _shown(s.value), s.describe()) for s in shown])


def _shown(value: Any) -> str:
    """A value as TOML would write it, near enough: strings quoted, lists and tables as JSON, None as unset."""
    if value is None:
        return "(unset)"
    return json.dumps(value, ensure_ascii=False)
