"""The online store on a Redis Cluster (three local masters) and behind Sentinel, started by the suite.

The same sync, write rule and reads as on one server: every script call keeps to one
slot, reads are one pipeline per node, and the sync state lives on one slot. Then the
operations a cluster goes through: a master restarted during reads, slots resharded
during a sync, and (Sentinel) a failover during reads.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feature_store.errors import OnlineStoreError
from feature_store.materialize import sync
from feature_store.online import OnlineStore, get_online_features
from online_support import MemorySource, make_registry, make_tables, utc_now
from test_online import assert_never_regresses

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")]

REG = make_registry()
ONLINE = ["all_types", "merchant_pair", "user_order_features", "user_txn_features"]


@pytest.fixture
def cluster(redis_cluster):
    redis_cluster.flush()
    return redis_cluster


@pytest.fixture
def store(cluster):
    s = OnlineStore.for_registry(REG, url=cluster.url, timeout=2.0, connect_timeout=1.0)
    yield s
    s.close()


def assert_matches(store: OnlineStore, source: MemorySource, now: datetime) -> int:
    """Every entity of every online view reads back as the latest row as of ``now``."""
    compared = 0
    for name in ONLINE:
        view = REG.view(name)
        expected = source(REG, name, as_of=now).read_all().to_pylist()
        source.calls.pop()
        entities = [{k: row[k] for k in view.join_keys} for row in expected]
        got = get_online_features(REG, store, [name], entities, now=now, apply_fallbacks=False).to_dict()
        for i, row in enumerate(expected):
            for f in view.feature_names:
                assert got[f][i] == row[f], (name, entities[i], f)
                compared += 1
    return compared


def test_a_sync_on_a_cluster_writes_every_slot_group_and_reads_back(cluster, store):
    now = utc_now().replace(microsecond=0)
    source = MemorySource(REG, make_tables(now, users=300))
    report = sync(REG, store, now=now, source=source, batch_rows=100)
    assert report.ok, report.failed
    assert report.keys_written > 300
    assert assert_matches(store, source, now) > 1000
    keys_per_node = [redis.Redis(port=p).dbsize() for p in cluster.ports]
    assert all(n > 0 for n in keys_per_node)  # the rows spread over every master
    again = sync(REG, store, now=now, source=source)
    assert again.ok and again.keys_written == 0 and again.unchanged == report.keys_written


WRITE = st.tuples(st.integers(0, 20), st.integers(0, 3), st.one_of(st.none(), st.integers(0, 2)))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(WRITE, min_size=1, max_size=8), min_size=1, max_size=4))
def test_never_regress_on_a_cluster(cluster, batches):
    cluster.flush()
    store = OnlineStore.for_registry(REG, url=cluster.url, timeout=2.0, connect_timeout=1.0)
    client = redis.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    for name in REG.views:
        client.hset(store.sync_key(name), "as_of", "2026-01-01 00:00:00")
    assert_never_regresses(store, batches)
    store.close()
    client.close()


def test_a_master_restarted_during_reads_errors_briefly_and_the_process_recovers(cluster, store):
    now = utc_now().replace(microsecond=0)
    source = MemorySource(REG, make_tables(now, users=60))
    assert sync(REG, store, now=now, source=source).ok
    entities = [{"user_id": u} for u in range(1, 61)]
    outcomes: list[tuple[float, str]] = []
    stop = threading.Event()

    def read_loop():
        while not stop.is_set():
            try:
                get_online_features(REG, store, ["user_txn_features:txn_amount_10m"], entities, now=now,
                                    apply_fallbacks=False)
                outcomes.append((time.monotonic(), "ok"))
            except OnlineStoreError:
                outcomes.append((time.monotonic(), "error"))
            time.sleep(0.01)

    reader = threading.Thread(target=read_loop)
    reader.start()
    time.sleep(0.3)
    restarted_at = time.monotonic()
    cluster.restart(cluster.ports[1])  # no persistence: its keys are gone; it comes back empty
    time.sleep(1.0)
    stop.set()
    reader.join()
    errors = [t for t, what in outcomes if what == "error"]
    assert any(what == "ok" and t > restarted_at for t, what in outcomes)  # the same process reads again
    assert not errors or max(errors) - restarted_at < 10  # errors stop within seconds
    # Its keys are gone with it: the next sync notices (a run id changed, or the sync state
    # was on that master) and rewrites them.
    again = sync(REG, store, now=now, source=source)
    assert again.ok and all(v.mode == "full" for v in again.views.values())
    assert again.views["user_txn_features"].reason in (
        "Redis restarted or failed over since the last sync",
        "no finished sync in this Redis (never synced, or Redis lost the sync state)")
    assert again.keys_written > 0
    assert_matches(store, source, now)


def test_slots_resharded_during_a_sync_lose_no_row(cluster, store):
    now = utc_now().replace(microsecond=0)
    source = MemorySource(REG, make_tables(now, users=400))
    moved = threading.Event()

    def progress(view, done, total):
        if view == "merchant_pair" and not moved.is_set():
            moved.set()
            threading.Thread(target=cluster.reshard, args=(cluster.ports[0], cluster.ports[2], 500)).start()
            time.sleep(0.5)  # batches keep coming while the slots move

    report = sync(REG, store, now=now, source=source, batch_rows=25, progress=progress)
    assert report.ok, report.failed
    cluster.wait_ok()
    assert assert_matches(store, source, now) > 1000


def test_reads_through_sentinel_survive_a_failover(redis_sentinel):
    store = OnlineStore.for_registry(REG, url=redis_sentinel.url, timeout=1.0, connect_timeout=0.5)
    now = utc_now().replace(microsecond=0)
    source = MemorySource(REG, make_tables(now, users=40))
    assert sync(REG, store, now=now, source=source).ok
    # Every write acknowledged by the replica first: a failover to a lagging replica loses
    # data by design (the next sync notices the new run id and rewrites it), which is not
    # what this test is about.
    assert redis.Redis(port=redis_sentinel.master_port).wait(1, 10_000) == 1
    redis_sentinel.failover()
    deadline = time.monotonic() + 15
    while True:
        try:
            assert_matches(store, source, now)
            break
        except OnlineStoreError:
            assert time.monotonic() < deadline, "reads did not recover after the failover"
            time.sleep(0.2)
    # Writes go to the new master. A sync that straddles the switch (its client still on the
    # demoted master for a moment) must fail as data loss, never report success; the next one lands.
    deadline = time.monotonic() + 15
    while not (after := sync(REG, store, now=now + timedelta(seconds=1), source=source)).ok:
        for reason in after.failed.values():
            assert "lock of" in reason or "failed over" in reason or "cannot reach" in reason or "READONLY" in reason, reason
        assert time.monotonic() < deadline, after.failed
        time.sleep(0.5)
    assert_matches(store, source, now)
    store.close()


@pytest.mark.dbt
def test_online_equals_offline_on_a_cluster(built_project, cluster):
    """The consistency check of test_consistency.py, on the example project, into the cluster."""
    from consistency_support import check_all
    from feature_store.registry import Registry

    registry = Registry.load(built_project)
    store = OnlineStore.for_registry(registry, url=cluster.url, timeout=2.0, connect_timeout=1.0)
    T = utc_now()
    report = sync(registry, store, now=T)
    assert report.ok, report.failed
    compared = check_all(registry, store, T)
    assert sum(compared.values()) > 1000
    incremental = sync(registry, store, now=T)
    assert incremental.ok and incremental.rows_read == 0
    store.close()
