# Quickstart:  make run   (the main job on the embedded defaults)
#              make test  (the test suite; what CI runs through .ci/run)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mtl-installed
PYTEST_ARGS ?=

.PHONY: setup run test lint format lock clean ui repro params

setup: $(STAMP)

# Re-installs only when the lock, the package metadata or the install script changed.
$(STAMP): pyproject.toml requirements.lock scripts/install.sh
	scripts/install.sh $(VENV) dev
	@touch $(STAMP)

run: setup
	$(VENV)/bin/mtl run

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# the packaged defaults (what `mtl` uses outside the project) are a byte-identical copy of params.yaml
params:
	cp params.yaml mtl/defaults.yaml

lock:
	scripts/lock.sh

ui: setup
	$(VENV)/bin/mtl ui

# the pipeline as DVC stages (same step functions as the DAGs); waits instead of failing on DVC's lock
repro: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc --wait-for-lock repro

clean:
	rm -rf .mtl .pytest_cache .ruff_cache
