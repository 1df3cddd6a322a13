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

.PHONY: setup demo test lint typecheck clean-demo help

help:
	@echo "make demo   - set up, then run Assay over samples/ on the embedded model"
	@echo "make test   - set up, then run the whole test suite"
	@echo "make lint / make typecheck"

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
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

clean-demo:
	rm -rf $(DEMO_DATA)
