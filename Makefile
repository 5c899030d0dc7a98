# dtnsess developer tasks. `make test` works from a fresh clone: it creates
# .venv with the locked Python set (requirements.lock) plus the package itself (editable),
# .venv-lint with slither (requirements-lint.lock), runs `npm ci` for the pinned node tools (and in
# keepers/cre for the CRE workflow), checks that abi/ is fresh, runs slither (`make lint`), the
# workflow's typecheck and tests (npm test: tsc, bun test), then runs pytest (with a short
# stateful fuzz run; `make fuzz` runs a long one). `make lock` regenerates both lock files.

PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
INSTALL_STAMP := $(VENV)/.dtnsess-installed
LINT_VENV := .venv-lint
LINT_STAMP := $(LINT_VENV)/.dtnsess-installed
NPM_STAMP := node_modules/.dtnsess-npm-ci
CRE_DIR := keepers/cre
CRE_STAMP := $(CRE_DIR)/node_modules/.dtnsess-npm-ci
PIP := -m pip install --disable-pip-version-check -q
# The lock files: one universal resolution (Python 3.10 and up, every platform), with hashes.
LOCK_CMD := pip compile --upgrade --universal --python-version 3.10 --generate-hashes -q
UV_VERSION ?= 0.13.9

.PHONY: test lint fuzz abi check install lock clean distclean demo bench

test: $(INSTALL_STAMP) $(LINT_STAMP) $(NPM_STAMP) $(CRE_STAMP)
	$(VPY) -m dtnsess_cli.compile --check
	$(VPY) scripts/lint.py --slither $(LINT_VENV)/bin/slither
	cd $(CRE_DIR) && npm test --silent
	$(VPY) -m pytest

# Slither over contracts/ (offline, pinned solc); fails on any finding not accepted in slither.triage.json.
lint: $(INSTALL_STAMP) $(LINT_STAMP) $(NPM_STAMP)
	$(VPY) scripts/lint.py --slither $(LINT_VENV)/bin/slither

# The stateful fuzz test with a long budget (examples of up to FUZZ_STEPS steps each).
FUZZ_EXAMPLES ?= 500
FUZZ_STEPS ?= 50
fuzz: $(INSTALL_STAMP) $(NPM_STAMP)
	DTNSESS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) DTNSESS_FUZZ_STEPS=$(FUZZ_STEPS) $(VPY) -m pytest tests/test_fuzz_stateful.py -s

check: $(INSTALL_STAMP) $(NPM_STAMP)
	$(VPY) -m dtnsess_cli.compile --check

abi: $(INSTALL_STAMP) $(NPM_STAMP)
	$(VPY) -m dtnsess_cli.compile

install: $(INSTALL_STAMP)

# A fresh .venv whenever the lock or pyproject.toml changes, so it holds exactly the locked set:
# the locked packages (hashes checked), then the package itself without dependencies (its
# metadata keeps ranges; `pip check` fails if the lock no longer satisfies them: `make lock`).
# --no-build-isolation builds it with the locked hatchling, so nothing unlocked is fetched.
# NOTE: the wheel force-includes abi/, so the directory must exist even
# before the first `make abi` (it is committed once contracts compile).
$(INSTALL_STAMP): requirements.lock pyproject.toml
	@mkdir -p abi
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(VPY) $(PIP) --require-hashes -r requirements.lock
	$(VPY) $(PIP) --no-deps --no-build-isolation -e .
	$(VPY) -m pip check
	@touch $@

# slither in its own virtualenv: slither-analyzer requires web3<8 (see requirements-lint.in).
$(LINT_STAMP): requirements-lint.lock
	rm -rf $(LINT_VENV)
	$(PY) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python $(PIP) --require-hashes -r requirements-lint.lock
	@touch $@

# Re-resolve both lock files (pyproject.toml with the dev extra; requirements-lint.in) to the
# newest releases the ranges allow, with uv from PyPI in a throwaway virtualenv. Then `make test`.
lock:
	rm -rf .lock-tool && $(PY) -m venv .lock-tool
	.lock-tool/bin/python $(PIP) uv==$(UV_VERSION)
	.lock-tool/bin/uv $(LOCK_CMD) pyproject.toml --extra dev --output-file requirements.lock
	.lock-tool/bin/uv $(LOCK_CMD) requirements-lint.in --output-file requirements-lint.lock
	rm -rf .lock-tool

# `npm ci` when node_modules is missing or older than the lock file.
$(NPM_STAMP): package-lock.json package.json
	npm ci --no-audit --no-fund
	@touch $@

# The CRE keeper workflow's pinned SDK and bun (keepers/cre/package-lock.json), from npm only.
$(CRE_STAMP): $(CRE_DIR)/package-lock.json $(CRE_DIR)/package.json
	cd $(CRE_DIR) && npm ci --no-audit --no-fund
	@touch $@

# The main job end to end on a local devnet (scripts/demo.sh), through the installed script.
demo: $(INSTALL_STAMP) $(NPM_STAMP)
	DTNSESS="$(CURDIR)/$(VENV)/bin/dtnsess" PYTHON="$(CURDIR)/$(VPY)" bash scripts/demo.sh

# Every benchmark in bench/ (about 15 minutes on 2 cores); results go to stdout, recorded by hand
# in bench/RESULTS.md.
bench: $(INSTALL_STAMP) $(NPM_STAMP)
	sh bench/run_all.sh

clean:
	rm -rf dist build .pytest_cache src/*.egg-info
	find . -name __pycache__ -type d -not -path './.venv/*' -not -path './node_modules/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(LINT_VENV) node_modules $(CRE_DIR)/node_modules
