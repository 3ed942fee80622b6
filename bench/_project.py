"""The throwaway dbt project the benchmarks build: our macros, one `user` entity, and a
profile with three outputs: ``dev`` (a DuckDB file in the project), ``postgres`` (the
server named by the FEATURE_STORE_PG_* variables, as in the repository's profiles.yml;
bench/_engines.py starts one and sets them) and ``spark`` (dbt-spark's ``session`` method,
a local[2] SparkSession whose tables and Derby metastore live under FEATURE_STORE_SPARK_DIR,
as the repository's profiles.yml's ``spark`` output; bench/_engines.py makes the directory).

The models' SQL is portable between DuckDB and PostgreSQL: :func:`uniform` makes
deterministic pseudo-random numbers from integer arithmetic alone, so both engines build
the same rows. :func:`spark_sql` rewrites the two spellings Spark lacks (``float8`` and the
``generate_series`` table function) so Spark builds them too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROJECT_YML = """\
name: feature_store
version: "0.2.0"
config-version: 2
profile: bench
model-paths: ["models"]
macro-paths: ["macros"]
target-path: "target"
vars:
  "feature_store:entities":
    user: {join_keys: [user_id]}
models:
  feature_store:
    +materialized: table
"""

PROFILES_YML = """\
bench:
  target: dev
  outputs:
    dev: {type: duckdb, path: bench.duckdb, threads: 2}
    postgres:
      type: postgres
      host: "{{ env_var('FEATURE_STORE_PG_HOST', 'localhost') }}"
      port: "{{ env_var('FEATURE_STORE_PG_PORT', '5432') | as_number }}"
      user: "{{ env_var('FEATURE_STORE_PG_USER', 'postgres') }}"
      password: "{{ env_var('FEATURE_STORE_PG_PASSWORD', '') }}"
      dbname: "{{ env_var('FEATURE_STORE_PG_DBNAME', 'feature_store') }}"
      schema: "{{ env_var('FEATURE_STORE_PG_SCHEMA', 'main') }}"
      threads: 2
    spark:
      type: spark
      method: session
      host: NA
      schema: main
      threads: 2
      server_side_parameters:
{spark_parameters}
"""

# The SparkSession settings of the ``spark`` output (those of the repository's profiles.yml),
# ``{dir}`` standing for FEATURE_STORE_SPARK_DIR. dbt-spark adds spark.sql.ansi.enabled=false
# to every session it builds; :func:`spark_parameters` adds it too, for readers of our own.
SPARK_PARAMETERS = {
    "spark.master": "local[2]",
    "spark.sql.warehouse.dir": "{dir}/warehouse",
    "spark.hadoop.javax.jdo.option.ConnectionURL": "jdbc:derby:;databaseName={dir}/metastore_db;create=true",
    "spark.driver.extraJavaOptions": "-Dderby.stream.error.method=java.io.OutputStream.nullOutputStream "
                                     "-Duser.timezone=UTC",
    "spark.driver.memory": "2g",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.log.level": "ERROR",
    "spark.sql.legacy.createHiveTableByDefault": "false",
}


def _profiles_yml() -> str:
    dir_ = "{{ env_var('FEATURE_STORE_SPARK_DIR', 'spark') }}"
    lines = "\n".join(f'        {k}: "{v.replace("{dir}", dir_)}"' for k, v in SPARK_PARAMETERS.items())
    return PROFILES_YML.replace("{spark_parameters}", lines)


def spark_parameters(spark_dir: str) -> dict[str, str]:
    """The settings a SparkSession needs to see what ``dbt build --target spark`` built in ``spark_dir``."""
    return {**{k: v.replace("{dir}", spark_dir) for k, v in SPARK_PARAMETERS.items()},
            "spark.sql.ansi.enabled": "false"}

# The head of a feature view's model: on Postgres, the btree index on (keys, event time)
# that the point-in-time join's LATERAL probe needs (declared as the example project's
# feature views do), and a VACUUM ANALYZE once the table is built (outside dbt's
# transaction, as VACUUM requires). Autovacuum does the same a little later (an insert-only
# table qualifies since PostgreSQL 13); the benchmarks must not depend on when. Until it
# has run, the first query to read the new table's rows sets their hint bits, dirtying
# (and, past shared_buffers, writing) every page it touches, whoever runs that query.
POSTGRES_VIEW_CONFIG = """\
{{{{ config(indexes=[{{'columns': {columns}}}] if target.type == 'postgres' else [],
            post_hook=[{{'sql': 'vacuum analyze {{{{ this }}}}', 'transaction': false}}]
                      if target.type == 'postgres' else []) }}}}
