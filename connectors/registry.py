"""The explicit registry of connectors: the `connector` key of a source -> its config model and class.

A source's settings are validated against its connector's own pydantic config
(`extra="forbid"`): the registry is a discriminated union on `connector`, so an
unknown connector or an unknown key is an error that names it. Adding a
connector is one module plus one line here (docs/connectors.md); a third
party's package adds one through the entry-point group `assay.connectors`,
each entry naming a `ConnectorKind`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from connectors.imap import ImapConfig, ImapConnector
from connectors.local import LocalFolderConfig, LocalFolderConnector
from connectors.mailbox import MaildirConfig, MaildirConnector, MboxConfig, MboxConnector
from connectors.s3 import S3Connector, S3SourceConfig
from connectors.smb import SmbConfig, SmbConnector
from connectors.sql import SqlConnector, SqlSourceConfig
from pipeline.core.connector import Connector, SourceLimits
from pipeline.core.errors import ConfigError
from pipeline.core.settings import Settings, SourceSettings


@dataclass(frozen=True)
class ConnectorKind:
    """One kind of source: its config model and how to make a connector from it."""

    config: type[BaseModel]
    make: Callable[[str, Any, SourceLimits], Connector]


CONNECTORS: dict[str, ConnectorKind] = {
    "local": ConnectorKind(LocalFolderConfig, LocalFolderConnector),
    "s3": ConnectorKind(S3SourceConfig, S3Connector),
    "sql": ConnectorKind(SqlSourceConfig, SqlConnector),
    "smb": ConnectorKind(SmbConfig, SmbConnector),
    "imap": ConnectorKind(ImapConfig, ImapConnector),
    "mbox": ConnectorKind(MboxConfig, MboxConnector),
    "maildir": ConnectorKind(MaildirConfig, MaildirConnector),
}
ENTRY_POINT_GROUP = "assay.connectors"


@cache
def known_connectors() -> dict[str, ConnectorKind]:
    """The shipped connectors, then those installed packages register (a shipped name cannot be replaced)."""
    found = dict(CONNECTORS)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in found:
            continue
        kind = entry.load()
        if not isinstance(kind, ConnectorKind):
            raise ConfigError(f"entry point {entry.name!r} in {ENTRY_POINT_GROUP} does not name a ConnectorKind")
        found[entry.name] = kind
    return found


def _kind_and_config(source_name: str, options: Mapping[str, Any] | SourceSettings) -> tuple[ConnectorKind, BaseModel]:
    raw = options.options() if isinstance(options, SourceSettings) else dict(options)
    raw.pop("values", None)  # how the source writes values is the core's to read (Settings.conventions)
    kind_name = str(raw.get("connector", "local"))
    connectors = known_connectors()
    kind = connectors.get(kind_name)
    if kind is None:
        known = ", ".join(sorted(connectors))
        raise ConfigError(f"source {source_name!r}: unknown connector {kind_name!r} (known: {known})")
    try:
        return kind, kind.config.model_validate({**raw, "connector": kind_name})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"source {source_name!r} ({kind_name}): {problems}") from None


def source_config(source_name: str, options: Mapping[str, Any] | SourceSettings) -> BaseModel:
    """The source's settings validated against its connector's config model."""
    return _kind_and_config(source_name, options)[1]


def make_connector(
    source_name: str, options: Mapping[str, Any] | SourceSettings, limits: SourceLimits | None = None
) -> Connector:
    """A connector for a source, from its settings (validated here)."""
    kind, config = _kind_and_config(source_name, options)
    return kind.make(source_name, config, limits or SourceLimits())


def limits_of(settings: Settings) -> SourceLimits:
    return SourceLimits(max_file_bytes=settings.max_file_bytes, cursor_overlap_s=settings.listing.overlap_s)


def validate_sources(settings: Settings) -> None:
    """Check every configured source against its connector's config (a typo fails before any run starts)."""
    for name, options in settings.sources.items():
        source_config(name, options)


def resolve_sources(names_or_paths: Iterable[str], settings: Settings) -> dict[str, Connector]:
    """Each argument is a configured source name, or a local path (a file or a folder): its connector."""
    resolved: dict[str, Connector] = {}
    for item in names_or_paths:
        if item in settings.sources:
            resolved[item] = make_connector(item, settings.sources[item], limits_of(settings))
        elif Path(item).exists():
            path = str(Path(item).resolve())
            resolved[path] = make_connector(path, {"connector": "local", "path": path}, limits_of(settings))
        else:
            known = ", ".join(sorted(settings.sources)) or "none configured"
            raise ConfigError(f"{item!r} is neither a configured source ({known}) nor an existing path")
    return resolved


def rebuild_sources(recorded: Mapping[str, Mapping[str, Any]], settings: Settings) -> dict[str, Connector]:
    """The connectors of a run another process started (a shared run's worker), from their recorded configs.

    A source this worker's settings also name is built from them (its secrets come from this worker's own
    configuration and environment, never from the record); any other from the record.
    """
    return {
        name: make_connector(name, settings.sources[name] if name in settings.sources else options, limits_of(settings))
        for name, options in recorded.items()
    }
