"""One model answer -> values with grounded evidence.

The answer is decoded under the grammar of the task's JSON Schema, then parsed
and validated again with jsonschema: a cut, looping or invalid answer is an
`ExtractionError` with the raw text kept. Each value of a valid answer is
grounded in the document through its evidence quote (pipeline/extract/grounding.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

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
