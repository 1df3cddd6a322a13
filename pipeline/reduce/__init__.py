"""Findings -> one value (or list) per document, field and task: normalising by kind, choosing."""
