"""Assay's pure core: no Prefect import here (tests/test_layering.py enforces it).

Importing the package first switches every library to offline, telemetry-off
mode (see `pipeline.core.offline`).
"""

from pipeline.core import offline as _offline

_offline.enforce()
