"""Apache Spark for the test session (:class:`SparkEnv`): dbt-spark's `session` method, then a PySpark reader.

Nothing is started outside the test process but what dbt-spark itself starts: its `session`
method (profiles.yml's `spark` output) builds a SparkSession inside the dbt process, and
PySpark launches a local JVM for it (Java 17, `make java`; pyspark 4.0 from the `spark` extra).
Every table and the Hive metastore live under one directory, FEATURE_STORE_SPARK_DIR, a
temporary one per test session. The metastore is an embedded Derby database, which one JVM
at a time may open: dbt runs first, as a subprocess (:meth:`SparkEnv.dbt`), and only then does
the test process open its own SparkSession on the same directory (:meth:`SparkEnv.session`),
which dbt can no longer use for the rest of the session. The reader's lock goes only when its
JVM exits, with the Python process: SparkSession.stop() does not release it.

What a reader needs to see the tables dbt built (python/feature_store/warehouse/spark.py):

* pyspark 4.0 and Java 17 (PATH or JAVA_HOME), and no other SparkContext in the process:
  the settings below only take effect when the JVM starts; a second getOrCreate() reuses the
  running one and ignores them (PySpark warns "Using an existing Spark session; only runtime
  SQL configurations will take effect").
* ``SparkSession.builder.enableHiveSupport()``, then ``.config(key, value)`` for every entry of
  the `spark` output's ``server_side_parameters`` in profiles.yml, rendered with the same
  FEATURE_STORE_SPARK_DIR dbt saw, plus ``spark.sql.ansi.enabled=false``, which dbt-spark adds
  to every session; then ``.getOrCreate()``. :func:`profile_parameters` returns exactly that
  dict (it renders the profile and asks dbt-spark's own SparkCredentials). The ones that
  decide what the reader sees, with ``D`` the directory:

      spark.sql.warehouse.dir                       D/warehouse
      spark.hadoop.javax.jdo.option.ConnectionURL   jdbc:derby:;databaseName=D/metastore_db;create=true
      spark.sql.session.timeZone                    UTC

  The rest (spark.master local[2], driver memory, the JVM's time zone and Derby's log, shuffle
  partitions, the UI and console progress off, the log level, Parquet for CREATE TABLE) do
  not decide what the reader sees; pass them all anyway, as dbt does.
  A relative ``D`` (the default is `spark`) is resolved against the working directory of the
  process that starts the JVM, not against --project-dir; fstore and the Makefile run dbt in
  the project directory, so a reader must make ``D`` absolute against the project directory.
* Not while dbt runs on the same directory, and dbt not while the reader's process lives.
* Tables are ``<schema>.<model>``, schema FEATURE_STORE_SPARK_SCHEMA (default `main`), e.g.
  ``spark.table("main.churn_training_set")``: managed Parquet tables under D/warehouse/main.db.
* Timestamps: the models' ``timestamp`` is Spark's TIMESTAMP (an instant, shown in the session
  time zone, UTC), holding the project's naive UTC times. ``DataFrame.collect()`` turns it into
  naive datetimes in the *Python process's* local time zone; cast to ``timestamp_ntz`` in SQL
  (what :func:`naive_utc_rows` does) or use ``toPandas()``, which both give naive UTC.
* ``spine_row_number`` is an INT on Spark (row_number()), a BIGINT on DuckDB.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

__all__ = ["SparkEnv", "SparkUnavailable", "naive_utc_rows", "profile_parameters"]

REPO = Path(__file__).resolve().parents[1]
PROFILE = "feature_store_example"


class SparkUnavailable(RuntimeError):
    """No Java, or no pyspark / dbt-spark."""


def check_installed() -> None:
    """Raise :class:`SparkUnavailable` naming what to install."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise SparkUnavailable(
            "Java is not installed (no `java` on PATH, no JAVA_HOME); `make install` installs it "
            "(apt-get install -y openjdk-17-jre-headless)")
    try:
        import dbt.adapters.spark  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise SparkUnavailable(
            f"{exc.name} is not installed; `make install` installs the `spark` extra "
            "(pip install -e '.[test,engines,spark]')") from None


