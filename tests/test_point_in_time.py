"""The point-in-time join macro: semantics, plans, errors, and dbt/Python agreement.

The property tests compile the macro once per call shape (dbt, in-process) for the
small feature views of tests/fixtures/pit_project, then for every hypothesis example
load random rows into those views' tables in a scratch DuckDB database and run the
compiled SQL; the result must equal tests/pit_reference.py, a brute-force reading of
docs/point-in-time.md. dbt is never run per example.

View ve's columns only work quoted (`order`, `userId`) and its text key's values differ
only in leading zeros; the property tests cover it like every view, and the last part
builds the fixture with dbt to run the macro in dbt models and through the Python API.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from conftest import REPO, run_dbt
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pit_reference import Requested, View, point_in_time_join

from feature_store.compiler import macro_call
from feature_store.offline import get_historical_features
from feature_store.registry import Registry
from feature_store.snapshot import snapshot

pytestmark = pytest.mark.dbt

FIXTURE = Path(__file__).parent / "fixtures" / "pit_project"
BASE = datetime(2026, 1, 1)
SPINE_COLUMNS = ["user_id", "bank", "acct", "t", "label", "rid"]

# The fixture views (tests/fixtures/pit_project/models/views/_views.yml), for the reference.
VIEWS = {
    "va": dict(keys=["user_id"], features=["a_int", "a_str"], created="c", ttl=timedelta(hours=3)),
    "vb": dict(keys=["user_id"], features=["b_int"], created=None, ttl=None),
    "vc": dict(keys=["bank", "acct"], features=["c_val", "shared"], created="c", ttl=None),
    "vd": dict(keys=["user_id"], features=["d_flag", "shared"], created=None, ttl=timedelta(hours=2)),
    "ve": dict(keys=["bank"], features=["order", "userId"], created="c", ttl=None),
}
VIEW_COLUMNS = {name: [*v["keys"], "e", *(["c"] if v["created"] else []), *v["features"]] for name, v in VIEWS.items()}
DDL = {
    "va": "user_id bigint, e timestamp, c timestamp, a_int bigint, a_str varchar",
    "vb": "user_id bigint, e timestamp, b_int bigint",
    "vc": "bank varchar, acct bigint, e timestamp, c timestamp, c_val double, shared bigint",
    "vd": "user_id bigint, e timestamp, d_flag boolean, shared bigint",
    "ve": 'bank varchar, e timestamp, c timestamp, "order" bigint, "userId" varchar',
}
SPINE_DDL = "user_id bigint, bank varchar, acct bigint, t timestamp, label varchar, rid bigint"

MAIN = ["va", "vb", "vc:c_val", "vd:d_flag", "ve"]
# name -> macro keyword arguments. Every shape runs on DuckDB's own plan and on the
# portable default__ (and the forced ASOF / range plans), all against one reference.
CALLS = {
    "auto": dict(features=MAIN, include_timestamps=True),
    "default": dict(features=MAIN, include_timestamps=True, implementation="default"),
    "asof": dict(features=MAIN, include_timestamps=True, implementation="asof"),
    "range": dict(features=MAIN, include_timestamps=True, implementation="range"),
    "full_names": dict(features=["vc", "vd", "va:a_int", "ve"], full_feature_names=True),
    "full_names_default": dict(features=["vc", "vd", "va:a_int", "ve"], full_feature_names=True,
                               implementation="default"),
    "ttl_map": dict(features=["va", "vb", "vc:c_val"], ttl_override={"va": "1h", "vb": "150m", "vc": "5h"},
                    spine="select * from spine"),
    "ttl_map_default": dict(features=["va", "vb", "vc:c_val"], ttl_override={"va": "1h", "vb": "150m", "vc": "5h"},
                            spine=" (select * from spine) ", implementation="default"),
    "ttl_all": dict(features=["vd:d_flag", "va", "vb"], ttl_override="4h"),
    "ttl_lifted": dict(features=["va", "vd:d_flag"], ttl_override={"va": None}),
    "created": dict(features=["va", "vc", "vb", "ve:userId"], as_of_created=True, include_timestamps=True,
                    full_feature_names=True),
    "created_default": dict(features=["va", "vc", "vb", "ve:userId"], as_of_created=True, include_timestamps=True,
                            full_feature_names=True, implementation="default"),
    "created_asof": dict(features=["va", "vc", "vb", "ve:userId"], as_of_created=True, include_timestamps=True,
                         full_feature_names=True, implementation="asof"),
    "row_id": dict(features=["vd", "va:a_str", "va"], row_id="rid"),
    "row_id_default": dict(features=["vd", "va:a_str", "va"], row_id="rid", implementation="default"),
}


# -- dbt, in-process: a compile costs ~0.1-0.3 s once the project is parsed -----------------

class CompileFailed(Exception):
    pass


def compile_inline(project: Path, call: str) -> str:
    """Compile one Jinja call in ``project`` with dbt; CompileFailed carries dbt's messages."""
    from dbt.cli.main import dbtRunner

    with contextlib.chdir(project), contextlib.redirect_stdout(io.StringIO()):
        res = dbtRunner().invoke([
            "compile", "--inline", call, "--project-dir", str(project), "--profiles-dir", str(project),
            "--log-level", "none", "--no-populate-cache", "--no-write-json"])
    if res.success:
        return res.result.results[0].node.compiled_code
    messages, exc = [], res.exception
    while exc is not None:  # parse-time errors wrap ours: keep every message in the chain
        messages.append(str(getattr(exc, "msg", "") or exc))
        exc = exc.__cause__ or exc.__context__
    raise CompileFailed("\n".join(messages))


