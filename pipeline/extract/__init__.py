"""Chunks -> grounded findings: model files and engines, prompts, routing, rules, answers, grounding."""
