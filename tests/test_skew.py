"""The skew audit (``fstore skew``, feature_store.skew): served values recomputed through the join.

The comparison of one value is tested per kind and status on its own. The audit itself
runs on one built copy of the example project per module, with pinned timestamps
(as tests/test_scenarios.py), in order:

1. build, sync, read online: every logged value equals the join's; no alert, exit 0;
2. a logic fix (a feature rounded, same timestamps) built and not synced: the reads now
   serve stale values, and the audit finds exactly the changed feature, with examples,
   an alert and exit 1, while the view's other features stay at 0.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
import redis
import yaml
from click.testing import CliRunner
from conftest import copy_project, run_dbt
from consistency_support import utc_now
from hypothesis import given
from hypothesis import strategies as st
from test_scenarios import edit, pin_shift

from feature_store import servinglog
from feature_store.cli import main
from feature_store.materialize import sync
from feature_store.online import OnlineStore, get_online_features
from feature_store.push import default_landing_dir
from feature_store.registry import Feature, FeatureView, Registry
from feature_store.servinglog import value_text
from feature_store.skew import DEFAULT_SKEW_MAX, SkewResult, _ViewAudit, audit_skew, decode_served, differs

# -- one value ------------------------------------------------------------------------------------

MISSING = ["NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE", "IMPUTED"]

SAME = [
    ("int", "42", 42), ("int", "-7", -7), ("int", "0", 0),
    ("float", "0.1", 0.1), ("float", "1e+300", 1e300), ("float", "-0.0", -0.0), ("float", "nan", math.nan),
    ("float", "inf", math.inf), ("float", "40.785", 40.785),
    ("decimal", "27.40", Decimal("27.40")), ("decimal", "27.40", Decimal("27.4")), ("decimal", "0.00", Decimal(0)),
    ("string", "02139", "02139"), ("string", "", ""), ("string", "a}b ü", "a}b ü"),
    ("bool", "true", True), ("bool", "false", False),
    ("timestamp", "2026-11-03T07:42:11", datetime(2026, 11, 3, 7, 42, 11)),
    ("timestamp", "2026-11-03T07:42:11.000001+00:00", datetime(2026, 11, 3, 7, 42, 11, 1)),
    ("timestamp", "2026-11-03T07:42:11+00:00", datetime(2026, 11, 3, 7, 42, 11, tzinfo=timezone.utc)),
    ("timestamp", "2026-11-03T08:42:11+01:00", datetime(2026, 11, 3, 7, 42, 11)),
    ("date", "2026-11-03", date(2026, 11, 3)),
]
DIFFERENT = [
    ("int", "42", 43), ("float", "0.1", 0.1 + 2**-56), ("float", "0.1", 0.10000000149011612),
    ("float", "-0.0", 0.0), ("float", "nan", 1.0), ("float", "1.0", math.nan),
    ("decimal", "27.40", Decimal("27.41")), ("string", "02139", "2139"), ("string", "a", "A"),
    ("bool", "true", False), ("timestamp", "2026-11-03T07:42:11", datetime(2026, 11, 3, 7, 42, 11, 1)),
    ("timestamp", "2026-11-03T07:42:11", datetime(2026, 11, 3, 7, 42, 11, tzinfo=timezone(timedelta(hours=1)))),
    ("date", "2026-11-03", date(2026, 11, 4)),
]


@pytest.mark.parametrize(("kind", "text", "offline"), SAME)
def test_a_present_value_equal_to_the_join_is_not_skew(kind, text, offline):
    assert not differs(kind, "PRESENT", text, offline)


@pytest.mark.parametrize(("kind", "text", "offline"), DIFFERENT)
def test_a_present_value_unlike_the_join_is_skew(kind, text, offline):
    assert differs(kind, "PRESENT", text, offline)


@pytest.mark.parametrize("kind", ["int", "float", "decimal", "string", "bool", "timestamp", "date"])
def test_present_against_null_and_missing_against_a_value_are_skew(kind):
    text, offline = next((t, o) for k, t, o in SAME if k == kind)
    assert differs(kind, "PRESENT", text, None)
    for status in MISSING:
        assert not differs(kind, status, None, None), status
        assert differs(kind, status, None, offline), status
    # An imputed default is skew against a value offline, even an equal one: the row was missing online.
    assert not differs(kind, "IMPUTED", text, None)
    assert differs(kind, "IMPUTED", text, offline)


def test_not_synced_unknown_statuses_and_bad_text_are_not_compared():
    for status in ("NOT_SYNCED", "WHATEVER"):
        with pytest.raises(ValueError):
            differs("int", status, "1", 1)
    for kind, text in (("int", "1.5"), ("bool", "yes"), ("decimal", "x"), ("date", "2026-13-01"),
                       ("timestamp", "noon"), ("float", "one")):
        with pytest.raises(ValueError):
            differs(kind, "PRESENT", text, True if kind == "bool" else 1)
        with pytest.raises(ValueError):
            decode_served(kind, text)


# What the online store gives back for each kind, as the serving log writes it (value_text),
# against the value the warehouse returns: equal values are never skew, whatever they are.
VALUES = {
    "int": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(allow_nan=True, allow_infinity=True),
    "decimal": st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**16, max_value=10**16),
    "string": st.text(),
    "bool": st.booleans(),
    "timestamp": st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                              timezones=st.sampled_from([None, timezone.utc, timezone(timedelta(hours=-5))])),
    "date": st.dates(),
}


@given(st.sampled_from(sorted(VALUES)).flatmap(lambda k: st.tuples(st.just(k), VALUES[k], VALUES[k])))
def test_value_text_round_trips_through_the_comparison(case):
    kind, a, b = case
    assert not differs(kind, "PRESENT", value_text(a), a)
    if kind == "float":
        same = (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    elif kind == "timestamp":
        same = a.replace(tzinfo=a.tzinfo or timezone.utc) == b.replace(tzinfo=b.tzinfo or timezone.utc)
    else:
        same = a == b
    assert differs(kind, "PRESENT", value_text(a), b) is not same


# -- classifying a difference ---------------------------------------------------------------------

T = datetime(2026, 12, 1, 12, 0, 0)


def _us(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.replace(tzinfo=timezone.utc)


def _audit(rows: list[dict], ttl: timedelta | None = timedelta(minutes=10)) -> _ViewAudit:
    view = FeatureView(name="v", unique_id="model.p.v", relation="v", entities=("user",), join_keys=("user_id",),
                       timestamp="event_ts", features=(Feature("f", "v", "bigint"),), ttl=ttl,
                       column_types={"user_id": "bigint", "event_ts": "timestamp", "f": "bigint"})
    table = pa.Table.from_pylist([
        {"id": f"1-{i}", "served_at": _us(r.get("served_at", T)), "client": "test", "view": "v",
         "entity": '{"user_id":1}', "event_ts": _us(r.get("event_ts")), "feature": "f", "value": r.get("value"),
         "status": r["status"]} for i, r in enumerate(rows)], schema=servinglog.log_schema())
    return _ViewAudit(view, table, default=None, max_examples=5, tolerance_us=1_000_000)


def _outcome(audit: _ViewAudit, offline, e_off: datetime | None) -> str:
    """What comparing the first logged row with (offline, e_off) did: same, a reason, or skipped:<why>."""
    audit.compare(0, offline, None if e_off is None else int((e_off - datetime(1970, 1, 1)).total_seconds() * 1e6))
    r = audit.results["f"]
    if r.skipped:
        return "skipped:" + next(iter(r.skipped))
    return next(iter(r.reasons)) if r.differing else "same"


def test_a_difference_gets_its_reason_from_the_two_rows_event_times():
    e1, e2 = T - timedelta(minutes=5), T - timedelta(minutes=2)
    present = {"status": "PRESENT", "value": "1", "event_ts": e1}
    assert _outcome(_audit([present]), 1, e1) == "same"
    assert _outcome(_audit([present]), 2, e1) == "changed"  # same row, other value: a logic fix not synced
    assert _outcome(_audit([present]), 2, e2) == "stale"  # a newer row offline, not synced yet
    assert _outcome(_audit([present]), 2, T - timedelta(minutes=8)) == "ahead"  # online newer: pushed, not built
    assert _outcome(_audit([present]), None, None) == "missing_offline"
    assert _outcome(_audit([{"status": "NOT_FOUND"}]), 1, e1) == "missing_online"
    assert _outcome(_audit([{"status": "NULL_VALUE", "event_ts": e1}]), 1, e1) == "changed"
    assert _outcome(_audit([{"status": "IMPUTED", "value": "0", "event_ts": e2}]), 1, e2) == "changed"
    # Expired for the read's ttl check, live for the join's, the same row: the ttl was lengthened since.
    old = T - timedelta(minutes=30)
    assert _outcome(_audit([{"status": "OUTSIDE_MAX_AGE", "event_ts": old}], ttl=timedelta(hours=1)), 1, old) == "ttl"
    # Served live, beyond the join's ttl: the ttl was shortened since.
    assert _outcome(_audit([{"status": "PRESENT", "value": "1", "event_ts": old}]), None, None) == "ttl"
    # A NULL stored online where the same row holds a value offline, even at the edge: changed.
    edge = T - timedelta(minutes=10) + timedelta(milliseconds=100)
    assert _outcome(_audit([{"status": "NULL_VALUE", "event_ts": edge}]), 1, edge) == "changed"


def test_not_synced_and_unreadable_entries_are_counted_not_compared():
    audit = _audit([{"status": "NOT_SYNCED"}, {"status": "PRESENT", "value": "1"}, {"status": "SOMETHING"}])
    keys, served, rows_of, _ = audit.entries()
    assert keys == [(1,)] and rows_of == [[1]] and served == [int((T - datetime(1970, 1, 1)).total_seconds() * 1e6)]
    assert audit.results["f"].skipped == {"not_synced": 1, "unknown_status": 1}


def test_differences_at_the_ttl_edge_are_clocks_not_skew():
    edge = T - timedelta(minutes=10)  # e + ttl == T: the join still takes the row
    near, far = edge + timedelta(milliseconds=300), edge + timedelta(seconds=3)
    # Redis expired the key on its own clock a moment before the read's ttl check would have.
    assert _outcome(_audit([{"status": "NOT_FOUND"}]), 1, near) == "skipped:boundary"
    assert _outcome(_audit([{"status": "IMPUTED", "value": "0"}]), 1, near) == "skipped:boundary"
    assert _outcome(_audit([{"status": "OUTSIDE_MAX_AGE", "event_ts": near}]), 1, near) == "skipped:boundary"
    assert _outcome(_audit([{"status": "NOT_FOUND"}]), 1, far) == "missing_online"
    # Served as live a moment past the edge, which the join no longer takes.
    late = edge - timedelta(milliseconds=200)
    assert _outcome(_audit([{"status": "PRESENT", "value": "1", "event_ts": late}]), None, None) == "skipped:boundary"
    # A row timed a moment after the read (the writer's clock ahead), which the join cannot see yet.
    ahead = T + timedelta(milliseconds=200)
    assert _outcome(_audit([{"status": "PRESENT", "value": "1", "event_ts": ahead}]), None, None) == "skipped:boundary"
    assert _outcome(_audit([{"status": "PRESENT", "value": "1", "event_ts": T + timedelta(seconds=5)}]),
                    None, None) == "missing_offline"
    # No ttl: no edge.
    assert _outcome(_audit([{"status": "NOT_FOUND"}], ttl=None), 1, near) == "missing_online"


def test_the_threshold_is_the_features_skew_max_else_the_given_else_the_default():
    from feature_store.skew import _threshold

    plain, strict = Feature("f", "v", "bigint"), Feature("g", "v", "bigint", monitors={"skew_max": 0.0})
    assert _threshold(plain, None) == DEFAULT_SKEW_MAX == 0.001
    assert _threshold(plain, 0.05) == 0.05
    assert _threshold(strict, 0.05) == 0.0
    assert SkewResult("v", "g", compared=10_000, differing=1, threshold=0.0).alert


def test_result_share_alert_and_threshold():
    r = SkewResult("v", "f", compared=1000, differing=1)
    assert r.threshold == DEFAULT_SKEW_MAX and r.share == 0.001 and not r.alert  # alerts above, not at
    r.differing = 2
    assert r.alert and r.to_dict()["alert"] is True and r.to_dict()["share"] == 0.002
    assert not SkewResult("v", "f").alert and SkewResult("v", "f").share == 0.0


# -- the audit on the example project -------------------------------------------------------------

ANCHOR_LAG = timedelta(minutes=2)
VIEWS = ["user_order_features", "user_txn_features"]


class Project:
    def __init__(self, path: Path, url: str):
        self.path, self.url = path, url
        self.landing = default_landing_dir(path)
        self.registry: Registry | None = None
        self.store: OnlineStore | None = None
        self.users: list[int] = []
        self.anchor: datetime | None = None
        self.broken: str | None = None

    def reload(self) -> None:
        self.registry = Registry.load(self.path)
        if self.store is not None:
            self.store.close()
        self.store = OnlineStore.for_registry(self.registry, url=self.url)

    def read(self, users: list[int] | None = None) -> datetime:
        """Every feature of both online views for the module's users, read now (each read logged:
        log_sample_rate 1) and sent to the serving log's stream; returns when it was served."""
        at = datetime.now(timezone.utc)
        get_online_features(self.registry, self.store, VIEWS, [{"user_id": u} for u in users or self.users],
                            now=at, gate="status")
        self.store.flush_serving_log()
        return at

    def cli(self, *args: str):
        return CliRunner().invoke(main, ["skew", *args, "--redis-url", self.url, "--project-dir", str(self.path)])


