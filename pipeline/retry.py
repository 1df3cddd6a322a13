"""The one place that decides how transient failures are retried (tenacity)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from pipeline.errors import TransientError

P = ParamSpec("P")
R = TypeVar("R")

ATTEMPTS = 4


def retry_transient(fn: Callable[P, R]) -> Callable[P, R]:
    """Retry `fn` on `TransientError` (and OSError from I/O edges) with jittered backoff."""
    decorated: Callable[P, R] = retry(
        retry=retry_if_exception_type((TransientError, ConnectionError, TimeoutError)),
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
        reraise=True,
    )(fn)
    return decorated
