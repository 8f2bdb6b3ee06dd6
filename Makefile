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

.PHONY: help setup mosquitto chromium web test lint typecheck pytest run bench soak fmt clean distclean deploy

help:
	@echo "make test       lint, format check, type check and every test (what CI runs)"
	@echo "make run        the whole marketplace on this machine (python -m infra.local_stack)"
	@echo "                with the dashboard at http://127.0.0.1:8080/; or use the CLI:"
	@echo "                .venv/bin/python -m energy_client --help (docs/cli.md)"
	@echo "make web        install the dashboard's npm packages and build web/dist (when web/ changed)"
	@echo "make deploy     deploy to AWS: STAGE=dev ALARM_EMAIL=... [OPERATOR_PUBLIC_KEY=...] (docs/deploy.md)"
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
# Its access checks are a plugin of ours (iot/mosquitto/meter_acl.c), which
# iot/broker.py compiles on first use: that needs a C compiler and mosquitto's
# plugin headers (mosquitto-dev). Each is installed only when missing; the
# package index is refreshed only if the first install attempt fails. Debian
# may also enable mosquitto's own service on port 1883: harmless, the stack runs
# its own instance on its own port and config.
MOSQUITTO_FOUND := { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } \
	&& [ -f /usr/include/mosquitto_plugin.h ] && command -v cc >/dev/null 2>&1
MOSQUITTO_PACKAGES := mosquitto mosquitto-dev libmosquitto-dev gcc libc6-dev
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get

mosquitto:
	@if ! { $(MOSQUITTO_FOUND); }; then \
		echo "Installing mosquitto (the local MQTT broker) and what builds its plugin ..."; \
		$(APT_GET) install -y -qq --no-install-recommends $(MOSQUITTO_PACKAGES) >/dev/null 2>&1 \
			|| { $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends $(MOSQUITTO_PACKAGES); }; \
	fi
	@$(MOSQUITTO_FOUND) || { echo "error: mosquitto, its plugin headers or a C compiler is still missing" >&2; exit 1; }

# Debian's Chromium for the browser tests (tests/browser): Playwright drives it, and cannot
# download a browser of its own here. Installed like mosquitto: only when missing.
CHROMIUM_FOUND := [ -x /usr/bin/chromium ]

chromium:
	@if ! { $(CHROMIUM_FOUND); }; then \
		echo "Installing chromium (Debian's, for the browser tests) ..."; \
		$(APT_GET) install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
			|| { $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends chromium; }; \
	fi
	@$(CHROMIUM_FOUND) || { echo "error: chromium is still missing at /usr/bin/chromium" >&2; exit 1; }

# The dashboard (web/): `npm ci` when the lockfile changes, `npm run build` when a source
# does. Node.js 20.19 or newer with npm (Vite 8 needs it); the npm registry for packages.
WEB_DEPS := web/node_modules/.installed
WEB_BUILD := web/dist/index.html
WEB_SOURCES := $(shell find web/src -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json

$(WEB_DEPS): web/package.json web/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm is missing: install Node.js 20.19+ with npm" >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB_DEPS)

$(WEB_BUILD): $(WEB_DEPS) $(WEB_SOURCES)
	cd web && npm run build --silent
	touch $(WEB_BUILD)

web: $(WEB_BUILD)

setup: $(STAMP) mosquitto chromium web

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) mosquitto chromium web
	$(BIN)/python -m pytest

test: lint typecheck pytest

run: $(STAMP) mosquitto web
	$(BIN)/python -m infra.local_stack

# The stack in the AWS account of the current credentials (docs/deploy.md): infra/deploy.py
# reads STAGE, STACK_NAME, AWS_REGION, ALARM_EMAIL, OPERATOR_PUBLIC_KEY and MARKETPLACE_ID
# (make passes variables given on its command line in the environment). It builds the
# dashboard itself, with the stack's WebSocket URL: only the npm packages are needed here.
STAGE ?= dev
deploy: $(STAMP) $(WEB_DEPS)
	STAGE=$(STAGE) $(BIN)/python -m infra.deploy

# The soak runs the whole local market for half an hour: its own target.
# bench/live.py and bench/web.py run the local market too: mosquitto, and for
# bench/web.py the built dashboard and Chromium.
bench: $(STAMP) mosquitto chromium web
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
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis .chalice/deployments build dist web/dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .local web/node_modules
