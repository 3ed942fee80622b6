"""The point-in-time SQL for engines that cannot run here: Snowflake, BigQuery, Trino.

For each engine, dbt compiles (in-process, as feature_store.compiler does) the example
project's training models and the macro call the online sync uses
(feature_store.snapshot), with that engine's adapter and a dummy profile
(tests/fixtures/engine_profiles/profiles.yml: fake account, project and host). Nothing
may touch the network: sockets are disabled while dbt runs, and the one adapter call our
macros make on a relation, ``adapter.get_columns_in_relation(spine)``, answers with no
columns, which is what it answers for a spine not built yet (the macro then skips its
column checks; see _pit_check_spine_columns in macros/point_in_time/resolve.sql).

Every compiled statement must parse with sqlglot in the engine's dialect, and pass the
type rules that can be checked on the text alone. On Snowflake the plan is also checked
for what its exactness rests on (macros/point_in_time/snowflake.sql): ASOF JOIN where a
view has no created timestamp, a plan that no choice among ASOF's ties can change where it
has one; and the Snowflake SQL of the point-in-time fixture project, translated to DuckDB
by sqlglot, must give tests/pit_reference.py's rows on random data, like DuckDB's own plans.

Needs the `engines` extra: pip install -e '.[test,engines]'.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import pytest
import test_point_in_time as pit
import yaml
from conftest import FIXTURES, REPO, copy_project
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

sqlglot = pytest.importorskip("sqlglot")
from sqlglot import exp  # noqa: E402

from feature_store.compiler import macro_call  # noqa: E402

pytestmark = pytest.mark.dbt

PROFILES = FIXTURES / "engine_profiles"
# engine (the profile's target) -> (sqlglot dialect, the adapter class dbt uses)
ENGINES = {
    "snowflake": ("snowflake", "dbt.adapters.snowflake:SnowflakeAdapter"),
    "bigquery": ("bigquery", "dbt.adapters.bigquery:BigQueryAdapter"),
    "trino": ("trino", "dbt.adapters.trino:TrinoAdapter"),
}
TRAINING = ("churn_training_set", "fraud_training_set")


def _feature_views() -> dict[str, dict]:
    """name -> meta.feature_store of the example's feature views, plus their join keys."""
    spec = yaml.safe_load((REPO / "models" / "features" / "_features.yml").read_text())
    entities = yaml.safe_load((REPO / "dbt_project.yml").read_text())["vars"]["feature_store:entities"]
    views = {}
    for model in spec["models"]:
        meta = ((model.get("config") or {}).get("meta") or model.get("meta") or {}).get("feature_store")
        if meta is not None:
            keys = [k for entity in meta["entities"] for k in entities[entity]["join_keys"]]
            views[model["name"]] = dict(meta, keys=keys)
    return views


FEATURE_VIEWS = _feature_views()
# The feature views the sync serves (online not false).
SYNC_VIEWS = sorted(name for name, meta in FEATURE_VIEWS.items() if meta.get("online", True) is not False)
# Point-in-time statements (the training models and each view's latest-row read), and the
# sync's fingerprint query per view.
JOINS = [*TRAINING, *(f"sync:{v}" for v in SYNC_VIEWS)]
STATEMENTS = [*JOINS, *(f"fingerprints:{v}" for v in SYNC_VIEWS)]


def sync_call(view: str) -> str:
    """The call feature_store.snapshot compiles for one view (its macro and argument names;
    the columns hashed are the view's keys and times, its features left out)."""
    meta = FEATURE_VIEWS[view]
    columns = [*meta["keys"], meta["timestamp"], *([meta["created_timestamp"]]
                                                         if meta.get("created_timestamp") else [])]
    call = macro_call("sync_queries", view=view, relation="RELATION", keys=meta["keys"], columns=columns,
                      parts=1024, spine="__fs_spine", timestamp="__fs_ts", row_id="__fs_row")
    return call.replace("'RELATION'", f"ref('{view}')")  # the relation as dbt names it on the engine