def call_text(kwargs: dict) -> str:
    kwargs = dict(kwargs)
    return macro_call("point_in_time_join", spine=kwargs.pop("spine", "spine"), timestamp="t", **kwargs)


def dbt_in_process(project: Path, *args: str) -> None:
    from dbt.cli.main import dbtRunner

    with contextlib.chdir(project), contextlib.redirect_stdout(io.StringIO()):
        res = dbtRunner().invoke([*args, "--project-dir", str(project), "--profiles-dir", str(project),
                                  "--log-level", "none"])
    assert res.success, res.exception


@pytest.fixture(scope="module")
def pit_project(tmp_path_factory) -> Path:
    """The fixture project with the checkout's macros: parsed, its (empty) tables created.

    The tables are created here rather than by `dbt run`: dbt-duckdb keeps its
    connection open for the life of the process, which would stop the read-only
    connections of the Python API, and a subprocess costs seconds.
    """
    project = tmp_path_factory.mktemp("pit") / "pit_project"
    shutil.copytree(FIXTURE, project)
    shutil.copytree(REPO / "macros", project / "macros")
    con = duckdb.connect(str(project / "pit.duckdb"))
    for name, ddl in DDL.items():
        con.execute(f"CREATE TABLE {name} ({ddl})")
    con.execute("CREATE TABLE spine_without_account AS SELECT 1::BIGINT AS user_id, TIMESTAMP '2026-01-01' AS t")
    con.close()
    dbt_in_process(project, "parse")  # the manifest, for Registry.load and the compiles
    return project


@pytest.fixture(scope="module")
def compiled(pit_project) -> dict[str, str]:
    return {name: compile_inline(pit_project, call_text(kwargs)) for name, kwargs in CALLS.items()}


@pytest.fixture(scope="module")
def scratch() -> duckdb.DuckDBPyConnection:
    """An in-memory database laid out like the fixture's warehouse (catalog "pit")."""
    con = duckdb.connect(config={"threads": 1})  # tiny tables: one thread has less overhead
    con.execute("ATTACH ':memory:' AS pit")
    for name, ddl in DDL.items():
        con.execute(f"CREATE TABLE pit.main.{name} ({ddl})")
    con.execute(f"CREATE TABLE spine ({SPINE_DDL})")
    yield con
    con.close()


# -- random data ----------------------------------------------------------------------------

def at(slot: int) -> datetime:
    """Half-hour slots from BASE: ttls are whole hours, so t - ttl hits rows exactly."""
    return BASE + timedelta(minutes=30 * slot)


event_times = st.integers(-1, 24).map(lambda s: None if s < 0 else at(s))  # NULL event times never match
lateness = st.one_of(st.none(), st.integers(0, 4))  # created = e + 30 min * n, or NULL
small_int = st.one_of(st.none(), st.integers(-3, 3))