def _render(value: Any, env: dict[str, str]) -> Any:
    """A profiles.yml value with env_var() rendered as dbt does (``env`` before os.environ)."""
    if not isinstance(value, str):
        return value
    import jinja2

    def env_var(name: str, default: str | None = None) -> str:
        found = env.get(name, os.environ.get(name, default))
        if found is None:
            raise KeyError(f"profiles.yml uses env_var('{name}') but {name} is not set")
        return found

    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(value).render(env_var=env_var)


def profile_parameters(env: dict[str, str], profiles: Path = REPO / "profiles.yml") -> dict[str, str]:
    """The SparkSession settings of profiles.yml's `spark` output as dbt-spark applies them."""
    from dbt.adapters.spark.connections import SparkCredentials

    output = yaml.safe_load(profiles.read_text())[PROFILE]["outputs"]["spark"]
    rendered = {key: _render(value, env) for key, value in output.items() if key != "server_side_parameters"}
    rendered["server_side_parameters"] = {
        key: _render(value, env) for key, value in (output.get("server_side_parameters") or {}).items()}
    return dict(SparkCredentials.from_dict(rendered).server_side_parameters)


def naive_utc_rows(df) -> tuple[list[str], list[tuple]]:
    """(columns, rows) of a DataFrame, its TIMESTAMP columns as naive UTC datetimes whatever
    the process's time zone (cast to timestamp_ntz under the session's UTC)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    columns = [field.name for field in df.schema.fields]
    cols = [F.col(f"`{f.name}`").cast("timestamp_ntz").alias(f.name) if isinstance(f.dataType, TimestampType)
            else F.col(f"`{f.name}`") for f in df.schema.fields]
    return columns, [tuple(row) for row in df.select(*cols).collect()]


class SparkEnv:
    """One FEATURE_STORE_SPARK_DIR (``root``) for the test session: dbt first, then the reader.

    ``env()`` are the variables profiles.yml's `spark` output reads; ``parameters()`` the
    SparkSession settings they give; ``dbt(project, *args)`` runs the dbt CLI with them
    (`--target spark` is the caller's to pass); ``session()`` opens this process's SparkSession
    on the same warehouse and metastore, after which ``dbt()`` refuses to run.
    """

    def __init__(self, root: Path, schema: str = "main") -> None:
        self.root = Path(root).resolve()
        self.schema = schema
        self._session = None
        self._opened = False  # once this process's JVM has the metastore, it keeps it

    def env(self) -> dict[str, str]:
        return {"FEATURE_STORE_SPARK_DIR": str(self.root), "FEATURE_STORE_SPARK_SCHEMA": self.schema}

    def parameters(self) -> dict[str, str]:
        return profile_parameters(self.env())

    def dbt(self, project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """The dbt CLI in ``project`` with ``env()`` set (conftest.run_dbt); dbt-spark's JVM exits with it."""
        from conftest import run_dbt

        if self._opened:
            raise RuntimeError(
                "this process's SparkSession holds the Derby metastore (one JVM at a time): run every "
                "dbt command on Spark before the first SparkEnv.session()")
        import pytest

        with pytest.MonkeyPatch.context() as mp:
            for name, value in self.env().items():
                mp.setenv(name, value)
            return run_dbt(project, *args, check=check)

    def session(self):
        """This process's SparkSession, built as a reader would (see the module docstring)."""
        if self._session is None:
            from pyspark.sql import SparkSession

            builder = SparkSession.builder.enableHiveSupport()
            for key, value in self.parameters().items():
                builder = builder.config(key, value)
            self._opened = True
            self._session = builder.getOrCreate()
            self._session.sparkContext.setLogLevel("ERROR")
        return self._session

    def stop(self) -> None:
        """Stop the SparkContext (the JVM, and its Derby lock, stay until the process exits)."""
        if self._session is not None:
            self._session.stop()
            self._session = None
