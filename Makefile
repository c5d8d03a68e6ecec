# Developer entry points. Needs only python3 (3.11+), node 20 + npm, make and git.
#   make lab     JupyterLab with jobmagic, opened on the quickstart (PORT=8888 by default)
#   make test    every check CI runs: lint, types, unit/kernel/browser tests, notebooks
#   make bench   benchmarks (CHECK=1 fails when a budget is exceeded)
#   make ray     a local Ray head to try `%job start --on ray` (make ray-stop ends it)
#   make clean   remove everything the targets above create (not lab-notebooks/: yours)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
# The installed package is rebuilt only when something that goes into the build changed.
# STAMP: with the test extras (make test); LAB_STAMP: only what running JupyterLab needs.
STAMP := $(VENV)/.jobmagic-installed
LAB_STAMP := $(VENV)/.jobmagic-lab-installed
# make lab serves a copy of the example notebooks from here (git-ignored): notebooks a user
# creates or edits there are theirs, never linted or run by make test.
LAB_DIR := lab-notebooks
PORT ?= 8888
BUILD_INPUTS := pyproject.toml jupyter-config/server-config/jobmagic.json \
	labextension/package.json labextension/package-lock.json labextension/tsconfig.json \
	$(shell find labextension/src labextension/style -type f 2>/dev/null)
NODE_MODULES := labextension/node_modules/.package-lock.json
CHROMIUM := /usr/bin/chromium
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

# npm scripts call `jupyter-builder`, which lives in the venv.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: lab test lint typecheck pytest jstest nbval bench clean chromium task-spooler ray ray-stop

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(NODE_MODULES): labextension/package.json labextension/package-lock.json
	cd labextension && npm install
	touch $@

# Editable install: Python changes need no reinstall; the hatch build hook runs the npm
# build into jobmagic/labextension when labextension/src is newer than the last build.
$(STAMP): $(VPY) $(NODE_MODULES) $(BUILD_INPUTS)
	$(VPY) -m pip install --disable-pip-version-check -e '.[test,dev]'
	touch $@

# Reuses the test install when it is up to date (it has everything lab needs).
$(LAB_STAMP): $(VPY) $(NODE_MODULES) $(BUILD_INPUTS)
	if [ -e $(STAMP) ] && [ -z "$$(find $(BUILD_INPUTS) -newer $(STAMP) | head -n 1)" ]; then \
		echo "jobmagic is installed (with the test extras)"; \
	else \
		$(VPY) -m pip install --disable-pip-version-check -e '.[lab]'; \
	fi
	touch $@

lab: $(LAB_STAMP)
	mkdir -p $(LAB_DIR)
	cp -n notebooks/*.ipynb $(LAB_DIR)/  # never over the user's edits
	token=$$($(VPY) -c 'import secrets; print(secrets.token_hex(24))'); \
	echo "== jobmagic: open http://127.0.0.1:$(PORT)/lab/tree/quickstart.ipynb?token=$$token"; \
	exec $(VENV)/bin/jupyter lab --ip=127.0.0.1 --port=$(PORT) --ServerApp.port_retries=0 \
		--IdentityProvider.token=$$token --ServerApp.root_dir=$(LAB_DIR) $(ALLOW_ROOT) \
		$(LAB_DIR)/quickstart.ipynb

# Browser tests drive Debian's Chromium; Playwright may not download its own.
chromium:
	@if [ -x $(CHROMIUM) ]; then \
		true; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	else \
		echo "NOTE: $(CHROMIUM) is missing and you are not root: browser tests will be SKIPPED."; \
		echo "      Install it with: sudo apt-get install chromium"; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	cd labextension && npm run --silent lint

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	cd labextension && npm run --silent typecheck

# pytest exits 5 when it collected nothing: for us that is a failure, not a pass.
define run_pytest
	rc=0; $(VPY) -m pytest $(1) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests ($(1))" >&2; exit 1; fi; \
	exit $$rc
endef

pytest: $(STAMP) chromium
	$(call run_pytest,tests)

# The frontend's unit tests (node --test), with the cases shared with pytest in tests/cases/.
jstest: $(NODE_MODULES)
	cd labextension && npm run --silent test

# Each notebook runs top to bottom in a fresh kernel and its outputs are compared with
# the saved ones. Jobs go to a throwaway JOBMAGIC_HOME, not the developer's own.
# notebooks/ray.ipynb runs on a local Ray head started for the run (RAY_ADDRESS).
nbval: $(STAMP)
	@ls notebooks/*.ipynb >/dev/null 2>&1 || { echo "ERROR: no notebooks in notebooks/ for nbval" >&2; exit 1; }
	home=$$(mktemp -d); mkfifo "$$home/ray-address"; \
	$(VPY) tests/ray_head.py > "$$home/ray-address" & ray_head=$$!; \
	trap 'kill $$ray_head 2>/dev/null; wait $$ray_head; rm -rf "$$home"' EXIT; \
	read -r address < "$$home/ray-address" || { echo "ERROR: no Ray head for notebooks/ray.ipynb" >&2; exit 1; }; \
	mkdir -m 700 "$$home/jobs"; export JOBMAGIC_HOME="$$home/jobs" RAY_ADDRESS="$$address"; \
	$(call run_pytest,--nbval notebooks/ --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider)

test: lint typecheck jstest pytest nbval

bench: $(STAMP) task-spooler chromium
	$(VPY) benchmarks/run.py $(if $(CHECK),--check,)

# The bench compares jobmagic with task-spooler side by side (benchmarks/case_tsp.py).
task-spooler:
	@if command -v tsp >/dev/null; then \
		true; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "Installing Debian's task-spooler for the benchmarks"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends task-spooler; \
	else \
		echo "NOTE: tsp is missing and you are not root: its benchmark rows will say n/a."; \
		echo "      Install it with: sudo apt-get install task-spooler"; \
	fi

# A Ray head on this machine, its Jobs API on 127.0.0.1:8265 (jobmagic's default address).
# `ray stop` ends every Ray process of this user on the machine.
ray: $(STAMP)
	$(VENV)/bin/ray start --head --dashboard-host=127.0.0.1 --disable-usage-stats
	@echo "== Ray's Jobs API: http://127.0.0.1:8265; try: %job start --on ray echo hello"

ray-stop: $(STAMP)
	$(VENV)/bin/ray stop

clean:
	rm -rf $(VENV) labextension/node_modules labextension/lib labextension/tsconfig.tsbuildinfo \
		jobmagic/labextension build dist .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
