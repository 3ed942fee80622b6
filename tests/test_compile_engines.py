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
type rules that can be checked on the text alone.

Needs the `engines` extra: pip install -e '.[test,engines]'.
"""

from __future__ import annotations

import io
import socket
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES, REPO, copy_project

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


def _online_views() -> list[str]:
    """The feature views the sync serves (meta feature_store, online not false)."""
    spec = yaml.safe_load((REPO / "models" / "features" / "_features.yml").read_text())
    views = []
    for model in spec["models"]:
        meta = ((model.get("config") or {}).get("meta") or model.get("meta") or {}).get("feature_store")
        if meta is not None and meta.get("online", True) is not False:
            views.append(model["name"])
    return sorted(views)


SYNC_VIEWS = _online_views()
STATEMENTS = [*TRAINING, *(f"sync:{v}" for v in SYNC_VIEWS)]


def sync_call(view: str) -> str:
    """The call feature_store.snapshot compiles for one view (same arguments, same names)."""
    return macro_call("point_in_time_join", spine="__fs_spine", timestamp="__fs_ts", features=[view],
                      full_feature_names=False, row_id="__fs_row", include_timestamps=True,
                      spine_time="constant")


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


def _compile_engine(engine: str, workdir: Path) -> dict[str, str]:
    adapter = _adapter_class(engine)
    project = copy_project(workdir / f"project_{engine}")
    common = ["--log-level", "none", "--no-populate-cache", "--no-write-json",
              "--target-path", str(workdir / f"target_{engine}"), "--project-dir", str(project),
              "--profiles-dir", str(PROFILES), "--target", engine]
    sql: dict[str, str] = {}
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
        result = _invoke(["compile", "--select", *TRAINING, *common])
        for r in result.result.results:
            if r.node.name in TRAINING:
                sql[r.node.name] = r.node.compiled_code
        for view in SYNC_VIEWS:
            result = _invoke(["compile", "--inline", sync_call(view), *common])
            sql[f"sync:{view}"] = result.result.results[0].node.compiled_code
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


def test_checks_find_what_they_look_for():
    """The checks are not vacuous: each flags its problem, and passes the fixed form."""
    bad = sqlglot.parse_one("select row_number() over () as r, row_number() over (order by x) as s from t",
                            read="snowflake")
    assert windows_without_order(bad) == ["ROW_NUMBER() OVER ()"]
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
        assert "row_number()" in text.lower(), name


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
@pytest.mark.parametrize("statement", STATEMENTS)
def test_bigquery_no_datetime_timestamp_mix(compiled, statement):
    tree = _parse("bigquery", compiled("bigquery")[statement])[0]
    assert datetime_mixed_with_timestamp(tree) == []


@pytest.mark.parametrize("statement", STATEMENTS)
def test_bigquery_ttl_floor_is_compiled(compiled, statement):
    """Every statement reads a view with a ttl, so the BigQuery check above has a floor to look at."""
    tree = _parse("bigquery", compiled("bigquery")[statement])[0]
    floors = [n for n in tree.find_all(exp.GTE) if "__fs_t" in n.right.sql()]
    assert floors, "no ttl floor (event_ts >= <t - ttl>) found"
