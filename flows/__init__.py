"""Thin Prefect wrappers around `pipeline.job` (deployments: deploy/prefect.yaml)."""