def feature_rows(view: str):
    v = VIEWS[view]
    key = {"user_id": st.sampled_from([1, 2, 3, None])}
    # Text keys that differ only in leading zeros: read as numbers, they would all be 7.
    key.update(bank=st.sampled_from(["007", "07", "7", None]), acct=st.sampled_from([1, 2, None]))
    values = {
        "a_int": small_int, "a_str": st.one_of(st.none(), st.sampled_from(["p", "q", "r"])),
        "b_int": small_int, "c_val": st.one_of(st.none(), st.floats(-10, 10, allow_nan=False)),
        "shared": small_int, "d_flag": st.one_of(st.none(), st.booleans()),
        "order": small_int, "userId": st.one_of(st.none(), st.sampled_from(["Ab", "aB", "x"])),
    }
    row = st.fixed_dictionaries({
        **{k: key[k] for k in v["keys"]}, "e": event_times,
        **({"late": lateness} if v["created"] else {}),
        **{f: values[f] for f in v["features"]},
    })

    def finish(rows):
        out, seen = [], set()
        for r in rows:
            r = dict(r)
            if v["created"]:
                late = r.pop("late")
                r["c"] = None if late is None or r["e"] is None else r["e"] + timedelta(minutes=30 * late)
            # (keys, e, created) identify a row: full ties are undefined by the rule.
            ident = tuple(r[k] for k in v["keys"]) + (r["e"], r.get("c"))
            if ident not in seen:
                seen.add(ident)
                out.append({c: r[c] for c in VIEW_COLUMNS[view]})
        return out

    return st.lists(row, max_size=14).map(finish)


spine_times = st.tuples(
    st.integers(-4, 30),  # before any feature row .. after all of them
    st.sampled_from([timedelta(0), timedelta(0), timedelta(microseconds=-1), timedelta(minutes=1)]),
).map(lambda p: at(p[0]) + p[1])


@st.composite
def spines(draw, allow_null_time=True):
    rows = draw(st.lists(st.fixed_dictionaries({
        "user_id": st.sampled_from([1, 2, 3, 4, None]),  # 4: an entity without feature rows
        "bank": st.sampled_from(["007", "07", "7", "0007", None]),  # 0007: a key without feature rows
        "acct": st.sampled_from([1, 2, None]),
        "t": (st.one_of(spine_times, st.none()) if allow_null_time else spine_times),
        "label": st.sampled_from(["l0", "l1"]),
    }), max_size=16))
    dupes = draw(st.lists(st.integers(0, max(len(rows) - 1, 0)), max_size=4)) if rows else []
    rows = rows + [dict(rows[i]) for i in dupes]  # duplicate spine rows stay duplicates
    order = draw(st.permutations(range(len(rows))))
    for row, rid in zip(rows, order):
        row["rid"] = rid
    return rows


data = st.fixed_dictionaries({"views": st.fixed_dictionaries({v: feature_rows(v) for v in VIEWS}),
                              "spine": spines()})


# -- reference ------------------------------------------------------------------------------

def reference_views(rows: dict[str, list[dict]]) -> dict[str, View]:
    return {name: View(name, v["keys"], v["features"], v["created"], v["ttl"], rows=rows[name])
            for name, v in VIEWS.items()}


def requested(kwargs: dict) -> list[Requested]:
    out = []
    for ref in kwargs["features"]:
        view, _, feature = ref.partition(":")
        for f in ([feature] if feature else VIEWS[view]["features"]):
            name = f"{view}__{f}" if kwargs.get("full_feature_names") else f
            if not any(r.view == view and r.feature == f for r in out):
                out.append(Requested(view, f, name))
    return out


def parse_ttl(text):
    if text is None:
        return None
    n, unit = int(text[:-1]), text[-1]
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[unit]: n})


def expected(kwargs: dict, views: dict[str, View], spine: list[dict]) -> tuple[list[str], list[tuple]]:
    override = kwargs.get("ttl_override")
    if isinstance(override, dict):
        ttl = {name: parse_ttl(value) for name, value in override.items()}
    elif override is not None:
        ttl = {name: parse_ttl(override) for name in views}
    else:
        ttl = None
    req = requested(kwargs)
    rows = point_in_time_join(spine, "t", views, req, ttl, kwargs.get("as_of_created", False),
                              kwargs.get("include_timestamps", False))
    columns = list(SPINE_COLUMNS)
    if "row_id" not in kwargs:
        columns.append("spine_row_number")
        by_time = sorted(rows, key=lambda r: (r["t"] is None, r["t"] or datetime.min))
        for i, row in enumerate(by_time, 1):
            row["spine_row_number"] = i
    columns += [r.name for r in req]
    if kwargs.get("include_timestamps"):
        for view in dict.fromkeys(r.view for r in req):
            columns += [f"{view}__event_timestamp", f"{view}__created_timestamp"]
    if "row_id" in kwargs:
        rows.sort(key=lambda r: r["rid"])
    return columns, [tuple(r[c] for c in columns) for r in rows]


