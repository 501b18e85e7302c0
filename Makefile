# recpipe: `make up` runs the pipeline on the embedded stack, `make test` tests it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv

.PHONY: install up down test lock clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==0.13.8
	$(UV) pip install --python $(PY) --quiet -r requirements.txt
	$(UV) pip install --python $(PY) --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

## start SeaweedFS + Airflow, seed, run the daily DAG, show the result
up: install
	$(PY) -m devstack up

## stop what `make up` started (data stays in .local/)
down:
	@if [ -x $(PY) ]; then $(PY) -m devstack down; fi

## the import contract (pyproject.toml), then the whole test suite (what .ci/run calls)
test: install
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -p no:cacheprovider --durations=25

## recompile the lock after editing requirements.in
lock: install
	$(UV) pip compile requirements.in -o requirements.txt --python $(PY) --no-header

clean: down
	rm -rf .local
