"""The warehouses the benchmarks run on: the generated project's DuckDB file, or a throwaway
PostgreSQL server started here (the test suite's tests/postgres_support.LocalPostgres).

``--target postgres``: :func:`postgres_server` starts the server, makes a database and puts
the FEATURE_STORE_PG_* variables that the generated profile's ``postgres`` output reads
into this process's environment, so dbt, ``fstore`` and child processes started from here
all reach it. The hand-written SQL of the benchmarks talks to it through the ADBC driver
directly (:func:`postgres_connect`), as the Python API does, without our package.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

import pyarrow as pa

TESTS = Path(__file__).resolve().parents[1] / "tests"
TARGETS = ("duckdb", "postgres")
PG_SCHEMA = "main"  # the generated profile's default schema (FEATURE_STORE_PG_SCHEMA unset)


def dbt_target_args(target: str) -> list[str]:
    """The dbt CLI arguments choosing the generated profile's output for ``target``."""
    return [] if target == "duckdb" else ["--target", target]


def dbt_target_name(target: str) -> str | None:
    """The output name of ``target`` in the generated profile (None: the default, DuckDB)."""
    return None if target == "duckdb" else target


@contextlib.contextmanager
def postgres_server(dbname: str = "bench", settings: dict[str, str] | None = None) -> Iterator[str]:
    """A fresh PostgreSQL server with an empty database ``dbname``; yields its libpq DSN.

    The FEATURE_STORE_PG_* variables point at it while the block runs. ``settings`` are
    applied with ALTER SYSTEM and a reload (so only settings a reload changes, e.g. work_mem).
    """
    sys.path.insert(0, str(TESTS))
    from postgres_support import LocalPostgres

    server = LocalPostgres().start()
    saved = dict(os.environ)
    try:
        server.create_database(dbname)
        if settings:
            with server.connect("postgres") as con:
                for key, value in settings.items():
                    con.execute(f"ALTER SYSTEM SET {key} = '{value}'")
                con.execute("SELECT pg_reload_conf()")
        os.environ.update(server.env(dbname))
        yield server.dsn(dbname)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()


def postgres_connect(dsn: str):
    """An ADBC connection (DB-API, autocommit) to the server ``dsn`` names, session time zone UTC."""
    import adbc_driver_postgresql.dbapi

    con = adbc_driver_postgresql.dbapi.connect(dsn, autocommit=True)
    with con.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
    return con


def read_table(target: str, where: str, table: str) -> pa.Table:
    """The whole of model ``table`` as Arrow: ``where`` is the DuckDB file or the Postgres DSN."""
    if target == "duckdb":
        import duckdb

        con = duckdb.connect(where, read_only=True)
        try:
            return con.sql(f"select * from {table}").to_arrow_table()
        finally:
            con.close()
    con = postgres_connect(where)
    try:
        with con.cursor() as cur:
            cur.execute(f"select * from {PG_SCHEMA}.{table}")
            return cur.fetch_arrow_table()
    finally:
        con.close()