@pytest.fixture(scope="module")
def project(tmp_path_factory, redis_server):
    path = copy_project(tmp_path_factory.mktemp("skew") / "project")
    anchor = (utc_now() - ANCHOR_LAG).replace(microsecond=0)
    pin_shift(path, anchor)
    # Log every read of both online views (the default samples 1%).
    yml = path / "models/features/_features.yml"
    online = "          online: true\n"
    assert yml.read_text().count(online) == 2
    yml.write_text(yml.read_text().replace(online, online + "          log_sample_rate: 1\n"))
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    p = Project(path, redis_server)
    p.anchor = anchor
    try:
        run_dbt(path, "build")
        p.reload()
        report = sync(p.registry, p.store, now=utc_now())
        assert report.ok, report.failed
        # Users with orders, the users with a live transaction (most are past the 10-minute ttl), and
        # a user who has neither (NOT_FOUND; imputed where a default is declared).
        p.users = _users(p.registry) + [999_999]
    except Exception as exc:  # the tests say why they cannot run
        p.broken = f"{type(exc).__name__}: {exc}"
    yield p
    if p.store is not None:
        p.store.close()


def _users(registry: Registry) -> list[int]:
    from feature_store.warehouse import open_warehouse

    with open_warehouse(registry) as wh:
        orders = wh.fetch("select distinct user_id from user_order_features order by 1 limit 120")
        live = wh.fetch("select distinct user_id from user_txn_features "
                        "where event_ts >= (select max(event_ts) from user_txn_features) - interval 8 minute")
    return sorted(set(orders.column(0).to_pylist()) | set(live.column(0).to_pylist()))


