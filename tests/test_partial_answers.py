"""An answer cut by its budget or stopped in a loop keeps the fields it finished; loops are seen early.

No model here: the generations are written by hand in the shapes the grammar lets a model produce
(tests/test_engine.py cuts a real answer with the real model).
"""

from __future__ import annotations

import json

from pipeline.core.errors import Reason
from pipeline.core.tasks import find_task
from pipeline.extract.answers import complete_fields, read_answer
from pipeline.extract.decoding import COPY_NGRAM, DryPenalty, LoopWatch, loop_start
from pipeline.extract.engine import Generation

TASK = find_task("nda_key_terms")
DATE = {"value": "May 1, 2020", "evidence": "dated as of May 1, 2020"}
ACME = {"value": "Acme Inc.", "evidence": "Acme Inc., a Delaware corporation"}


def _cut(text: str, reason: str = "length", loop_from: int | None = None) -> Generation:
    return Generation(text=text, finish_reason=reason, prompt_tokens=100, completion_tokens=256, loop_from=loop_from)


def test_a_cut_answer_keeps_the_fields_and_items_it_finished() -> None:
    whole = json.dumps({"effective_date": DATE, "jurisdiction": None, "party": [ACME, {"value": "Beta LLC"}]})
    cut = whole[: whole.index("Beta LLC") + 5]  # inside the second party's value
    answer = read_answer(TASK, _cut(cut))
    assert answer.status == "partial"
    assert answer.data == {"effective_date": DATE, "jurisdiction": None, "party": [ACME]}
    assert answer.failure is not None and answer.failure.reason is Reason.TRUNCATED
    assert "kept the fields finished before it: effective_date, jurisdiction, party" in str(answer.failure)
    assert answer.failure.raw_output == cut


def test_a_value_cut_in_the_middle_is_never_completed() -> None:
    # The evidence string is cut: the object would be {"value": ..., "evidence": "dated as o"} if strings
    # were closed; it is dropped instead, and with it the only field.
    cut = json.dumps({"effective_date": DATE})[:-8]
    assert complete_fields(TASK, cut) == {}
    answer = read_answer(TASK, _cut(cut))
    assert answer.status == "failed" and answer.data == {}
    # An object missing a required key, an unknown key, a value of the wrong type: not kept either.
    assert complete_fields(TASK, '{"effective_date": {"value": "May 1, 2020"}, "term": ') == {}
    assert complete_fields(TASK, '{"colour": {"value": "red", "evidence": "red"}, "party": [') == {}
    assert complete_fields(TASK, '{"jurisdiction": 7, "party": [') == {}
    assert complete_fields(TASK, "") == {}


def test_a_looping_answer_keeps_only_what_came_before_the_loop() -> None:
    head = json.dumps({"effective_date": DATE, "jurisdiction": {"value": "Delaware", "evidence": "laws of Delaware"}})
    head = head[:-1] + ', "party": [{"value": "'
    loop = "non-profit, " * 6
    answer = read_answer(TASK, _cut(head + loop, "repetition", loop_from=len(head) + 12))
    assert answer.status == "partial"
    assert list(answer.data) == ["effective_date", "jurisdiction"]
    assert answer.failure is not None and answer.failure.reason is Reason.REPETITION


def test_answers_that_fail_otherwise_are_not_salvaged() -> None:
    whole = json.dumps({"effective_date": DATE, "jurisdiction": None, "party": [], "term": None})
    for reason in ("dead_end", "overflow"):
        assert read_answer(TASK, _cut(whole[:-10], reason)).status == "failed"
    complete = read_answer(TASK, Generation(text=whole, finish_reason="stop", prompt_tokens=1, completion_tokens=9))
    assert complete.status == "ok" and complete.failure is None and complete.data["effective_date"] == DATE


def test_back_to_back_loops_are_seen_and_traced_to_their_start() -> None:
    assert loop_start([9, 9, 1, 2, 3, 4] + [5, 6, 7, 8] * 4) == 6
    assert loop_start([1] * 16) == 0
    assert loop_start([1] * 15) is None  # too short to call a loop
    assert loop_start(list(range(100))) is None
    assert loop_start([9, 9, 1, 2, 3, 4, 1, 2, 3, 4, 7]) is None  # a repeat that ended


def test_an_invented_string_copied_into_field_after_field_is_a_loop_but_a_quote_is_not() -> None:
    invented = list(range(500, 520))  # "2023-01-01T00:00:00Z", tokens the document does not have
    quote = list(range(600, 630))  # a sentence of the document
    prompt = [1, 2, 3, *quote, 4, 5]

    def watch(answer: list[int]) -> int | None:
        watcher = LoopWatch(prompt)
        for index, token in enumerate(answer):
            began = watcher.add(token)
            if began is not None:
                assert index + 1 == len(watcher.tokens)
                return began
        return None

    # The document's sentence quoted as evidence for three fields: not a loop.
    assert watch([70, *quote, 71, *quote, 72, *quote, 73]) is None
    # The invented string: the third time it is written, the loop is seen, and said to begin there.
    answer = [70, *invented, 71, *invented, 72, *invented, 73]
    third = 1 + len(invented) + 1 + len(invented) + 1
    assert watch(answer) == third
    assert watch([70, *invented, 71, *invented, 72]) is None  # twice is not enough
    assert COPY_NGRAM <= len(invented)


def test_the_dry_penalty_grows_with_the_run_it_would_extend_and_spares_quotes() -> None:
    quote = list(range(600, 610))
    prompt = [1, 2, *quote, 3]

    def penalties_after(answer: list[int]) -> dict[int, float]:
        dry = DryPenalty(prompt, multiplier=0.8, base=1.75, allowed=2)
        for token in answer:
            dry.add(token)
        return dry.penalties()

    assert penalties_after([]) == {}
    assert penalties_after([70, 71, 72]) == {}  # nothing written twice
    # "70 71 72 | 70 71": writing 72 next would extend a run of 2 (allowed 2): multiplier x 1.75^0
    assert penalties_after([70, 71, 72, 80, 70, 71]) == {72: 0.8}
    # a longer run costs more: 3 tokens already repeated
    longer = penalties_after([69, 70, 71, 72, 80, 69, 70, 71])
    assert longer == {72: 0.8 * 1.75}
    assert penalties_after([70, 71, 72, 80, 81, 71]) == {}  # a run of 1 is below the allowed length
    # quoting the document again is never penalised, however long the run
    assert penalties_after([50, *quote, 51, *quote[:6]]) == {}
    # the longest of several earlier runs counts
    assert penalties_after([5, 70, 71, 9, 4, 5, 70, 71, 8, 5, 70, 71]) == {9: 0.8 * 1.75, 8: 0.8 * 1.75}
