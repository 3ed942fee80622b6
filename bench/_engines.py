"""The warehouses the benchmarks run on: the generated project's DuckDB file, or a throwaway
PostgreSQL server started here (the test suite's tests/postgres_support.LocalPostgres).

``--target postgres``: :func:`postgres_server` starts the server, makes a database and puts
the FEATURE_STORE_PG_* variables that the generated profile's ``postgres`` output reads
into this process's environment, so dbt, ``fstore`` and child processes started from here
all reach it. The hand-written SQL of the benchmarks talks to it through the ADBC driver
directly (:func:`postgres_connect`), as the Python API does, without our package.

``--target spark``: :func:`spark_dir` makes a temporary FEATURE_STORE_SPARK_DIR (tables and
the embedded Derby metastore) and puts it into the environment, where the generated
profile's ``spark`` output (dbt-spark's ``session`` method, local[2]) reads it. Only one JVM
at a time may open that metastore, and a process that opened a SparkSession holds it until
it exits: dbt runs in a subprocess and so does every reader, this module's
:func:`read_table` included (it runs itself as a script). The hand-written SQL builds its
own SparkSession with the profile's settings (:func:`spark_session`), without our package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa

TESTS = Path(__file__).resolve().parents[1] / "tests"
TARGETS = ("duckdb", "postgres")
PG_SCHEMA = "main"  # the generated profile's default schema (FEATURE_STORE_PG_SCHEMA unset)
SPARK_SCHEMA = "main"  # the schema of the generated profile's `spark` output


def spark_dir() -> contextlib.AbstractContextManager[str]:
    """A temporary FEATURE_STORE_SPARK_DIR, in the environment while the block runs; yields its path."""
    return _spark_dir()


@contextlib.contextmanager
def _spark_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="feature_store_bench_spark_")
    saved = os.environ.get("FEATURE_STORE_SPARK_DIR")
    os.environ["FEATURE_STORE_SPARK_DIR"] = path
    try:
        yield path
    finally:
        if saved is None:
            os.environ.pop("FEATURE_STORE_SPARK_DIR", None)
        else:
            os.environ["FEATURE_STORE_SPARK_DIR"] = saved
        shutil.rmtree(path, ignore_errors=True)


def spark_session(where: str):
    """A Hive-enabled SparkSession with the generated profile's settings, on the Spark directory
    ``where``: it sees what ``dbt build --target spark`` built there. Holds the metastore until
    this process exits."""
    from pyspark.sql import SparkSession

    from _project import spark_parameters

    builder = SparkSession.builder.enableHiveSupport()
    for key, value in spark_parameters(where).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def naive_utc(table: pa.Table) -> pa.Table:
    """Spark's TIMESTAMP columns (UTC instants, tz-aware in Arrow) as naive UTC, as the other engines return them."""
    schema = pa.schema([pa.field(f.name, pa.timestamp(f.type.unit)) if pa.types.is_timestamp(f.type) and f.type.tz
                        else f for f in table.schema])
    return table.cast(schema)


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
    """The whole of model ``table`` as Arrow: ``where`` is the DuckDB file, the Postgres DSN or the
    Spark directory (read by a subprocess: a SparkSession here would hold the metastore)."""
    if target == "spark":
        import pyarrow.parquet as pq

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / f"{table}.parquet"
            proc = subprocess.run([sys.executable, __file__, "spark-read", where, table, str(out)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"reading {table} from Spark failed:\n{proc.stderr[-3000:]}")
            return pq.read_table(out)
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


if __name__ == "__main__":  # python _engines.py spark-read <spark dir> <table> <out.parquet>
    import pyarrow.parquet as pq

    sys.path.insert(0, str(Path(__file__).parent))
    _, _, where, name, out = sys.argv
    pq.write_table(naive_utc(spark_session(where).table(f"{SPARK_SCHEMA}.{name}").toArrow()), out)
