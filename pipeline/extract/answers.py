"""One model answer -> values with grounded evidence.

The answer is decoded under the grammar of the task's JSON Schema, then parsed
and validated again with jsonschema: a cut, looping or invalid answer is an
`ExtractionError` with the raw text kept. An answer cut by its token budget or
stopped in a loop is not thrown away whole: the grammar made it a valid JSON
prefix, so the fields it finished before the cut (or before the loop began) are
read and each is validated against its own part of the schema (`read_answer`:
the answer is then `partial`). Each value is grounded in the document through
its evidence quote (pipeline/extract/grounding.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jsonschema.protocols import Validator
from partial_json_parser import Allow, ensure_json

from pipeline.core.errors import ExtractionError, Reason
from pipeline.core.tasks import Task
from pipeline.extract.engine import Generation
from pipeline.extract.grounding import Grounding, GroundingStatus, ground, normalise_text


@dataclass(frozen=True)
class ExtractedValue:
    """One value from an answer, with its evidence checked against the document."""

    field: str
    item_index: int
    value: Any
    evidence: str | None
    grounding: Grounding
    grounded_on: str | None  # "evidence", "value" (the quote did not hold the value), or None
    confidence: float | None


def ground_value(
    value: Any, evidence: str | None, document_text: str, chunk_start: int, chunk_end: int
) -> tuple[Grounding, str | None]:
    """Ground a value through its evidence; a quote that does not contain the value does not count.

    If the quote is found and holds the value, the quote's location is the evidence. Otherwise the
    value itself is looked for in the chunk the model read (not elsewhere: a short value is found
    anywhere in a long document); if it is not there either, the value is ungrounded.
    """
    value_text = value if isinstance(value, str) else json.dumps(value)
    if evidence:
        found = ground(evidence, document_text, chunk_start, chunk_end)
        if found.verified and normalise_text(value_text) in normalise_text(document_text[found.start : found.end]):
            return found, "evidence"
    found = ground(value_text, document_text, chunk_start, chunk_end, within_chunk=True)
    if found.verified:
        return found, "value"
    return Grounding(GroundingStatus.UNGROUNDED, None, None, 0.0), None


def parse_answer(task: Task, generation: Generation) -> dict[str, Any]:
    """The answer as data, or ExtractionError (truncated / invalid)."""
    if generation.finish_reason == "overflow":
        raise ExtractionError(
            Reason.CONTEXT_OVERFLOW,
            f"the prompt of {generation.prompt_tokens} tokens and the answer budget exceed the context",
        )
    if generation.finish_reason == "repetition":
        raise ExtractionError(
            Reason.REPETITION,
            f"the answer was repeating itself after {generation.completion_tokens} tokens and was stopped",
            generation.text,
        )
    if generation.finish_reason == "dead_end":
        raise ExtractionError(Reason.SCHEMA_INVALID, "the grammar allowed no next token", generation.text)
    if generation.finish_reason == "length":
        raise ExtractionError(
            Reason.TRUNCATED,
            f"the answer hit the limit of {generation.completion_tokens} tokens before it was complete",
            generation.text,
        )
    try:
        data = json.loads(generation.text, strict=False)  # raw newlines inside strings are tolerated
    except json.JSONDecodeError as exc:
        raise ExtractionError(Reason.SCHEMA_INVALID, f"not JSON: {exc}", generation.text) from exc
    except RecursionError as exc:  # found by tests/test_properties.py
        raise ExtractionError(Reason.SCHEMA_INVALID, "not JSON: nested too deeply", generation.text) from exc
    errors = sorted(task.validator.iter_errors(data), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "(root)"
        raise ExtractionError(
            Reason.SCHEMA_INVALID, f"answer fails the schema at {where}: {first.message}", generation.text
        )
    if not isinstance(data, dict):
        raise ExtractionError(Reason.SCHEMA_INVALID, "the answer is not a JSON object", generation.text)
    return data


# Reasons after which the fields finished before the cut are kept (the grammar kept the text a JSON prefix).
SALVAGEABLE = frozenset({Reason.TRUNCATED, Reason.REPETITION})


@dataclass(frozen=True)
class ReadAnswer:
    """What an answer says: its data (the complete fields only, when it was cut) and why it is not whole."""

    data: dict[str, Any]
    failure: ExtractionError | None = None

    @property
    def status(self) -> str:
        """`ok` (valid and complete), `partial` (cut, but some fields were finished) or `failed`."""
        if self.failure is None:
            return "ok"
        return "partial" if self.data else "failed"


def read_answer(task: Task, generation: Generation) -> ReadAnswer:
    """The answer's data: whole when valid; the fields finished before the cut when truncated or looping."""
    try:
        return ReadAnswer(parse_answer(task, generation))
    except ExtractionError as exc:
        if exc.reason not in SALVAGEABLE:
            return ReadAnswer({}, exc)
        kept = complete_fields(task, generation.text[: generation.loop_from])
        if not kept:
            return ReadAnswer({}, exc)
        names = ", ".join(kept)
        partial = ExtractionError(exc.reason, f"{exc}; kept the fields finished before it: {names}", exc.raw_output)
        return ReadAnswer(kept, partial)