def _adapter_class(engine: str):
    module, name = ENGINES[engine][1].split(":")
    mod = pytest.importorskip(module, reason=f"dbt adapter for {engine} not installed (the `engines` extra)")
    return getattr(mod, name)


def _no_network(*args, **kwargs):
    raise OSError("network access attempted while compiling for a dummy profile")


_compiled: dict[str, dict[str, str]] = {}


def _invoke(args: list[str]):
    from dbt.cli.main import dbtRunner

    out = io.StringIO()
    with redirect_stdout(out):
        result = dbtRunner().invoke(args)
    if not result.success:
        raise AssertionError(f"dbt {args[:2]} failed: {result.exception}\n{out.getvalue()[-3000:]}")
    return result


@contextmanager
def _offline(engine: str, project: Path):
    """dbt for ``engine`` in ``project``, with no way to reach the network."""
    adapter = _adapter_class(engine)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        mp.setenv("DO_NOT_TRACK", "1")
        mp.delenv("DBT_PROFILES_DIR", raising=False)
        mp.setattr(adapter, "get_columns_in_relation", lambda self, relation: [])
        for name in ("connect", "connect_ex"):
            mp.setattr(socket.socket, name, _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        mp.chdir(project)
        yield


def _compile_engine(engine: str, workdir: Path) -> dict[str, str]:
    project = copy_project(workdir / f"project_{engine}")
    common = ["--log-level", "none", "--no-populate-cache", "--no-write-json",
              "--target-path", str(workdir / f"target_{engine}"), "--project-dir", str(project),
              "--profiles-dir", str(PROFILES), "--target", engine]
    sql: dict[str, str] = {}
    with _offline(engine, project):
        result = _invoke(["compile", "--select", *TRAINING, *common])
        for r in result.result.results:
            if r.node.name in TRAINING:
                sql[r.node.name] = r.node.compiled_code
        for view in SYNC_VIEWS:
            result = _invoke(["compile", "--inline", sync_call(view), *common])
            queries = json.loads(result.result.results[0].node.compiled_code)
            sql[f"sync:{view}"] = queries["latest"]
            sql[f"fingerprints:{view}"] = queries["fingerprints"]
    return sql


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("engines")

    def get(engine: str) -> dict[str, str]:
        if engine not in _compiled:
            _compiled[engine] = _compile_engine(engine, workdir)
        return _compiled[engine]

    return get


def _parse(engine: str, sql: str) -> list[exp.Expression]:
    return [s for s in sqlglot.parse(sql, read=ENGINES[engine][0]) if s is not None]


# ---- the static checks, as functions over the parsed SQL -----------------------------------

# Window functions that need an ORDER BY in their OVER on Snowflake (and Spark): ranking and
# navigation. `row_number() over ()` is an error there, and numbers rows arbitrarily elsewhere.
_ORDERED = tuple(getattr(exp, n) for n in ("RowNumber", "Rank", "DenseRank", "Lag", "Lead", "Ntile",
                                           "PercentRank", "CumeDist", "FirstValue", "LastValue",
                                           "NthValue") if hasattr(exp, n))


def windows_without_order(tree: exp.Expression) -> list[str]:
    bad = []
    for window in tree.find_all(exp.Window):
        func = window.this
        if isinstance(func, _ORDERED) and not window.args.get("order"):
            bad.append(window.sql())
    return bad


def _is_datetime(node: exp.Expression) -> bool:
    """A BigQuery DATETIME-valued expression: DATETIME_ADD/_SUB/_TRUNC, DATETIME(...), CAST(... AS DATETIME)."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, (exp.DatetimeAdd, exp.DatetimeSub, exp.DatetimeTrunc)):
        return True
    if isinstance(node, exp.Cast):
        return node.to.is_type(exp.DataType.Type.DATETIME)
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower().startswith("datetime")
    return type(node).__name__ == "Datetime"  # DATETIME(...), where sqlglot has a node for it


_MIXING = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Add, exp.Sub)


def datetime_mixed_with_timestamp(tree: exp.Expression) -> list[str]:
    """Comparisons/arithmetic with exactly one DATETIME side.

    The example's times are all TIMESTAMP (the seeds' column_types, dbt.type_timestamp()),
    so the other side is a TIMESTAMP, and BigQuery has no implicit TIMESTAMP/DATETIME
    coercion: "No matching signature for operator >= for argument types: TIMESTAMP, DATETIME".
    """
    bad = []
    for node in tree.find_all(*_MIXING, exp.Between):
        if isinstance(node, exp.Between):
            sides = [node.this, node.args["low"], node.args["high"]]
        else:
            sides = [node.left, node.right]
        kinds = {_is_datetime(s) for s in sides}
        if kinds == {True, False}:
            bad.append(node.sql(dialect="bigquery"))
    return bad


# Snowflake's ASOF JOIN (https://docs.snowflake.com/en/sql-reference/constructs/asof-join):
# MATCH_CONDITION is one comparison of a left and a right column (the left one first), ON
# only equalities joined by AND. Which of several right rows tied on the match value it
# returns, macros/point_in_time/snowflake.sql relies on in no way: tie_problems checks that.

def asof_joins(tree: exp.Expression) -> list[exp.Join]:
    return [j for j in tree.find_all(exp.Join) if (j.args.get("method") or "").upper() == "ASOF"]


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    return [c.unnest() for c in node.flatten()] if isinstance(node, exp.And) else [node.unnest()]


def asof_syntax_problems(tree: exp.Expression) -> list[str]:
    """ASOF joins whose MATCH_CONDITION is not `<spine time> >= <view column>` of the joined
    view, or whose ON is not equalities of a view column and another column, ANDed."""
    bad = []
    for join in asof_joins(tree):
        right = join.this.alias_or_name
        match = join.args.get("match_condition")
        if not (isinstance(match, exp.GTE) and isinstance(match.left, exp.Column)
                and isinstance(match.right, exp.Column) and match.left.name == "__fs_t"
                and match.right.table == right and match.left.table != right):
            bad.append(f"MATCH_CONDITION {match.sql('snowflake') if match else None}")
        for cond in _conjuncts(join.args["on"]) if join.args.get("on") else [None]:
            if not (isinstance(cond, exp.EQ) and all(isinstance(c, exp.Column) for c in (cond.left, cond.right))
                    and sorted([cond.left.table == right, cond.right.table == right]) == [False, True]):
                bad.append(f"ON {cond.sql('snowflake') if cond else None}")
    return bad


def tie_problems(cte: exp.Expression, keys: list[str], ts: str, created: str | None) -> list[str]:
    """What could make a view's row depend on which tied row an ASOF JOIN returns.

    Without a created timestamp nothing can: rows tied on (keys, e) are the rule's own open
    case. With one: an ASOF may only read the view's keys and event time (tied rows are then
    identical), and the row must be chosen by a row_number() whose ORDER BY puts the created
    time descending with NULLs last.
    """
    if created is None:
        return []
    bad = []
    for join in asof_joins(cte):
        side = join.this
        selected = sorted(e.alias_or_name for e in side.this.expressions) if isinstance(side, exp.Subquery) else None
        if selected != sorted([*keys, ts]):
            bad.append(f"ASOF JOIN reads more than the keys and {ts}: {side.sql('snowflake')[:80]}")
    ranked = any(
        isinstance(w.this, exp.RowNumber) and any(
            isinstance(o, exp.Ordered) and isinstance(o.this, exp.Column) and o.this.name == created
            and o.args.get("desc") and o.args.get("nulls_first") is False
            for o in (w.args.get("order").expressions if w.args.get("order") else []))
        for w in cte.find_all(exp.Window))
    if not ranked:
        bad.append(f"no row_number() ordered by {created} desc nulls last")
    return bad


def test_checks_find_what_they_look_for():
    """The checks are not vacuous: each flags its problem, and passes the fixed form."""
    bad = sqlglot.parse_one("select row_number() over () as r, row_number() over (order by x) as s from t",
                            read="snowflake")
    assert windows_without_order(bad) == ["ROW_NUMBER() OVER ()"]
    asof = ("select * from p as q asof join (select k, e from v) as f match_condition ({match}) on {on}"
            " qualify row_number() over (partition by q.k order by f.e desc, f.c desc{nulls}) = 1")
    good = sqlglot.parse_one(asof.format(match="q.__fs_t >= f.e", on="f.k = q.k and q.j = f.j", nulls=" nulls last"),
                             read="snowflake")
    assert asof_syntax_problems(good) == [] and tie_problems(good, ["k"], "e", "c") == []
    for match, on in [("q.__fs_t > f.e", "f.k = q.k"), ("f.e <= q.__fs_t", "f.k = q.k"),
                      ("q.__fs_t >= f.e", "f.k = q.k and f.e >= q.__fs_t - 1"), ("q.__fs_t >= f.e", "f.k = f.j")]:
        tree = sqlglot.parse_one(asof.format(match=match, on=on, nulls=" nulls last"), read="snowflake")
        assert len(asof_syntax_problems(tree)) == 1, (match, on)
    for nulls in ("", " nulls first"):  # Snowflake sorts NULL first in a descending order by default
        tree = sqlglot.parse_one(asof.format(match="q.__fs_t >= f.e", on="f.k = q.k", nulls=nulls), read="snowflake")
        assert tie_problems(tree, ["k"], "e", "c") == ["no row_number() ordered by c desc nulls last"]
    wide = sqlglot.parse_one(asof.format(match="q.__fs_t >= f.e", on="f.k = q.k", nulls=" nulls last")
                             .replace("select k, e from v", "select * from v"), read="snowflake")
    assert len(tie_problems(wide, ["k"], "e", "c")) == 1 and tie_problems(wide, ["k"], "e", None) == []
    mixed = sqlglot.parse_one("select * from f where f.e >= datetime_add(cast(q.t as datetime), interval -5 second)",
                              read="bigquery")
    assert len(datetime_mixed_with_timestamp(mixed)) == 1
    fixed = sqlglot.parse_one(
        "select * from f where f.e >= timestamp(datetime_add(cast(q.t as datetime), interval -5 second))"
        " and f.e >= cast(datetime_add(cast(q.t as datetime), interval -5 second) as timestamp)"
        " and f.e >= timestamp_sub(q.t, interval 5 second)", read="bigquery")
    assert datetime_mixed_with_timestamp(fixed) == []


# ---- per engine and statement ---------------------------------------------------------------

CASES = [(e, s) for e in ENGINES for s in STATEMENTS]


@pytest.mark.parametrize("engine", list(ENGINES))
def test_compiles_every_statement(compiled, engine):
    sql = compiled(engine)
    assert sorted(sql) == sorted(STATEMENTS)
    for name, text in sql.items():
        assert "point_in_time_join" not in text and "__fs_parsing" not in text, name
        assert ("row_number()" in text.lower()) == (name in JOINS), name


@pytest.mark.parametrize(("engine", "statement"), CASES)
def test_parses_in_engine_dialect(compiled, engine, statement):
    trees = _parse(engine, compiled(engine)[statement])  # raises sqlglot.errors.ParseError
    assert len(trees) == 1 and isinstance(trees[0], exp.Query)


@pytest.mark.parametrize(("engine", "statement"), CASES)
def test_every_ranking_window_has_order_by(compiled, engine, statement):
    tree = _parse(engine, compiled(engine)[statement])[0]
    assert windows_without_order(tree) == []


# Every statement reads a view with a ttl (user_order_features 2d, user_txn_features 10m), so
# every one has the floor; test_bigquery_ttl_floor_is_compiled keeps that true.
@pytest.mark.parametrize("statement", JOINS)
def test_bigquery_no_datetime_timestamp_mix(compiled, statement):
    tree = _parse("bigquery", compiled("bigquery")[statement])[0]
    assert datetime_mixed_with_timestamp(tree) == []


@pytest.mark.parametrize("statement", JOINS)
def test_bigquery_ttl_floor_is_compiled(compiled, statement):
    """Every statement reads a view with a ttl, so the BigQuery check above has a floor to look at."""
    tree = _parse("bigquery", compiled("bigquery")[statement])[0]
    floors = [n for n in tree.find_all(exp.GTE) if "__fs_t" in n.right.sql()]
    assert floors, "no ttl floor (event_ts >= <t - ttl>) found"


# ---- Snowflake: ASOF JOIN where exact ---------------------------------------------------------

def _view_ctes(sql: str, tree: exp.Expression) -> dict[str, exp.Expression]:
    """view name -> the body of its CTE (each starts with a `-- <view>` comment)."""
    names = dict(re.findall(r"(__fs_v\d+) as \(\s*-- (\S+)", sql))
    return {names[cte.alias]: cte.this for cte in tree.find_all(exp.CTE) if cte.alias in names}


def test_snowflake_uses_asof_join_where_it_is_exact(compiled):
    """Training sets: a view without a created timestamp is read by one ASOF JOIN with a
    MATCH_CONDITION; a view with one by a plan no choice among ASOF's ties can change. The
    sync's snapshot (spine_time='constant') keeps the constant-time plan, without ASOF."""
    sql = compiled("snowflake")
    kinds = set()
    for statement in TRAINING:
        tree = _parse("snowflake", sql[statement])[0]
        assert asof_syntax_problems(tree) == [], statement
        ctes = _view_ctes(sql[statement], tree)
        assert ctes, statement
        for view, cte in ctes.items():
            meta = FEATURE_VIEWS[view]
            created = meta.get("created_timestamp")
            kinds.add(created is None)
            if created is None:
                joins = asof_joins(cte)
                assert len(joins) == 1 and joins[0].args.get("match_condition"), (statement, view)
            assert tie_problems(cte, meta["keys"], meta["timestamp"], created) == [], (statement, view)
    assert kinds == {True, False}  # the example has views of both kinds
    for view in SYNC_VIEWS:
        assert asof_joins(_parse("snowflake", sql[f"sync:{view}"])[0]) == [], view


