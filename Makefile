# Vireo: `make run` serves config.example.lua; `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= config.example.lua
# System tools the integration tests drive (Debian package names).
APT_PACKAGES := haproxy nginx chromium nodejs npm prosody lua-unbound postgresql
PYTEST_ARGS ?=
# make fuzz: each target of tests/fuzz for FUZZ_SECONDS; findings land in FUZZ_DIR (outside git).
FUZZ_SECONDS ?= 3600
FUZZ_DIR ?= /tmp/vireo-fuzz
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.py,%,$(wildcard tests/fuzz/fuzz_*.py))

.PHONY: install install-dev system-deps run test lint fuzz clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev system-deps

# A package counts as present when installed or provided by an installed one
# (NodeSource's nodejs provides npm and conflicts with Debian's).
system-deps:
	@provided="$$(dpkg-query -W -f='$${Provides}\n' 2>/dev/null | tr ',' '\n' | sed 's/ *(.*//; s/^ *//')"; \
	missing=""; for pkg in $(APT_PACKAGES); do \
	  dpkg -s $$pkg >/dev/null 2>&1 || echo "$$provided" | grep -qx "$$pkg" \
	    || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

run: install
	$(PY) app.py -c $(CONFIG) run

# The browser tests drive Debian's chromium with playwright-core (never a downloaded browser).
test: install-dev
	cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	cd tests/node && npm ci --no-audit --no-fund
	$(PY) -m pytest -n auto -q -rs $(PYTEST_ARGS)

# One target at a time, niced; each keeps its corpus, log and crash files in FUZZ_DIR/<target>/.
fuzz: $(VENV)/.installed-dev
	@status=0; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/$$t/corpus; \
	  echo "fuzzing $$t for $(FUZZ_SECONDS) s (log: $(FUZZ_DIR)/$$t/log)"; \
	  nice -n 10 $(PY) -m tests.fuzz.fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/$$t/ \
	    $(FUZZ_DIR)/$$t/corpus >$(FUZZ_DIR)/$$t/log 2>&1 || { status=1; echo "  FINDING in $$t"; }; \
	  grep -E "^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec)" $(FUZZ_DIR)/$$t/log; \
	done; exit $$status

lint: install-dev
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
