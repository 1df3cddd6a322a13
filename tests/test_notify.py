"""Who is told how a run ended (`[notify]`): a command given the summary on its standard input, a webhook,
only for the outcomes named, and a channel that fails never raises (it must not change the run's state)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.core.settings import NotifySettings
from pipeline.run.notify import notify
from tests.support import HookCatcher, free_port

SUMMARY = {"run_id": "20261203T010000.000000Z-abcdef12", "documents_in": 4, "processed": 2}


def test_a_command_is_given_the_summary_as_json_on_its_standard_input(tmp_path: Path) -> None:
    out = tmp_path / "received.json"
    command = [sys.executable, "-c", f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())"]
    done = notify(NotifySettings(command=command), "incomplete", SUMMARY)
    assert done == ["command exited 0"]
    assert json.loads(out.read_text()) == {"outcome": "incomplete", **SUMMARY}


def test_only_the_outcomes_named_notify(tmp_path: Path) -> None:
    hooks = HookCatcher()
    try:
        settings = NotifySettings(webhook_url=hooks.url)  # type: ignore[arg-type]
        assert notify(settings, "completed", SUMMARY) == []  # not in the default `on`
        assert notify(settings, "failed", SUMMARY) == ["webhook answered 204"]
        assert [call["outcome"] for call in hooks.received] == ["failed"]
        every = NotifySettings(webhook_url=hooks.url, on=["completed"])  # type: ignore[arg-type]
        assert notify(every, "completed", SUMMARY) == ["webhook answered 204"]
    finally:
        hooks.close()


def test_a_channel_that_fails_is_reported_and_never_raises(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: refused, retried, given up
    done = notify(
        NotifySettings(webhook_url=dead, command=[str(tmp_path / "no-such-program")]),  # type: ignore[arg-type]
        "crashed",
        SUMMARY,
    )
    assert done[0].startswith("webhook failed: the webhook could not be reached")
    assert done[1].startswith("command failed:")
    failing = NotifySettings(command=[sys.executable, "-c", "import sys; sys.exit(3)"])
    assert notify(failing, "failed", SUMMARY) == ["command exited 3"]
