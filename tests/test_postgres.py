"""The example project and the point-in-time join on a real PostgreSQL server.

The server is the session's ``postgres_server`` (tests/postgres_support.py). The example
is built with `dbt build --target postgres` (profiles.yml's `postgres` output, pointed at
the server through its FEATURE_STORE_PG_* variables). The property test reuses the
machinery of tests/test_point_in_time.py: the fixture project's views become Postgres
tables, the macro is compiled once per call shape by dbt in-process against them, and
every hypothesis example loads random rows and compares each call's rows with
tests/pit_reference.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from conftest import REPO, copy_project, run_dbt
from consistency_support import CHURN_FEATURES, check_synced_then_resync, check_training_set_api
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_point_in_time import (
    CALLS,
    CONSTANT_CALLS,
    FIXTURE,
    SPINE_COLUMNS,
    TIE,
    TIE_AT,
    VIEW_COLUMNS,
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

from feature_store import warehouse
from feature_store.errors import EntityDataFrameError, WarehouseError
from feature_store.offline import get_historical_features
from feature_store.online import OnlineStore
from feature_store.registry import Registry
from feature_store.snapshot import snapshot
from feature_store.warehouse import open_warehouse

pytestmark = pytest.mark.postgres

FSTORE = str(Path(sys.executable).parent / "fstore")


def fstore_cli(project: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FSTORE, *args, "--project-dir", str(project)], capture_output=True, text=True,
                          env={**os.environ, "FEATURE_STORE_REDIS_URL": redis_url})

NO_SHIFT = "{shift_seeds_to_now: false}"


# -- the example project ----------------------------------------------------------------------

def build_example(project: Path, *args: str) -> None:
    """`dbt <args> --target postgres` in ``project``; the environment already points at the server."""
    run_dbt(project, *args, "--target", "postgres")


@pytest.fixture(scope="module")
def pg_example(postgres_server, tmp_path_factory):
    """The example project built on Postgres with every default (seeds shifted to now)."""
    project = copy_project(tmp_path_factory.mktemp("pg_example") / "project")
    dbname = postgres_server.create_database("example")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in postgres_server.env(dbname).items():
            mp.setenv(name, value)
        build_example(project, "build")
    return project, dbname


def test_example_project_builds_on_postgres(postgres_server, pg_example):
    project, dbname = pg_example
    with postgres_server.connect(dbname) as con:
        def count(table):
            return con.execute(f"select count(*) from main.{table}").fetchone()[0]

        assert count("churn_training_set") == count("stg_churn_labels") > 0
        assert count("fraud_training_set") == count("stg_fraud_labels") > 0
        # The shift moved the seeds' last moment (the newest transaction) to the build's start.
        lag = con.execute("select (now() at time zone 'UTC') - max(txn_ts) from main.stg_transactions").fetchone()[0]
        assert timedelta(0) <= lag < timedelta(minutes=5), lag
        for column in ("user_7d_orders", "user_avg_basket_30d"):
            assert con.execute(f"select count({column}) from main.fraud_training_set").fetchone()[0] > 0, column
        indexed = {r[0] for r in con.execute("select tablename from pg_indexes where schemaname = 'main'")}
    assert indexed >= {"user_order_features", "user_txn_features", "txn_features"}
    # Every view is indexed, so every view of the training sets got the LATERAL probe.
    compiled = project / "target" / "compiled" / "feature_store" / "models" / "training"
    assert (compiled / "fraud_training_set.sql").read_text().lower().count("left join lateral") == 3
    assert (compiled / "churn_training_set.sql").read_text().lower().count("left join lateral") == 1


@pytest.fixture
def pg_env(postgres_server, pg_example, monkeypatch):
    """The example on Postgres, with the environment pointing its `postgres` target at the server."""
    project, dbname = pg_example
    for name, value in postgres_server.env(dbname).items():
        monkeypatch.setenv(name, value)
    return project


def test_historical_features_on_postgres_equal_the_training_model(pg_env):
    """get_historical_features runs the macro on Postgres: a pandas spine and a SELECT spine
    (with a trailing comment) give the rows `dbt build` put into churn_training_set."""
    registry = Registry.load(pg_env, target="postgres")
    assert registry.target.type == "postgres"
    out = check_training_set_api(registry, "postgres", "select * from main.stg_churn_labels -- a trailing comment",
                                 to_spine=lambda table: table.to_pandas())
    assert sum(v is not None for v in out.column("user_avg_basket_30d").to_pylist()) > 0
    with pytest.raises(EntityDataFrameError, match="not a readable table or query"):
        get_historical_features(registry, "select 1 as user_id; select 2", CHURN_FEATURES).to_arrow()


def test_fstore_sync_on_postgres_then_online_equals_offline(pg_env, redis_url):
    """`fstore sync --target postgres` as a user runs it; then every entity's online values
    equal the point-in-time join on Postgres, and a re-sync proves nothing changed."""
    proc = fstore_cli(pg_env, redis_url, "sync", "--target", "postgres", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    synced_at = datetime.fromisoformat(report["now"]).replace(tzinfo=None)
    assert report["ok"] and report["total"]["keys_written"] > 0

    registry = Registry.load(pg_env, target="postgres")
    check_synced_then_resync(registry, OnlineStore.for_registry(registry, url=redis_url), synced_at)


def test_any_adapter_through_dbt_own_connection(pg_env, monkeypatch):
    """The generic path (feature_store.warehouse.dbapi: the dbt adapter's DB-API connection)
    on a real server: as if Postgres had no driver of ours, dbt-postgres' psycopg2 connection
    serves a SELECT spine and the sync's read, with the rows the ADBC path gives."""
    registry = Registry.load(pg_env, target="postgres")
    features = ["user_order_features:user_7d_orders", "user_order_features:user_avg_basket_30d"]
    spine = "select user_id, label_ts from main.stg_churn_labels"
    as_of = datetime(2030, 1, 1)
    native = get_historical_features(registry, spine, features, timestamp_column="label_ts").to_arrow()
    native_latest = read_snapshot(registry, "user_order_features", as_of)

    monkeypatch.delitem(warehouse._ENGINES, "postgres")
    with open_warehouse(registry) as wh:
        assert type(wh).__name__ == "DbApiWarehouse" and wh.engine == "postgres"
    generic = get_historical_features(registry, spine, features, timestamp_column="label_ts").to_arrow()
    key = lambda r: (r["user_id"], r["label_ts"])  # noqa: E731
    assert sorted(generic.to_pylist(), key=key) == sorted(native.to_pylist(), key=key)
    generic_latest = read_snapshot(registry, "user_order_features", as_of)
    assert generic_latest.num_rows == native_latest.num_rows > 0
    by_user = lambda t: sorted(t.to_pylist(), key=lambda r: r["user_id"])  # noqa: E731
    assert by_user(generic_latest) == by_user(native_latest)

    with pytest.raises(WarehouseError, match="pass the spine as a warehouse table name or a SELECT"):
        get_historical_features(registry, native.select(["user_id", "label_ts"]), features,
                                timestamp_column="label_ts").to_arrow()


def read_snapshot(registry: Registry, view: str, as_of: datetime):
    reader = snapshot(registry, view, as_of)
    try:
        return reader.read_all()
    finally:
        reader.close()


def read_rows(cursor_rows: list[tuple], columns: list[str]) -> list[dict]:
    return [dict(zip(columns, row, strict=True)) for row in cursor_rows]


def test_churn_training_set_equals_duckdb(postgres_server, tmp_path):
    """The same seeds, unshifted, give the same training set on Postgres and on DuckDB."""
    project = copy_project(tmp_path / "project")
    dbname = postgres_server.create_database("churn")
    select = ["--select", "+churn_training_set", "--resource-type", "seed", "--resource-type", "model",
              "--vars", NO_SHIFT]
    with pytest.MonkeyPatch.context() as mp:
        for name, value in postgres_server.env(dbname).items():
            mp.setenv(name, value)
        build_example(project, "build", *select)
    run_dbt(project, "build", *select)  # DuckDB, the default target

    query = "select * from main.churn_training_set order by spine_row_number"
    with postgres_server.connect(dbname) as con:
        cur = con.execute(query)
        pg = read_rows(cur.fetchall(), [d.name for d in cur.description])
    con = duckdb.connect(str(project / "feature_store.duckdb"), read_only=True)
    try:
        cur = con.execute(query)
        duck = read_rows(cur.fetchall(), [d[0] for d in cur.description])
    finally:
        con.close()

    assert len(pg) == len(duck) > 0
    assert list(pg[0]) == list(duck[0])
    # Row for row, the labels' numbering included: both engines read the seed in file order.
    assert pg == duck
    assert sum(r["user_avg_basket_30d"] is not None for r in pg) > 0


# -- the point-in-time join: property test against the reference ------------------------------

# test_point_in_time's DDL in Postgres' names: it has no `double`, and `text` is its string.
PG_DDL = {
    "va": "user_id bigint, e timestamp, c timestamp, a_int bigint, a_str text",
    "vb": "user_id bigint, e timestamp, b_int bigint",
    "vc": "bank text, acct bigint, e timestamp, c timestamp, c_val double precision, shared bigint",
    "vd": "user_id bigint, e timestamp, d_flag boolean, shared bigint",
    "ve": 'bank text, e timestamp, c timestamp, "order" bigint, "userId" text',
}
# The LATERAL probe needs an index leading with the keys (any order), then the event time.
# va, vc (keys in another order) and ve have one; vb's leads with the time and vd's stops at
# the key, so the default plan ranks their rows with the range join.
INDEXES = {"va": "user_id, e, c", "vb": "e, user_id", "vc": "acct, bank, e", "vd": "user_id", "ve": "bank, e"}
SPINE_DDL = "user_id bigint, bank text, acct bigint, t timestamp, label text, rid bigint"

# test_point_in_time's call shapes minus DuckDB's own plans, plus LATERAL forced on every view.
PG_CALLS = {name: kwargs for name, kwargs in CALLS.items() if kwargs.get("implementation") not in ("asof", "range")}
PG_CALLS.update({
    "lateral": dict(CALLS["auto"], implementation="lateral"),
    "ttl_all_lateral": dict(CALLS["ttl_all"], implementation="lateral"),
    "created_lateral": dict(CALLS["created"], implementation="lateral"),
    "row_id_lateral": dict(CALLS["row_id"], implementation="lateral"),
})


# Views with the probe index (the fixture's Postgres DDL gives va, vc and ve one): a call over
# them alone takes the ordered-probe plan, with a constant spine time too.
INDEXED = {"va", "vc", "ve"}
PG_CONSTANT_CALLS = {**CONSTANT_CALLS, "probed": dict(features=["va", "vc", "ve"], include_timestamps=True),
                     "probed_created": dict(features=["ve", "va:a_str"], as_of_created=True, row_id="rid")}


def quoted(column: str) -> str:
    return f'"{column}"'


@pytest.fixture(scope="module")
def pg_pit(postgres_server, tmp_path_factory):
    """The fixture project with the checkout's macros, its profile on Postgres, and its views'
    tables created empty (with INDEXES) in a database of their own; returns (project, dbname)."""
    project = tmp_path_factory.mktemp("pg_pit") / "pit_project"
    shutil.copytree(FIXTURE, project)
    shutil.copytree(REPO / "macros", project / "macros")
    dbname = postgres_server.create_database("pit")
    (project / "profiles.yml").write_text(
        "pit_fixture:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n"
        f"      host: {postgres_server.host}\n      port: {postgres_server.port}\n"
        f"      user: {postgres_server.user}\n      password: ''\n      dbname: {dbname}\n"
        "      schema: main\n      threads: 1\n")
    with postgres_server.connect(dbname) as con:
        con.execute("create schema main")
        for name, ddl in PG_DDL.items():
            con.execute(f"create table main.{name} ({ddl})")
            con.execute(f"create index on main.{name} ({', '.join(map(quoted, INDEXES[name].split(', ')))})")
        con.execute(f"create table public.spine ({SPINE_DDL})")  # the calls' bare `spine`
    return project, dbname


@pytest.fixture(scope="module")
def pg_compiled(pg_pit) -> dict[str, str]:
    project, _ = pg_pit
    return {name: compile_inline(project, call_text(kwargs)) for name, kwargs in PG_CALLS.items()}


@pytest.fixture(scope="module")
def pg_compiled_constant(pg_pit) -> dict[str, tuple[str, str]]:
    project, _ = pg_pit
    return {name: (compile_inline(project, call_text(dict(kwargs, spine_time="constant"))),
                   compile_inline(project, call_text(kwargs)))
            for name, kwargs in PG_CONSTANT_CALLS.items()}


@pytest.fixture(scope="module")
def pg_scratch(postgres_server, pg_pit):
    _, dbname = pg_pit
    with postgres_server.connect(dbname) as con:
        yield con


def fill(con, table: str, columns: list[str], rows: list[dict]) -> None:
    con.execute(f"truncate {table}")
    with con.cursor().copy(f"copy {table} ({', '.join(map(quoted, columns))}) from stdin") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def load(con, views: dict[str, list[dict]], spine: list[dict]) -> None:
    with con.transaction():
        for name, rows in views.items():
            fill(con, f"main.{name}", VIEW_COLUMNS[name], rows)
        fill(con, "public.spine", SPINE_COLUMNS, spine)


def run(con, sql: str, order_by: str) -> tuple[list[str], list[tuple]]:
    cur = con.execute(f"select * from ({sql}) as pit order by {quoted(order_by)}")
    return [d.name for d in cur.description], cur.fetchall()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(TIE)
@given(data)
def test_every_postgres_plan_matches_the_reference(pg_compiled, pg_scratch, data):
    check_plans(pg_compiled, PG_CALLS, pg_scratch, data, load=load, run=run)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(TIE_AT(at(20)))
@example(TIE_AT(at(21)))
@given(st.fixed_dictionaries({"views": st.fixed_dictionaries({v: feature_rows(v) for v in VIEWS}),
                              "spine": constant_spines()}))
def test_postgres_constant_time_plan_matches_the_reference(pg_compiled_constant, pg_scratch, data):
    check_constant_plans(pg_compiled_constant, pg_scratch, data, load=load, run=run, calls=PG_CONSTANT_CALLS)


def view_plans(sql: str) -> dict[str, str]:
    """view name -> 'lateral', 'ranked' or 'distinct on', read from the per-view CTEs."""
    plans = {}
    for view, body in re.findall(r"-- (\w+)\n(.*?)\n\)", sql, re.S):
        body = body.lower()
        plans[view] = ("lateral" if "left join lateral" in body or "limit 1" in body
                       else "distinct on" if "distinct on" in body
                       else "ranked" if "row_number() over" in body else "?")
    return plans


def test_postgres_plan_choice(pg_compiled, pg_compiled_constant):
    """LATERAL where an index leads with the keys then the time, the range join elsewhere;
    'lateral' forces it everywhere, default__ never uses it, constant time is DISTINCT ON."""
    assert view_plans(pg_compiled["auto"]) == {
        "va": "lateral", "vb": "ranked", "vc": "lateral", "vd": "ranked", "ve": "lateral"}
    assert set(view_plans(pg_compiled["lateral"]).values()) == {"lateral"}
    for name in ("default", "full_names_default", "ttl_map_default", "created_default", "row_id_default"):
        assert set(view_plans(pg_compiled[name]).values()) == {"ranked"}, name
    for name, (sql, _) in pg_compiled_constant.items():
        views = {f.split(":")[0] for f in PG_CONSTANT_CALLS[name]["features"]}
        want = "ranked" if name.endswith("_default") else "lateral" if views <= INDEXED else "distinct on"
        assert set(view_plans(sql).values()) == {want}, name
    # Every view probed: the ordered-probe plan, the spine read once in key order, no CTEs.
    for sql in (pg_compiled["lateral"], pg_compiled_constant["probed"][0]):
        assert "__fs_v1 as (" not in sql and "order by __fs_s." in sql


@pytest.mark.parametrize("kwargs,message", [
    (dict(features=["va"], implementation="asof"), r"implementation='asof' is a DuckDB plan; on Postgres pass"),
    (dict(features=["va"], implementation="range"), r"implementation='range' is a DuckDB plan"),
    (dict(features=["va"], spine_time="constant", implementation="lateral"),
     r"implementation='lateral' is a plan for spines whose times vary"),
])
def test_postgres_compile_errors(pg_pit, kwargs, message):
    project, _ = pg_pit
    with pytest.raises(CompileFailed, match=message):
        compile_inline(project, call_text(kwargs))
