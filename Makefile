# Vireo: `make run` serves config.example.lua; `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= config.example.lua
# System tools the integration tests drive (Debian package names).
APT_PACKAGES := haproxy nginx chromium nodejs prosody lua-unbound postgresql lua-dbi-sqlite3
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

system-deps:
	@missing=""; for pkg in $(APT_PACKAGES); do \
	  dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
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
	$(PY) -m pytest -n auto -q $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
