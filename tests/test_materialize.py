"""The sync: which views, counts, the write rule, locks, lost data, backfill chunks, dry run, and kill -9.

The warehouse is stood in for by ``MemorySource`` (tests/online_support.py), which returns
the latest row per entity like ``offline.snapshot``; the real snapshot is exercised by
tests/test_consistency.py. Redis is the session redis-server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta

import pyarrow as pa
import pytest
import redis

from feature_store.errors import OnlineStoreError, UnknownFeatureView
from feature_store.materialize import select_views, sync
from feature_store.online import FieldStatus, OnlineStore, get_online_features
from feature_store.snapshot import Fingerprints
from feature_store.writelag import read_write_lag
from feature_store.writer import BatchWriter
from online_support import MemorySource, make_registry, make_tables, redis_state, utc_now

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")]

REG = make_registry()
ONLINE = ["all_types", "merchant_pair", "user_order_features", "user_txn_features"]


@pytest.fixture
def now():
    return utc_now().replace(microsecond=0)


@pytest.fixture
def store(redis_url):
    s = OnlineStore.for_registry(REG, url=redis_url)
    yield s
    s.close()


def latest(source: MemorySource, view_name: str, as_of) -> list[dict]:
    reader = source(REG, view_name, as_of=as_of)
    source.calls.pop()
    return reader.read_all().to_pylist()


def assert_store_matches(store, source, now):
    """Every entity of every online view reads back as the latest row as of ``now`` (no fallbacks)."""
    for name in ONLINE:
        view = REG.view(name)
        expected = latest(source, name, now)
        entities = [{k: row[k] for k in view.join_keys} for row in expected]
        got = get_online_features(REG, store, [name], entities, now=now, apply_fallbacks=False).to_dict()
        for i, row in enumerate(expected):
            for f in view.feature_names:
                assert got[f][i] == row[f], (name, entities[i], f)


def test_sync_writes_every_online_view_and_reports_counts(store, now):
    source = MemorySource(REG, make_tables(now, users=120))
    report = sync(REG, store, now=now, source=source, batch_rows=50)
    assert list(report.views) == ONLINE  # not offline_only
    orders = report.views["user_order_features"]
    assert orders.rows_read == 120
    expired = sum(r["__event_ts"] is None for r in latest(source, "user_order_features", now))
    assert expired >= 120 // 9  # at least the users whose rows are all older than the 2d ttl
    assert orders.expired_on_arrival == expired
    assert orders.keys_written == 120 - expired and orders.skipped_older == 0
    assert orders.mode == "full" and orders.reason.startswith("no finished sync") and orders.as_of == now
    assert report.rows_read == sum(v.rows_read for v in report.views.values())
    assert report.keys_written + report.expired_on_arrival == report.rows_read
    client = redis.Redis.from_url(store.url)
    assert client.dbsize() == report.keys_written + len(ONLINE)  # + one sync-state hash per view
    assert_store_matches(store, source, now)
    data = report.to_dict()
    assert data["views"][2]["view"] == "user_order_features"
    assert data["views"][2]["keys_written"] == orders.keys_written
    assert data["total"]["keys_written"] == report.keys_written and data["sample"] == []


def test_rerun_writes_nothing_and_full_refresh_skips_everything_as_unchanged(store, now):
    source = MemorySource(REG, make_tables(now, users=60))
    first = sync(REG, store, now=now, source=source)
    before = data_keys(store.url)
    # This source has no fingerprints, so every sync reads every entity: Redis skips them all.
    again = sync(REG, store, now=now, source=source)
    assert again.rows_read == first.rows_read and again.keys_written == 0
    assert again.unchanged == first.keys_written and again.skipped_older == 0
    assert all(v.reason == "the last sync left no warehouse fingerprints" for v in again.views.values())
    full = sync(REG, store, now=now, source=source, full_refresh=True)
    assert full.keys_written == 0 and full.unchanged == first.keys_written
    assert full.views["user_txn_features"].mode == "full" and full.views["user_txn_features"].reason == "--full-refresh"
    assert data_keys(store.url) == before


def test_a_fix_at_the_same_timestamps_and_a_late_row_reach_redis(store, now):
    tables = make_tables(now, users=50)
    source = MemorySource(REG, tables)
    sync(REG, store, now=now, source=source)
    # A logic fix: the same event and created timestamps, other values.
    orders = tables["user_order_features"]
    fixed = pa.table({n: orders[n] if n != "user_7d_orders" else pa.array([999] * orders.num_rows, pa.int64())
                      for n in orders.column_names})
    tables["user_order_features"] = fixed
    # A late row: timed before the last sync, inserted after it.
    late = [{"user_id": 2, "event_ts": now - timedelta(seconds=10), "txn_velocity_60s": 77, "txn_amount_10m": 1.5,
             "txn_last_category": "late"}]
    tables["user_txn_features"] = pa.concat_tables(
        [tables["user_txn_features"], pa.Table.from_pylist(late, tables["user_txn_features"].schema)])
    report = sync(REG, store, now=now, source=source)
    live = [r for r in latest(source, "user_order_features", now) if r["__event_ts"] is not None]
    assert report.views["user_order_features"].keys_written == len(live) > 0
    assert report.views["user_txn_features"].keys_written == 1
    assert_store_matches(store, source, now)
    got = get_online_features(REG, store, ["user_txn_features:txn_velocity_60s"], [{"user_id": 2}], now=now)
    assert got.to_dict()["txn_velocity_60s"] == [77]


# -- the write lag the sync records (fstore monitor) --------------------------------------------

# Fixed times: all_types has no ttl, so nothing expires whatever the wall clock.
T1 = datetime(2030, 1, 1, 12, 0, 0)
TYPES_SCHEMA = make_tables(T1, users=1)["all_types"].schema


class Fingerprinted:
    """``MemorySource`` whose reads carry fingerprints, so the next sync reads incrementally.

    It still reads every entity: what an incremental sync reads of a changed partition,
    the changed rows and their unchanged neighbours.
    """

    def __init__(self, source: MemorySource):
        self.source = source

    def __call__(self, *args, **kwargs):
        reader = self.source(*args, **kwargs)
        reader.fingerprints = Fingerprints(1, "0" * 16)
        return reader


def types_table(rows: list[tuple[int, datetime, int]]) -> pa.Table:
    """all_types rows of (user, event ts, f_int), the other features NULL."""
    return pa.Table.from_pylist([{"user_id": u, "event_ts": e, "f_int": f} for u, e, f in rows], TYPES_SCHEMA)


def lag_state(store: OnlineStore, view: str) -> dict:
    return {k: v for k, v in store.sync_state(view).items() if k.startswith("write_lag")}


def test_the_write_lag_is_measured_on_newer_versions_late_rows_included_and_not_on_a_full_read(store):
    users = range(1, 41)
    history = [(u, T1 - timedelta(days=1, minutes=u), u) for u in users]
    tables = {"all_types": types_table(history)}
    source = Fingerprinted(MemorySource(REG, tables))
    first = sync(REG, store, views=["all_types"], now=T1, source=source)
    assert first.views["all_types"].mode == "full" and first.keys_written == 40
    # A first deploy writes history a day old: not lateness, so not measured (and said why).
    lag = lag_state(store, "all_types")
    assert lag["write_lag_rows"] == "0" and lag["write_lag_p95_s"] == "" and lag["write_lag_max_s"] == ""
    assert lag["write_lag_note"].startswith("not measured: the sync read the view in full (no finished sync")
    assert read_write_lag(store, "all_types")[0].p95_s is None

    # An hour later: user 5's row timed 5 h before the last sync lands late, user 7 gets a row on
    # time, user 9 an older row (skipped); the 37 others are read again unchanged.
    late, on_time = T1 - timedelta(hours=5), T1 + timedelta(minutes=30)
    tables["all_types"] = types_table(history + [(5, late, 500), (7, on_time, 700), (9, T1 - timedelta(days=3), 0)])
    t2 = T1 + timedelta(hours=1)
    second = sync(REG, store, views=["all_types"], now=t2, source=source)
    vr = second.views["all_types"]
    assert vr.mode == "incremental" and vr.rows_read == 40 and vr.keys_written == 2 and vr.unchanged == 38
    lag = lag_state(store, "all_types")
    assert lag["write_lag_rows"] == "2" and lag["write_lag_note"] == ""
    # The late row's lag is the sync's time minus its event time: 6 h, and it dominates p95 and max.
    late_lag = (t2 - late).total_seconds()
    assert late_lag <= float(lag["write_lag_max_s"]) < late_lag + 60
    p95 = 1800 + 0.95 * (late_lag - 1800)  # numpy's linear p95 of the two lags, 30 min and 6 h
    assert p95 <= float(lag["write_lag_p95_s"]) < p95 + 60
    assert t2 <= datetime.fromisoformat(lag["write_lag_at"]) < t2 + timedelta(minutes=1)
    assert read_write_lag(store, "all_types")[0].rows == 2

    # A full refresh rewrites nothing and measures nothing.
    full = sync(REG, store, views=["all_types"], now=t2, source=source, full_refresh=True)
    assert full.keys_written == 0
    assert lag_state(store, "all_types")["write_lag_note"] == "not measured: the sync read the view in full " \
                                                              "(--full-refresh)"


def test_a_logic_fix_at_the_same_timestamps_records_no_write_lag(store):
    history = [(u, T1 - timedelta(hours=u), u) for u in range(1, 41)]
    tables = {"all_types": types_table(history)}
    source = Fingerprinted(MemorySource(REG, tables))
    sync(REG, store, views=["all_types"], now=T1, source=source)
    # Rebuilt with other values at the same timestamps (the same versions), hours after they happened.
    fixed = [(u, e, f * 1000) for u, e, f in history]
    tables["all_types"] = types_table(fixed)
    t2 = T1 + timedelta(hours=1)
    report = sync(REG, store, views=["all_types"], now=t2, source=source)
    assert report.views["all_types"].mode == "incremental" and report.keys_written == 40
    lag = lag_state(store, "all_types")
    assert lag["write_lag_rows"] == "0" and lag["write_lag_p95_s"] == ""
    assert lag["write_lag_note"] == "the sync wrote no row as a newer version"
    # With one new row beside the rewrites, only that row is measured.
    tables["all_types"] = types_table([(u, e, f + 1) for u, e, f in fixed] + [(3, t2 + timedelta(minutes=50), 3)])
    t3 = t2 + timedelta(hours=1)
    report = sync(REG, store, views=["all_types"], now=t3, source=source)
    assert report.keys_written == 40
    lag = lag_state(store, "all_types")
    assert lag["write_lag_rows"] == "1" and 600 <= float(lag["write_lag_max_s"]) < 660


def test_the_writer_maps_newer_versions_back_to_each_batch_across_calls_and_dropped_rows(store):
    view = REG.view("all_types")
    base = utc_now().replace(microsecond=0)

    def batch(rows: list[tuple[int, int | None, int]]) -> pa.Table:  # (user, minutes ago or None, f_int)
        data = [{"user_id": u, "__event_ts": None if m is None else base - timedelta(minutes=m), "f_int": f}
                for u, m, f in rows]
        schema = pa.schema([TYPES_SCHEMA.field("user_id")] + [TYPES_SCHEMA.field(f.name) for f in view.features]
                           + [pa.field("__event_ts", pa.timestamp("us")), pa.field("__created_ts", pa.timestamp("us"))])
        return pa.Table.from_pylist(data, schema)

    first = batch([(1, 10, 1), (2, None, 2), (3, 10, 3), (4, 10, 4)])
    # Newer (5, 6: no key; 1: later event), expired on arrival (NULL event ts), older (3), a same-version
    # rewrite (4), unchanged (1 again, after its newer row), and a newer row in a later call (7).
    second = batch([(5, 5, 5), (2, None, 2), (1, 5, 1), (3, 20, 3), (4, 10, 40), (6, 5, 6), (1, 5, 1), (7, 1, 7)])
    with BatchWriter(store, view, rows_per_call=2) as writer:
        writer.submit(first)
        writer.submit(second)
    results = writer.acknowledged()
    assert [r.newer.tolist() for r in results] == [[0, 2, 3], [0, 2, 5, 7]]
    assert [(r.written, r.skipped_older, r.unchanged, r.expired_on_arrival) for r in results] == [(3, 0, 0, 1),
                                                                                                  (5, 1, 1, 1)]
    total = results[0]
    total += results[1]  # laid end to end
    assert total.newer.tolist() == [0, 2, 3, 4, 6, 9, 11] and total.answered >= results[0].answered > 0


def data_keys(url: str) -> dict:
    """The feature keys of a store (not the sync state, whose times differ run to run)."""
    return {k: v for k, v in redis_state(url).items() if b":{_sync}:" not in k}


def test_backfill_runs_in_chunks_with_a_checkpoint_and_resumes(store, now):
    tables = make_tables(now, users=40)
    source = MemorySource(REG, tables)
    start, end = now - timedelta(hours=72), now
    calls = []

    def failing(registry, view_name, as_of, since=None, batch_rows=0, **_):
        calls.append((since, as_of))
        if len(calls) == 2:
            raise RuntimeError("warehouse went away")
        return source(registry, view_name, as_of=as_of, since=since, batch_rows=batch_rows)

    failed = sync(REG, store, views=["user_order_features"], start=start, end=end, chunk="1d", now=now, source=failing)
    assert failed.failed == {"user_order_features": "RuntimeError: warehouse went away"}
    label = f"{start.isoformat(sep=' ')}/{end.isoformat(sep=' ')}"
    assert store.get_checkpoint("user_order_features", label) == start + timedelta(days=1)
    report = sync(REG, store, views=["user_order_features"], start=start, end=end, chunk="1d", now=now,
                  source=failing)
    vr = report.views["user_order_features"]
    assert vr.mode == "backfill" and vr.chunks == 2  # days 2 and 3 only
    assert calls[2:] == [(start + timedelta(days=1), start + timedelta(days=2)), (start + timedelta(days=2), end)]
    assert store.get_checkpoint("user_order_features", label) == end
    assert "as_of" not in store.sync_state("user_order_features")  # a backfill is not a finished sync
    # Done: running it again reads nothing; the final state equals one plain sync's.
    assert sync(REG, store, views=["user_order_features"], start=start, end=end, chunk="1d", now=now,
                source=failing).views["user_order_features"].chunks == 0
    clean = OnlineStore.for_registry(REG, url=store.url.rsplit("/", 1)[0] + "/1")
    redis.Redis.from_url(clean.url).flushdb()
    sync(REG, clean, views=["user_order_features"], now=now, source=source)
    assert data_keys(store.url) == data_keys(clean.url)


def test_dry_run_writes_nothing_and_counts_like_a_real_run(store, now):
    source = MemorySource(REG, make_tables(now, users=30))
    dry = sync(REG, store, now=now, source=source, dry_run=True)
    assert redis.Redis.from_url(store.url).dbsize() == 0
    assert dry.dry_run and dry.keys_written > 0
    sample = dry.views["merchant_pair"].sample
    assert 0 < len(sample) <= 5 and sample[0]["key"].startswith("fs:proj:dev:{merchant=")
    assert dry.to_dict()["sample"][0]["view"] == "all_types"
    real = sync(REG, store, now=now, source=source)
    for name in ONLINE:
        d, r = dry.views[name], real.views[name]
        assert (d.rows_read, d.keys_written, d.expired_on_arrival) == (r.rows_read, r.keys_written, r.expired_on_arrival)
    # A dry run against a full store says everything would be skipped.
    again = sync(REG, store, now=now, source=source, dry_run=True, full_refresh=True)
    assert again.keys_written == 0 and again.unchanged == real.keys_written


def test_progress_reports_rows_done_per_acknowledged_batch(store, now):
    source = MemorySource(REG, make_tables(now, users=100))
    seen = []
    report = sync(REG, store, views=["user_txn_features"], now=now, source=source, batch_rows=30,
                  progress=lambda view, done, total: seen.append((view, done, total)))
    assert [s[1] for s in seen] == [30, 60, 90, 100]
    assert all(s[0] == "user_txn_features" and s[2] is None for s in seen)
    assert report.views["user_txn_features"].rows_read == 100


def test_selection(now):
    assert [v.name for v in select_views(REG)] == ONLINE
    assert [v.name for v in select_views(REG, select="tag:finance-grade")] == ["user_order_features"]
    assert [v.name for v in select_views(REG, views=["offline_only"])] == ["offline_only"]  # named: allowed
    assert [v.name for v in select_views(REG, select="owner:tests@example.com merchant_pair")] == ONLINE
    with pytest.raises(UnknownFeatureView, match="tags of online views: finance-grade"):
        select_views(REG, select="tag:nope")
    with pytest.raises(UnknownFeatureView, match="did you mean 'user_txn_features'"):
        select_views(REG, views=["user_txn_feature"])


def test_redis_down_fails_before_reading_the_warehouse(now):
    from conftest import free_port

    source = MemorySource(REG, make_tables(now, users=5))
    down = OnlineStore(f"redis://127.0.0.1:{free_port()}/0", prefix="fs:p:t", retries=1, backoff=0.01)
    with pytest.raises(OnlineStoreError, match="cannot reach Redis"):
        sync(REG, down, now=now, source=source)
    assert source.calls == []


KILLABLE = """
import sys, time
from datetime import datetime
sys.path.insert(0, "tests")
from online_support import MemorySource, make_registry, make_tables
from feature_store.materialize import sync
from feature_store.online import OnlineStore

