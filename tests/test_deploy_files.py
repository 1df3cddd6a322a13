"""The production estate's files (deploy/) kept honest: every path, setting, pool and deployment they name exists.

Docker does not run here, so the files are parsed: deploy/compose.yaml and deploy/prefect.yaml with PyYAML,
deploy/Dockerfile line by line, deploy/kubernetes/base-job-template.json as JSON and through Prefect's own
template code. No model, no network, no server.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import shlex
import subprocess
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from pipeline.core.offline import OFFLINE_ENV
from pipeline.core.secrets import is_secret_name
from pipeline.core.settings import Settings
from tests.support import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "compose.env.example"
CONFIG_EXAMPLE = DEPLOY / "assay.toml.example"
DOCKERFILE = DEPLOY / "Dockerfile"
JOB_TEMPLATE = DEPLOY / "kubernetes" / "base-job-template.json"
PREFECT_YAML = DEPLOY / "prefect.yaml"

# `ASSAY_*` variables that are not settings, and the file that reads each one.
NOT_SETTINGS = {
    "ASSAY_HOME": "deploy/prefect.yaml",  # the pull step's working directory
    "ASSAY_CONFIG": "pipeline/core/settings.py",  # which TOML file to read
}
COMPILERS = {"build-essential", "gcc", "g++", "clang", "cmake", "make", "cpp", "nvidia-cuda-toolkit", "cuda-nvcc"}
INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


# ---- reading the files ---------------------------------------------------------------------------------


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = _yaml(COMPOSE)
    return compose


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, as written (before interpolation), in either of compose's two forms."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(key): str(value) for key, value in raw.items()}


def _strings(value: Any) -> list[str]:
    """Every string in parsed YAML (keys and values): what compose interpolates (never the comments)."""
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (*_strings(key), *_strings(item))]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return [value] if isinstance(value, str) else []


def _command(service: dict[str, Any]) -> str:
    command = service.get("command") or []
    return command if isinstance(command, str) else " ".join(str(part) for part in command)


def _assay_services() -> dict[str, dict[str, Any]]:
    """The services that run the Assay image (either target)."""
    return {name: s for name, s in _services().items() if str(s.get("image", "")).startswith("${IMAGE_REPOSITORY")}


def _workers() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _services().items() if "prefect worker start" in _command(s)}


def _example_env() -> tuple[dict[str, str], set[str]]:
    """compose.env.example: the variables it sets, and the optional ones it documents in comments."""
    values: dict[str, str] = {}
    documented: set[str] = set()
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line.strip()):
            values[match[1]] = match[2]
        elif match := re.match(r"#\s*([A-Z][A-Z0-9_]*)=", line.strip()):
            documented.add(match[1])
    return values, documented


def _interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's interpolation of `text`, with `values` as the env file (an unset `${X:?}` fails the test)."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name = match[1] or match[4]
        if name in values:
            return values[name]
        if match[2] and match[2].endswith("?"):
            pytest.fail(f"compose.yaml needs {name}, which deploy/compose.env.example does not set")
        return match[3] or ""

    return INTERPOLATION.sub(replace, text)


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for word, args in self.instructions if word == keyword]


@dataclass
class Dockerfile:
    arguments: dict[str, str]  # the global ARGs (before the first FROM) and their defaults
    stages: dict[str, Stage]

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.arguments.get(m[1] or m[2], m[0]), text)

    def env(self, stage: str) -> dict[str, str]:
        """The ENV a stage sets (its own lines), with the global ARGs expanded."""
        found: dict[str, str] = {}
        for line in self.stages[stage].args("ENV"):
            for token in shlex.split(line):
                key, _, value = token.partition("=")
                found[key] = self.expand(value)
        return found

    def lineage(self, stage: str) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first."""
        chain = [self.stages[stage]]
        while chain[-1].base in self.stages:
            chain.append(self.stages[chain[-1].base])
        return chain


def _dockerfile() -> Dockerfile:
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    arguments: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            base = words[0]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else f"stage-{len(stages)}"
            current = Stage(name, base)
            stages[name] = current
        elif current is None:
            if keyword == "ARG":
                key, _, value = args.partition("=")
                arguments[key] = value.strip('"')
        else:
            current.instructions.append((keyword, args))
    dockerfile = Dockerfile(arguments, stages)
    for stage in stages.values():
        stage.base = dockerfile.expand(stage.base)
    return dockerfile