ARROW_TYPES = {"bigint": pa.int64(), "varchar": pa.string(), "timestamp": pa.timestamp("us"),
               "double": pa.float64(), "boolean": pa.bool_()}


def arrow_table(rows: list[dict], ddl: str) -> pa.Table:
    """``rows`` as an Arrow table typed like ``ddl`` ("name type, ..."): inserting it is
    ~50x faster than executemany, which is most of an example's cost otherwise."""
    schema = pa.schema([(name.strip('"'), ARROW_TYPES[typ]) for name, typ in (c.split() for c in ddl.split(", "))])
    return pa.Table.from_pylist([{c: r[c] for c in schema.names} for r in rows], schema=schema)


def fill(con, table: str, rows: list[dict], ddl: str) -> None:
    con.execute(f"DELETE FROM {table}")
    if rows:
        incoming = arrow_table(rows, ddl)
        con.register("__incoming", incoming)
        con.execute(f"INSERT INTO {table} SELECT * FROM __incoming")
        con.unregister("__incoming")


def load(con, views: dict[str, list[dict]], spine: list[dict]) -> None:
    for name, rows in views.items():
        fill(con, f"pit.main.{name}", rows, DDL[name])
    fill(con, "spine", spine, SPINE_DDL)


def run(con, sql: str, order_by: str) -> tuple[list[str], list[tuple]]:
    cur = con.execute(f"SELECT * FROM ({sql}) AS pit ORDER BY {order_by}")
    rows = cur.fetchall()
    return [d[0] for d in cur.description], rows


# -- properties -----------------------------------------------------------------------------

