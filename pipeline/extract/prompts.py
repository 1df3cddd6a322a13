"""The prompt for one chunk and one task, and its fingerprint.

The prompt is the task's instructions and answer shape (system message) and the
chunk text (user message), rendered with the model's own chat template.
`prompt_sha256` hashes the whole rendered prompt with the chunk left as a
placeholder: it names exactly what the model was asked, in every finding's lineage.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.core.hashing import sha256_text
from pipeline.core.tasks import Task
from pipeline.extract.engine import Messages

SYSTEM_TEMPLATE = "{instructions}\nAnswer with JSON only, shaped like this:\n{answer_template}"
USER_TEMPLATE = 'Text:\n"""\n{chunk}\n"""'
CHUNK_PLACEHOLDER = "{chunk}"


def build_messages(task: Task, chunk_text: str) -> list[dict[str, str]]:
    system = SYSTEM_TEMPLATE.format(instructions=task.instructions.strip(), answer_template=task.answer_template)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": USER_TEMPLATE.format(chunk=chunk_text)},
    ]


def prompt_template(task: Task, render: Callable[[Messages], str]) -> str:
    """The full prompt with the chunk left as a placeholder: what `prompt_sha256` hashes."""
    return str(render(build_messages(task, CHUNK_PLACEHOLDER)))


def prompt_template_sha256(task: Task, render: Callable[[Messages], str]) -> str:
    return sha256_text(prompt_template(task, render))