# ---- Snowflake's plan, run on DuckDB ------------------------------------------------------------
# The Snowflake SQL of the point-in-time fixture project (tests/fixtures/pit_project),
# translated by sqlglot, runs on test_point_in_time's random data against the reference.
# Snowflake's ASOF JOIN is a left outer join (unmatched rows null-padded): on DuckDB that
# is ASOF LEFT JOIN with the match condition in ON. sqlglot carries over what differs
# between the two, e.g. that Snowflake sorts NULL first in a descending order.

# The calls whose plan is Snowflake's or default__'s (the others name DuckDB plans).
SNOWFLAKE_CALLS = {name: kwargs for name, kwargs in pit.CALLS.items()
                   if kwargs.get("implementation") in (None, "default")}


def to_duckdb(snowflake_sql: str) -> str:
    tree = sqlglot.parse_one(snowflake_sql, read="snowflake")
    for join in asof_joins(tree):
        match = join.args["match_condition"]
        join.set("match_condition", None)
        join.set("side", "LEFT")
        join.set("on", exp.and_(join.args.get("on"), match) if join.args.get("on") else match)
    return tree.sql("duckdb")


@pytest.fixture(scope="module")
def snowflake_pit_project(tmp_path_factory) -> Path:
    """The point-in-time fixture project with the checkout's macros and a dummy Snowflake profile."""
    _adapter_class("snowflake")
    project = tmp_path_factory.mktemp("pit_snowflake") / "pit_project"
    shutil.copytree(pit.FIXTURE, project)
    shutil.copytree(REPO / "macros", project / "macros")
    # database "pit", schema "main": the relations are named as in pit's scratch database.
    profile = yaml.safe_load((PROFILES / "profiles.yml").read_text())["feature_store_example"]["outputs"]["snowflake"]
    (project / "profiles.yml").write_text(yaml.safe_dump(
        {"pit_fixture": {"target": "snowflake", "outputs": {"snowflake": dict(profile, database="pit")}}}))
    return project