TIE = {  # ties on e broken by created (NULL loses), NULL values kept, both ttl edges, NULL keys
    "views": {
        "va": [{"user_id": 1, "e": at(20), "c": at(22), "a_int": None, "a_str": "late"},
               {"user_id": 1, "e": at(20), "c": at(20), "a_int": 1, "a_str": "early"},
               {"user_id": 1, "e": at(14), "c": None, "a_int": 7, "a_str": "boundary"}],
        "vb": [{"user_id": 1, "e": at(3), "b_int": 5}, {"user_id": None, "e": at(1), "b_int": 9}],
        "vc": [{"bank": "x", "acct": 1, "e": at(20), "c": None, "c_val": 1.5, "shared": 1},
               {"bank": "x", "acct": 1, "e": at(20), "c": at(21), "c_val": None, "shared": 2}],
        "vd": [{"user_id": 1, "e": at(16), "d_flag": True, "shared": 3}],
        "ve": [{"bank": "x", "e": at(20), "c": at(22), "order": None, "userId": "late"},
               {"bank": "x", "e": at(20), "c": None, "order": 1, "userId": "unknown"},
               {"bank": "y", "e": at(2), "c": at(2), "order": 0, "userId": "old"}],
    },
    "spine": [
        {"user_id": 1, "bank": "x", "acct": 1, "t": at(20), "label": "l0", "rid": 3},
        {"user_id": 1, "bank": "x", "acct": 1, "t": at(20), "label": "l0", "rid": 0},  # duplicate
        {"user_id": 1, "bank": "x", "acct": 1, "t": at(20) - timedelta(microseconds=1), "label": "l1", "rid": 1},
        {"user_id": None, "bank": None, "acct": 1, "t": at(21), "label": "l1", "rid": 2},
        {"user_id": 4, "bank": "z", "acct": 2, "t": at(-3), "label": "l0", "rid": 4},
        {"user_id": 1, "bank": "y", "acct": 1, "t": at(21), "label": "l1", "rid": 5},
    ],
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(TIE)
@given(data)
def test_every_plan_matches_the_reference(compiled, scratch, data):
    check_plans(compiled, CALLS, scratch, data)


def check_plans(compiled, calls, con, data, load=load, run=run):
    """Every call's compiled SQL, run on ``con`` (``load``/``run``: the engine's), equals the reference."""
    views = reference_views(data["views"])
    load(con, data["views"], data["spine"])
    for name, kwargs in calls.items():
        columns, rows = comparable(*run(con, compiled[name], kwargs.get("row_id", "spine_row_number")))
        want_columns, want_rows = comparable(*expected(kwargs, views, data["spine"]))
        assert columns == want_columns, name
        assert rows == want_rows, name


def comparable(columns: list[str], rows: list[tuple]) -> tuple[list[str], list[tuple]]:
    """Rows as a call's result can be compared: with the added ``spine_row_number``, the rows
    as a sorted multiset without it, once the numbers are checked (1..n, following the spine's
    time). Rows with equal time and keys may take their numbers in any order."""
    if "spine_row_number" not in columns:
        return columns, rows
    i, t = columns.index("spine_row_number"), columns.index("t")
    assert sorted(r[i] for r in rows) == list(range(1, len(rows) + 1))
    times = [r[t] for r in sorted(rows, key=lambda r: r[i])]
    known = [v for v in times if v is not None]  # engines differ on where NULLs sort
    assert known == sorted(known)
    return columns, sorted((r[:i] + r[i + 1:] for r in rows), key=repr)


def test_the_tie_example_reads_as_intended(compiled, scratch):
    """The hand-written example above, spelled out (the property proves the rest)."""
    load(scratch, TIE["views"], TIE["spine"])
    _, rows = run(scratch, compiled["auto"], "spine_row_number")
    by_rid = {r[5]: dict(zip(["a_int", "a_str", "b_int", "c_val", "d_flag"], r[7:12])) for r in rows}
    by_label = [by_rid[row["rid"]] for row in TIE["spine"]]  # in the spine's order
    assert by_label[0] == {"a_int": None, "a_str": "late", "b_int": 5, "c_val": None, "d_flag": True}
    assert by_label[0] == by_label[1]  # duplicate spine rows stay duplicates
    assert by_label[0]["d_flag"] is True  # vd's 08:00 row is exactly 2h (its ttl) old: still in
    assert by_label[2]["a_str"] == "boundary"  # 1 us before the 10:00 rows: the 07:00 row, 1 us inside 3h
    assert by_label[3]["d_flag"] is None and by_label[5]["d_flag"] is None  # 2h + 30 min old: expired
    assert by_label[5]["a_str"] == "late"
    assert all(v is None for v in by_label[3].values())  # NULL user_id matches nothing
    assert all(v is None for v in by_label[4].values())  # before any row, unknown entity


def test_duckdb_plan_choice(compiled):
    """DuckDB: range join where a ttl bounds it, ASOF where none does; default__ stays portable."""
    auto = compiled["auto"].lower()
    assert auto.count("asof join") == 3  # vb, vc and ve have no ttl
    assert auto.count("qualify") == 2  # va and vd have one
    for name in ("default", "full_names_default", "ttl_map_default", "created_default"):
        sql = compiled[name].lower()
        assert "qualify" not in sql and "asof" not in sql, name
    assert "asof" not in compiled["ttl_map"].lower()  # every view got a ttl
    assert "asof join" not in compiled["created_asof"].split("-- vb")[0].lower()  # created rows need the range join



# -- spine_time='constant': the latest-per-entity plan of the sync's snapshot ---------------

# name -> the calls of CALLS' shapes with spine_time='constant', on DuckDB's plan and on
# default__; each must give the rows of the same call without it (the varying plan).
CONSTANT_CALLS = {
    "auto": dict(features=MAIN, include_timestamps=True),
    "ttl_map": dict(features=["va", "vb", "vc:c_val"], ttl_override={"va": "1h", "vb": "150m", "vc": "5h"},
                    include_timestamps=True),
    "ttl_lifted": dict(features=["va", "vd:d_flag"], ttl_override={"va": None}),
    "created": dict(features=["va", "vc", "vb"], as_of_created=True, include_timestamps=True,
                    full_feature_names=True),
    "row_id": dict(features=["vd", "va:a_str", "va"], row_id="rid"),
}
CONSTANT_CALLS.update({f"{name}_default": dict(kwargs, implementation="default")
                       for name, kwargs in list(CONSTANT_CALLS.items())})


@pytest.fixture(scope="module")
def compiled_constant(pit_project) -> dict[str, tuple[str, str]]:
    """name -> (the constant-time plan, the varying plan of the same call)."""
    return {name: (compile_inline(pit_project, call_text(dict(kwargs, spine_time="constant"))),
                   compile_inline(pit_project, call_text(kwargs)))
            for name, kwargs in CONSTANT_CALLS.items()}


@st.composite
def constant_spines(draw):
    """A spine whose rows share one time (a few NULL times too): before, between, on and
    after the feature rows, so rows in the future of t and at the ttl's edge occur."""
    t = draw(spine_times)
    return [dict(row, t=None if row["t"] is None else t) for row in draw(spines())]


def check_constant_plans(compiled_constant, con, data, load=load, run=run, calls=None):
    """Each constant-time call equals its varying-time twin and the reference (``load``/``run``: the engine's)."""
    views = reference_views(data["views"])
    load(con, data["views"], data["spine"])
    for name, kwargs in (calls or CONSTANT_CALLS).items():
        constant_sql, varying_sql = compiled_constant[name]
        order_by = kwargs.get("row_id", "spine_row_number")
        columns, rows = comparable(*run(con, constant_sql, order_by))
        assert (columns, rows) == comparable(*run(con, varying_sql, order_by)), name
        assert (columns, rows) == comparable(*expected(kwargs, views, data["spine"])), name


TIE_AT = lambda t: {"views": TIE["views"], "spine": [dict(r, t=t) for r in TIE["spine"]]}  # noqa: E731


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(TIE_AT(at(20)))  # vd's row exactly one ttl old; va's tie on e broken by created
@example(TIE_AT(at(21)))  # under as_of_created va's newest row (created at 22) is not known yet
@given(st.fixed_dictionaries({"views": st.fixed_dictionaries({v: feature_rows(v) for v in VIEWS}),
                              "spine": constant_spines()}))
def test_constant_time_plan_matches_the_varying_plan_and_the_reference(compiled_constant, scratch, data):
    check_constant_plans(compiled_constant, scratch, data)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data)