url, now, marker = sys.argv[1], datetime.fromisoformat(sys.argv[2]), sys.argv[3]
reg = make_registry()

def progress(view, done, total):
    with open(marker, "a") as f:
        f.write(f"{view} {done}\\n")
    time.sleep(0.05)

sync(reg, OnlineStore.for_registry(reg, url=url), now=now, source=MemorySource(reg, make_tables(now, users=300)),
     batch_rows=20, progress=progress, lease=1.0)
print("finished")
"""


def test_a_sync_killed_with_sigkill_and_rerun_ends_like_a_clean_run(redis_url, now, tmp_path):
    from conftest import REPO

    marker = tmp_path / "progress"
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, redis_url, now.isoformat(), str(marker)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill it in the middle of the second view
        if marker.exists() and "merchant_pair" in marker.read_text():
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL and b"finished" not in out

    client = redis.Redis.from_url(redis_url)
    partial = client.dbsize()
    assert partial > 0 and client.hget("fs:proj:dev:{_sync}:merchant_pair", "as_of") is None

    source = MemorySource(REG, make_tables(now, users=300))
    resumed = OnlineStore.for_registry(REG, url=redis_url)
    # The dead sync's lock lives out its lease (short here); the rerun waits for it.
    report = sync(REG, resumed, now=now, source=source, wait=10)
    assert report.ok, report.failed
    clean_url = redis_url.rsplit("/", 1)[0] + "/2"
    redis.Redis.from_url(clean_url).flushdb()
    sync(REG, OnlineStore.for_registry(REG, url=clean_url), now=now, source=source)
    state = data_keys(redis_url)
    assert len(state) > partial - len(ONLINE)
    assert state == data_keys(clean_url)


def test_a_dropped_connection_mid_sync_is_retried_and_the_result_is_complete(store, now):
    source = MemorySource(REG, make_tables(now, users=100))
    admin = redis.Redis.from_url(store.url)
    kills = []

    def progress(view, done, total):
        if len(kills) < 3:  # drop every client connection (the writer's too) after some batches
            kills.append(admin.client_kill_filter(_type="normal", skipme=True))

    report = sync(REG, store, now=now, source=source, batch_rows=20, progress=progress)
    assert sum(kills) >= 1
    # A resent batch counts its rows that had landed before the drop as unchanged.
    assert report.ok, report.failed
    assert report.keys_written + report.unchanged + report.expired_on_arrival == report.rows_read
    assert_store_matches(store, source, now)


def test_one_failing_view_does_not_stop_the_others(store, now):
    source = MemorySource(REG, make_tables(now, users=30))

    def broken(registry, view_name, **kwargs):
        if view_name == "merchant_pair":
            raise OnlineStoreError("merchant_pair: something the warehouse said")
        if view_name == "all_types":
            bad = source(registry, view_name, **kwargs).read_all()
            # A value the codec cannot carry: a list in an int column.
            table = bad.set_column(bad.column_names.index("f_int"), "f_int", pa.array([[1]] * bad.num_rows))
            from online_support import MemoryReader
            return MemoryReader(table, 50)
        return source(registry, view_name, **kwargs)

    report = sync(REG, store, now=now, source=broken)
    assert set(report.failed) == {"merchant_pair", "all_types"} and not report.ok
    assert report.failed["merchant_pair"] == "merchant_pair: something the warehouse said"
    assert "\n" not in report.failed["all_types"] and report.failed["all_types"].split(":")[0].endswith("Error")
    for name in ("user_order_features", "user_txn_features"):  # sorted after the failures, still synced
        assert report.views[name].keys_written > 0 and store.sync_state(name)["as_of"]
    assert store.sync_state("merchant_pair") == {} and report.to_dict()["ok"] is False


def test_a_second_sync_of_a_view_waits_for_the_first_then_fails_with_its_holder(store, now):
    source = MemorySource(REG, make_tables(now, users=10))
    raw = redis.Redis.from_url(store.url)
    raw.set(store.lock_key("user_txn_features"), "otherhost:123:abc", px=60_000)
    said = []
    report = sync(REG, store, views=["user_txn_features", "merchant_pair"], now=now, source=source, wait=1.2,
                  on_wait=said.append)
    assert "otherhost:123:abc" in report.failed["user_txn_features"] and "--wait" in report.failed["user_txn_features"]
    assert said and "waiting for another sync (otherhost:123:abc)" in said[0]
    assert report.views["merchant_pair"].keys_written > 0  # its own lock was free
    assert raw.get(store.lock_key("merchant_pair")) is None  # released when done
    raw.delete(store.lock_key("user_txn_features"))
    assert sync(REG, store, views=["user_txn_features"], now=now, source=source).ok


def test_a_flush_during_a_sync_fails_it_and_the_next_sync_rewrites_everything(store, now):
    source = MemorySource(REG, make_tables(now, users=200))
    admin = redis.Redis.from_url(store.url)
    flushed = []

    def progress(view, done, total):
        if view == "user_order_features" and not flushed:  # as a restart or failover to an empty replica would
            flushed.append(admin.flushall())

    report = sync(REG, store, now=now, source=source, batch_rows=20, progress=progress)
    assert "sync lock of user_order_features is gone" in report.failed["user_order_features"]
    assert store.sync_state("user_order_features") == {}  # no state: nothing of this run is trusted
    got = get_online_features(REG, store, ["user_order_features:user_7d_orders"], [{"user_id": 1}], now=now)
    assert got.statuses["user_7d_orders"] == [FieldStatus.NOT_SYNCED] and got.imputed == {}
    again = sync(REG, store, now=now, source=source)
    assert again.ok and again.views["user_order_features"].mode == "full"
    assert again.views["all_types"].reason.startswith("no finished sync")  # flushed too: its state is gone
    assert_store_matches(store, source, now)


def test_evictions_fail_the_sync_and_the_next_one_rewrites(tmp_path, now):
    from conftest import start_redis

    proc, port = start_redis(tmp_path, "--maxmemory", "1500kb", "--maxmemory-policy", "allkeys-lru")
    try:
        store = OnlineStore.for_registry(REG, url=f"redis://127.0.0.1:{port}/0")
        source = MemorySource(REG, make_tables(now, users=3000))
        report = sync(REG, store, now=now, source=source, views=["all_types", "user_txn_features"])
        assert any("maxmemory-policy allkeys-lru" in w for w in report.warnings)
        assert any("evicted" in reason for reason in report.failed.values()), report.failed
        redis.Redis(port=port).config_set("maxmemory", "0")
        again = sync(REG, store, now=now, source=source, views=["all_types", "user_txn_features"])
        assert again.ok and all(v.mode == "full" for v in again.views.values())
        assert again.keys_written > 0  # what was evicted is written back
        third = sync(REG, store, now=now, source=source, views=["all_types", "user_txn_features"])
        assert third.keys_written == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class _Watched:
    """Wraps a MemoryReader: ``on_batch`` runs before each batch is handed to the writer;
    ``events`` records each view's read, end of write and close, in order."""

    def __init__(self, reader, view_name: str, events: list, on_batch=lambda: None):
        self.reader, self.view_name, self.events, self.on_batch = reader, view_name, events, on_batch
        self.total_rows, self.fingerprints, self.plan = reader.total_rows, None, reader.plan

    def __iter__(self):
        for batch in self.reader:
            self.on_batch()
            yield batch
        self.events.append(("written", self.view_name))

    def close(self):
        self.events.append(("closed", self.view_name))


