"""The read audit and deprecations: read counters in Redis, `fstore audit`, `fstore deprecations`,
the Deprecation and Sunset headers of the HTTP server, and the in-process warning.

The pure half (aggregation, what fails) runs on the checked-in manifest (tests/fixtures/registry);
the rest on the example project as dbt built it and the session's redis-server, with counters
written as every online read writes them (``HINCRBY <prefix>:__reads:<day> "<client>\\t<ref>" n``).
The example deprecates ``user_order_features:user_avg_basket_30d_legacy`` with tombstone
2026-12-31, so every check pins its day with ``--today``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import warnings
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import orjson
import pytest
import redis
import yaml
from conftest import copy_project, run_dbt

from feature_store import FeatureStore, audit, online
from feature_store.audit import (
    DEPRECATED,
    PAST_TOMBSTONE,
    REMOVABLE,
    REMOVED,
    ReadCount,
    by_client,
    deprecation_problems,
    read_counts,
    readers,
    reads_field,
    reads_key,
    window,
)
from feature_store.online import OnlineStore, get_online_features
from feature_store.registry import Registry
from feature_store.server import ServerConfig, create_app, deprecation_headers

FIXTURE = Path(__file__).parent / "fixtures" / "registry"
MANIFEST = orjson.loads((FIXTURE / "manifest.json").read_bytes())
ENTITY_VARS = yaml.safe_load((FIXTURE / "dbt_project.yml").read_text())["vars"]["feature_store:entities"]
FSTORE = str(Path(sys.executable).parent / "fstore")

LEGACY = "user_order_features:user_avg_basket_30d_legacy"
ORDERS = "user_order_features:user_7d_orders"
GONE = "user_order_features:user_90d_orders"  # not in the project (any more)
TOMBSTONE = date(2026, 12, 31)
AFTER = date(2027, 1, 5)  # the legacy feature is past its tombstone
BEFORE = date(2026, 12, 20)  # 11 days left


def fixture_registry(view_meta: dict | None = None) -> Registry:
    m = copy.deepcopy(MANIFEST)
    if view_meta:
        m["nodes"]["model.feature_store.user_order_features"]["config"]["meta"]["feature_store"].update(view_meta)
    return Registry.from_manifest(m, copy.deepcopy(ENTITY_VARS), project_name="feature_store")


# -- pure: aggregation and what fails --------------------------------------------------------------


def test_window_and_aggregation():
    assert window(3, AFTER) == [date(2027, 1, 3), date(2027, 1, 4), AFTER]
    with pytest.raises(ValueError):
        window(0, AFTER)
    counts = [ReadCount(date(2027, 1, 3), "scoring", LEGACY, 10), ReadCount(AFTER, "scoring", LEGACY, 5),
              ReadCount(date(2027, 1, 4), "notebook", LEGACY, 30), ReadCount(AFTER, "scoring", ORDERS, 2)]
    r = readers(counts)
    assert list(r) == [ORDERS, LEGACY]  # by ref
    assert r[LEGACY].clients == {"notebook": 30, "scoring": 15} and r[LEGACY].reads == 45
    assert r[LEGACY].last_day == AFTER and list(r[LEGACY].by_day) == [date(2027, 1, 3), date(2027, 1, 4), AFTER]
    rows = by_client(counts)
    assert [(x["feature"], x["client"], x["reads"], x["last_day"]) for x in rows] == [
        (ORDERS, "scoring", 2, AFTER), (LEGACY, "notebook", 30, date(2027, 1, 4)), (LEGACY, "scoring", 15, AFTER)]
    assert audit.parse_counts(AFTER, {reads_field("a\tb", LEGACY).encode(): b"3", b"junk": b"x"}) == [
        ReadCount(AFTER, "a\tb", LEGACY, 3)]  # a client name may hold a tab: the ref never does


def test_deprecation_problems_fail_on_past_tombstones_and_removed_features_only():
    reg = fixture_registry()
    counts = [ReadCount(date(2027, 1, 2), "scoring", LEGACY, 7), ReadCount(date(2027, 1, 4), "batch", GONE, 3),
              ReadCount(date(2027, 1, 4), "scoring", ORDERS, 100)]
    problems = deprecation_problems(reg, counts, AFTER)
    assert [(p.kind, p.ref, p.failing) for p in problems] == [(PAST_TOMBSTONE, LEGACY, True), (REMOVED, GONE, True)]
    past, removed = problems
    assert (past.clients, past.reads, past.last_day, past.tombstone, past.replaced_by) == (
        {"scoring": 7}, 7, date(2027, 1, 2), TOMBSTONE, "user_avg_basket_30d")
    assert past.message == (f"{LEGACY} reached its tombstone on 2026-12-31 and is still read: 7 reads in the last 7 "
                            "days (last on 2027-01-02) by scoring (7); move them to user_avg_basket_30d before "
                            "removing it")
    assert "no longer in the project" in removed.message and "batch (3)" in removed.message
    assert removed.to_dict()["last_day"] == "2027-01-04" and removed.to_dict()["failing"] is True

    # Ahead of the tombstone: a notice with the days left; the removed feature still fails.
    ahead = deprecation_problems(reg, counts, BEFORE)
    assert [(p.kind, p.ref, p.failing) for p in ahead] == [(REMOVED, GONE, True), (DEPRECATED, LEGACY, False)]
    assert ahead[1].days_left == 11 and "11 days left" in ahead[1].message
    # Nobody reads the legacy feature any more: it can go.
    [p] = deprecation_problems(reg, [c for c in counts if c.ref == ORDERS], AFTER)
    assert (p.kind, p.ref, p.failing) == (REMOVABLE, LEGACY, False)


def test_a_view_tombstone_reaches_every_feature_of_the_view():
    reg = fixture_registry({"deprecated": "2026-12-01", "replaced_by": "user_order_features_v2"})
    problems = deprecation_problems(reg, [ReadCount(AFTER, "scoring", ORDERS, 4)], AFTER)
    read = [p for p in problems if p.ref == ORDERS]
    assert [(p.kind, p.tombstone, p.replaced_by) for p in read] == [
        (PAST_TOMBSTONE, date(2026, 12, 1), "user_order_features_v2")]
    assert {p.kind for p in problems if p.ref != ORDERS} == {REMOVABLE}  # the view's other features


def test_deprecation_headers_use_the_earliest_tombstone():
    reg = fixture_registry()
    view = reg.view("user_order_features")
    assert deprecation_headers([view.feature("user_7d_orders")]) is None
    headers = deprecation_headers(view.features)
    midnight = datetime(2026, 12, 31, tzinfo=timezone.utc)
    assert headers == {"Deprecation": f"@{int(midnight.timestamp())}", "Sunset": "Thu, 31 Dec 2026 00:00:00 GMT"}
    earlier = fixture_registry({"deprecated": "2026-11-30"}).view("user_order_features").features
    assert deprecation_headers(earlier)["Sunset"] == "Mon, 30 Nov 2026 00:00:00 GMT"


# -- in-process reads warn -------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize("view_meta, ref", [(None, LEGACY), ({"deprecated": "2027-03-01"}, ORDERS)])
def test_in_process_reads_warn_once_for_a_column_or_view_tombstone(redis_url, monkeypatch, view_meta, ref):
    monkeypatch.setattr(online, "_warned", set())
    reg = fixture_registry(view_meta)
    store = OnlineStore(redis_url, prefix="fs:audit:warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            get_online_features(reg, store, [ref], [{"user_id": 1}])
            get_online_features(reg, store, [ref, "user_txn_features:txn_amount_1h_sum"], [{"user_id": 1}])
    finally:
        store.close()
    [w] = [w for w in caught if issubclass(w.category, FutureWarning)]
    assert f"feature {ref} is deprecated (tombstone {reg.resolve([ref])[0].deprecated})" in str(w.message)


# -- through Redis and fstore, on the example as dbt built it ------------------------------------------


def fstore(project: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FSTORE, *args, "--project-dir", str(project), "--redis-url", redis_url],
                          capture_output=True, text=True)


def count(redis_url: str, prefix: str, day: date, client: str, ref: str, n: int) -> None:
    """What an online read of ``n`` entity rows by ``client`` adds to the counters."""
    r = redis.Redis.from_url(redis_url)
    try:
        r.hincrby(reads_key(prefix, day), reads_field(client, ref), n)
    finally:
        r.close()


@pytest.fixture
def counted(built_project, redis_url) -> tuple[Path, str, str]:
    """The example's counters: the legacy feature read by two clients, a current one, a feature that is gone."""
    prefix = OnlineStore.for_registry(Registry.load(built_project), url=redis_url).prefix
    for day, client, ref, n in [
        (date(2027, 1, 2), "churn-scorer", LEGACY, 40), (AFTER, "churn-scorer", LEGACY, 2),
        (date(2027, 1, 4), "notebook", LEGACY, 1), (AFTER, "churn-scorer", ORDERS, 500),
        (date(2027, 1, 3), "fraud-batch", GONE, 9),
        (date(2026, 12, 1), "old-job", ORDERS, 77),  # outside a 7-day window ending AFTER
    ]:
        count(redis_url, prefix, day, client, ref, n)
    return built_project, redis_url, prefix


