"""How the CLI writes to the terminal: tables, progress, and the command to type next."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from pipeline.core import progress as progress_events

console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)  # pipes get whole tables
err_console = Console(stderr=True)


# Control characters a document may carry into a terminal (ESC and OSC sequences, bells, C1 codes): dropped.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(value: Any) -> str:
    """Data for plain terminal text (click.echo, no Rich markup): control characters dropped."""
    return _CONTROL.sub("", "" if value is None else str(value))


def safe(value: Any) -> str:
    """Data for the terminal: control characters dropped, Rich markup escaped (a `[/b]` is text, not markup)."""
    return escape(_CONTROL.sub("", "" if value is None else str(value)))


def print_json(data: Any) -> None:
    """JSON on stdout for scripts: times as ISO 8601, everything else as JSON can hold it."""
    print(json.dumps(data, default=_jsonable, indent=1, ensure_ascii=False))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def print_table(columns: Sequence[str], rows: Sequence[tuple[Any, ...]], title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in ("run_id", "started", "status"))
    for row in rows:
        table.add_row(*[Text(_CONTROL.sub("", "" if v is None else str(v))) for v in row])  # text, never markup
    console.print(table)


class _BarProgress:
    """Progress listener drawing one bar over the run's documents."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task_id = bar.add_task("planning", total=None)

    def documents_planned(self, total: int) -> None:
        self.bar.update(self.task_id, total=total, description="documents")

    def document_done(self, uri: str, status: str) -> None:
        self.bar.update(self.task_id, advance=1, description=f"{status}: {safe(uri.rsplit('/', 1)[-1][:40])}")


class _LineProgress:
    """Progress listener for logs and pipes: one line per document, `[done/listed so far]`."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0

    def documents_planned(self, total: int) -> None:
        self.total = total

    def document_done(self, uri: str, status: str) -> None:
        self.done += 1
        err_console.print(f"[{self.done}/{self.total}] {status}: {safe(uri.rsplit('/', 1)[-1])}", highlight=False)


@contextmanager
def progress_shown(show_bar: bool) -> Iterator[None]:
    """Progress events of a run: a bar on a terminal, one line per document otherwise."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not show_bar,
        transient=True,
    ) as bar:
        listener = _BarProgress(bar) if show_bar else _LineProgress()
        with progress_events.listening(listener):
            yield


def assay_invocation(data_dir: Path | None) -> str:
    """How the user can call this same CLI again (for the hints printed after a run)."""
    candidate = Path(sys.executable).parent / "assay"
    if candidate.exists():
        try:
            command = str(candidate.relative_to(Path.cwd()))
        except ValueError:
            command = str(candidate)
    else:
        command = "assay"
    return command + (f" --data-dir {data_dir}" if data_dir else "")
