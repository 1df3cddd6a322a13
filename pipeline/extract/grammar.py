"""Grammar-constrained greedy choice at the price of one check (llama.cpp's JSON-Schema grammar sampler).

Greedy decoding takes the arg-max token and asks the grammar about that one
token only; when it is rejected, the next best candidates are asked one by one,
and only if none is allowed does the grammar filter the whole vocabulary. The
result is the token a full pass would pick (every higher one was rejected), at a
fraction of the cost (docs/performance.md).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.core.errors import ModelError

CHEAP_CANDIDATES = 8  # top tokens checked one by one before the grammar filters the whole vocabulary


class CheapGrammar:
    """One compiled grammar per JSON Schema; one sampler (a clone) per sequence. Counts its work."""

    def __init__(self, llama_cpp: Any, vocab: Any, n_vocab: int) -> None:
        self._ll = llama_cpp
        self._vocab = vocab
        self._n_vocab = n_vocab
        # Reused candidate arrays: one token (the cheap check) and the whole vocabulary (the fallback).
        self._one = (llama_cpp.llama_token_data * 1)()
        self._all = (llama_cpp.llama_token_data * n_vocab)()
        self._all_np = np.frombuffer(
            memoryview(self._all), dtype=np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
        )
        self._templates: dict[str, Any] = {}
        self.checks = 0  # tokens checked
        self.rejections = 0  # arg-max tokens the grammar refused
        self.full_passes = 0  # times the whole vocabulary was filtered

    def sampler(self, schema_json: str) -> Any:
        """A fresh grammar sampler for one sequence (a clone of the schema's compiled one)."""
        template = self._templates.get(schema_json)
        if template is None:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            gbnf = json_schema_to_gbnf(schema_json)
            template = self._ll.llama_sampler_init_grammar(self._vocab, gbnf.encode(), b"root")
            if not template:
                raise ModelError("the JSON Schema did not compile to a grammar")
            self._templates[schema_json] = template
        return self._ll.llama_sampler_clone(template)

    def choose(self, sampler: Any, token: int, logits: npt.NDArray[np.float32]) -> int | None:
        """`token` (the arg-max) if the grammar allows it, else the best allowed token; None at a dead end."""
        self.checks += 1
        if self.allowed(sampler, token):
            return token
        self.rejections += 1
        return self.next_allowed(sampler, logits)

    def allowed(self, sampler: Any, token: int) -> bool:
        """Does the grammar accept `token` next? One candidate only: cheap."""
        self._one[0].id = token
        self._one[0].logit = 0.0
        self._one[0].p = 0.0
        array = self._ll.llama_token_data_array(
            data=ctypes.cast(self._one, self._ll.llama_token_data_p), size=1, selected=-1, sorted=False
        )
        self._ll.llama_sampler_apply(sampler, ctypes.byref(array))
        return bool(np.isfinite(self._one[0].logit))

    def next_allowed(self, sampler: Any, logits: npt.NDArray[np.float32]) -> int | None:
        """The highest-logit token the grammar allows: the next few candidates one by one, then a full pass."""
        candidates = np.argpartition(logits, -CHEAP_CANDIDATES)[-CHEAP_CANDIDATES:]
        for token in candidates[np.argsort(logits[candidates])[::-1]][1:]:
            if self.allowed(sampler, int(token)):
                return int(token)
        return self.best_allowed(sampler, logits)

    def best_allowed(self, sampler: Any, logits: npt.NDArray[np.float32]) -> int | None:
        """The arg-max token among those the grammar allows (full pass)."""
        self.full_passes += 1
        self._all_np["id"] = np.arange(self._n_vocab, dtype=np.int32)
        self._all_np["logit"] = logits
        self._all_np["p"] = 0.0
        array = self._ll.llama_token_data_array(
            data=ctypes.cast(self._all, self._ll.llama_token_data_p), size=self._n_vocab, selected=-1, sorted=False
        )
        self._ll.llama_sampler_apply(sampler, ctypes.byref(array))
        filtered = self._all_np["logit"][: array.size]
        if not np.isfinite(filtered).any():
            return None
        return int(self._all_np["id"][: array.size][int(np.argmax(filtered))])

    def close(self) -> None:
        for template in self._templates.values():
            self._ll.llama_sampler_free(template)
        self._templates.clear()