@pytest.mark.redis
@pytest.mark.dbt
def test_read_counts_reads_the_window_in_one_pipeline(counted):
    project, redis_url, prefix = counted
    store = OnlineStore.for_registry(Registry.load(project), url=redis_url)
    try:
        counts = read_counts(store, 7, AFTER)
        assert {(c.ref, c.client) for c in counts} == {(LEGACY, "churn-scorer"), (LEGACY, "notebook"),
                                                      (ORDERS, "churn-scorer"), (GONE, "fraud-batch")}
        assert sum(c.reads for c in read_counts(store, 40, AFTER, ORDERS)) == 577
        assert {c.ref for c in read_counts(store, 7, AFTER, "user_order_features")} == {LEGACY, ORDERS, GONE}
        assert read_counts(store, 1, date(2027, 1, 3)) == [ReadCount(date(2027, 1, 3), "fraud-batch", GONE, 9)]
    finally:
        store.close()


@pytest.mark.redis
@pytest.mark.dbt
def test_audit_table_json_feature_filter_and_window(counted):
    project, redis_url, prefix = counted
    proc = fstore(project, redis_url, "audit", "--today", AFTER.isoformat())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["feature", "client", "12-30", "12-31"]
    legacy = next(line for line in lines if LEGACY in line and "churn-scorer" in line)
    assert legacy.split()[2:] == ["-", "-", "-", "40", "-", "-", "2", "42", "2/7", "2027-01-05", "past", "tombstone",
                                  "2026-12-31", "(use", "user_avg_basket_30d)"]
    assert any(GONE in line and "removed from the project" in line for line in lines)
    assert "old-job" not in proc.stdout  # older than the window

    data = json.loads(fstore(project, redis_url, "audit", "--today", AFTER.isoformat(), "--json").stdout)
    assert (data["from"], data["to"], data["days"], data["prefix"]) == ("2026-12-30", "2027-01-05", 7, prefix)
    rows = {(r["feature"], r["client"]): r for r in data["reads"]}
    assert rows[(LEGACY, "churn-scorer")] == {
        "feature": LEGACY, "client": "churn-scorer", "by_day": {"2027-01-02": 40, "2027-01-05": 2}, "reads": 42,
        "last_day": "2027-01-05", "status": "past_tombstone", "tombstone": "2026-12-31",
        "replaced_by": "user_avg_basket_30d"}
    assert rows[(ORDERS, "churn-scorer")]["status"] is None and rows[(GONE, "fraud-batch")]["status"] == "removed"
    assert "unread" not in data

    only = json.loads(fstore(project, redis_url, "audit", "--today", AFTER.isoformat(), "--json",
                             "--feature", LEGACY).stdout)
    assert {r["client"] for r in only["reads"]} == {"churn-scorer", "notebook"}
    assert {r["feature"] for r in only["reads"]} == {LEGACY}

    wide = json.loads(fstore(project, redis_url, "audit", "--today", AFTER.isoformat(), "--json", "--days", "60",
                             "--feature", ORDERS, "--unread").stdout)
    assert [(r["client"], r["reads"]) for r in wide["reads"]] == [("churn-scorer", 500), ("old-job", 77)]
    assert wide["unread"] == []
    unread = json.loads(fstore(project, redis_url, "audit", "--today", AFTER.isoformat(), "--json",
                               "--unread").stdout)["unread"]
    assert "user_order_features:user_lifetime_orders" in unread and LEGACY not in unread and ORDERS not in unread
    assert not [r for r in unread if r.startswith("txn_features:")]  # offline views are never read online
    table = fstore(project, redis_url, "audit", "--today", AFTER.isoformat(), "--days", "30")
    assert "12-30" not in table.stdout.splitlines()[0] and "2/30" in table.stdout  # no day columns past 7

    empty = fstore(project, redis_url, "audit", "--today", "2025-01-01")
    assert empty.returncode == 0 and "No reads counted in the 7 days from 2024-12-26 to 2025-01-01" in empty.stderr
    bad = fstore(project, redis_url, "audit", "--today", "tomorrow")
    assert bad.returncode == 2 and "'tomorrow' is not a date; write it as YYYY-MM-DD" in bad.stderr