def _copies(stage: Stage) -> list[tuple[str | None, list[str]]]:
    """Each COPY of a stage: the stage or image it copies from (None: the build context) and its sources."""
    found: list[tuple[str | None, list[str]]] = []
    for args in stage.args("COPY"):
        words = args.split()
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        source = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        found.append((source, paths[:-1]))
    return found


def _job_template() -> dict[str, Any]:
    template: dict[str, Any] = json.loads(JOB_TEMPLATE.read_text(encoding="utf-8"))
    return template


def _template_env() -> list[dict[str, Any]]:
    container = _job_template()["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    env: list[dict[str, Any]] = container["env"]
    return env


def _deployments() -> list[dict[str, Any]]:
    deployments: list[dict[str, Any]] = _yaml(PREFECT_YAML)["deployments"]
    return deployments


# ---- settings and Prefect settings ---------------------------------------------------------------------


def _inner_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The settings model under a field's annotation, and whether a key (a dict's) comes first."""
    origin = typing.get_origin(annotation)
    if origin is dict:
        model, _ = _inner_model(typing.get_args(annotation)[1])
        return model, True
    if origin in (typing.Union, types.UnionType):  # `X | None`
        for member in typing.get_args(annotation):
            model, keyed = _inner_model(member)
            if model is not None:
                return model, keyed
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def setting_path(variable: str) -> str | None:
    """The settings field an `ASSAY_*` variable sets (`model.n_gpu_layers`), walking `__` nesting; None: none."""
    model: type[BaseModel] | None = Settings
    walked: list[str] = []
    key_next = False
    for part in variable.removeprefix("ASSAY_").lower().split("__"):
        if key_next:  # a dict's key (a source's name)
            walked.append(part)
            key_next = False
            continue
        if model is None:
            return None  # below a plain value
        if part not in model.model_fields:
            if model.model_config.get("extra") == "allow":  # a source's connector settings
                return ".".join([*walked, part])
            return None
        walked.append(part)
        model, key_next = _inner_model(model.model_fields[part].annotation)
    return ".".join(walked)


def _is_prefect_setting(name: str) -> bool:
    import prefect.settings

    try:
        getattr(prefect.settings, name)
    except AttributeError:
        return False
    return True


def _every_variable() -> dict[str, set[str]]:
    """Every environment variable the estate's files set, and where."""
    found: dict[str, set[str]] = {}
    for name, service in _services().items():
        for key in _environment(service):
            found.setdefault(key, set()).add(f"compose.yaml:{name}")
    dockerfile = _dockerfile()
    for stage in dockerfile.stages:
        for key in dockerfile.env(stage):
            found.setdefault(key, set()).add(f"Dockerfile:{stage}")
    for entry in _template_env():
        found.setdefault(entry["name"], set()).add("base-job-template.json")
    values, documented = _example_env()
    for key in [*values, *documented]:
        found.setdefault(key, set()).add("compose.env.example")
    return found


def test_the_setting_walk_tells_settings_from_other_names() -> None:
    assert setting_path("ASSAY_MODEL__N_GPU_LAYERS") == "model.n_gpu_layers"
    assert setting_path("ASSAY_LAKE_STORE__SECRET_ACCESS_KEY") == "lake_store.secret_access_key"
    assert setting_path("ASSAY_SOURCES__CONTRACTS__PATH") == "sources.contracts.path"
    assert setting_path("ASSAY_STATE_URL") == "state_url"
    assert setting_path("ASSAY_MODEL__N_GPU_LAYER") is None
    assert setting_path("ASSAY_MODEL__N_GPU_LAYERS__X") is None
    assert setting_path("ASSAY_LAKE_STORE__BUCKET") is None
    assert _is_prefect_setting("PREFECT_API_URL") and not _is_prefect_setting("PREFECT_API_URLS")


def test_every_assay_variable_is_a_setting() -> None:
    unknown = {
        name: sorted(where)
        for name, where in _every_variable().items()
        if name.startswith("ASSAY_") and name not in NOT_SETTINGS and setting_path(name) is None
    }
    assert unknown == {}
    for name, reader in NOT_SETTINGS.items():  # the exceptions are real: their reader names them
        assert name in (ROOT / reader).read_text(encoding="utf-8"), (name, reader)


