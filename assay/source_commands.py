"""`assay sources`: the configured sources, and whether each can be listed from here."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from assay.context import CliContext
from assay.output import print_json, print_table
from connectors.registry import limits_of, make_connector, source_config
from pipeline.core.errors import AssayError
from pipeline.core.secrets import redact_data
from pipeline.core.settings import Settings, SourceSettings


def first_document(name: str, options: SourceSettings, settings: Settings) -> str:
    """List a source up to its first document (what `assay sources` and `assay doctor` say of a reachable one)."""
    started = time.perf_counter()
    first = next(iter(make_connector(name, options, limits_of(settings)).list()), None)
    seconds = time.perf_counter() - started
    return f"first document {first.uri} ({seconds:.2f} s)" if first else f"reachable, empty ({seconds:.2f} s)"


@click.command()
@click.option("--check/--no-check", default=True, help="List each source's first document (default: on).")
@click.option("--json", "as_json", is_flag=True, help="Print the sources as JSON.")
@click.pass_obj
def sources(obj: CliContext, check: bool, as_json: bool) -> None:
    """The sources the settings name, their connector and settings (secrets masked), and whether each is reachable.

    Exits 1 when a source cannot be listed.
    """
    settings = obj.settings()
    found: list[dict[str, Any]] = []
    for name, options in sorted(settings.sources.items()):
        entry: dict[str, Any] = {"source": name, "connector": None, "settings": None, "status": "not checked"}
        try:
            config = source_config(name, options)
            entry["connector"] = getattr(config, "connector", None)
            entry["settings"] = redact_data(config.model_dump(mode="json", exclude={"connector"}))
            if check:
                entry["status"], entry["detail"] = "ok", first_document(name, options, settings)
        except AssayError as exc:
            entry["status"], entry["detail"] = "error", str(redact_data(str(exc)))
        except Exception as exc:  # a driver's own error: the operator needs its words
            entry["status"], entry["detail"] = "error", str(redact_data(f"{type(exc).__name__}: {exc}"))
        found.append(entry)
    if as_json:
        print_json(found)
    elif not found:
        click.echo("No sources configured: name them under [sources.<name>] in assay.toml (docs/connectors.md).")
    else:
        print_table(
            ("source", "connector", "status", "detail"),
            [(e["source"], e["connector"], e["status"], e.get("detail", "")) for e in found],
        )
    if any(e["status"] == "error" for e in found):
        sys.exit(1)