@pytest.mark.redis
@pytest.mark.dbt
def test_deprecations_fail_on_a_tombstoned_or_removed_feature_still_read(counted):
    project, redis_url, prefix = counted
    proc = fstore(project, redis_url, "deprecations", "--today", AFTER.isoformat())
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (f"error: past tombstone, still read: {LEGACY} reached its tombstone on 2026-12-31 and is still read: "
            "43 reads in the last 7 days (last on 2027-01-05) by churn-scorer (42), notebook (1); move them to "
            "user_avg_basket_30d before removing it") in proc.stdout
    assert (f"error: removed from the project, still read: {GONE} is no longer in the project but is still read: "
            "9 reads in the last 7 days (last on 2027-01-03) by fraud-batch (9)") in proc.stdout
    assert "failed (2 failing, 0 notes)" in proc.stdout

    data = json.loads(fstore(project, redis_url, "deprecations", "--today", AFTER.isoformat(), "--json").stdout)
    assert data["ok"] is False and data["prefix"] == prefix
    assert [(p["kind"], p["feature"], p["clients"]) for p in data["problems"]] == [
        (PAST_TOMBSTONE, LEGACY, {"churn-scorer": 42, "notebook": 1}), (REMOVED, GONE, {"fraud-batch": 9})]


@pytest.mark.redis
@pytest.mark.dbt
def test_deprecations_pass_when_the_reads_are_older_than_the_window_or_the_tombstone_is_ahead(
        built_project, redis_url):
    prefix = OnlineStore.for_registry(Registry.load(built_project), url=redis_url).prefix
    count(redis_url, prefix, date(2027, 1, 1), "churn-scorer", LEGACY, 40)
    count(redis_url, prefix, date(2027, 1, 1), "churn-scorer", ORDERS, 5)
    # 2027-01-08 to 2027-01-14: the last read was eight days before.
    later = fstore(built_project, redis_url, "deprecations", "--today", "2027-01-14")
    assert later.returncode == 0, later.stdout + later.stderr
    assert (f"note: past tombstone, not read: ready to remove: {LEGACY} reached its tombstone on 2026-12-31 and had "
            "no reads in the last 7 days: it can be removed") in later.stdout
    assert "ok (0 failing, 1 notes)" in later.stdout
    # A longer window sees it.
    assert fstore(built_project, redis_url, "deprecations", "--today", "2027-01-14", "--days", "14").returncode == 1

    count(redis_url, prefix, date(2026, 12, 18), "churn-scorer", LEGACY, 3)
    ahead = fstore(built_project, redis_url, "deprecations", "--today", BEFORE.isoformat())
    assert ahead.returncode == 0, ahead.stdout + ahead.stderr
    assert (f"note: deprecated, still read: {LEGACY} is deprecated (tombstone 2026-12-31, 11 days left) and still "
            "read: 3 reads in the last 7 days (last on 2026-12-18) by churn-scorer (3)") in ahead.stdout

    none = fstore(built_project, redis_url, "deprecations", "--today", "2025-06-01")
    assert none.returncode == 0 and "no read counters at all in the 7 days to 2025-06-01" in none.stderr


