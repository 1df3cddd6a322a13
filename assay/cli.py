"""`assay`: run the job, and look at what it found (docs/cli.md lists every command and option).

Run:        run, eval, sources
Read:       runs, query, show, documents
Audit:      verify, replay, review, export, report, warehouse, mirror
Operate:    serve, doctor, config
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import click
import duckdb

from assay.context import CliContext
from pipeline.core.errors import AssayError

# Every command, by name, and where it lives: a command's module is imported when that command runs
# (or `--help` lists it), so `assay query` does not pay for the imports of `assay doctor` or `assay run`
# (1.2 s instead of 2.4 s on 2 cores). tests/test_cli_scripting.py checks each name against its command.
COMMANDS = {
    "run": "assay.run_commands:run",
    "eval": "assay.run_commands:evaluate",
    "learn": "assay.run_commands:learn",
    "sources": "assay.source_commands:sources",
    "runs": "assay.read_commands:runs",
    "query": "assay.read_commands:query",
    "show": "assay.read_commands:show",
    "documents": "assay.read_commands:documents",
    "verify": "assay.audit_commands:verify",
    "replay": "assay.audit_commands:replay",
    "review": "assay.audit_commands:review",
    "export": "assay.audit_commands:export",
    "report": "assay.audit_commands:report",
    "warehouse": "assay.audit_commands:rebuild_warehouse",
    "mirror": "assay.audit_commands:mirror",
    "serve": "assay.serve_commands:serve",
    "doctor": "assay.doctor_commands:doctor",
    "config": "assay.config_commands:config_group",
}


class _Group(click.Group):
    """Loads each command when it is asked for (`COMMANDS`), and turns Assay's own errors into clean CLI
    errors (exit 1, one line, no traceback)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, _, attribute = COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except duckdb.IOException as exc:
            message = str(exc)
            if "No files found" in message or "No such file" in message:
                message += (
                    "\nA lake file the warehouse's views name is not there: run `assay verify` to see what changed"
                    " (and `assay warehouse` if the data folder was assembled by hand)."
                )
            raise click.ClickException(message) from exc
        except (AssayError, FileNotFoundError, duckdb.Error) as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group)
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML settings file (default: $ASSAY_CONFIG or ./assay.toml).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the lake and warehouse live (default ./data, or ASSAY_DATA_DIR).",
)
@click.version_option(package_name="assay")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, data_dir: Path | None) -> None:
    """Assay: on-prem document analysis with audited findings.

    \b
    Run:    run, eval, learn, sources
    Read:   runs, query, show, documents
    Audit:  verify, replay, review, export, report, warehouse, mirror
    Operate: serve, doctor, config
    """
    ctx.obj = CliContext(config, data_dir)


def main() -> None:
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
