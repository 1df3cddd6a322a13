"""Parsing ahead (`[parsing] ahead`): the next shard parses while the model works on this one, and lands the same."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.errors import TransientError
from pipeline.land.warehouse import connect_read_only
from pipeline.run import ahead, extraction, local, shard
from pipeline.run.context import RunContext
from pipeline.run.plan import Shard
from pipeline.run.work import ParsedShard, ShardWork
from tests.jobrunner import NO_MODEL, run
from tests.support import nightly_source

AHEAD: dict[str, Any] = {"parsing": {"ahead": True, "workers": 1}, "model": {"n_threads": 1}, "shard_size": 1}


def _landed(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What a run landed, without its run id and times: documents, chunks, findings and failures."""
    queries = {
        "documents": "select document_uri, status, reason, content_sha256, pages, chunks from documents order by all",
        "chunks": "select chunk_id, char_start, char_end from chunks order by all",
        "findings": "select document_uri, field, value, evidence_start, evidence_end from findings order by all",
        "failures": "select document_uri, stage, reason from failures order by all",
    }
    with connect_read_only(data_dir / "warehouse.duckdb") as con:
        return {name: con.execute(sql).fetchall() for name, sql in queries.items()}


def test_parsing_ahead_lands_what_parsing_in_turn_lands(tmp_path: Path) -> None:
    """The good and the bad files of the nightly estate, a shard each: the same rows, in and out of turn."""
    source = nightly_source(tmp_path)
    in_turn = run(tmp_path / "in-turn", source, NO_MODEL, shard_size=1)
    overlapped = run(tmp_path / "ahead", source, NO_MODEL, **AHEAD)
    assert in_turn.status == overlapped.status == "completed"
    shards = in_turn.documents_in
    assert shards >= 3
    assert in_turn.shards_parsed_ahead == 0
    assert overlapped.shards_parsed_ahead == shards - 1  # every shard but the first
    for counted in ("processed", "failed", "skipped", "pages", "chunks", "findings", "values"):
        assert getattr(overlapped, counted) == getattr(in_turn, counted), counted
    assert overlapped.document_failures == in_turn.document_failures
    landed = _landed(tmp_path / "ahead")
    assert landed == _landed(tmp_path / "in-turn")
    assert landed["findings"] and landed["failures"]


def test_the_next_shard_parses_while_the_model_works_on_this_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Watched, not faked: each shard's model step waits (up to 60 s) for the next shard's parse to start."""
    started: dict[int, threading.Event] = {}
    seen: list[tuple[str, int, str]] = []
    real_parse, real_model = shard.parse_shard, extraction.extract_pending

    def parse(context: RunContext, one: Shard) -> ParsedShard:
        seen.append(("parse", one.index, threading.current_thread().name))
        started.setdefault(one.index, threading.Event()).set()
        return real_parse(context, one)

    def model(work: ShardWork) -> None:
        index = work.report.shard_index
        following = started.setdefault(index + 1, threading.Event())
        overlapped = following.wait(timeout=60 if index + 1 < shards else 0)
        seen.append(("model", index, "overlapped" if overlapped else "alone"))
        real_model(work)

    source = nightly_source(tmp_path)
    shards = len(list((tmp_path / "in").iterdir()))
    monkeypatch.setattr(local, "parse_shard", parse)
    monkeypatch.setattr(shard, "parse_shard", parse)
    monkeypatch.setattr(shard, "extract_pending", model)
    summary = run(tmp_path / "data", source, NO_MODEL, **AHEAD)
    assert summary.status == "completed" and summary.shards_parsed_ahead == shards - 1
    models = [(index, how) for stage, index, how in seen if stage == "model"]
    assert models == [(i, "overlapped") for i in range(shards - 1)] + [(shards - 1, "alone")]
    parses = [(index, thread) for stage, index, thread in seen if stage == "parse"]
    assert [index for index, _ in parses] == list(range(shards))
    assert parses[0][1] == "MainThread"  # the first shard has nothing to overlap with
    assert all(thread.startswith("assay-parse-ahead") for _, thread in parses[1:])


def test_a_parse_ahead_that_fails_fails_where_its_shard_is_taken_and_the_next_run_lands_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state store blinked while the second shard parsed in the background (fault injection)."""
    real_parse = shard.parse_shard

    def parse(context: RunContext, one: Shard) -> ParsedShard:
        if one.index == 1:
            raise TransientError("the state store dropped the connection")
        return real_parse(context, one)

    source = nightly_source(tmp_path)
    monkeypatch.setattr(local, "parse_shard", parse)
    with pytest.raises(TransientError, match="dropped the connection"):
        run(tmp_path / "data", source, NO_MODEL, **AHEAD)
    monkeypatch.undo()
    again = run(tmp_path / "data", source, NO_MODEL, **AHEAD)
    assert again.status == "completed" and again.documents == again.documents_in


def test_a_shard_tried_again_takes_its_own_parse_ahead() -> None:
    shards = [Shard(index=i, documents=[]) for i in range(3)]
    parsed: list[int] = []

    def parse(context: Any, one: Shard) -> Any:
        parsed.append(one.index)
        return one.index

    parse_ahead: Any = ahead.ParseAhead(context=None, parse=parse)  # type: ignore[arg-type]
    try:
        stream = parse_ahead.announce(shards)
        first = next(stream)
        assert parse_ahead.take(first) is None  # nothing parsed ahead of the first
        parse_ahead.begin()  # shard 1 parses in the background
        second = next(stream)
        retried = second.model_copy(update={"attempt": 2})
        assert parse_ahead.take(first) is None  # an earlier shard tried again leaves shard 1's parse alone
        assert parse_ahead.take(retried) == 1  # a retry of shard 1 takes it
        parse_ahead.begin()
        third = next(stream)
        assert parse_ahead.take(third) == 2
        assert next(stream, None) is None
        parse_ahead.begin()  # nothing announced: nothing starts
    finally:
        parse_ahead.close()
    assert parsed == [1, 2]


def test_a_shard_given_up_drops_its_parse_ahead_and_the_next_one_is_parsed_in_turn() -> None:
    shards = [Shard(index=i, documents=[]) for i in range(3)]
    parse_ahead: Any = ahead.ParseAhead(context=None, parse=lambda context, one: one.index)  # type: ignore[arg-type,return-value]
    try:
        stream = parse_ahead.announce(shards)
        next(stream)
        parse_ahead.begin()  # shard 1 parses ahead; the executor then gives shard 1 up
        next(stream)
        third = next(stream)
        assert parse_ahead.take(third) is None  # shard 1's parse is dropped; shard 2 is parsed in turn
        parse_ahead.begin()  # nothing announced after shard 2
        assert parse_ahead.take(third) is None
    finally:
        parse_ahead.close()
