"""Secrets kept out of everything Assay prints or stores: one place that knows what a secret looks like.

- `redact_url` masks the password of a URL's userinfo and the values of password-like query parameters
  (`?password=`, `sslpassword=`, `X-Amz-Signature=`, `token=`, ...); the user name and host stay, since
  an operator needs them.
- `redact` masks, in any text (an error message, a log line), the secret values this process was told
  about (`protect`) and every URL's secrets.
- `protect(values)` registers secret values and installs a log-record factory, so every log record of
  the process, from any library, is redacted before a handler (console, file, Prefect's API) sees it.

Settings know their own secrets (`Settings.secret_values`, `Settings.redacted`); run records, Prefect
parameters and the context sent to Dask workers carry none (docs/security.md).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

MASK = "***"

# A parameter or key whose value is a secret: one of its words (split at _ - .) is, or ends with, one of
# these. `sslpassword`, `secret_access_key`, `X-Amz-Signature`, `api_token` are secrets; `max_tokens`,
# `key_file` (a path) and `key_id` are not.
_SECRET_WORD = re.compile(
    r"(pass|pwd|auth|sig|.*(password|passwd|passphrase|secret|token|signature|credential|apikey|authorization))",
    re.IGNORECASE,
)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
# Shorter values are not masked inside free text: "***" for every "a" would make text unreadable.
_MIN_SECRET_LENGTH = 4


def is_secret_name(name: str) -> bool:
    """Whether a setting, query parameter or header of this name holds a secret."""
    return any(_SECRET_WORD.fullmatch(word) for word in re.split(r"[_.\-]", name))


def redact_url(url: str) -> str:
    """The URL with its userinfo password and password-like query values masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL after all (an invalid port, ...): mask what follows a colon in userinfo
        return re.sub(r"(://[^/:@\s]*):[^/@\s]*@", rf"\1:{MASK}@", url)
    if password is None and not any(is_secret_name(k) for k, _ in parse_qsl(parts.query)):
        return url  # as it was (urlunsplit would rewrite sqlite:////abs/path)
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], quote_via=quote, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The secret values inside a URL: its password and its password-like query values."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return []
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if is_secret_name(k) and v]
    return found


def redact_data(data: Any) -> Any:
    """JSON-like data with secret-named keys masked and every URL in a string redacted."""
    if isinstance(data, dict):
        return {k: (MASK if data[k] and is_secret_name(str(k)) else redact_data(v)) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(v) for v in data]
    if isinstance(data, str):
        return redact(data)
    return data


_lock = threading.Lock()
_protected: set[str] = set()
_installed = False


def protect(values: Iterable[str]) -> None:
    """Remember these secret values for `redact`, and redact every log record of this process from now on."""
    global _installed
    with _lock:
        _protected.update(v for v in values if len(v) >= _MIN_SECRET_LENGTH)
        if not _installed:
            _install_record_factory()
            _installed = True


def redact(text: str) -> str:
    """The text with the protected secret values and every URL's secrets masked."""
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    for value in sorted(_protected, key=len, reverse=True):  # longest first: one may contain another
        if value in text:
            text = text.replace(value, MASK)
    return text


def _install_record_factory() -> None:
    """Every log record is formatted and redacted when it is made, before any handler sees it."""
    make_record = logging.getLogRecordFactory()

    def redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to logging to report
            return record
        redacted = redact(message)
        if redacted != message:  # otherwise left alone: some formatters read `args` (uvicorn's access log)
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None  # a handler that renders tracebacks itself would print the unredacted one
        return record

    logging.setLogRecordFactory(redacted_record)