def test_constant_time_plan_is_right_on_a_spine_of_many_times(compiled_constant, scratch, data):
    """spine_time='constant' only chooses the plan: a spine that breaks the promise gets
    the rule's rows all the same (one pass over the window per distinct time)."""
    check_constant_plans(compiled_constant, scratch, data)


def test_constant_time_plan_shape(compiled_constant):
    """No range join of the spine's points: a time-window filter, keys joined on equality;
    a grouped arg_max on DuckDB, row_number() in a subquery (no QUALIFY) on default__."""
    for name, (sql, _) in compiled_constant.items():
        sql = sql.lower()
        assert "asof" not in sql and "qualify" not in sql and "q.__fs_t" not in sql, name
        if name.endswith("_default"):
            assert "arg_max" not in sql and "where __fs_rn = 1" in sql, name
        else:
            assert "arg_max(" in sql and "row_number() over (partition" not in sql, name


# -- the Python API: same rows, whatever the timestamps look like ---------------------------

ZONES = ["UTC", "Asia/Kolkata", "America/Sao_Paulo", "Pacific/Chatham"]


@st.composite
def api_spines(draw):
    rows = draw(spines(allow_null_time=False).filter(bool))
    style = draw(st.sampled_from(["naive", "aware", "strings"]))
    zone = draw(st.sampled_from(ZONES))
    as_text = draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
    frame = pd.DataFrame({
        "user_id": pd.array([r["user_id"] for r in rows], dtype="Int64"),
        "bank": [r["bank"] for r in rows],
        "acct": pd.array([r["acct"] for r in rows], dtype="Int64"),
        "t": pd.to_datetime([r["t"] for r in rows]),
        "label": [r["label"] for r in rows],
    })
    if style == "aware":
        frame["t"] = frame["t"].dt.tz_localize("UTC").dt.tz_convert(zone)
    elif style == "strings":  # naive (UTC) and offset-carrying ISO strings in one column
        frame["t"] = [
            (pd.Timestamp(r["t"]).tz_localize("UTC").tz_convert(zone).isoformat() if aware
             else pd.Timestamp(r["t"]).isoformat(sep=" "))
            for r, aware in zip(rows, as_text)]
    return rows, frame


@pytest.fixture(scope="module")
def api_registry(pit_project) -> Registry:
    return Registry.load(pit_project)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.fixed_dictionaries({v: feature_rows(v) for v in VIEWS}), spine=api_spines())