def by_ref(results: list[SkewResult]) -> dict[str, SkewResult]:
    return {r.ref: r for r in results}


@pytest.mark.dbt
@pytest.mark.redis
@pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")
def test_1_a_fresh_sync_serves_what_training_gets(project):
    if project.broken:
        pytest.fail(f"the project did not build and sync: {project.broken}")
    at = project.read()
    drained = servinglog.drain(project.store, project.landing)
    log = servinglog.read_log(project.landing, at, target=project.registry.target.name)
    assert drained.entries == 2 * len(project.users) and log.num_rows == drained.rows
    statuses = {(v, s) for v, s in zip(log.column("view").to_pylist(), log.column("status").to_pylist(), strict=True)}
    for status in ("PRESENT", "NOT_FOUND"):
        assert {(v, status) for v in VIEWS} <= statuses, statuses
    assert ("user_order_features", "IMPUTED") in statuses
    results = by_ref(audit_skew(project.registry, log))
    features = {f"{v}:{f.name}" for v in VIEWS for f in project.registry.view(v).features}
    assert set(results) == features
    for ref, r in results.items():
        assert r.compared > 0 and r.differing == 0, (ref, r.to_dict())
        assert not r.alert and not r.examples
        assert sum(r.skipped.values()) + r.compared == len(project.users), (ref, r.to_dict())

    res = project.cli("--since", at.isoformat(), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["alerts"] == [] and data["values_logged"] == log.num_rows and data["drained"]["entries"] == 0
    assert {r["view"] + ":" + r["feature"]: r["differing"] for r in data["results"]} == dict.fromkeys(features, 0)
    res = project.cli("--since", "1h")
    assert res.exit_code == 0, res.output
    assert "No alert" in res.stdout and "user_avg_basket_30d" in res.stdout


@pytest.mark.dbt
@pytest.mark.redis
@pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")
def test_2_a_logic_fix_built_but_not_synced_is_found(project):
    if project.broken:
        pytest.fail(f"the project did not build and sync: {project.broken}")
    # Rounding keeps every row and its timestamps (see test_scenarios' step 2); no sync follows.
    edit(project.path / "models/features/user_order_features.sql",
         "cast(amount_30d as {{ double }}) / nullif(orders_30d, 0) as user_avg_basket_30d,",
         "round(cast(amount_30d as {{ double }}) / nullif(orders_30d, 0), 1) as user_avg_basket_30d,")
    run_dbt(project.path, "run", "--select", "user_order_features")
    project.reload()
    at = project.read()
    # The command drains the reads into the landing folder, then audits them.
    res = project.cli("--since", at.isoformat(), "--json")
    assert res.exit_code == 1, res.output
    data = json.loads(res.stdout)
    assert data["drained"]["entries"] == 2 * len(project.users)
    log = servinglog.read_log(project.landing, at, target=project.registry.target.name)
    results = by_ref(audit_skew(project.registry, log, max_examples=3))

    fixed = results["user_order_features:user_avg_basket_30d"]
    assert fixed.differing > 0 and fixed.alert, fixed.to_dict()
    assert fixed.reasons == {"changed": fixed.differing}  # the same rows, other values
    assert len(fixed.examples) == 3
    for e in fixed.examples:
        served, offline = float(e["served"]), float(e["offline"])
        assert served != offline and abs(served - offline) <= 0.05 + 1e-9 and offline == round(offline, 1), e
        assert e["status"] == "PRESENT" and e["served_event_ts"] == e["offline_event_ts"] is not None
        assert set(e["entity"]) == {"user_id"}
    for ref, r in results.items():
        if ref != fixed.ref:
            assert r.differing == 0 and not r.alert, (ref, r.to_dict())

    assert data["alerts"] == [fixed.ref]
    got = next(r for r in data["results"] if r["feature"] == "user_avg_basket_30d")
    assert got["differing"] == fixed.differing and got["alert"] and len(got["examples"]) == 5
    res = project.cli("--since", at.isoformat(), "--view", "user_order_features", "--no-drain")
    assert res.exit_code == 1
    assert "ALERT" in res.stdout and "user_order_features:user_avg_basket_30d" in res.stdout
    assert "training set" in res.stdout and "user_txn_features" not in res.stdout
    # The other view alone has no alert.
    assert project.cli("--since", at.isoformat(), "--view", "user_txn_features", "--no-drain").exit_code == 0


@pytest.mark.dbt
@pytest.mark.redis
@pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")
def test_3_a_row_built_after_the_sync_is_served_stale(project):
    """Online serves the latest synced row; a row the warehouse got since, timed before the read,
    is what the training set has for that read: skew, reported as stale."""
    if project.broken:
        pytest.fail(f"the project did not build and sync: {project.broken}")
    from feature_store.warehouse import open_warehouse

    anchor = project.anchor  # the data's last moment
    with open_warehouse(project.registry) as wh:
        user, e_old = wh.fetch(
            "select user_id, max(event_ts) as e from user_txn_features group by user_id "
            f"having max(event_ts) < timestamp '{anchor - timedelta(seconds=2)}' order by e desc, user_id limit 1"
        ).to_pylist()[0].values()
    e_new = e_old + timedelta(seconds=(anchor - e_old).total_seconds() // 2)
    assert e_old < e_new <= anchor and utc_now() - e_old < timedelta(minutes=9), "the anchor is too old"
    seeds = project.path / "seeds" / "transactions.csv"
    text = seeds.read_text()
    last_id = max(int(line.split(",", 1)[0]) for line in text.splitlines()[1:])
    seed_max = datetime.strptime(yaml.safe_load((project.path / "dbt_project.yml").read_text())["vars"]
                                 ["feature_store"]["seed_max_ts"], "%Y-%m-%d %H:%M:%S")
    seed_ts = e_new - (anchor - seed_max)
    seeds.write_text(text + ("" if text.endswith("\n") else "\n")
                     + f"{last_id + 1},{user},{seed_ts:%Y-%m-%d %H:%M:%S},12.34,grocery,true\n")
    run_dbt(project.path, "build", "--select", "transactions", "user_txn_features")
    project.reload()

    at = project.read([user])
    servinglog.drain(project.store, project.landing)
    log = servinglog.read_log(project.landing, at, target=project.registry.target.name)
    results = by_ref(audit_skew(project.registry, log, views=["user_txn_features"]))
    assert set(results) == {"user_txn_features:txn_velocity_60s", "user_txn_features:txn_amount_1h_sum"}
    amount = results["user_txn_features:txn_amount_1h_sum"]
    assert (amount.compared, amount.differing, amount.reasons) == (1, 1, {"stale": 1}), amount.to_dict()
    [example] = amount.examples
    assert example["status"] == "PRESENT" and example["entity"] == {"user_id": user}
    assert (example["served_event_ts"], example["offline_event_ts"]) == (str(e_old), str(e_new))
    assert Decimal(example["offline"]) != Decimal(example["served"])