def _compile_snowflake_pit(project: Path, kwargs: dict):
    """dbt's result of compiling one point_in_time_join call in ``project`` for Snowflake."""
    from dbt.cli.main import dbtRunner

    with _offline("snowflake", project), redirect_stdout(io.StringIO()):
        return dbtRunner().invoke([
            "compile", "--inline", pit.call_text(kwargs), "--log-level", "none", "--no-populate-cache",
            "--no-write-json", "--project-dir", str(project), "--profiles-dir", str(project)])


@pytest.fixture(scope="module")
def snowflake_pit(snowflake_pit_project) -> dict[str, str]:
    """name -> the DuckDB translation of the Snowflake SQL of each call, varying and constant time."""
    calls = dict(SNOWFLAKE_CALLS)
    for name, kwargs in pit.CONSTANT_CALLS.items():  # each with its varying-time twin
        calls.update({f"constant:{name}": dict(kwargs, spine_time="constant"), f"varying:{name}": kwargs})
    out = {}
    for name, kwargs in calls.items():
        result = _compile_snowflake_pit(snowflake_pit_project, kwargs)
        assert result.success, (name, result.exception)
        out[name] = result.result.results[0].node.compiled_code
    assert "asof join" in out["auto"].lower()  # what this is about
    return {name: to_duckdb(sql) for name, sql in out.items()}


