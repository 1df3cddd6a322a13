"""Imported once by the parsing processes' fork server (pipeline/parse/workers.py), before any worker forks.

Importing this loads the parsing libraries and makes unstructured load its language model (spaCy), by
partitioning a line of text: every worker then starts with all of it in memory, shared copy-on-write,
instead of loading it again (about a second and a half each) after each start or recycle.
"""

from __future__ import annotations

import pypdf  # noqa: F401
import unstructured.chunking.title
import unstructured.partition.auto  # noqa: F401
from unstructured.partition.text import partition_text

partition_text(text="Assay warms up its parsers. This sentence is here to load the language model once.")
