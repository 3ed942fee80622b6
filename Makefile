# The two commands that matter: `make demo` and `make test`. Both set up everything
# they need from nothing (a venv, the package, redis-server from apt when missing).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DO_NOT_TRACK := 1

.PHONY: install redis demo test bench seeds clean

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed; installing python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

install: $(STAMP) redis

redis:
	@command -v redis-server >/dev/null || { \
	  echo "Installing redis-server from apt..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

demo: install
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/registry.py
	$(BIN)/python bench/historical.py
	$(BIN)/python bench/sync.py
	$(BIN)/python bench/online.py

seeds: install
	$(BIN)/python scripts/generate_seeds.py

clean:
	rm -rf target logs dbt_packages feature_store.duckdb feature_store.duckdb.wal .pytest_cache