def watched_source(source: MemorySource, events: list, first_view_batch):
    """``source``, recording in ``events``; each batch of the first view's write calls
    ``first_view_batch(next_read)``, an Event set once the second view's read has begun."""
    next_read = threading.Event()

    def read(registry, view_name, **kwargs):
        events.append(("read", view_name))
        if view_name == ONLINE[1]:
            next_read.set()
        on_batch = (lambda: first_view_batch(next_read)) if view_name == ONLINE[0] else (lambda: None)
        return _Watched(source(registry, view_name, **kwargs), view_name, events, on_batch)

    return read


def test_the_next_view_is_read_while_this_one_writes_never_two_ahead(store, now):
    source = MemorySource(REG, make_tables(now, users=30))
    events: list = []

    def hold(next_read):
        # The first view's write waits for the second view's read: without read-ahead it never comes.
        if not next_read.wait(10):
            pytest.fail("the next view was not read while the first one was written")

    report = sync(REG, store, now=now, source=watched_source(source, events, hold), batch_rows=10)
    assert report.ok, report.failed
    assert_store_matches(store, source, now)
    # Each view is read once, in order, and a view is read only after the view two before it
    # was written: the thread reads one view ahead, never more.
    reads = [v for e, v in events if e == "read"]
    assert reads == ONLINE
    for i, name in enumerate(ONLINE[2:], 2):
        assert events.index(("written", ONLINE[i - 2])) < events.index(("read", name)), events
    assert all(("closed", name) in events for name in ONLINE)
    assert all(v.seconds > 0 for v in report.views.values())  # each view's own read and write


