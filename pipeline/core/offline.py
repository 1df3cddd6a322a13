"""Keep every library off the network: no telemetry, no hub downloads.

`enforce()` sets the environment switches that the libraries Assay uses read
*before* they are imported (unstructured reads DO_NOT_TRACK at import time), so
it is called first thing by every entry point: `pipeline/__init__.py` calls it,
which covers the CLI, the flows and the tests.

The switches only ask libraries to behave; `tests/test_e2e.py` proves it
by running a whole job with outbound sockets blocked.
"""

from __future__ import annotations

import os

# Each switch, and why it is here.
OFFLINE_ENV: dict[str, str] = {
    # unstructured: no telemetry ping on import or on each partition call.
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    # Hugging Face hub (pulled in by unstructured-inference): never reach the hub.
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # Prefect: no anonymous usage stats from the client or an ephemeral server.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    # Ephemeral Prefect spends 11-16 s starting a local server; the default wait is 20 s.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    # tqdm/others that may phone home for version checks.
    "DISABLE_VERSION_CHECK": "1",
}


def enforce() -> None:
    """Set the offline switches unless the operator has set them explicitly.

    And an empty PREFECT_API_URL (`export PREFECT_API_URL=` to unset it) is removed: Prefect's client
    then starts its ephemeral server, as for no setting at all, but its events worker takes the empty
    string for a server's address and logs an error with a traceback for every event of the run.
    """
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if os.environ.get("PREFECT_API_URL") == "":
        del os.environ["PREFECT_API_URL"]