def test_python_api_matches_the_reference(pit_project, api_registry, rows, spine):
    spine_rows, frame = spine
    con = duckdb.connect(str(pit_project / "pit.duckdb"))
    try:
        for name, table_rows in rows.items():
            fill(con, f"main.{name}", table_rows, DDL[name])
    finally:
        con.close()
    out = get_historical_features(api_registry, frame, MAIN, timestamp_column="t").to_arrow()
    kwargs = dict(features=MAIN)
    _, want = expected(kwargs, reference_views(rows), spine_rows)
    features = [r.name for r in requested(kwargs)]
    assert out.column_names == ["user_id", "bank", "acct", "t", "label", *features]
    got = list(zip(*(out.column(c).to_pylist() for c in ["label", *features])))
    assert got == [(w[4], *w[-len(features):]) for w in want]


# -- dbt models and the Python API agree on the example project -----------------------------

@pytest.mark.parametrize("model,spine,timestamp,features", [
    ("churn_training_set", "stg_churn_labels", "label_ts",
     ["user_order_features:user_7d_orders", "user_order_features:user_lifetime_orders",
      "user_order_features:user_avg_basket_30d", "user_order_features:last_order_ts"]),
    ("fraud_training_set", "stg_fraud_labels", "txn_ts",
     ["txn_features", "user_txn_features:txn_velocity_60s", "user_txn_features:txn_amount_1h_sum",
      "user_order_features:user_7d_orders", "user_order_features:user_avg_basket_30d"]),
])
def test_training_models_match_the_python_api(built_project, model, spine, timestamp, features):
    con = duckdb.connect(str(built_project / "feature_store.duckdb"), read_only=True)
    try:
        spine_cols = [r[0] for r in con.execute(f"DESCRIBE {spine}").fetchall()]
        trained = con.sql(f"SELECT * FROM {model} ORDER BY spine_row_number").to_arrow_table()
        n_labels = con.execute(f"SELECT count(*) FROM {spine}").fetchall()[0][0]
    finally:
        con.close()
    assert trained.num_rows == n_labels
    assert trained.column("spine_row_number").to_pylist() == list(range(1, n_labels + 1))
    labels = trained.select(spine_cols)  # the spine, in the model's row order
    out = get_historical_features(Registry.load(built_project), labels, features, timestamp_column=timestamp).to_arrow()
    assert out.column_names == spine_cols + [c for c in trained.column_names if c not in spine_cols + ["spine_row_number"]]
    assert out.equals(trained.drop_columns(["spine_row_number"]))
    for col in out.column_names[len(spine_cols):]:
        assert out.column(col).null_count < out.num_rows, f"{model}.{col} is all NULL: the example data misses"


# -- compile errors name the culprit --------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    (dict(features=["va:nope"]), r"feature view va has no feature 'nope'; its features: a_int, a_str"),
    (dict(features=["spine_without_account"]),
     r"unknown feature view 'spine_without_account'; feature views: va, vb, vc, vd, ve"),
    (dict(features=["vc", "vd"]), r"features vc:shared and vd:shared would both be named 'shared'; pass full_feature_names=true"),
    (dict(features=["va"], ttl_override="2 days"), r"ttl_override 2 days is not a duration; write it as <int><unit>"),
    (dict(features=["va"], ttl_override={"vx": "1h"}), r"ttl_override names unknown feature view 'vx'"),
    (dict(features=["va"], implementation="fast"), r"implementation must be none"),
    (dict(features=[]), r"no features requested"),
    (dict(features=["va"], spine_time="fixed"), r"spine_time must be 'varies' \(the default\) or 'constant'"),
    (dict(features=["va"], spine_time="constant", implementation="asof"),
     r"implementation='asof' is a plan for spines whose times vary"),
])
def test_compile_errors(pit_project, kwargs, message):
    with pytest.raises(CompileFailed, match=message):
        compile_inline(pit_project, call_text(kwargs))


def test_unknown_model_is_named_by_dbt(pit_project):
    with pytest.raises(CompileFailed, match="depends on a node named 'no_such_view'"):
        compile_inline(pit_project, call_text(dict(features=["no_such_view:x"])))


def test_missing_join_key_names_column_and_view(pit_project):
    # A relation spine is looked into; that opens the warehouse, so this runs dbt in a
    # subprocess (dbt-duckdb keeps its connection for the life of the process).
    call = ("{{ feature_store.point_in_time_join(ref('spine_without_account'), 't', ['va', 'vc:c_val']) }}")
    proc = run_dbt(pit_project, "compile", "--inline", call, check=False)
    assert proc.returncode != 0
    assert re.search(r"join key 'bank' is missing from the spine \S*spine_without_account\S*; "
                     r"feature view vc needs it", proc.stdout), proc.stdout[-2000:]