def test_every_prefect_variable_is_a_prefect_setting() -> None:
    unknown = {
        name: sorted(where)
        for name, where in _every_variable().items()
        if name.startswith("PREFECT_") and not _is_prefect_setting(name)
    }
    assert unknown == {}


def _worker_settings(monkeypatch: pytest.MonkeyPatch, worker: dict[str, Any]) -> Settings:
    """The settings a compose worker's flow runs get: its environment, interpolated from compose.env.example
    (and nothing from this process's), over assay.toml.example."""
    values, _ = _example_env()
    for key in [k for k in os.environ if k.startswith("ASSAY_")]:
        monkeypatch.delenv(key)
    for key, value in _environment(worker).items():
        monkeypatch.setenv(key, _interpolate(value, values))
    monkeypatch.setattr(Settings, "_toml_file", CONFIG_EXAMPLE)
    return Settings()


def test_the_workers_settings_load_with_the_example_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker's environment and assay.toml.example are valid settings together, and they wire the
    worker to the estate's state store, lake and key."""
    from pipeline.core.tasks import find_task

    workers = _workers()
    assert set(workers) == {"worker-cpu", "worker-gpu"}
    for name, worker in workers.items():
        settings = _worker_settings(monkeypatch, worker)
        assert settings.data_dir == Path("/var/lib/assay"), name
        assert settings.state_url is not None
        assert settings.state_url.get_secret_value().startswith("postgresql+psycopg://assay:"), name
        assert settings.lake_store is not None and settings.lake_store.url.startswith("s3://"), name
        assert settings.lake_store.secret_access_key is not None, name
        assert settings.signing.key_file == Path("/run/secrets/assay_signing_key"), name
        for task in settings.tasks:
            find_task(task, settings.task_dirs)
    assert "assay_signing_key" in workers["worker-cpu"].get("secrets", [])  # the coordinator signs
    assert "assay_signing_key" not in workers["worker-gpu"].get("secrets", [])  # a shard worker needs no key


def test_telemetry_is_off_wherever_the_image_runs() -> None:
    """pipeline/core/offline.py's switches in every service of the Assay image and in the Kubernetes pods:
    also for the processes that never import Assay (the Prefect server, the workers)."""
    services = _assay_services()
    assert {"prefect-server", "worker-cpu", "worker-gpu"} <= set(services)
    for name, service in services.items():
        environment = _environment(service)
        assert {k: environment.get(k) for k in OFFLINE_ENV} == OFFLINE_ENV, name
    in_pods = {entry["name"]: entry.get("value") for entry in _template_env()}
    assert {k: in_pods.get(k) for k in OFFLINE_ENV} == OFFLINE_ENV


# ---- compose.yaml ----------------------------------------------------------------------------------------


def _git_ignores(path: Path) -> bool:
    result = subprocess.run(["git", "check-ignore", "-q", str(path.relative_to(ROOT))], cwd=ROOT, check=False)
    return result.returncode == 0


def test_every_path_compose_names_exists_or_is_an_ignored_site_file() -> None:
    """Build contexts and Dockerfiles exist; a config or secret file that is not in the repository is a site
    file: ignored by git, and the set-up comment at the top of compose.yaml says how to make it."""
    compose = _compose()
    text = COMPOSE.read_text(encoding="utf-8")
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert context.is_dir(), name
            assert (context / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            host = str(volume).split(":", 1)[0]
            if host.startswith("."):
                assert (DEPLOY / host).exists(), (name, volume)
    files = [entry["file"] for kind in ("configs", "secrets") for entry in compose.get(kind, {}).values()]
    assert files
    for file in files:
        path = (DEPLOY / file).resolve()
        if not path.exists():
            relative = str(path.relative_to(ROOT))
            assert _git_ignores(path), f"{relative} is a site file: it must be ignored by git"
            assert relative in text, f"compose.yaml's set-up comment must say how to make {relative}"
    example = DEPLOY / "assay.toml"
    assert not example.exists() or _git_ignores(example)
    assert CONFIG_EXAMPLE.is_file()


def test_every_variable_compose_interpolates_is_in_the_env_example_and_no_secret_is_written_in() -> None:
    values, documented = _example_env()
    matches = [m for text in _strings(_compose()) for m in INTERPOLATION.finditer(text) if m[0] != "$$"]
    used = {(str(m[1] or m[4]), m[2] or "") for m in matches}  # (name, operator); `$$` is a literal dollar
    assert used
    missing = {name for name, _ in used if name not in values and name not in documented}
    assert missing == set()
    required = {name for name, operator in used if operator.endswith("?")}
    assert required <= set(values), required - set(values)  # a required one is set in the example, not optional
    for name, value in values.items():
        if is_secret_name(name):
            assert value.startswith("change-me"), (name, "the example holds placeholders, never a secret")
    reference = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:[-?][^}]*)?\}")
    for name, service in _services().items():
        for key, value in _environment(service).items():
            if is_secret_name(key):
                assert reference.fullmatch(value), (name, key, "a secret comes from the env file")
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                assert reference.fullmatch(password), (name, key, "a URL's password comes from the env file")
    assert _git_ignores(DEPLOY / "compose.env")


