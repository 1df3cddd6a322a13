"""What every `assay` command is handed: the global options, and the settings they lead to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core.settings import Settings, load_settings


class CliContext:
    """`--config` and `--data-dir`, as given; `settings()` loads the settings they name."""

    def __init__(self, config: Path | None, data_dir: Path | None) -> None:
        self.config = config
        self.data_dir = data_dir

    def settings(self, **overrides: Any) -> Settings:
        if self.data_dir is not None:
            overrides["data_dir"] = self.data_dir
        return load_settings(self.config, **overrides)

    @property
    def config_file(self) -> str | None:
        return str(self.config) if self.config else None
