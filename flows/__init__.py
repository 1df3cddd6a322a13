"""Thin Prefect wrappers around `pipeline.run` (deployments: deploy/prefect.yaml)."""