def test_ports_are_on_loopback_and_every_service_is_on_the_internal_network() -> None:
    compose = _compose()
    internal = {name for name, network in compose["networks"].items() if (network or {}).get("internal")}
    assert internal
    for name, service in compose["services"].items():
        networks = set(service.get("networks", []))
        assert networks & internal, (name, "not on the internal network")
        ports = [str(port) for port in service.get("ports", [])]
        assert all(port.startswith("127.0.0.1:") for port in ports), (name, ports)
        if networks - internal:  # reachable from outside the internal network: only to publish a port
            assert ports, (name, "on an outward network without a port to publish")


def test_the_workers_poll_pools_that_exist_with_what_assay_needs() -> None:
    """Every pool a worker polls (or the set-up creates) has deployments in deploy/prefect.yaml or is documented
    in docs/scaling.md; every pool of prefect.yaml has a worker; workers run the flows from $ASSAY_HOME."""
    deployed = {d["work_pool"]["name"] for d in _deployments()}
    documented = set(re.findall(r"prefect work-pool create (\S+)", (ROOT / "docs" / "scaling.md").read_text()))
    commands = " ".join(_command(s) for s in _services().values())
    polled = set(re.findall(r"--pool\s+(\S+)", commands))
    created = {pool for group in re.findall(r"for pool in ([^;]+);", commands) for pool in group.split()}
    kubernetes = set(re.findall(r"prefect work-pool create (\S+)", (DEPLOY / "kubernetes" / "README.md").read_text()))
    assert polled and created and kubernetes
    named = polled | created | kubernetes
    assert named <= deployed | documented, named - deployed - documented
    assert deployed <= polled, deployed - polled
    logging_packages = {
        package
        for package in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"][
            "wheel"
        ]["packages"]
        if any("logging.getLogger(" in path.read_text() for path in (ROOT / package).rglob("*.py"))
    }
    assert "pipeline" in logging_packages
    server = _services()["prefect-server"]
    for name, worker in _workers().items():
        environment = _environment(worker)
        assert environment["ASSAY_HOME"] == "/opt/assay", name
        extra = set(environment["PREFECT_LOGGING_EXTRA_LOGGERS"].split(","))
        assert logging_packages <= extra, (name, logging_packages - extra)  # Assay's log lines in the UI
        assert all((ROOT / logger / "__init__.py").is_file() for logger in extra), extra
        port = _command(server).split("--port", 1)[1].split()[0]
        assert environment["PREFECT_API_URL"] == f"http://prefect-server:{port}/api", name
        assert any(str(v).startswith("${MODELS_DIR") and str(v).endswith(":/models:ro") for v in worker["volumes"])
        config = {c["source"]: c["target"] for c in worker.get("configs", [])}
        assert config.get("assay_toml") == f"{environment['ASSAY_HOME']}/assay.toml", name


def test_the_setup_creates_the_model_slot_limit_the_flows_take(monkeypatch: pytest.MonkeyPatch) -> None:
    setup = _command(_services()["prefect-deploy"])
    limit = _worker_settings(monkeypatch, _workers()["worker-cpu"]).orchestration.model_slots
    assert limit and re.search(rf"global-concurrency-limit create {re.escape(limit)} ", setup), limit
    assert "deploy --no-prompt --prefect-file deploy/prefect.yaml --all" in setup