def test_a_failed_read_ahead_fails_only_its_view_and_releases_its_lock(store, now):
    source = MemorySource(REG, make_tables(now, users=30))

    def broken(registry, view_name, **kwargs):
        if view_name == ONLINE[1]:
            raise OnlineStoreError(f"{view_name}: the warehouse went away")
        return source(registry, view_name, **kwargs)

    report = sync(REG, store, now=now, source=broken)
    assert set(report.failed) == {ONLINE[1]}
    assert all(report.views[n].keys_written > 0 for n in ONLINE if n != ONLINE[1])
    raw = redis.Redis.from_url(store.url)
    assert all(raw.get(store.lock_key(n)) is None for n in ONLINE)
    assert sync(REG, store, views=[ONLINE[1]], now=now, source=source).ok  # its lock is free at once


def test_an_interrupted_write_releases_the_view_read_ahead(store, now):
    source = MemorySource(REG, make_tables(now, users=30))
    events: list = []

    def stop(next_read):
        next_read.wait(10)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sync(REG, store, now=now, source=watched_source(source, events, stop), batch_rows=10)
    assert [v for e, v in events if e == "read"] == ONLINE[:2]  # read ahead, then never written
    assert ("closed", ONLINE[1]) in events and ("closed", ONLINE[0]) in events  # spooled rows deleted
    raw = redis.Redis.from_url(store.url)
    assert raw.get(store.lock_key(ONLINE[0])) is None and raw.get(store.lock_key(ONLINE[1])) is None
    assert store.sync_state(ONLINE[1]) == {}
