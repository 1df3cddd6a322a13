"""`assay doctor`: check an installation before a night (the checks: pipeline/run/doctor.py)."""

from __future__ import annotations

import base64
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from assay.context import CliContext
from assay.output import plain, print_json
from assay.source_commands import first_document
from pipeline.core.errors import AssayError
from pipeline.core.settings import Settings, find_config_file
from pipeline.run.doctor import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_MIN_FREE_BYTES,
    DEFAULT_WORK_POOL,
    Check,
    DoctorOptions,
    PrefectTarget,
    SourceProbe,
    run_checks,
)

_LABELS = {
    "ok": ("ok", "green"),
    "warning": ("WARNING", "yellow"),
    "problem": ("PROBLEM", "red"),
    "skipped": ("skipped", None),
}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON (for monitoring): ok, and each check.")
@click.option(
    "--hash/--no-hash",
    "hash_model",
    default=True,
    help="Hash the model file to check its SHA-256 (default: on; a few seconds per GB).",
)
@click.option(
    "--sources/--no-sources",
    "check_sources",
    default=True,
    help="List each configured source up to its first document (default: on).",
)
@click.option(
    "--work-pool",
    default=DEFAULT_WORK_POOL,
    show_default=True,
    help="The Prefect work pool the night's deployment runs on (checked when PREFECT_API_URL is set).",
)
@click.option(
    "--deployment",
    default=DEFAULT_DEPLOYMENT,
    show_default=True,
    help="The night's Prefect deployment, as FLOW/DEPLOYMENT (checked when PREFECT_API_URL is set).",
)
@click.option(
    "--min-free",
    "min_free_gib",
    type=click.FloatRange(min=0),
    default=DEFAULT_MIN_FREE_BYTES / 1024**3,
    show_default=True,
    help="GiB that must be free where the data directory is.",
)
@click.pass_obj
def doctor(
    obj: CliContext,
    as_json: bool,
    hash_model: bool,
    check_sources: bool,
    work_pool: str,
    deployment: str,
    min_free_gib: float,
) -> None:
    """Check this installation before a night; print each problem with its fix.

    \b
    Checks: the settings load; the model file is there and its SHA-256 matches; the tasks load;
    nothing would be downloaded at run time (hubs offline, spaCy's model installed); telemetry is
    off; model threads and parsing processes against the cores this process may use (affinity and
    cgroup CPU quota); tesseract; free space in the data directory; the state store answers and its
    schema is current; the S3 lake (and mirror) can be written, read and deleted (a probe object
    under _doctor/); with PREFECT_API_URL set, the Prefect API, the work pool, the deployment and
    the model slots; each configured source can be listed.

    Nothing is created or upgraded, and the model is not loaded. Exits 1 when a check finds a
    problem (warnings do not fail).
    """
    started = time.perf_counter()
    try:
        settings = obj.settings()
        config_file = find_config_file(obj.config)
    except (ValidationError, AssayError, FileNotFoundError) as exc:
        _finish(
            [Check("settings", "problem", str(exc), "correct the settings file or the ASSAY_* variable named")],
            as_json,
            started,
        )
        return
    checks = [_settings_check(config_file)]
    prefect = _prefect_settings()
    options = DoctorOptions(
        hash_model=hash_model,
        min_free_bytes=int(min_free_gib * 1024**3),
        prefect=_prefect_target(prefect, work_pool, deployment),
        sources=_source_probes(settings) if check_sources else None,
        prefect_telemetry=_prefect_telemetry(prefect),
    )
    if not as_json:
        click.echo(f"assay doctor: {config_file.resolve() if config_file else 'no settings file (defaults, ASSAY_*)'}")
        _print(checks[0])
    for check in run_checks(settings, options):
        checks.append(check)
        if not as_json:
            _print(check)
    _finish(checks, as_json, started, printed=not as_json)


def _settings_check(config_file: Path | None) -> Check:
    variables = sorted(name for name in os.environ if name.upper().startswith("ASSAY_"))
    where = f"{config_file.resolve()}" if config_file else "no settings file"
    shown = f"; ASSAY_* variables: {', '.join(variables)}" if variables else ""
    return Check("settings", "ok", f"loaded ({where}{shown}); `assay config show` says where each value comes from")


def _source_probes(settings: Settings) -> dict[str, SourceProbe]:
    return {
        name: functools.partial(first_document, name, options, settings) for name, options in settings.sources.items()
    }


def _prefect_settings() -> Any:
    """Prefect's settings as Prefect resolves them now (environment, .env, profile), or None without Prefect.

    Built afresh rather than taken from Prefect's context, which holds them as they were at its import."""
    try:
        from prefect.settings import Settings as PrefectSettings

        return PrefectSettings()
    except Exception:  # Prefect missing, or its settings invalid: the environment alone is read
        return None


def _prefect_target(prefect: Any, work_pool: str, deployment: str) -> PrefectTarget | None:
    api_url = prefect.api.url if prefect is not None else os.environ.get("PREFECT_API_URL")
    if not api_url:
        return None
    headers: dict[str, str] = {}
    auth_string = prefect.api.auth_string if prefect is not None else None
    api_key = prefect.api.key if prefect is not None else None
    if auth_string is not None and auth_string.get_secret_value():
        token = base64.b64encode(auth_string.get_secret_value().encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif api_key is not None and api_key.get_secret_value():
        headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
    return PrefectTarget(str(api_url), headers, work_pool, deployment)


def _prefect_telemetry(prefect: Any) -> dict[str, bool]:
    if prefect is None:
        return {}
    return {
        "PREFECT_SERVER_ANALYTICS_ENABLED": bool(prefect.server.analytics_enabled),
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": bool(prefect.cloud.enable_orchestration_telemetry),
    }


def _print(check: Check) -> None:
    label, colour = _LABELS[check.status]
    status = click.style(f"{label:<8}", fg=colour, bold=check.status == "problem")
    click.echo(f"{status} {check.name:<16} {plain(check.detail)}")
    if check.fix and check.status in ("problem", "warning"):
        click.echo(f"{'':<8} {'':<16} fix: {plain(check.fix)}")


def _finish(checks: list[Check], as_json: bool, started: float, printed: bool = False) -> None:
    problems = sum(check.status == "problem" for check in checks)
    warnings = sum(check.status == "warning" for check in checks)
    seconds = time.perf_counter() - started
    if as_json:
        print_json(
            {
                "ok": problems == 0,
                "problems": problems,
                "warnings": warnings,
                "seconds": round(seconds, 2),
                "checks": [check.as_dict() for check in checks],
            }
        )
    else:
        if not printed:
            for check in checks:
                _print(check)
        verdict = "ready for the night" if not problems else "fix the problems above before the night"
        click.echo(
            f"{problems} problem{'s' if problems != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''} "
            f"in {len(checks)} checks ({seconds:.1f} s): {verdict}"
        )
    if problems:
        sys.exit(1)