# -- columns that need quoting, in dbt models and through the Python API --------------------

# models/spines/quoted_spine.sql in order, as (bank, label, order, userId) against the rows
# of models/views/ve.sql, and the matched row's (event, created) time.
QUOTED_ROWS = [
    ("007", "r0", 2, "u007b"),  # two rows at 12:00: created 12:30 beats 12:10
    ("007", "r1", 1, "u007a"),  # 1 s before 12:00: the 10:00 row
    ("7", "r2", 70, "u7"),
    ("07", "r3", None, "U07"),  # a NULL value stays NULL
    ("0007", "r4", None, None),  # 7 with more zeros: another key, without rows
    (None, "r5", None, None),
    ("007", "r6", None, None),  # before ve's first row
]
QUOTED_TIMES = [(datetime(2026, 1, 1, 12), datetime(2026, 1, 1, 12, 30)),
                (datetime(2026, 1, 1, 10), datetime(2026, 1, 1, 10)),
                (datetime(2026, 1, 1, 9), None), (datetime(2026, 1, 1, 11), None),
                (None, None), (None, None), (None, None)]


@pytest.fixture(scope="module")
def built_pit_project(tmp_path_factory) -> Path:
    """The fixture project built with `dbt build` (a subprocess: see pit_project): ve's rows,
    quoted_spine, the models of models/training/, and ve's generic tests."""
    project = tmp_path_factory.mktemp("pit_built") / "pit_project"
    shutil.copytree(FIXTURE, project)
    shutil.copytree(REPO / "macros", project / "macros")
    run_dbt(project, "build")
    return project


def read_model(project: Path, model: str) -> pa.Table:
    con = duckdb.connect(str(project / "pit.duckdb"), read_only=True)
    try:
        return con.sql(f"SELECT * FROM {model} ORDER BY label").to_arrow_table()  # r0, r1, ...
    finally:
        con.close()


def rows_of(table: pa.Table, columns: list[str]) -> list[tuple]:
    return list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def test_quoted_columns_in_dbt_models(built_pit_project):
    """`order`, `userId` and a spine time column `when` work on every plan, names as declared."""
    plain = read_model(built_pit_project, "quoted_training")
    assert plain.column_names == ["bank", "when", "label", "spine_row_number", "order", "userId"]
    assert rows_of(plain, ["bank", "label", "order", "userId"]) == QUOTED_ROWS
    assert read_model(built_pit_project, "quoted_training_constant").equals(plain)
    full = read_model(built_pit_project, "quoted_training_full")  # default__, full names, timestamps
    assert full.column_names == ["bank", "when", "label", "spine_row_number", "ve__userId", "ve__order",
                                 "ve__event_timestamp", "ve__created_timestamp"]
    assert rows_of(full, ["bank", "label", "ve__order", "ve__userId"]) == QUOTED_ROWS
    assert rows_of(full, ["ve__event_timestamp", "ve__created_timestamp"]) == QUOTED_TIMES


def test_quoted_columns_through_the_python_api(built_pit_project):
    registry = Registry.load(built_pit_project)
    plain = read_model(built_pit_project, "quoted_training")
    spine = plain.select(["bank", "when", "label"])
    out = get_historical_features(registry, spine, ["ve"], timestamp_column="when").to_arrow()
    assert out.equals(plain.drop_columns(["spine_row_number"]))
    # A warehouse spine: the spine model's table.
    out = get_historical_features(registry, "quoted_spine", ["ve:userId", "ve:order"], timestamp_column="when",
                                  full_feature_names=True).to_arrow()
    assert out.column_names == ["bank", "when", "label", "ve__userId", "ve__order"]
    assert rows_of(out, ["bank", "label", "ve__order", "ve__userId"]) == QUOTED_ROWS
    # The online sync's read: the latest row per key as of 12:00.
    reader = snapshot(registry, "ve", datetime(2026, 1, 1, 12))
    try:
        latest = reader.read_all()
    finally:
        reader.close()
    assert latest.column_names == ["bank", "order", "userId", "__event_ts", "__created_ts"]
    assert sorted(rows_of(latest, ["bank", "order", "userId"])) == [
        ("007", 2, "u007b"), ("07", None, "U07"), ("7", 70, "u7")]
