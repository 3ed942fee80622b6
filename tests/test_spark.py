"""The example project and the point-in-time join on Apache Spark (dbt-spark's `session` method).

Spark runs in local JVMs (tests/spark_support.py), one at a time because the Hive metastore
is an embedded Derby database. First dbt builds the example with `dbt build --target spark`
in a subprocess (profiles.yml's `spark` output, pointed at the session's directory through
FEATURE_STORE_SPARK_DIR), which starts and ends its own JVM. Then this process opens a
SparkSession with the profile's own settings, as a reader of dbt's tables would, and keeps it:

* the example's tables are read through it, and compared with a DuckDB build of the same data;
* the property tests reuse tests/test_point_in_time.py as tests/test_postgres.py does: dbt
  compiles each call shape once, in-process (dbt-spark's session is this process's
  SparkSession), against the fixture project's views, which are Spark global temporary views
  (the profile's schema is `global_temp`), so loading a hypothesis example writes no files;
  each call's rows must equal tests/pit_reference.py.

Spark spends a fraction of a second on even a tiny query, so the property tests run fewer
examples than on DuckDB and Postgres; the explicit examples pin the edges.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml
from conftest import REPO, copy_project, run_dbt
from consistency_support import check_synced_then_resync, check_training_set_api, utc_now
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from spark_support import naive_utc_rows
from test_point_in_time import (
    CALLS,
    CONSTANT_CALLS,
    DDL,
    FIXTURE,
    SPINE_DDL,
    TIE,
    TIE_AT,
    VIEWS,
    CompileFailed,
    at,
    call_text,
    check_constant_plans,
    check_plans,
    compile_inline,
    constant_spines,
    data,
    feature_rows,
)

from feature_store.materialize import sync
from feature_store.online import OnlineStore
from feature_store.registry import Registry

pytestmark = pytest.mark.spark

TRAINING = ("churn_training_set", "fraud_training_set")


# -- the example project ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def spark_example(spark_env, tmp_path_factory) -> Path:
    """The example project built on Spark with every default (seeds shifted to now)."""
    project = copy_project(tmp_path_factory.mktemp("spark_example") / "project")
    spark_env.dbt(project, "build", "--target", "spark")
    return project


@pytest.fixture(scope="module")
def spark(spark_env, spark_example):
    """This process's SparkSession, on the metastore dbt used: opened after the example's build,
    since Derby lets one JVM at a time in (every dbt run on Spark must come first)."""
    return spark_env.session()


def test_example_project_builds_on_spark(spark, spark_example):
    # One query per training set (each costs Spark a job or more): its rows against its labels, its features.
    features = {"fraud_training_set": ("txn_amount", "txn_velocity_60s", "user_7d_orders", "user_avg_basket_30d"),
                "churn_training_set": ("user_7d_orders", "user_avg_basket_30d", "last_order_ts")}
    spines = {"churn_training_set": "stg_churn_labels", "fraud_training_set": "stg_fraud_labels"}
    for model, spine in spines.items():
        counts = ", ".join(f"count({c}) as {c}" for c in features[model])
        row = spark.sql(f"""
            select (select count(*) from main.{spine}) as labels, count(*) as n,
                count(distinct spine_row_number) as numbers, min(spine_row_number) as first,
                max(spine_row_number) as last, {counts}
            from main.{model}""").collect()[0].asDict()
        # One row per label, numbered 1..n.
        assert row["n"] == row["numbers"] == row["last"] == row["labels"] > 0 and row["first"] == 1, (model, row)
        for column in features[model]:
            assert row[column] > 0, f"{model}.{column} is all NULL"
    # The shift moved the seeds' last moment (the newest transaction) to the build's start.
    lag = spark.sql("select cast(current_timestamp() as long) - cast(max(txn_ts) as long) "
                    "from main.stg_transactions").collect()[0][0]
    assert 0 <= lag < 300, lag
    # Spark ran the portable range join, with the exact ttl floor of macros/point_in_time/spark.sql.
    compiled = (spark_example / "target" / "compiled" / "feature_store" / "models" / "training"
                / "fraud_training_set.sql").read_text().lower()
    assert compiled.count("row_number() over (") == 4  # three views and the spine's numbering
    assert "interval 600 seconds" in compiled and "interval 172800 seconds" in compiled  # ttl 10m and 2d
    assert "to_unix_timestamp" not in compiled


def test_training_sets_equal_duckdb(spark, spark_example, tmp_path):
    """The same seeds, moved to the same moment, give the same training sets on Spark and DuckDB,
    row for row (spine_row_number included) and value for value."""
    (data_now,) = spark.sql("select cast(max(computed_at) as timestamp_ntz) from main.user_order_features").collect()[0]
    project = copy_project(tmp_path / "project")
    run_dbt(project, "build", "--select", *(f"+{m}" for m in TRAINING), "--resource-type", "seed",
            "--resource-type", "model", "--vars", f'{{shift_seeds_to: "{data_now:%Y-%m-%d %H:%M:%S}"}}')
    con = duckdb.connect(str(project / "feature_store.duckdb"), read_only=True)
    try:
        for model in TRAINING:
            query = f"select * from main.{model} order by spine_row_number"
            cur = con.execute(query)
            duck_columns, duck = [d[0] for d in cur.description], cur.fetchall()
            columns, rows = naive_utc_rows(spark.sql(query))
            assert columns == duck_columns, model
            assert len(rows) == len(duck) > 0, model
            assert rows == duck, model
    finally:
        con.close()


# -- the Python API and the sync on Spark -------------------------------------------------------

@pytest.fixture
def spark_registry(spark, spark_env, spark_example, monkeypatch):
    """The example's registry on its `spark` target, read through feature_store.warehouse.spark
    (in this process the reader's session already runs, with the same settings)."""
    for name, value in spark_env.env().items():
        monkeypatch.setenv(name, value)
    return Registry.load(spark_example, target="spark")


def test_historical_features_on_spark_equal_the_training_model(spark_registry, spark):
    """get_historical_features runs the macro on Spark: an Arrow spine and a SELECT spine
    give the rows `dbt build` put into churn_training_set."""
    check_training_set_api(spark_registry, "spark", "select * from main.stg_churn_labels")


def test_sync_on_spark_then_online_equals_offline(spark_registry, redis_url):
    """The sync reads Spark (fingerprints with xxhash64, the latest row per entity), and every
    entity's online values equal the point-in-time join on Spark; a re-sync reads nothing."""
    store = OnlineStore.for_registry(spark_registry, url=redis_url)
    synced_at = utc_now()
    report = sync(spark_registry, store, now=synced_at)
    assert report.ok, {v: r.error for v, r in report.views.items()}
    assert report.keys_written > 0
    check_synced_then_resync(spark_registry, store, synced_at)


# -- the point-in-time join: property test against the reference ------------------------------

def spark_ddl(ddl: str) -> list[tuple[str, str]]:
    """test_point_in_time's DDL as (column, Spark type): Spark's text type is `string`."""
    columns = []
    for part in ddl.split(", "):
        name, typ = part.split()
        columns.append((name.strip('"'), {"varchar": "string"}.get(typ, typ)))
    return columns


SPARK_DDL = {name: spark_ddl(ddl) for name, ddl in DDL.items()}
SPARK_SPINE_DDL = spark_ddl(SPINE_DDL)

# test_point_in_time's call shapes minus DuckDB's own plans (Spark refuses them by name).
SPARK_CALLS = {name: kwargs for name, kwargs in CALLS.items() if kwargs.get("implementation") not in ("asof", "range")}


def literal(value, typ: str) -> str:
    if value is None:
        return f"cast(null as {typ})"
    if typ == "timestamp":  # read in the session time zone, UTC: the naive UTC time itself
        return f"timestamp'{value.isoformat(sep=' ', timespec='microseconds')}'"
    if typ == "string":  # Spark reads backslash escapes in string literals
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if typ == "double":
        return f"cast('{value!r}' as double)"
    if typ == "boolean":
        return "true" if value else "false"
    return f"cast({int(value)} as {typ})"


def relation_sql(columns: list[tuple[str, str]], rows: list[dict]) -> str:
    """A query whose rows are ``rows``, typed by ``columns``; no table, no files."""
    select = ", ".join(f"cast(c{i} as {typ}) as `{name}`" for i, (name, typ) in enumerate(columns))
    if not rows:
        return f"select {select} from (select {', '.join(f'null as c{i}' for i in range(len(columns)))}) where false"
    values = ", ".join("(" + ", ".join(literal(row[name], typ) for name, typ in columns) + ")" for row in rows)
    return f"select {select} from values {values} as v({', '.join(f'c{i}' for i in range(len(columns)))})"


# The rows of each query run since the last load, by (SQL, order). On Spark a call and its
# implementation='default' twin compile to the same SQL (test_spark_plan): running the same
# text on the same rows again would only cost time.
_ran: dict[tuple[str, str], tuple[list[str], list[tuple]]] = {}


def load(spark, views: dict[str, list[dict]], spine: list[dict]) -> None:
    _ran.clear()
    for name, rows in views.items():
        spark.sql(f"create or replace global temporary view {name} as {relation_sql(SPARK_DDL[name], rows)}")
    spark.sql(f"create or replace temporary view spine as {relation_sql(SPARK_SPINE_DDL, spine)}")


def run(spark, sql: str, order_by: str) -> tuple[list[str], list[tuple]]:
    if (sql, order_by) not in _ran:
        _ran[sql, order_by] = naive_utc_rows(spark.sql(f"select * from ({sql}) as pit order by `{order_by}`"))
    columns, rows = _ran[sql, order_by]
    return list(columns), list(rows)


FAST = {"spark.sql.adaptive.enabled": "false", "spark.sql.codegen.wholeStage": "false",
        "spark.sql.shuffle.partitions": "2"}


@pytest.fixture(scope="module")
def spark_pit(spark, spark_env, tmp_path_factory) -> Iterator[Path]:
    """The fixture project with the checkout's macros and a Spark profile whose schema is
    `global_temp`: its views are this session's global temporary views (empty until loaded),
    and the calls' bare `spine` a temporary view."""
    project = tmp_path_factory.mktemp("spark_pit") / "pit_project"
    shutil.copytree(FIXTURE, project)
    shutil.copytree(REPO / "macros", project / "macros")
    output = {"type": "spark", "method": "session", "host": "NA", "schema": "global_temp", "threads": 1,
              "server_side_parameters": spark_env.parameters()}
    (project / "profiles.yml").write_text(yaml.safe_dump({"pit_fixture": {"target": "dev", "outputs": {"dev": output}}}))
    load(spark, {name: [] for name in VIEWS}, [])
    # Runtime settings for queries over a few dozen rows, which change no result: without
    # adaptive re-planning and whole-stage code generation, and with two shuffle partitions
    # (the two cores) instead of four, a call takes about half the time (~0.4 s).
    saved = {key: spark.conf.get(key) for key in FAST}
    for key, value in FAST.items():
        spark.conf.set(key, value)
    yield project
    for key, value in saved.items():
        spark.conf.set(key, value)


@pytest.fixture(scope="module")
def spark_compiled(spark_pit) -> dict[str, str]:
    return {name: compile_inline(spark_pit, call_text(kwargs)) for name, kwargs in SPARK_CALLS.items()}


@pytest.fixture(scope="module")
def spark_compiled_constant(spark_pit) -> dict[str, tuple[str, str]]:
    return {name: (compile_inline(spark_pit, call_text(dict(kwargs, spine_time="constant"))),
                   compile_inline(spark_pit, call_text(kwargs)))
            for name, kwargs in CONSTANT_CALLS.items()}


# A ttl edge inside a second: rows on whole seconds, spine times just past them. va's 07:00 row
# is 3h (its ttl) + 1 us, + 0.5 s, or exactly 3h old; vd's 08:00 row the same against 2h. A
# floor computed in whole seconds (dbt-spark's dateadd) would keep the first two.
SUBSECOND = {
    "views": {"va": [{"user_id": 1, "e": at(14), "c": at(14), "a_int": 1, "a_str": "p"}],
              "vb": [], "vc": [],
              "vd": [{"user_id": 1, "e": at(16), "d_flag": True, "shared": 1}],
              "ve": []},
    "spine": [{"user_id": 1, "bank": None, "acct": None, "t": at(20) + offset, "label": "l0", "rid": i}
              for i, offset in enumerate([timedelta(microseconds=1), timedelta(milliseconds=500), timedelta(0)])],
}
SUBSECOND_AT = lambda t: {"views": SUBSECOND["views"], "spine": [dict(r, t=t) for r in SUBSECOND["spine"]]}  # noqa: E731


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(TIE)
@example(SUBSECOND)
@given(data)
def test_every_spark_plan_matches_the_reference(spark_compiled, spark, data):
    check_plans(spark_compiled, SPARK_CALLS, spark, data, load=load, run=run)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(TIE_AT(at(20)))
@example(TIE_AT(at(21)))
@example(SUBSECOND_AT(at(20) + timedelta(microseconds=1)))
@given(st.fixed_dictionaries({"views": st.fixed_dictionaries({v: feature_rows(v) for v in VIEWS}),
                              "spine": constant_spines()}))
def test_spark_constant_time_plan_matches_the_reference(spark_compiled_constant, spark, data):
    check_constant_plans(spark_compiled_constant, spark, data, load=load, run=run)


def test_the_subsecond_example_reads_as_intended(spark_compiled, spark):
    """SUBSECOND spelled out: 1 us or 0.5 s past the ttl is out, exactly the ttl is in."""
    load(spark, SUBSECOND["views"], SUBSECOND["spine"])
    columns, rows = run(spark, spark_compiled["auto"], "rid")
    got = [(r[columns.index("a_int")], r[columns.index("d_flag")]) for r in rows]
    assert got == [(None, None), (None, None), (1, True)]


def test_spark_plan(spark_compiled, spark_compiled_constant):
    """Spark's plan is default__'s, and its ttl floor is an interval, not dateadd's whole seconds."""
    assert spark_compiled["auto"] == spark_compiled["default"]
    for name, sql in spark_compiled.items():
        sql = sql.lower()
        assert "qualify" not in sql and "asof" not in sql and "lateral" not in sql, name
        assert "to_unix_timestamp" not in sql, name
    assert "interval 10800 seconds" in spark_compiled["auto"]  # va's 3h
    for name, (sql, _) in spark_compiled_constant.items():
        assert "where __fs_rn = 1" in sql and "q.__fs_t" not in sql, name


@pytest.mark.parametrize("kwargs,message", [
    (dict(features=["va"], implementation="asof"), r"implementation='asof' is a DuckDB plan; on Spark pass"),
    (dict(features=["va"], implementation="range"), r"implementation='range' is a DuckDB plan"),
    (dict(features=["va"], implementation="lateral"), r"implementation='lateral' is a Postgres plan"),
    (dict(features=["va"], spine_time="constant", implementation="asof"),
     r"implementation='asof' is a plan for spines whose times vary"),
])
def test_spark_compile_errors(spark_pit, kwargs, message):
    with pytest.raises(CompileFailed, match=message):
        compile_inline(spark_pit, call_text(kwargs))


def test_reader_parameters_place_the_tables(spark_env, spark):
    """The session this module reads with is the profile's: the warehouse and the metastore
    under the session's FEATURE_STORE_SPARK_DIR, UTC."""
    params = spark_env.parameters()
    root = str(spark_env.root)
    assert params["spark.sql.warehouse.dir"] == f"{root}/warehouse"
    assert params["spark.hadoop.javax.jdo.option.ConnectionURL"] == \
        f"jdbc:derby:;databaseName={root}/metastore_db;create=true"
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    location = [r for r in spark.sql("describe table extended main.churn_training_set").collect()
                if r[0] == "Location"][0][1]
    assert location == f"file:{root}/warehouse/main.db/churn_training_set"
    assert isinstance(spark.sql("select max(label_ts) from main.churn_training_set").collect()[0][0], datetime)