@pytest.mark.redis
@pytest.mark.dbt
def test_deprecations_fail_closed_when_redis_is_away(built_project):
    proc = fstore(built_project, "redis://127.0.0.1:1/0", "deprecations")
    assert proc.returncode == 1 and "cannot reach Redis" in proc.stderr and "Traceback" not in proc.stderr


# -- over HTTP -------------------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.dbt
@pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")
def test_http_responses_carry_deprecation_and_sunset_exactly_when_a_deprecated_feature_is_served(
        built_project, redis_url):
    app = create_app(ServerConfig(project_dir=str(built_project), redis_url=redis_url), load_tokens=False)
    entities = {"user_id": [42, 999_999_999]}

    async def read_all(requests: list[list[str]]) -> list[httpx.Response]:
        # One event loop for all: the server's Redis client belongs to the loop it was made in.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return [await client.post("/get-online-features", json={"features": f, "entities": entities})
                    for f in requests]

    plain, named, whole, refused = asyncio.run(read_all([
        [ORDERS, "user_txn_features:txn_amount_1h_sum"], [ORDERS, LEGACY], ["user_order_features"],
        [LEGACY, "user_order_features:nope"]]))
    assert plain.status_code == 200, plain.text
    assert "deprecation" not in plain.headers and "sunset" not in plain.headers
    midnight = datetime(2026, 12, 31, tzinfo=timezone.utc)
    for got in (named, whole):  # the feature named, or in a whole view
        assert got.status_code == 200, got.text
        assert got.headers["deprecation"] == f"@{int(midnight.timestamp())}"
        assert parsedate_to_datetime(got.headers["sunset"]) == midnight
        assert got.headers["sunset"] == "Thu, 31 Dec 2026 00:00:00 GMT"
    # A request that serves nothing carries neither.
    assert refused.status_code == 422 and "deprecation" not in refused.headers


