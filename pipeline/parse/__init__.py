"""Bytes -> canonical text and chunks: unstructured partitioning in worker processes, chunking with offsets."""
