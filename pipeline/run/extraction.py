"""A shard's model step: every routed chunk of every task through the engine; then rules and reduce per document.

Parsing is done for the whole shard before this starts. By default nothing else
runs meanwhile, so the model has every core; with `[parsing] ahead` the next
shard parses on cores of its own (pipeline/run/ahead.py). All the shard's routed chunks, of every
task, go to the engine in one call, one group per task (its schema, budget and penalty): the
batched engine keeps its slots full with them, across documents and tasks.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.core.errors import Reason
from pipeline.core.faults import crash_point
from pipeline.core.tasks import Task
from pipeline.extract.answers import extract_values, read_answer
from pipeline.extract.engine import AskAgain, Engine, Generation, PromptGroup, get_engine
from pipeline.extract.findings import TaskLineage, answer_row, model_findings, rule_findings
from pipeline.extract.prompts import build_messages, prompt_template_sha256
from pipeline.extract.rules import apply_rules
from pipeline.land.tables import FindingRow
from pipeline.parse.chunking import chunking_key
from pipeline.reduce.values import ValuesOf, reduce_document
from pipeline.run.work import Extraction, Pending, ShardWork


@dataclass(frozen=True)
class _TaskAsk:
    """One task's share of the shard's model call: its routed chunks and the lineage of their answers."""

    task: Task
    items: list[Pending]
    lineage: TaskLineage
    asked_again: TaskLineage | None  # with `retry_loops`: the lineage of an answer asked again

    def prompts(self, engine: Engine) -> PromptGroup:
        return prompt_group(self.task, [item.chunk.text for item in self.items], engine)


def prompt_group(task: Task, chunk_texts: list[str], engine: Engine) -> PromptGroup:
    """A task's prompts for these chunks and the rules their answers decode by (schema, budget, penalty,
    and with `retry_loops` asking a looping answer again)."""
    ask_again = None
    if task.retry_loops is not None:
        ask_again = AskAgain(lambda g: _looped_keeping_nothing(task, g), task.retry_loops.dry_multiplier)
    return PromptGroup(
        [engine.render_prompt(build_messages(task, text)) for text in chunk_texts],
        json.dumps(task.output_schema),
        task.max_tokens,
        task.dry_multiplier,
        ask_again,
    )


def extract_pending(work: ShardWork) -> None:
    """Run the model over every routed chunk of the shard, then rules and reduce per document and task."""
    context = work.context
    if not work.extractions:
        return
    engine = get_engine(context.settings.model) if work.pending else None
    lineages: dict[str, TaskLineage] = {}
    asks: list[_TaskAsk] = []
    with_work = {e.task.name for e in work.extractions}
    for task in context.tasks:
        if task.name not in with_work:
            continue  # nothing of this task in the shard (all reused): no lineage to build
        lineage_of = functools.partial(
            TaskLineage.of,
            context.run_id,
            context.flow_run_id,
            task,
            chunking_key(context.settings.chunking),
            context.settings.model,
            prompt_sha256=prompt_template_sha256(task, engine.render_prompt) if engine else None,
            model=engine.identity if engine else None,
        )
        lineages[task.name] = lineage_of()
        items = [p for p in work.pending if p.extraction.task.name == task.name]
        if items:
            asked_again = lineage_of(asked_again=True) if task.retry_loops else None
            asks.append(_TaskAsk(task, items, lineages[task.name], asked_again))
    if asks and engine is not None:
        _ask_the_model(work, engine, asks)
    crash_point("extract")
    for task in context.tasks:
        for extraction in (e for e in work.extractions if e.task.name == task.name):
            _apply_rules(work, lineages[task.name], extraction)
            _reduce(work, extraction)
    work.pending.clear()
    work.extractions.clear()


def _ask_the_model(work: ShardWork, engine: Engine, asks: list[_TaskAsk]) -> None:
    """Every task's chunks to the model in one call, one group per task; with `retry_loops`, an answer that
    looped before it finished a field is asked once more with the DRY penalty (its lineage says so)."""
    started = time.perf_counter()
    before = engine.model_seconds()
    slots_before = engine.slot_use()
    answers = engine.generate_groups([ask.prompts(engine) for ask in asks])
    seconds = time.perf_counter() - started
    after = engine.model_seconds()
    slots_after = engine.slot_use()
    if slots_before is not None and slots_after is not None:
        work.report.slots_busy += slots_after[0] - slots_before[0]
        work.report.slot_steps += slots_after[1] - slots_before[1]
    if before is None or after is None:
        work.time("extract", seconds)
    else:  # model time by stage: prefill and decode (inside llama_decode), sample (sampling + grammar + rest)
        prefill, decode = after[0] - before[0], after[1] - before[1]
        work.time("prefill", prefill)
        work.time("decode", decode)
        work.time("sample", max(0.0, seconds - prefill - decode))
    seconds_each = seconds / sum(len(ask.items) for ask in asks)
    for ask, generations in zip(asks, answers, strict=True):
        for item, generation in zip(ask.items, generations, strict=True):
            _land_answer(work, ask, item, generation, seconds_each)


def _land_answer(work: ShardWork, ask: _TaskAsk, item: Pending, generation: Generation, seconds: float) -> None:
    """One answer: counted, its failure recorded with a reason, landed, and its grounded values as findings."""
    task, extraction = ask.task, item.extraction
    document, chunk = extraction.document, item.chunk
    work.report.answers += 1
    work.report.answers_asked_again += generation.asked_again
    lineage = ask.asked_again if generation.asked_again and ask.asked_again is not None else ask.lineage
    extraction.row.model_tokens = (extraction.row.model_tokens or 0) + (
        generation.prompt_tokens + generation.completion_tokens + generation.first_try_tokens
    )
    answer = read_answer(task, generation)
    if answer.failure is not None:
        failure = answer.failure
        if answer.status == "partial":
            work.report.answers_partial += 1
        else:
            work.report.answers_failed += 1
        work.failure(
            "extract",
            failure.reason.value,
            str(failure),
            extraction.ref,
            content_sha256=document.content_sha256,
            chunk_id=chunk.chunk_id,
            task=task.name,
            raw_output=failure.raw_output,
        )
    landed = answer_row(lineage, document, chunk, generation, seconds, answer)
    work.rows.answers.append(landed)
    if not answer.data:
        return
    grounded = time.perf_counter()
    values = extract_values(task, answer.data, generation, document.text, chunk.start, chunk.end)
    findings = model_findings(lineage, extraction.ref, document, chunk, landed, values)
    work.time("ground", time.perf_counter() - grounded)
    _add_findings(work, extraction, findings)


def _looped_keeping_nothing(task: Task, generation: Generation) -> bool:
    """A loop stopped the answer before it finished any field (read only for answers the loop watch ended)."""
    if generation.finish_reason != "repetition":
        return False
    answer = read_answer(task, generation)
    return answer.status == "failed" and answer.failure is not None and answer.failure.reason is Reason.REPETITION


def _apply_rules(work: ShardWork, lineage: TaskLineage, extraction: Extraction) -> None:
    """Values the task's rules find in the whole document text: grounded by construction."""
    if not extraction.task.rules:
        return
    started = time.perf_counter()
    matches = apply_rules(extraction.task, extraction.document.text)
    _add_findings(
        work, extraction, rule_findings(lineage, extraction.ref, extraction.document, extraction.chunks, matches)
    )
    work.time("rules", time.perf_counter() - started)


def _add_findings(work: ShardWork, extraction: Extraction, findings: list[FindingRow]) -> None:
    work.rows.findings.extend(findings)
    work.report.findings += len(findings)
    extraction.row.findings += len(findings)


def _reduce(work: ShardWork, extraction: Extraction) -> None:
    """Merge the document's findings for the task into its values (lake table `document_values`)."""
    started = time.perf_counter()
    document, task = extraction.document, extraction.task
    findings = [f for f in work.rows.findings if f.content_sha256 == document.content_sha256 and f.task == task.name]
    conventions = work.context.settings.conventions(extraction.ref.source)
    of = ValuesOf(work.context.run_id, document.content_sha256, extraction.ref.uri, datetime.now(UTC), conventions)
    values = reduce_document(task, findings, of, document.text)
    work.rows.document_values.extend(values)
    work.report.values += sum(1 for v in values if v.value is not None)
    work.report.disagreements += sum(1 for v in values if v.status == "disagreement")
    work.time("reduce", time.perf_counter() - started)