def test_the_gpu_worker_runs_the_cuda_image_on_a_reserved_gpu() -> None:
    worker = _services()["worker-gpu"]
    assert worker["build"]["target"] == "cuda" and worker["image"].endswith(":cuda")
    assert _environment(worker)["ASSAY_MODEL__N_GPU_LAYERS"] == "-1"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert _services()["worker-cpu"]["build"]["target"] == "cpu"


def test_the_lake_bucket_is_the_one_the_setup_creates_and_the_policy_allows() -> None:
    bucket = _environment(_workers()["worker-cpu"])["ASSAY_LAKE_STORE__URL"].removeprefix("s3://").split("/")[0]
    setup = _command(_services()["minio-setup"])
    assert re.search(rf"mc mb --ignore-existing lake/{re.escape(bucket)}\s", setup)
    policy_file = _compose()["configs"]["lake_policy"]["file"]
    policy = json.loads((DEPLOY / policy_file).read_text())
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}


# ---- the Dockerfile ----------------------------------------------------------------------------------------


def test_the_dockerfile_has_the_targets_compose_builds() -> None:
    stages = _dockerfile().stages
    targets = {s["build"]["target"] for s in _services().values() if "build" in s}
    assert targets == {"cpu", "cuda"}
    assert targets <= set(stages)


def test_every_path_the_dockerfile_copies_exists_and_is_sent_to_the_build() -> None:
    dockerfile = _dockerfile()
    ignored = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for name in ("data", ".venv", ".tools", ".pytest_cache", ".mypy_cache", ".ruff_cache", "deploy/compose.env"):
        assert name in ignored, name
    assert "deploy/secrets" in ignored
    seen = []
    for stage in dockerfile.stages.values():
        for source, paths in _copies(stage):
            if source is not None:
                assert source in dockerfile.stages, (stage.name, source)  # a named stage, not a guess
                continue
            for path in paths:
                assert (ROOT / path).exists(), (stage.name, path)
                assert not any(path.rstrip("/") == i or path.startswith(f"{i}/") for i in ignored), path
                seen.append(path.rstrip("/"))
    for entrypoint in {d["entrypoint"].split(":")[0] for d in _deployments()}:  # the flows are in the image
        assert any(entrypoint == p or entrypoint.startswith(f"{p}/") for p in seen), entrypoint
    assert {"uv.lock", "pyproject.toml"} <= set(seen)


def test_the_image_is_built_from_the_lock_with_the_makefiles_uv() -> None:
    dockerfile = _dockerfile()
    makefile = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    assert makefile is not None
    assert dockerfile.arguments["UV_VERSION"] == makefile[1]
    syncs = [(stage.name, run) for stage in dockerfile.stages.values() for run in stage.args("RUN") if "uv sync" in run]
    assert syncs
    assert all("--frozen" in run for _, run in syncs), syncs
    for target, build in (("cpu", "build-cpu"), ("cuda", "build-cuda")):
        sources = {source for source, _ in _copies(dockerfile.stages[target]) if source is not None}
        assert sources == {build}, (target, sources)  # the runtime copies its own build stage's environment
        assert any(name == build for name, _ in syncs)
    assert "-DGGML_CUDA=on" in dockerfile.env("build-cuda")["CMAKE_ARGS"]
    assert "GGML_CUDA" not in dockerfile.env("build-cpu")["CMAKE_ARGS"]


def test_the_runtime_stages_have_no_compiler_install_no_python_package_and_run_as_a_user() -> None:
    dockerfile = _dockerfile()
    for target in ("cpu", "cuda"):
        chain = dockerfile.lineage(target)
        base = chain[-1].base
        assert "devel" not in base, (target, base)
        runs = [dockerfile.expand(run) for stage in chain for run in stage.args("RUN")]
        for run in runs:
            assert not re.search(r"\b(uv|pip3?|curl|wget)\b", run), (target, run)
        packages = {word for run in runs for word in run.split()}  # apt-get's arguments among them
        assert not packages & COMPILERS, (target, packages & COMPILERS)
        users = next((stage.args("USER") for stage in chain if stage.args("USER")), [])
        assert users and users[-1].split(":")[0] not in {"root", "0"}, (target, users)
    assert "cuda" in dockerfile.lineage("cuda")[-1].base and "runtime" in dockerfile.lineage("cuda")[-1].base


