"""Secrets stay out of what Assay prints, stores and sends: URLs, settings, logs, errors, flow parameters
and the pickled run context. (The end-to-end check, a shared run and a Dask run grepped for their secrets
in every record they leave, is in tests/test_scale_out.py.)"""

from __future__ import annotations

import logging
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.core.errors import ConfigError
from pipeline.core.secrets import is_secret_name, protect, redact, redact_url
from pipeline.core.settings import Settings, load_settings, settings_from_parameters
from pipeline.land.store import _host_and_port
from pipeline.run.context import RunContext

STATE_URL = "postgresql+psycopg://assay:pg-pass-1234@db.internal:5432/assay?sslpassword=ssl-pass-5678&sslmode=require"
SECRETS = ["pg-pass-1234", "ssl-pass-5678", "s3-secret-9012", "AKIA3456", "mirror-pass-7890"]


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (STATE_URL, "postgresql+psycopg://assay:***@db.internal:5432/assay?sslpassword=***&sslmode=require"),
        ("https://user:p%40ss@minio.internal:9000/", "https://user:***@minio.internal:9000/"),
        ("https://minio.internal/b/k?X-Amz-Credential=A&X-Amz-Signature=abc&x=1", None),
        ("sqlite:////var/lib/assay/state.sqlite", "sqlite:////var/lib/assay/state.sqlite"),
        (
            "postgresql://db.internal/assay?application_name=assay",
            "postgresql://db.internal/assay?application_name=assay",
        ),
        ("http://user:secret@host:notaport/x", "http://user:***@host:notaport/x"),
    ],
)
def test_a_url_keeps_its_user_and_host_and_loses_its_secrets(url: str, redacted: str | None) -> None:
    if redacted is None:
        assert redact_url(url) == "https://minio.internal/b/k?X-Amz-Credential=***&X-Amz-Signature=***&x=1"
    else:
        assert redact_url(url) == redacted


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("sslpassword", True),
        ("secret_access_key", True),
        ("X-Amz-Signature", True),
        ("api_token", True),
        ("max_tokens", False),
        ("key_file", False),
        ("key_id", False),
        ("passport", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


@pytest.fixture
def secret_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """Settings with a secret of every kind, given the way production gives them: the environment."""
    monkeypatch.setenv("ASSAY_STATE_URL", STATE_URL)
    monkeypatch.setenv("ASSAY_LAKE_STORE__ACCESS_KEY_ID", "AKIA3456")
    monkeypatch.setenv("ASSAY_LAKE_STORE__SECRET_ACCESS_KEY", "s3-secret-9012")
    monkeypatch.setenv("ASSAY_LAKE_MIRROR__ENDPOINT_URL", "https://backup:mirror-pass-7890@minio.dr:9000")
    return load_settings(
        data_dir=tmp_path,
        lake_store={"url": "s3://lake/assay", "endpoint_url": "https://minio.internal:9000"},
        lake_mirror={"url": "s3://mirror/assay"},
    )


def _holds_no_secret(text: str | bytes) -> bool:
    raw = text if isinstance(text, bytes) else text.encode()
    return not [s for s in SECRETS if s.encode() in raw]


def test_settings_know_their_secrets_and_print_none(secret_settings: Settings) -> None:
    assert set(SECRETS) <= set(secret_settings.secret_values())
    assert _holds_no_secret(repr(secret_settings)) and _holds_no_secret(str(secret_settings))
    redacted = secret_settings.redacted()  # what a run record holds
    assert _holds_no_secret(str(redacted))
    assert redacted["state_url"].startswith("postgresql+psycopg://assay:***@db.internal")
    assert redacted["lake_mirror"]["endpoint_url"] == "https://backup:***@minio.dr:9000"


def test_log_lines_and_tracebacks_of_any_logger_are_redacted(secret_settings: Settings) -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    library = logging.getLogger("some.library")
    library.addHandler(handler)
    try:
        library.warning("connecting to %s with key %s", STATE_URL, "s3-secret-9012")
        try:
            raise RuntimeError(f"cannot reach {STATE_URL.replace('postgresql+psycopg', 'postgresql')}")
        except RuntimeError:
            library.exception("failed")
    finally:
        library.removeHandler(handler)
    assert len(records) == 2 and "Traceback" in records[1]
    assert all(_holds_no_secret(r) for r in records), records
    assert "assay:***@db.internal" in records[0]


def test_recorded_errors_are_redacted(secret_settings: Settings) -> None:
    message = redact(f"OperationalError: could not connect: {STATE_URL}; key=s3-secret-9012")
    assert _holds_no_secret(message) and "db.internal" in message


def test_a_validation_error_does_not_repeat_the_secret_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_LAKE_STORE__SECRET_ACCESS_KEY", "s3-secret-9012")  # a lake_store without its url
    with pytest.raises(ValidationError) as raised:
        load_settings()
    assert "lake_store.url" in str(raised.value) and _holds_no_secret(str(raised.value))


def test_a_flow_refuses_a_secret_among_its_parameters(tmp_path: Path) -> None:
    parameters: list[dict[str, Any]] = [
        {"state_url": STATE_URL},
        {"lake_store": {"url": "s3://lake/x", "secret_access_key": "s3-secret-9012"}},
        {"lake_mirror": {"url": "s3://m/x", "endpoint_url": "https://backup:mirror-pass-7890@minio.dr"}},
    ]
    for overrides in parameters:
        with pytest.raises(ConfigError, match="cannot be a flow parameter") as raised:
            settings_from_parameters(None, {"data_dir": str(tmp_path), **overrides})
        assert _holds_no_secret(str(raised.value))
    assert settings_from_parameters(None, {"data_dir": str(tmp_path), "state_url": None}).state_url is None


def _context(settings: Settings) -> RunContext:
    assert settings.state_url is not None
    return RunContext("run-1", None, settings, {}, datetime.now(UTC), "0" * 64, settings.state_url.get_secret_value())


def test_the_run_context_is_pickled_for_workers_without_a_secret(
    secret_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = _context(secret_settings)
    assert _holds_no_secret(repr(context))
    sent = pickle.dumps(context)
    assert _holds_no_secret(sent)
    # A worker whose environment gives the same secrets gets them back: from its environment.
    received = pickle.loads(sent)
    assert received.state_url == STATE_URL
    assert received.settings.lake_store.secret_access_key.get_secret_value() == "s3-secret-9012"
    assert received.settings.lake_mirror.endpoint_url == secret_settings.lake_mirror.endpoint_url  # type: ignore[union-attr]
    # A worker without them, or with secrets for another server, stops: it never guesses.
    monkeypatch.delenv("ASSAY_LAKE_STORE__SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match=r"settings.lake_store.secret_access_key is a secret"):
        pickle.loads(sent)
    monkeypatch.setenv("ASSAY_LAKE_STORE__SECRET_ACCESS_KEY", "s3-secret-9012")
    monkeypatch.setenv("ASSAY_STATE_URL", STATE_URL.replace("db.internal", "other.internal"))
    with pytest.raises(ConfigError, match=r"settings.state_url is a secret") as raised:
        pickle.loads(sent)
    assert _holds_no_secret(str(raised.value))


def test_an_endpoint_url_with_credentials_gives_s3_only_its_host_and_port() -> None:
    assert _host_and_port("https://backup:mirror-pass-7890@minio.dr:9000") == "minio.dr:9000"
    assert _host_and_port("http://[::1]:9000") == "[::1]:9000"
    assert _host_and_port("minio.internal:9000") == "minio.internal:9000"


def test_protected_values_are_masked_in_free_text() -> None:
    protect(["a-value-only-this-test-knows"])
    assert redact("x a-value-only-this-test-knows y") == "x *** y"
