"""`assay`: run the job, and look at what it found (docs/cli.md lists every command and option).

Run:        run, eval, sources
Read:       runs, query, show, documents
Audit:      verify, replay, review, export, report, warehouse, mirror
Operate:    serve, doctor, config
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import duckdb

from assay.audit_commands import export, mirror, rebuild_warehouse, replay, report, review, verify
from assay.config_commands import config_group
from assay.context import CliContext
from assay.doctor_commands import doctor
from assay.read_commands import documents, query, runs, show
from assay.run_commands import evaluate, learn, run
from assay.serve_commands import serve
from assay.source_commands import sources
from pipeline.core.errors import AssayError


class _Group(click.Group):
    """Turns Assay's own errors into clean CLI errors (exit 1, one line, no traceback)."""

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


COMMANDS = (
    run,
    evaluate,
    learn,
    sources,
    runs,
    query,
    show,
    documents,
    verify,
    replay,
    review,
    export,
    report,
    rebuild_warehouse,
    mirror,
    serve,
    doctor,
    config_group,
)
for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