"""


def postgres_view_config(keys: list[str], timestamp: str) -> str:
    """The model config line giving a view its Postgres index on ``keys`` + ``timestamp``."""
    return POSTGRES_VIEW_CONFIG.format(columns=[*keys, timestamp])


# -- deterministic pseudo-random numbers in portable SQL ---------------------------------------

_P = 2_147_483_647  # 2^31 - 1: every intermediate product stays below 2^63


def uniform(x: str, salt: str) -> str:
    """SQL for a number in [0, 1) that looks uniform, from the integer expression ``x``.

    Integer arithmetic only (an affine step, then two squarings modulo the prime 2^31 - 1,
    the non-linear mixing), then one float8 division: DuckDB and PostgreSQL compute the
    same bits, so a model built on either holds the same rows. ``salt`` gives independent
    streams for one ``x``.
    """
    s = zlib.crc32(salt.encode()) % 100_003
    a = f"((cast({x} as bigint) * 1000003 + {s * 7919 + 12345}) % {_P})"
    b = f"(({a} * {a} + {s}) % {_P})"
    c = f"(({b} * {b} + 4242) % {_P})"
    return f"(cast({c} as float8) / {_P})"


def plus_micros(ts: str, micros: str) -> str:
    """SQL for timestamp ``ts`` plus the bigint column ``micros`` (>= 0) of microseconds.

    Split into whole seconds and the rest: DuckDB multiplies an interval by 32-bit integers
    only. ``micros`` appears three times: pass a column, not an expression.
    """
    return (f"{ts} + cast(({micros} - {micros} % 1000000) / 1000000 as integer) * interval '1 second'"
            f" + cast({micros} % 1000000 as integer) * interval '1 microsecond'")


def spark_sql(sql: str) -> str:
    """The portable model SQL of :func:`uniform` & co in Spark's spelling: ``double`` for
    ``float8``, ``range(a, b + 1)`` for ``generate_series(a, b)`` (integer bounds only)."""
    sql = re.sub(r"\bfloat8\b", "double", sql)
    return re.sub(r"\bgenerate_series\((-?\d+), (-?\d+)\)", lambda m: f"range({m[1]}, {int(m[2]) + 1})", sql)


# -- the project --------------------------------------------------------------------------------

def write_project(workdir: Path, models: dict[str, str], target: str | None = None) -> None:
    """A fresh project in ``workdir``: config, this checkout's macros, and ``models`` (file name: text);
    with ``target="spark"`` the models' SQL goes through :func:`spark_sql`."""
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "models").mkdir(parents=True)
    (workdir / "dbt_project.yml").write_text(PROJECT_YML)
    (workdir / "profiles.yml").write_text(_profiles_yml())
    copy_macros(workdir)
    for name, text in models.items():
        (workdir / "models" / name).write_text(spark_sql(text) if target == "spark" and name.endswith(".sql")
                                               else text)


def copy_macros(workdir: Path) -> None:
    """This checkout's macros into ``workdir`` (replacing older copies)."""
    shutil.rmtree(workdir / "macros", ignore_errors=True)
    shutil.copytree(REPO / "macros", workdir / "macros")


def run_dbt(workdir: Path, *args: str) -> None:
    """``dbt <args>`` in ``workdir``; exits with dbt's output if it fails."""
    proc = subprocess.run([str(Path(sys.executable).parent / "dbt"), *args, "--profiles-dir", str(workdir)],
                          cwd=workdir, capture_output=True, text=True,
                          env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"})
    if proc.returncode != 0:
        sys.exit(f"dbt {' '.join(args)} failed in {workdir}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
