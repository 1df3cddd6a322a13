"""What every connector provides: the `Connector` protocol of the core (pipeline/core/connector.py)."""

from __future__ import annotations

from pipeline.core.connector import Connector

__all__ = ["Connector"]
