"""The prompt for one chunk and one task, and its fingerprint.

The prompt is the task's instructions and answer shape (system message) and the
chunk text (user message), rendered with the model's own chat template.
`prompt_sha256` hashes the whole rendered prompt with the chunk (and its fence)
left as placeholders: it names exactly what the model was asked, in every
finding's lineage.

The chunk is fenced by a line that names it, `<document-N>` ... `</document-N>`,
where N is 16 hex digits of the chunk's own SHA-256: a document cannot write the
line that closes its fence (it would have to contain 64 bits of its own hash), so
what it says stays inside. Engines tokenize the fenced text with special-token
parsing off (`split_document`): text that spells a control token of the model
(`<|im_end|>`, `<|im_start|>system`) reaches it as plain characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pipeline.core.hashing import sha256_text
from pipeline.core.tasks import Task
from pipeline.extract.engine import Messages

SYSTEM_TEMPLATE = "{instructions}\nAnswer with JSON only, shaped like this:\n{answer_template}"
USER_TEMPLATE = "Text:\n<document-{fence}>\n{chunk}\n</document-{fence}>"
CHUNK_PLACEHOLDER = "{chunk}"
FENCE_PLACEHOLDER = "{fence}"
_OPENING = re.compile(r"<document-([0-9a-f]{16})>\n")


def fence_for(chunk_text: str) -> str:
    """The fence of this chunk: 16 hex digits of its SHA-256."""
    return sha256_text(chunk_text)[:16]


def build_messages(task: Task, chunk_text: str, fence: str | None = None) -> list[dict[str, str]]:
    system = SYSTEM_TEMPLATE.format(instructions=task.instructions.strip(), answer_template=task.answer_template)
    user = USER_TEMPLATE.format(chunk=chunk_text, fence=fence if fence is not None else fence_for(chunk_text))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def split_document(prompt: str) -> tuple[str, str, str]:
    """A rendered prompt as (before the fenced document, the document, after it); ("", "", prompt) if none.

    The opening fence is the first one in the prompt (the template's; no instruction has one), and the
    document ends at the closing line of that very fence, which the document cannot contain.
    """
    opening = _OPENING.search(prompt)
    if opening is None:
        return "", "", prompt
    closing = prompt.find(f"\n</document-{opening.group(1)}>", opening.end())
    if closing < 0:
        return "", "", prompt
    return prompt[: opening.end()], prompt[opening.end() : closing], prompt[closing:]


def prompt_template(task: Task, render: Callable[[Messages], str]) -> str:
    """The full prompt with the chunk and its fence left as placeholders: what `prompt_sha256` hashes."""
    return str(render(build_messages(task, CHUNK_PLACEHOLDER, FENCE_PLACEHOLDER)))


def prompt_template_sha256(task: Task, render: Callable[[Messages], str]) -> str:
    return sha256_text(prompt_template(task, render))