# ---- deploy/prefect.yaml -------------------------------------------------------------------------------------


def test_every_entrypoint_is_a_prefect_flow_and_every_deployment_named_exists() -> None:
    from prefect import Flow

    flows: dict[str, Any] = {}
    for deployment in _deployments():
        path, _, attribute = deployment["entrypoint"].partition(":")
        assert (ROOT / path).is_file(), path
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, attribute)
        assert isinstance(flow, Flow), deployment["entrypoint"]
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment.get("parameters", {})) <= accepted, (deployment["name"], accepted)
        flows[f"{flow.name}/{deployment['name']}"] = flow
    named = {d["parameters"]["worker_deployment"] for d in _deployments() if "worker_deployment" in d["parameters"]}
    from flows.assay_run import assay_run

    named.add(inspect.signature(assay_run.fn).parameters["worker_deployment"].default)
    assert named and named <= set(flows), named - set(flows)


def test_the_pull_step_and_the_config_file_are_where_the_estate_puts_them() -> None:
    """prefect.yaml runs the flows from $ASSAY_HOME with `config_file` in it, and reads configured sources:
    the image puts the code there, compose and the Kubernetes pods mount the config there, the example
    config has the sources."""
    prefect_yaml = _yaml(PREFECT_YAML)
    directory = prefect_yaml["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"]
    assert directory == "{{ $ASSAY_HOME }}"
    dockerfile = _dockerfile()
    for target in ("cpu", "cuda"):
        home = dockerfile.env(target)["ASSAY_HOME"]
        assert home in dockerfile.stages[target].args("WORKDIR"), target
        assert any(copy.split()[-1] == home for copy in dockerfile.stages[target].args("COPY")), target
    example = tomllib.loads(CONFIG_EXAMPLE.read_text())
    container = _job_template()["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    in_pods = {e["name"]: e.get("value") for e in _template_env()}
    for deployment in _deployments():
        parameters = deployment.get("parameters", {})
        config = parameters.get("config_file")
        assert config and not Path(config).is_absolute()
        assert f"{in_pods['ASSAY_HOME']}/{config}" in mounts
        for source in parameters.get("sources", []):
            assert source in example.get("sources", {}), (deployment["name"], source)


# ---- deploy/kubernetes/base-job-template.json ----------------------------------------------------------------


def test_the_job_template_declares_every_variable_it_uses_and_prefect_accepts_it() -> None:
    from prefect.server.schemas.actions import WorkPoolCreate
    from prefect.utilities.templating import find_placeholders

    template = _job_template()
    used = {p.name for p in find_placeholders(json.dumps(template["job_configuration"]))}
    declared = set(template["variables"]["properties"])
    assert used <= declared, used - declared
    assert declared <= used, declared - used  # nothing declared and then ignored
    WorkPoolCreate(name="assay-gpu", type="kubernetes", base_job_template=template)  # Prefect's own check


def test_the_job_template_renders_a_gpu_job_with_the_model_volume() -> None:
    """Rendered with its defaults the way a worker renders it: one GPU requested and limited, CPU and memory
    requests, the models read-only at /models from a declared volume, the secrets from a Secret."""
    from prefect.utilities.templating import apply_values

    template = _job_template()
    defaults = {
        name: spec["default"] for name, spec in template["variables"]["properties"].items() if "default" in spec
    }
    job = apply_values(template["job_configuration"], defaults)
    pod = job["job_manifest"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] >= 1
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert all(m["name"] in volumes for m in mounts.values())
    assert mounts["/models"]["readOnly"] and "persistentVolumeClaim" in volumes[mounts["/models"]["name"]]
    env = {e["name"]: e for e in container["env"]}
    assert env["ASSAY_MODEL__N_GPU_LAYERS"]["value"] == "-1"
    assert all(isinstance(e.get("value"), str) or "valueFrom" in e for e in env.values()), env
    for name, entry in env.items():
        if is_secret_name(name) or name == "ASSAY_STATE_URL":
            assert "secretKeyRef" in entry["valueFrom"], name  # never a value in the template
    assert pod["securityContext"]["runAsNonRoot"]
    assert defaults["image"].endswith(":cuda") and "cuda" in _dockerfile().stages
