"""Versions of the extraction code, by hand: part of every extraction fingerprint and rule finding id.

A night skips the extraction of a document whose fingerprint has landed; the
fingerprint names the code that decides what the model sees (routing) and what
the rules find (rules) by these numbers, not by hashing files (a rename broke
that, and a comment edit redid every night's work). Bump a number when that
module's behaviour changes; tests/test_versions.py fails when its code changes
without a bump. To bump: add the next version with the new digest that the
failing test prints (`ROUTING_VERSIONS[2] = "..."`).
"""

from __future__ import annotations

import ast
import inspect
from types import ModuleType

from pipeline.core.hashing import sha256_text

# version -> digest of the module's code (docstrings and comments do not count): the newest is in force.
ROUTING_VERSIONS: dict[int, str] = {
    1: "f63e497378a3b8884b9dcab4b8a90b6ce9f39d9275a9d1a532dc466f43c410b0",
    2: "7a7ac981a0c6f1b131c3d6b7af89ebccbb78434d7e62a3c83b7d5ddb19c95ae1",  # the task's routing.max_chunks
}
RULES_VERSIONS: dict[int, str] = {
    1: "90ed01c518c7b0aa05a342e0bcf8ff54b1f00246995eb1ce0b7df32e2e04b9d5",
    2: "ce898f943eb6227af25170851374c9a93447486634d4824a3624187464e3c990",  # python-stdnum checks; eu_vat, us_ssn
}

ROUTING_VERSION = max(ROUTING_VERSIONS)
RULES_VERSION = max(RULES_VERSIONS)
EXTRACTION_CODE_VERSION = f"routing-{ROUTING_VERSION}.rules-{RULES_VERSION}"


def code_digest(module: ModuleType) -> str:
    """SHA-256 of a module's code with docstrings and comments left out (formatting does not count either)."""
    return code_digest_of_source(inspect.getsource(module))


def code_digest_of_source(source: str) -> str:
    """`code_digest` of Python source text."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return sha256_text(ast.unparse(tree))
