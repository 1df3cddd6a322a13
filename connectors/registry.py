"""The explicit registry of connectors: name in config -> class.

Adding a connector is one module plus one line here (docs/connectors.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from connectors.base import Connector
from connectors.local import LocalFolderConnector
from pipeline.errors import ConfigError
from pipeline.settings import Settings, SourceSettings

ConnectorFactory = Callable[[str, SourceSettings], Connector]

CONNECTORS: dict[str, ConnectorFactory] = {
    "local": LocalFolderConnector,
}


def make_connector(source_name: str, settings: SourceSettings) -> Connector:
    try:
        factory = CONNECTORS[settings.connector]
    except KeyError:
        known = ", ".join(sorted(CONNECTORS))
        raise ConfigError(f"unknown connector {settings.connector!r} (known: {known})") from None
    return factory(source_name, settings)


def resolve_sources(names_or_paths: list[str], settings: Settings) -> dict[str, SourceSettings]:
    """Each argument is a configured source name, or a local path (a file or a folder)."""
    resolved: dict[str, SourceSettings] = {}
    for item in names_or_paths:
        if item in settings.sources:
            resolved[item] = settings.sources[item]
        elif Path(item).exists():
            path = str(Path(item).resolve())
            resolved[path] = SourceSettings(connector="local", path=path)
        else:
            known = ", ".join(sorted(settings.sources)) or "none configured"
            raise ConfigError(f"{item!r} is neither a configured source ({known}) nor an existing path")
    return resolved
