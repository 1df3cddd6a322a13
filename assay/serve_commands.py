"""`assay serve`: the operator's console (a Prefect server, Assay's deployments, a worker) in one command."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from assay.context import CliContext


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the server listens on.")
@click.option("--port", default=4200, show_default=True, help="Port of the server (UI and API).")
@click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    help="PREFECT_HOME: the server's database and logs (default: DATA_DIR/prefect).",
)
@click.option(
    "--database-url",
    envvar="PREFECT_API_DATABASE_CONNECTION_URL",
    help="The server's database, e.g. postgresql+asyncpg://prefect@db/prefect (default: SQLite in --home).",
)
@click.option("--work-pool", default="assay-cpu", show_default=True, help="The process work pool the worker serves.")
@click.option(
    "--model-slots", default=1, show_default=True, help="Runs that may use the model at once, across deployments."
)
@click.option("--ui-only", is_flag=True, help="Start the server alone: no deployments, no worker (`make ui`).")
@click.pass_obj
def serve(
    obj: CliContext,
    host: str,
    port: int,
    home: Path | None,
    database_url: str | None,
    work_pool: str,
    model_slots: int,
    ui_only: bool,
) -> None:
    """Start a Prefect server on loopback, register deploy/prefect.yaml's deployments, start a worker.

    Prints the UI's address and holds until Ctrl-C or SIGTERM, which stop the worker, then the
    server. Registering again is harmless: every start puts the work pool, the model-slot limit and
    the deployments as deploy/prefect.yaml says. The deployments read assay.toml in this folder
    (assay.example.toml shows every setting).
    """
    from flows.serve import Estate
    from flows.serve import serve as run_estate

    settings = obj.settings()
    estate = Estate(
        home=(home or settings.data_dir / "prefect").resolve(),
        host=host,
        port=port,
        database_url=database_url,
        work_pool=work_pool,
        model_slots=model_slots,
        model_slots_name=settings.orchestration.model_slots or "assay-model-slots",
        deploy=not ui_only,
        worker=not ui_only,
    )
    sys.exit(run_estate(estate, click.echo))