# -- a project changing its tombstones: fstore list, describe, and real reads counted ------------------


@pytest.fixture(scope="module")
def retiring(tmp_path_factory) -> Path:
    """The example, parsed by dbt, with the legacy feature past its tombstone (2001-01-01) and the whole of
    user_txn_features deprecated (2027-02-01, replaced by txn_features)."""
    project = copy_project(tmp_path_factory.mktemp("retiring") / "project")
    features = project / "models" / "features" / "_features.yml"
    text = features.read_text()
    assert 'deprecated: "2026-12-31"' in text
    doc = yaml.safe_load(text.replace('deprecated: "2026-12-31"', 'deprecated: "2001-01-01"'))
    view = next(m for m in doc["models"] if m["name"] == "user_txn_features")
    view["config"]["meta"]["feature_store"].update(deprecated="2027-02-01", replaced_by="txn_features")
    features.write_text(yaml.safe_dump(doc, sort_keys=False))
    run_dbt(project, "parse")
    return project


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FSTORE, *args], capture_output=True, text=True)


@pytest.mark.dbt
def test_list_and_describe_show_a_view_level_tombstone(retiring):
    listed = run("list", "--project-dir", str(retiring))
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith("user_txn_features"))
    assert line.endswith("whole view (2027-02-01, use txn_features)")
    assert "user_avg_basket_30d_legacy (2001-01-01)" in listed.stdout
    rows = json.loads(run("list", "--json", "--project-dir", str(retiring)).stdout)
    txn = next(r for r in rows if r["view"] == "user_txn_features")
    assert (txn["view_deprecated"], txn["view_replaced_by"]) == ("2027-02-01", "txn_features")
    assert txn["deprecated"] == {"txn_velocity_60s": "2027-02-01", "txn_amount_1h_sum": "2027-02-01"}
    assert next(r for r in rows if r["view"] == "user_order_features")["view_deprecated"] is None
    described = run("describe", "user_txn_features", "--project-dir", str(retiring)).stdout
    assert "deprecated:        2027-02-01 -> txn_features" in described
    header = run("describe", "user_order_features", "--project-dir", str(retiring)).stdout.split("\n\n")[0]
    assert "deprecated:" not in header


@pytest.mark.redis
@pytest.mark.dbt
def test_real_reads_are_counted_audited_and_fail_deprecations(retiring, redis_url, monkeypatch):
    monkeypatch.setattr(online, "_warned", set())
    rows = [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = FeatureStore(project_dir=retiring, redis_url=redis_url, client="churn-scorer")
        store.get_online_features([ORDERS, LEGACY], rows)
        store.get_online_features([LEGACY], rows[:1])
        store.get_online_features(["user_txn_features:txn_amount_1h_sum"], rows[:2])
        registry, online_store = store.registry, store.online_store


        async def serve() -> None:  # as the HTTP server reads, for another client
            await online.get_online_features_async(registry, online_store, [LEGACY], rows[:2], client="fraud-batch")
            await online_store.aclose()

        asyncio.run(serve())
    warned = sorted(str(w.message).split(" is deprecated")[0] for w in caught if w.category is FutureWarning)
    assert warned == [f"feature {LEGACY}", "feature user_txn_features:txn_amount_1h_sum"]  # the view's date too

    today = datetime.now(timezone.utc).date()
    data = json.loads(fstore(retiring, redis_url, "audit", "--json").stdout)
    got = {(r["feature"], r["client"]): (r["reads"], r["last_day"], r["status"]) for r in data["reads"]}
    assert got == {
        (ORDERS, "churn-scorer"): (3, today.isoformat(), None),
        (LEGACY, "churn-scorer"): (4, today.isoformat(), "past_tombstone"),
        (LEGACY, "fraud-batch"): (2, today.isoformat(), "past_tombstone"),
        ("user_txn_features:txn_amount_1h_sum", "churn-scorer"): (2, today.isoformat(), "deprecated"),
    }
    proc = fstore(retiring, redis_url, "deprecations")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (f"error: past tombstone, still read: {LEGACY} reached its tombstone on 2001-01-01 and is still read: 6 "
            f"reads in the last 7 days (last on {today}) by churn-scorer (4), fraud-batch (2); move them to "
            "user_avg_basket_30d before removing it") in proc.stdout
    assert "note: deprecated, still read: user_txn_features:txn_amount_1h_sum is deprecated (tombstone 2027-02-01" \
        in proc.stdout and "move them to txn_features" in proc.stdout
    assert "failed (1 failing, 1 notes)" in proc.stdout