def complete_fields(task: Task, prefix: str) -> dict[str, Any]:
    """The fields of a cut answer that were finished, each valid under its own schema; of a list, its
    finished and valid items (an item cut in the middle is dropped, never completed by guessing)."""
    try:
        # Only objects and arrays may be closed; a string, number or literal cut short is left out.
        data = json.loads(ensure_json(prefix, Allow.OBJ | Allow.ARR), strict=False)
    except (ValueError, IndexError, RecursionError):  # MalformedJSON is a ValueError
        return {}
    if not isinstance(data, dict):
        return {}
    schema = task.output_schema
    definitions: dict[str, Any] = {key: schema[key] for key in ("$defs", "definitions") if key in schema}
    kept: dict[str, Any] = {}
    for name, value in data.items():
        field_schema = schema.get("properties", {}).get(name)
        if field_schema is None:
            continue
        if isinstance(value, list) and isinstance(field_schema.get("items"), dict):
            item_validator = _validator(task.validator, {**field_schema["items"], **definitions})
            value = [item for item in value if item_validator.is_valid(item)]
            if not value:
                continue  # an empty list cut short says nothing (the model may have been about to fill it)
        if _validator(task.validator, {**field_schema, **definitions}).is_valid(value):
            kept[name] = value
    return kept


def _validator(whole: Validator, schema: dict[str, Any]) -> Validator:
    return type(whole)(schema)


def _value_confidence(generation: Generation, field: str, value: Any, search_from: int) -> tuple[float | None, int]:
    """Confidence of the tokens that spell `value` in the raw answer, searching after `field`'s key."""
    key_at = generation.text.find(json.dumps(field), search_from)
    start_from = key_at if key_at >= 0 else search_from
    needle = json.dumps(value, ensure_ascii=False)
    position = generation.text.find(needle, start_from)
    if position < 0:
        return generation.confidence(), start_from
    end = position + len(needle)
    return generation.confidence(position, end), end


def extract_values(
    task: Task,
    answer: dict[str, Any],
    generation: Generation,
    document_text: str,
    chunk_start: int,
    chunk_end: int,
) -> list[ExtractedValue]:
    """Flatten an answer into values; ground each evidence quote in the document text."""
    values: list[ExtractedValue] = []
    cursor = 0
    for field_name, raw in answer.items():
        items = raw if isinstance(raw, list) else [raw]
        for index, item in enumerate(items):
            if item is None:
                continue
            if isinstance(item, dict) and "value" in item:
                value, evidence = item.get("value"), item.get("evidence")
            else:
                value, evidence = item, None
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            confidence, cursor = _value_confidence(generation, field_name, value, cursor)
            grounding, grounded_on = ground_value(
                value, str(evidence) if evidence is not None else None, document_text, chunk_start, chunk_end
            )
            values.append(
                ExtractedValue(
                    field=field_name,
                    item_index=index,
                    value=value,
                    evidence=str(evidence) if evidence is not None else None,
                    grounding=grounding,
                    grounded_on=grounded_on,
                    confidence=confidence,
                )
            )
    return values
