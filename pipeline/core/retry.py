"""The one place that decides how transient failures are retried (tenacity).

Every I/O edge that may fail for a moment (a connector's read, a network store)
goes through here: `TransientError`, `ConnectionError` and `TimeoutError` are
tried again with jittered exponential backoff, `ATTEMPTS` times in all, each
retry logged; anything else (a terminal error) passes through at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from tenacity import before_sleep_log, retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from pipeline.core.errors import TransientError

P = ParamSpec("P")
R = TypeVar("R")

ATTEMPTS = 4
RETRIED = (TransientError, ConnectionError, TimeoutError)

logger = logging.getLogger(__name__)


def retry_transient(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, retried on transient errors with jittered backoff."""
    decorated: Callable[P, R] = retry(
        retry=retry_if_exception_type(RETRIED),
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
        before_sleep=before_sleep_log(logger, logging.WARNING),
        reraise=True,
    )(fn)
    return decorated


def call_with_retry(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call `fn` once, retrying it on transient errors like `retry_transient`."""
    return retry_transient(fn)(*args, **kwargs)
