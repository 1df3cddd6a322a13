"""Assay's exception tree and the reason codes recorded for every failure.

Two kinds, as in dlt: a `TransientError` may succeed if tried again (network,
lock, busy server) and is retried by `pipeline.core.retry`; every other
`AssayError` is terminal for the thing it concerns (a document, a chunk) and is
recorded as a failure with its `reason` while the run goes on.

    AssayError
    ├── ConfigError                  bad settings, unknown source/task/connector
    ├── TransientError               retry me (pipeline/core/retry.py)
    ├── RunInProgress                another run holds this lake's lock
    ├── ModelError                   the model cannot be loaded or run
    │   ├── ModelIntegrityError      model file missing or its SHA-256 differs
    │   └── ContextOverflow          a prompt and its answer budget exceed the context
    ├── DocumentError  (.reason)     one input document cannot be used
    └── ExtractionError (.reason, .raw_output)   one model answer cannot be used
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a document, chunk or answer was not (fully) processed. Stable codes: analysts filter on them."""

    EMPTY_FILE = "empty_file"
    TOO_LARGE = "too_large"
    UNSUPPORTED_TYPE = "unsupported_type"
    ENCRYPTED = "encrypted"
    CORRUPT = "corrupt"
    NO_TEXT = "no_text"
    READ_ERROR = "read_error"
    REFUSED = "refused"
    PARSE_ERROR = "parse_error"
    PARSE_TIMEOUT = "parse_timeout"
    PARSE_OUT_OF_MEMORY = "parse_out_of_memory"
    PARSER_CRASHED = "parser_crashed"
    SCHEMA_INVALID = "schema_invalid"
    TRUNCATED = "truncated"
    REPETITION = "repetition"
    CONTEXT_OVERFLOW = "context_overflow"
    MODEL_ERROR = "model_error"
    DUPLICATE_CONTENT = "duplicate_content"
    UNCHANGED = "unchanged"
    CHUNK_BUDGET = "chunk_budget"
    INTERNAL_ERROR = "internal_error"


class AssayError(Exception):
    """Base of every error Assay raises on purpose."""


class ConfigError(AssayError):
    """The settings, a source, a task or a connector name are wrong."""


class TransientError(AssayError):
    """A failure that may go away if the operation is tried again."""


class RunInProgress(AssayError):
    """Another run holds the lock on this data directory's lake."""


class ModelError(AssayError):
    """The model cannot be loaded or run."""


class ModelIntegrityError(ModelError):
    """The model file is missing or is not the file it claims to be."""


class ContextOverflow(ModelError):
    """A prompt and its answer budget do not fit the model's context (`prompt_tokens` says how long it was)."""

    def __init__(self, prompt_tokens: int, budget: int, n_ctx: int) -> None:
        super().__init__(f"prompt of {prompt_tokens} tokens + {budget} new tokens exceeds the context of {n_ctx}")
        self.prompt_tokens = prompt_tokens


class DocumentError(AssayError):
    """A document cannot be used; `reason` says why."""

    def __init__(self, reason: Reason, message: str, filetype: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.filetype = filetype

    def __reduce__(self) -> tuple[type[DocumentError], tuple[Reason, str, str | None]]:
        # Raised in parsing processes and re-raised here: keep reason and file type across pickling.
        return (type(self), (self.reason, str(self), self.filetype))


class ExtractionError(AssayError):
    """A model answer cannot be used; the raw answer is kept for the record."""

    def __init__(self, reason: Reason, message: str, raw_output: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.raw_output = raw_output

    def __reduce__(self) -> tuple[type[ExtractionError], tuple[Reason, str, str | None]]:
        return (type(self), (self.reason, str(self), self.raw_output))
