# The two commands that matter: `make demo` and `make test`. Both set up everything
# they need from nothing (a venv, the package, redis-server, the PostgreSQL server and a
# Java runtime for Spark from apt when missing).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DO_NOT_TRACK := 1

.PHONY: install redis postgres java chromium demo test lint test-compat bench seeds clean

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed; installing python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,engines,spark]'
	@touch $@

install: $(STAMP) redis postgres java chromium

redis:
	@command -v redis-server >/dev/null || { \
	  echo "Installing redis-server from apt..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

# The Postgres tests start their own throwaway server (tests/postgres_support.py) from the
# server binaries, as the `postgres` user the package creates (Postgres refuses root);
# Debian keeps the binaries off PATH, under /usr/lib/postgresql/<version>/bin.
postgres:
	@{ id postgres && { { command -v initdb && command -v pg_ctl; } || ls /usr/lib/postgresql/*/bin/pg_ctl; }; } \
	  >/dev/null 2>&1 || { \
	  echo "Installing postgresql from apt..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# The Spark tests (tests/test_spark.py) run dbt-spark's session method and PySpark, which
# start a local JVM: Spark 4.0 needs Java 17 or later. Slim Debian images leave out
# /usr/share/man, where the package's post-install links java's man page, and fail without it.
# Debian 12 packages Java 17; later releases only a newer one (default-jre-headless), which
# Spark 4.0 runs on too.
java:
	@command -v java >/dev/null || { \
	  echo "Installing a Java runtime (openjdk-17-jre-headless) from apt..."; \
	  mkdir -p /usr/share/man/man1 && apt-get update -qq && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null 2>&1 || \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null; }; }

# tests/test_monitor.py opens `fstore monitor --report`'s page in headless Chromium (Debian's
# package: a browser download of its own cannot be fetched here) and checks its screenshot and console.
chromium:
	@command -v chromium >/dev/null || { \
	  echo "Installing chromium from apt..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: install
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: install lint
	$(BIN)/python -m pytest -q --durations=15

# The gate: lint and types on the package, clean, before any test runs.
lint: install
	$(BIN)/ruff check python
	$(BIN)/mypy

# The online store's tests again with the oldest redis-py that pyproject.toml allows, without
# hiredis (the main venv has the newest, with hiredis). Only what those tests import is
# installed: the online path needs no dbt.
REDIS_PY_OLDEST := $(shell sed -n 's/.*"redis\[hiredis\]>=\([0-9.]*\),.*/\1/p' pyproject.toml)
COMPAT := .venv-compat
COMPAT_STAMP := $(COMPAT)/.installed-$(REDIS_PY_OLDEST)
ONLINE_TESTS := tests/test_online.py tests/test_keys.py tests/test_materialize.py tests/test_connection.py tests/test_cluster.py

$(COMPAT_STAMP): pyproject.toml
	@$(PYTHON) -m venv $(COMPAT)
	$(COMPAT)/bin/python -m pip install -q --upgrade pip
	$(COMPAT)/bin/python -m pip install -q "redis==$(REDIS_PY_OLDEST)" pyarrow duckdb numpy pandas orjson pyyaml \
	  click rich pytest hypothesis psutil
	$(COMPAT)/bin/python -m pip uninstall -q -y hiredis 2>/dev/null || true
	$(COMPAT)/bin/python -m pip install -q --no-deps -e .
	@touch $@

test-compat: $(COMPAT_STAMP) redis
	@$(COMPAT)/bin/python -c 'import redis, importlib.util as u; \
	  assert redis.__version__ == "$(REDIS_PY_OLDEST)" and u.find_spec("hiredis") is None; \
	  print(f"redis-py {redis.__version__}, no hiredis")'
	$(COMPAT)/bin/python -m pytest -q -m "not dbt" $(ONLINE_TESTS)

bench: install
	$(BIN)/python bench/registry.py
	$(BIN)/python bench/historical.py
	$(BIN)/python bench/sync.py
	$(BIN)/python bench/online.py

seeds: install
	$(BIN)/python scripts/generate_seeds.py

clean:
	rm -rf target logs dbt_packages feature_store.duckdb feature_store.duckdb.wal .pytest_cache $(COMPAT)