@pytest.mark.parametrize("implementation", ["asof", "range", "lateral"])
def test_snowflake_refuses_other_engines_plans(snowflake_pit_project, implementation):
    result = _compile_snowflake_pit(snowflake_pit_project, dict(features=["va"], implementation=implementation))
    assert not result.success
    assert f"implementation='{implementation}' is a DuckDB or Postgres plan" in str(result.exception)


@pytest.fixture(scope="module")
def scratch():
    """An in-memory DuckDB laid out like test_point_in_time's (catalog "pit")."""
    import duckdb

    con = duckdb.connect(config={"threads": 1})
    con.execute("ATTACH ':memory:' AS pit")
    for name, ddl in pit.DDL.items():
        con.execute(f"CREATE TABLE pit.main.{name} ({ddl})")
    con.execute(f"CREATE TABLE spine ({pit.SPINE_DDL})")
    yield con
    con.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(pit.TIE)
@given(pit.data)
def test_snowflake_plan_matches_the_reference(snowflake_pit, scratch, data):
    """Snowflake's plan (and default__, as Snowflake SQL) gives the reference's rows."""
    pit.check_plans(snowflake_pit, SNOWFLAKE_CALLS, scratch, data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(pit.TIE_AT(pit.at(20)))  # vd's row exactly one ttl old; va's tie on e broken by created
@example(pit.TIE_AT(pit.at(21)))  # under as_of_created va's newest row is not known yet
@given(st.fixed_dictionaries({"views": st.fixed_dictionaries({v: pit.feature_rows(v) for v in pit.VIEWS}),
                              "spine": pit.constant_spines()}))
def test_snowflake_constant_time_plan_matches_the_reference(snowflake_pit, scratch, data):
    """The snapshot's plan (default__'s constant-time plan) equals Snowflake's varying-time plan and the reference."""
    pairs = {name: (snowflake_pit[f"constant:{name}"], snowflake_pit[f"varying:{name}"]) for name in pit.CONSTANT_CALLS}
    pit.check_constant_plans(pairs, scratch, data)
