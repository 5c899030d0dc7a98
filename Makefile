# dtnsess developer tasks. `make test` works from a fresh clone: it creates
# .venv, installs the package (editable, with the dev extra), runs `npm ci`
# for the pinned node tools, checks that abi/ is fresh, runs slither (`make lint`),
# then runs pytest (with a short stateful fuzz run; `make fuzz` runs a long one).

PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
INSTALL_STAMP := $(VENV)/.dtnsess-installed
NPM_STAMP := node_modules/.dtnsess-npm-ci

.PHONY: test lint fuzz abi check install clean distclean demo bench

test: $(INSTALL_STAMP) $(NPM_STAMP)
	$(VPY) -m dtnsess_cli.compile --check
	$(VPY) scripts/lint.py
	$(VPY) -m pytest

# Slither over contracts/ (offline, pinned solc); fails on any finding not accepted in slither.triage.json.
lint: $(INSTALL_STAMP) $(NPM_STAMP)
	$(VPY) scripts/lint.py

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

$(VPY):
	$(PY) -m venv $(VENV)

# Reinstall when pyproject.toml changes.
# NOTE: the wheel force-includes abi/, so the directory must exist even
# before the first `make abi` (it is committed once contracts compile).
$(INSTALL_STAMP): pyproject.toml | $(VPY)
	@mkdir -p abi
	$(VPY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

# `npm ci` when node_modules is missing or older than the lock file.
$(NPM_STAMP): package-lock.json package.json
	npm ci --no-audit --no-fund
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
	rm -rf $(VENV) node_modules
