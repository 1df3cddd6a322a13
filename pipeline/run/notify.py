"""Telling someone how a run ended: a webhook POST and/or a command, with the run's summary as JSON.

Called by the flow's state hooks (flows/console.py) for the outcomes `[notify] on` names. A
notification that cannot be delivered is logged, never raised: it must not change how the run ended.
The webhook is tried again on transient failures (no answer, 5xx) through the one retry module.
"""

from __future__ import annotations

import json
import logging
import subprocess
import urllib.error
import urllib.request
from typing import Any

from pipeline.core.errors import TransientError
from pipeline.core.retry import call_with_retry
from pipeline.core.secrets import redact
from pipeline.core.settings import NotifySettings

logger = logging.getLogger(__name__)


def _post(url: str, body: bytes, timeout_s: float) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise TransientError(f"the webhook answered {exc.code}") from exc
        raise
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise TransientError(f"the webhook could not be reached: {exc}") from exc


def notify(settings: NotifySettings, outcome: str, payload: dict[str, Any]) -> list[str]:
    """Send `payload` (the run's summary, `outcome` added) where `settings` say, if `outcome` is one
    they name; what was done, one line per channel (for the log)."""
    if outcome not in settings.on:
        return []
    body = json.dumps({"outcome": outcome, **payload}, default=str).encode()
    done: list[str] = []
    if settings.webhook_url is not None:
        url = settings.webhook_url.get_secret_value()
        try:
            status = call_with_retry(_post, url, body, settings.timeout_s)
            done.append(f"webhook answered {status}")
        except Exception as exc:
            logger.error("the run's %s notification was not delivered to the webhook: %s", outcome, redact(str(exc)))
            done.append(f"webhook failed: {redact(str(exc))}")
    if settings.command:
        try:
            finished = subprocess.run(
                settings.command, input=body, capture_output=True, timeout=settings.timeout_s, check=False
            )
            done.append(f"command exited {finished.returncode}")
            if finished.returncode != 0:
                logger.error(
                    "the notification command %s exited %d: %s",
                    settings.command[0],
                    finished.returncode,
                    redact(finished.stderr.decode(errors="replace")[-500:]),
                )
        except (OSError, subprocess.TimeoutExpired) as exc:
            logger.error("the notification command %s failed: %s", settings.command[0], redact(str(exc)))
            done.append(f"command failed: {redact(str(exc))}")
    return done
