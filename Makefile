# Vireo: `make run` serves config.example.lua; `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= config.example.lua
# System tools the integration tests drive (Debian package names).
APT_PACKAGES := haproxy nginx chromium nodejs npm prosody lua-unbound postgresql
PYTEST_ARGS ?=

.PHONY: install install-dev system-deps run test lint clean

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

lint: install-dev
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
