# Assay: `make demo` and `make test` do all set-up themselves (idempotent).
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.assay-synced
DEMO_DATA := data/demo

# uv reads the system trust store where there is one (some networks re-sign TLS).
ifneq (,$(wildcard /etc/ssl/certs/ca-certificates.crt))
export SSL_CERT_FILE ?= /etc/ssl/certs/ca-certificates.crt
endif
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: setup demo test test-fast serve ui lint typecheck imports check docs-cli docs clean-demo help

help:
	@echo "make demo       - set up, then run Assay over samples/ on the embedded model"
	@echo "make test       - set up, then run the whole test suite (lint, types and imports included)"
	@echo "make test-fast  - the tests not marked slow: no model, no Prefect run (about 3.5 minutes on 2 cores)"
	@echo "make serve      - Prefect server on loopback, Assay's deployments registered, a worker (the UI: http://127.0.0.1:4200)"
	@echo "make ui         - the Prefect server alone"
	@echo "make check      - lint, format check, type check, import contract"
	@echo "make docs-cli   - regenerate docs/cli.md from the commands' own help"
	@echo "make docs       - build the documentation site into site/ (offline, strict)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

# The environment is rebuilt only when the lock or the project metadata change.
# llama-cpp-python compiles from source the first time (about 7 minutes on 2 cores); uv caches the wheel.
$(STAMP): pyproject.toml uv.lock vendor/en_core_web_sm/pyproject.toml | $(UV)
	$(UV) sync --frozen
	touch $@

setup: $(STAMP)

demo: setup
	$(VENV)/bin/assay --data-dir $(DEMO_DATA) run samples/documents --max-chunks-per-document 3

test: setup
	$(VENV)/bin/pytest --durations=25

test-fast: setup
	$(VENV)/bin/pytest -m "not slow"

# The operator's console: stop with Ctrl-C (docs/operations.md, "The console").
serve: setup
	$(VENV)/bin/assay serve

ui: setup
	$(VENV)/bin/assay serve --ui-only

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

imports: setup
	$(VENV)/bin/lint-imports

check: lint typecheck imports

docs-cli: setup
	$(VENV)/bin/python -m assay.reference > docs/cli.md

docs: setup
	$(VENV)/bin/mkdocs build --strict

clean-demo:
	rm -rf $(DEMO_DATA)
