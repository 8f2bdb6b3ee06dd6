# Developer and CI entry points. `make test` and `make run` work on a fresh clone:
# they create .venv with python3.11 and install requirements-dev.txt first.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
# Chalice 1.34 requires pip < 26.3.
PIP_SPEC := pip<26.3
# This machine's pip configuration names local indexes that lack most packages;
# pip warns once per package. Drop those lines, keep everything else.
PIP_FILTER := { grep -v -E "^WARNING: Location '.*' is ignored" || true; }

.PHONY: help setup mosquitto test lint typecheck pytest run bench soak fmt clean distclean

help:
	@echo "make test       lint, format check, type check and every test (what CI runs)"
	@echo "make run        the whole marketplace on this machine (python -m infra.local_stack)"
	@echo "                then use it: .venv/bin/python -m energy_client --help (docs/cli.md)"
	@echo "make bench      run the benchmarks in bench/ (all but the soak)"
	@echo "make soak       the whole local market, 50 meters, 30 minutes (bench/soak.py)"
	@echo "make fmt        format the code and apply safe lint fixes"
	@echo "make clean      remove caches and build output (make distclean: also .venv, .local)"

$(BIN)/python:
	$(PYTHON) -m venv --clear $(VENV)

# Reinstalls only when a requirements file changes.
$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	@echo "Installing requirements-dev.txt into $(VENV) ..."
	$(BIN)/python -m pip install --quiet --progress-bar off --disable-pip-version-check --upgrade "$(PIP_SPEC)" 2>&1 | $(PIP_FILTER)
	$(BIN)/python -m pip install --quiet --progress-bar off --disable-pip-version-check -r requirements-dev.txt 2>&1 | $(PIP_FILTER)
	touch $(STAMP)

# The local MQTT broker (tests/e2e and `make run`). Debian puts it in /usr/sbin.
# Installed only when missing; the package index is refreshed only if the first
# install attempt fails. Debian may also enable mosquitto's own service on port
# 1883: harmless, the stack runs its own instance on its own port and config.
MOSQUITTO_FOUND := command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get

mosquitto:
	@if ! { $(MOSQUITTO_FOUND); }; then \
		echo "Installing mosquitto (the local MQTT broker) ..."; \
		$(APT_GET) install -y -qq --no-install-recommends mosquitto >/dev/null 2>&1 \
			|| { $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends mosquitto; }; \
	fi
	@$(MOSQUITTO_FOUND) || { echo "error: mosquitto is still missing" >&2; exit 1; }

setup: $(STAMP) mosquitto

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) mosquitto
	$(BIN)/python -m pytest

test: lint typecheck pytest

run: $(STAMP) mosquitto
	$(BIN)/python -m infra.local_stack

# The soak runs the whole local market for half an hour: its own target.
# bench/live.py runs the local market too (for two minutes): it needs mosquitto.
bench: $(STAMP) mosquitto
	@shopt -s nullglob; benches=(bench/[!_]*.py); \
	for bench in "$${benches[@]}"; do \
		[ "$$bench" = bench/soak.py ] && continue; \
		echo "== $$bench"; PYTHONPATH=$(CURDIR) $(BIN)/python "$$bench"; \
	done

soak: $(STAMP) mosquitto
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/soak.py

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis .chalice/deployments build dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .local
