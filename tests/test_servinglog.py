"""The serving log and the read counters: what every online read records, and the drain to Parquet.

Reads run against the session redis-server (and servers of their own for the failure
cases: out of memory, a read-only replica); the registry is the handwritten one of
tests/online_support.py with log_sample_rate declared per view. The drain is killed for
real (os._exit, SIGKILL) and by injected crashes between its steps, and must land every
entry exactly once. The HTTP server and the dbt model run at the end (marked).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from online_support import make_registry, utc_now
from test_online import ORDER_TYPES, TXN_TYPES, rows

from feature_store import audit, online, servinglog
from feature_store.errors import ManifestError, OnlineStoreError
from feature_store.online import FieldStatus, OnlineStore, get_online_features, get_online_features_async
from feature_store.writer import write_rows

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")]

# Every order read is logged, no txn read is: the two ends of the rate.
REG = make_registry(meta={"user_order_features": {"log_sample_rate": 1}, "user_txn_features": {"log_sample_rate": 0}})
ORDER = ["user_order_features:user_7d_orders", "user_order_features:user_avg_amount",
         "user_order_features:user_last_order_ts"]
TXN = ["user_txn_features:txn_amount_10m"]
USERS = [{"user_id": 1}, {"user_id": 2}, {"user_id": 9}]  # 9 has no row: its count is imputed


def load(store: OnlineStore, now: datetime) -> None:
    for name in REG.views:  # a finished sync of every view, as `fstore sync` records it
        store.client.hset(store.sync_key(name), "as_of", "2026-01-01 00:00:00")
    write_rows(store, REG.view("user_order_features"), rows("user_order_features", [
        {"user_id": 1, "user_7d_orders": 5, "user_avg_amount": Decimal("12.50"),
         "user_last_order_ts": now - timedelta(days=3), "__event_ts": now - timedelta(hours=1)},
        {"user_id": 2, "user_7d_orders": 0, "__event_ts": now - timedelta(hours=2)},
    ], ORDER_TYPES))
    write_rows(store, REG.view("user_txn_features"), rows("user_txn_features", [
        {"user_id": 1, "txn_velocity_60s": 3, "txn_amount_10m": 99.5, "txn_last_category": "grocery",
         "__event_ts": now - timedelta(minutes=4)},
    ], TXN_TYPES))


@pytest.fixture
def now() -> datetime:
    return utc_now()


@pytest.fixture
def store(redis_url, now, monkeypatch):
    monkeypatch.delenv("FEATURE_STORE_CLIENT", raising=False)
    # counts_every=0: each read sends its own counts, so a test sees them after each read.
    s = OnlineStore.for_registry(REG, url=redis_url, client="scorer", counts_every=0)
    load(s, now)
    yield s
    s.close()


@pytest.fixture
def raw(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def day_key(store: OnlineStore, when: datetime) -> str:
    return audit.reads_key(store.prefix, when.date())


def counters(raw: redis.Redis, key: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw.hgetall(key).items()}


def stream(raw: redis.Redis, store: OnlineStore) -> list[tuple[str, dict[str, str]]]:
    return [(i.decode(), {k.decode(): v.decode() for k, v in f.items()})
            for i, f in raw.xrange(servinglog.stream_key(store.prefix))]


def expected_entries(response, entity_rows, client: str, now: datetime, views=("user_order_features",)) -> list[dict]:
    """The stream entries a fully sampled read of ``views`` must log: exactly what the response served."""
    columns = response.columns()
    out = []
    for view in views:
        mine = [c for c in columns if c[1].view == view]
        for r, row in enumerate(entity_rows):
            ets = mine[0][4][r]
            out.append({
                "served_at": str(online.codec.micros(now)), "client": client, "view": view,
                "entity": json.dumps({"user_id": row["user_id"]}, separators=(",", ":")),
                "event_ts": "" if ets is None else str(ets),
                "features": json.dumps([c[1].name for c in mine], separators=(",", ":")),
                "values": json.dumps([servinglog.value_text(c[2][r]) for c in mine], separators=(",", ":")),
                "statuses": json.dumps([c[3][r].value for c in mine], separators=(",", ":")),
            })
    return out


# -- read counters ------------------------------------------------------------------------------


def test_counters_count_entity_rows_per_feature_day_and_client(store, raw, now):
    get_online_features(REG, store, ORDER + TXN, USERS, now=now)
    get_online_features(REG, store, TXN, USERS[:1], now=now, client="batch-job")
    get_online_features(REG, store, TXN, USERS[:2], now=now)
    yesterday = now - timedelta(days=1)
    get_online_features(REG, store, ORDER[:1], USERS[:1], now=yesterday)
    today = counters(raw, day_key(store, now))
    assert today == {**{f"scorer\t{ref}": 3 for ref in ORDER}, "scorer\tuser_txn_features:txn_amount_10m": 3 + 2,
                     "batch-job\tuser_txn_features:txn_amount_10m": 1}
    assert counters(raw, day_key(store, yesterday)) == {"scorer\tuser_order_features:user_7d_orders": 1}
    assert [audit.split_field(f) for f in sorted(today)][0] == ("batch-job", "user_txn_features:txn_amount_10m")
    # Kept the retention; and given it again with each batch of counts, so a hash Redis lost
    # and a HINCRBY made anew (a restart, a failover) expires all the same.
    ttl = raw.ttl(day_key(store, now))
    assert audit.RETENTION_DAYS * 86_400 - 60 < ttl <= audit.RETENTION_DAYS * 86_400
    raw.delete(day_key(store, now))
    get_online_features(REG, store, TXN, USERS[:1], now=now)
    assert counters(raw, day_key(store, now)) == {"scorer\tuser_txn_features:txn_amount_10m": 1}
    assert audit.RETENTION_DAYS * 86_400 - 60 < raw.ttl(day_key(store, now)) <= audit.RETENTION_DAYS * 86_400


def test_a_feature_requested_twice_counts_once_per_row(store, raw, now):
    get_online_features(REG, store, [*TXN, *TXN, "user_txn_features"], USERS[:2], now=now, gate="status")
    assert counters(raw, day_key(store, now))["scorer\tuser_txn_features:txn_amount_10m"] == 2


def test_client_names_default_override_and_are_checked(redis_url, raw, monkeypatch, now):
    monkeypatch.setenv("FEATURE_STORE_CLIENT", "from-env")
    s = OnlineStore.for_registry(REG, url=redis_url)
    load(s, now)
    assert s.client_name == "from-env"
    get_online_features(REG, s, TXN, USERS[:1], now=now)
    monkeypatch.delenv("FEATURE_STORE_CLIENT")
    assert OnlineStore.for_registry(REG, url=redis_url).client_name == "default"
    assert counters(raw, day_key(s, now)) == {"from-env\tuser_txn_features:txn_amount_10m": 1}
    for bad in ("a\tb", "two\nlines", ""):
        with pytest.raises(ValueError, match="client name .* tabs or line breaks"):
            get_online_features(REG, s, TXN, USERS[:1], client=bad)
    with pytest.raises(ValueError, match=r"client name 'x\\ty'"):
        OnlineStore.for_registry(REG, url=redis_url, client="x\ty")
    monkeypatch.setenv("FEATURE_STORE_CLIENT", "tab\there")
    with pytest.raises(ValueError, match="FEATURE_STORE_CLIENT"):
        OnlineStore.for_registry(REG, url=redis_url)
    s.close()


@pytest.mark.dbt
def test_the_feature_store_passes_its_client(built_project, redis_url, raw):
    from feature_store import FeatureStore

    fs = FeatureStore(built_project, redis_url=redis_url, client="churn-model")
    assert fs.online_store.client_name == "churn-model"
    fs.get_online_features(["user_order_features:user_7d_orders"], [{"user_id": 1}, {"user_id": 2}])
    key = audit.reads_key(fs.online_store.prefix, utc_now().date())
    assert counters(raw, key) == {"churn-model\tuser_order_features:user_7d_orders": 2}
    fs.online_store.close()


def read_both_ways(store: OnlineStore, features, entity_rows, now, mode: str):
    if mode == "sync":
        return get_online_features(REG, store, features, entity_rows, now=now)

    async def go():
        try:
            return await get_online_features_async(REG, store, features, entity_rows, now=now)
        finally:
            await store.aclose()

    return asyncio.run(go())


MODES = ["sync", "async-hiredis", "async-pipeline"]


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    if request.param == "async-pipeline":
        monkeypatch.setattr(online, "_PACK", None)  # redis.asyncio's own pipeline, as without hiredis
    return request.param


def test_broken_counter_and_log_keys_never_fail_the_read(store, raw, now, mode):
    """A counter hash or stream of the wrong type answers WRONGTYPE: the read is served all the same."""
    clean = OnlineStore.for_registry(REG, url=store.url, record_reads=False)
    want = get_online_features(REG, clean, ORDER + TXN, USERS, now=now).to_dict(include_status=True)
    raw.set(day_key(store, now), "not a hash")
    raw.set(servinglog.stream_key(store.prefix), "not a stream")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = read_both_ways(store, ORDER + TXN, USERS, now, mode)  # counters fail; 3 entries buffered
        second = read_both_ways(store, ORDER + TXN, USERS, now, mode)  # counters fail, and the 3 XADDs
    assert first.to_dict(include_status=True) == want == second.to_dict(include_status=True)
    # 4 HINCRBY per read (EXPIRE takes any key type); the first read's 3 entries: sent with the
    # second read, or flushed by aclose() after each async read (so the second's too).
    assert store.log_errors == 4 + 4 + 3 + (3 if mode != "sync" else 0)
    assert raw.get(day_key(store, now)) == b"not a hash"
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "WRONGTYPE" in messages[0] and "log_errors" in messages[0]


def test_an_error_of_the_read_itself_still_fails_it(store, raw, now, mode):
    raw.set(store.key(REG.view("user_order_features"), {"user_id": 1}), "not a hash")
    with pytest.raises(OnlineStoreError, match="WRONGTYPE"):
        read_both_ways(store, ORDER, USERS, now, mode)
    assert store.log_errors == 0


def test_out_of_memory_refuses_the_recording_not_the_read(tmp_path, now, monkeypatch):
    from conftest import start_redis

    monkeypatch.delenv("FEATURE_STORE_CLIENT", raising=False)
    proc, port = start_redis(tmp_path, "--maxmemory-policy", "noeviction")
    try:
        s = OnlineStore.for_registry(REG, url=f"redis://127.0.0.1:{port}/0", counts_every=0)
        load(s, now)
        want = get_online_features(REG, OnlineStore.for_registry(REG, url=s.url, record_reads=False), ORDER + TXN,
                                   USERS, now=now).to_dict(include_status=True)
        client = redis.Redis(port=port)
        client.config_set("maxmemory", client.info("memory")["used_memory"] + 64)  # full from here on
        with pytest.warns(RuntimeWarning, match="OutOfMemoryError"):
            for _ in range(3):
                assert get_online_features(REG, s, ORDER + TXN, USERS, now=now).to_dict(include_status=True) == want
        assert s.log_errors >= 4 * 3 and client.exists(day_key(s, now)) == 0
        client.config_set("maxmemory", 0)
        get_online_features(REG, s, ORDER, USERS, now=now)
        assert counters(client, day_key(s, now))["default\tuser_order_features:user_7d_orders"] == 3
        client.close()
        s.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_read_only_replica_serves_and_counts_what_it_could_not_record(tmp_path, redis_url, now):
    from conftest import start_redis

    master = OnlineStore.for_registry(REG, url=redis_url)
    load(master, now)
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    proc, replica_port = start_redis(tmp_path, "--replicaof", "127.0.0.1", port)
    try:
        replica = redis.Redis(port=replica_port)
        deadline = time.monotonic() + 10
        while replica.info("replication").get("master_link_status") != "up" and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        s = OnlineStore.for_registry(REG, url=f"redis://127.0.0.1:{replica_port}/0", counts_every=0)
        want = get_online_features(REG, master, ORDER, USERS, now=now).to_dict(include_status=True)
        with pytest.warns(RuntimeWarning, match="ReadOnlyError"):
            assert get_online_features(REG, s, ORDER, USERS, now=now).to_dict(include_status=True) == want
        assert s.log_errors == 4  # 3 HINCRBY and the EXPIRE
        replica.close()
        s._log.clear()  # nowhere to send them
        s.close()
        master.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- sampling -----------------------------------------------------------------------------------


def test_rate_one_logs_every_row_as_served_and_rate_zero_nothing(store, raw, now, mode):
    response = read_both_ways(store, ORDER + TXN, USERS, now, mode)
    assert response.statuses["user_7d_orders"] == [FieldStatus.PRESENT, FieldStatus.PRESENT, FieldStatus.IMPUTED]
    store.flush_serving_log()
    got = [fields for _, fields in stream(raw, store)]
    assert got == expected_entries(response, USERS, "scorer", now)
    assert got[0]["values"] == '["5","12.50","' + (now - timedelta(days=3)).isoformat() + '"]'
    assert got[2]["statuses"] == '["IMPUTED","NOT_FOUND","NOT_FOUND"]' and got[2]["event_ts"] == ""
    for _ in range(50):  # txn features only: rate 0
        get_online_features(REG, store, TXN, USERS, now=now)
    store.flush_serving_log()
    assert len(stream(raw, store)) == 3


def test_the_default_rate_samples_about_one_in_a_hundred(redis_url, raw, now):
    reg = make_registry()  # no log_sample_rate declared
    s = OnlineStore.for_registry(reg, url=redis_url)
    load(s, now)
    assert reg.view("user_order_features").log_sample_rate is None
    for _ in range(100):
        get_online_features(reg, s, ORDER, [{"user_id": i} for i in range(100)], now=now)
    s.close()
    logged = len(stream(raw, s))
    assert 60 <= logged <= 140  # 10,000 rows at 1%: mean 100, sd ~10


@pytest.mark.parametrize("rate", [0.0, 0.003, 0.25, 0.9, 1.0])
def test_each_row_is_sampled_at_the_rate_on_its_own(rate):
    import random

    random.seed(11)
    n, rounds = 50, 4000
    hits = Counter()
    for _ in range(rounds):
        taken = list(online._sampled(n, rate))
        assert taken == sorted(set(taken)) and all(0 <= i < n for i in taken)
        hits.update(taken)
    total = sum(hits.values())
    assert abs(total - rate * n * rounds) <= 5 * (n * rounds * rate * (1 - rate)) ** 0.5 + 1e-9
    if 0 < rate < 1:  # no position favoured: first, middle and last row alike
        for i in (0, n // 2, n - 1):
            assert abs(hits[i] - rate * rounds) <= 5 * (rounds * rate * (1 - rate)) ** 0.5 + 1


def test_entries_ride_with_the_next_read_and_flush_on_close(store, raw, now):
    get_online_features(REG, store, ORDER, USERS[:2], now=now)
    assert stream(raw, store) == []  # its values were unknown until its reply: buffered
    get_online_features(REG, store, ORDER, USERS[2:], now=now)
    assert [f["entity"] for _, f in stream(raw, store)] == ['{"user_id":1}', '{"user_id":2}']
    store.close()
    assert [f["entity"] for _, f in stream(raw, store)] == ['{"user_id":1}', '{"user_id":2}', '{"user_id":9}']
    assert raw.xinfo_stream(servinglog.stream_key(store.prefix))["length"] == 3


def test_a_script_that_never_closes_its_store_still_delivers(store, raw, now):
    code = (
        "import sys; sys.path.insert(0, 'tests');"
        "from test_servinglog import REG, USERS, ORDER;"
        "from feature_store.online import OnlineStore, get_online_features;"
        f"s = OnlineStore.for_registry(REG, url={store.url!r}, client='script');"
        "get_online_features(REG, s, ORDER, USERS)"
    )
    from conftest import REPO

    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)
    assert [f["client"] for _, f in stream(raw, store)] == ["script"] * 3


def test_the_buffer_is_bounded_and_a_forked_child_does_not_resend(store, raw, now, monkeypatch):
    monkeypatch.setattr(online, "LOG_BUFFER_MAX", 4)
    get_online_features(REG, store, ORDER, USERS, now=now)
    assert len(store._log) == 3
    pid = os.fork()
    if pid == 0:  # the child: a uvicorn worker forked from a process that had read
        os._exit(0 if store._log == [] else 1)
    assert os.waitpid(pid, 0)[1] == 0
    store._buffer_log(store._log[:2])  # more than fits
    assert len(store._log) == 4 and store.log_dropped == 1
    assert store.flush_serving_log() == 4
    assert len(stream(raw, store)) == 4


def test_a_read_that_fails_loses_its_carried_entries_but_never_sends_them_twice(store, raw, now):
    from conftest import free_port

    get_online_features(REG, store, ORDER, USERS, now=now)
    assert len(store._log) == 3
    down = OnlineStore.for_registry(REG, url=f"redis://127.0.0.1:{free_port()}/0", retries=1)
    down._log = list(store._log)
    with pytest.raises(OnlineStoreError, match="cannot reach Redis"):
        get_online_features(REG, down, ORDER, USERS, now=now)
    # Lost with it: the 3 entries it carried, and its own counts (3 HINCRBY and the day's EXPIRE).
    assert down.log_errors == 3 + 4 and down._log == [] and down._counts == {}


# -- the drain ----------------------------------------------------------------------------------


def logged_reads(store: OnlineStore, now: datetime, reads: int = 5) -> list[dict]:
    """Fully sampled reads, flushed; the long rows (one per feature) they must land as."""
    want = []
    for i in range(reads):
        users = [{"user_id": u} for u in (1, 2, 9, 100 + i)]
        response = get_online_features(REG, store, ORDER, users, now=now)
        for entry in expected_entries(response, users, "scorer", now):
            for name, value, status in zip(json.loads(entry["features"]), json.loads(entry["values"]),
                                           json.loads(entry["statuses"]), strict=True):
                want.append({"client": entry["client"], "view": entry["view"], "entity": entry["entity"],
                             "feature": name, "value": value, "status": status,
                             "event_ts": int(entry["event_ts"]) if entry["event_ts"] else None})
    store.flush_serving_log()
    return want


def landed(landing: Path, target: str = "dev") -> list[dict]:
    """Every row of ``target``'s serving log landed under ``landing`` (REG's target is dev)."""
    table = servinglog.read_log(landing, target=target)
    return table.to_pylist()


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream id as Redis orders them: (ms, seq) as numbers, so ...-10 comes after ...-9."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def test_drain_round_trip_equals_what_was_read(store, raw, now, tmp_path):
    want = logged_reads(store, now)
    report = servinglog.drain(store, tmp_path, batch=7)
    assert (report.entries, report.rows, report.lost_warning) == (20, 60, None)
    assert report.files == 3  # 7 + 7 + 6 entries
    got = landed(tmp_path)
    from feature_store.codec import micros

    as_read = [{k: (micros(v) if k == "event_ts" and v is not None else v) for k, v in row.items()
                if k not in ("id", "served_at")} for row in got]
    assert sorted(as_read, key=repr) == sorted(want, key=repr)
    assert {row["served_at"].replace(tzinfo=None) for row in got} == {now}
    ids = [i for i, _ in stream(raw, store)]
    # The last landed entry stays, as a marker.
    assert len(ids) == 1 and id_key(ids[0]) == max(id_key(row["id"]) for row in got)
    files = sorted(servinglog.log_dir(tmp_path, "dev").glob("date=*/*.parquet"))
    assert all(f.parent.name == f"date={now.date().isoformat()}" for f in files)  # the day served
    assert all(pq.read_schema(f).remove_metadata().equals(servinglog.log_schema()) for f in files)
    again = servinglog.drain(store, tmp_path)
    assert (again.entries, again.files, again.lost_warning) == (0, 0, None)
    more = logged_reads(store, now, reads=1)
    assert servinglog.drain(store, tmp_path).entries == 4
    assert len(landed(tmp_path)) == len(want) + len(more)
    assert servinglog.read_log(tmp_path, since=now + timedelta(microseconds=1), target="dev").num_rows == 0


def test_an_empty_or_missing_stream_drains_nothing(store, tmp_path):
    report = servinglog.drain(store, tmp_path)
    assert report == servinglog.DrainReport()
    assert landed(tmp_path) == []


def test_entries_not_in_the_format_are_skipped_not_stuck(store, raw, now, tmp_path):
    key = servinglog.stream_key(store.prefix)
    raw.xadd(key, {"hello": "world"})
    logged_reads(store, now, reads=1)
    raw.xadd(key, {"served_at": "x", "features": "[]", "values": "[]", "statuses": "[]"})
    report = servinglog.drain(store, tmp_path)
    assert (report.entries, report.skipped, report.rows) == (6, 2, 12)


DRAIN_SCRIPT = """
import os, sys
from feature_store import servinglog
from feature_store.online import OnlineStore
url, prefix, landing, batch, stop_after = sys.argv[1:6]
servinglog.DRAIN_LEASE_MS = 1000  # so the test need not wait 30 s for a dead drain's lease
store = OnlineStore(url, prefix=prefix)

def progress(report, path):
    if report.files >= int(stop_after):
        os._exit(0)  # dies at once: no finally, no unlock

servinglog.drain(store, landing, batch=int(batch), on_progress=progress)
"""


def run_drain(store: OnlineStore, landing: Path, batch: int, stop_after: int = 10**9) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRAIN_SCRIPT, store.url, store.prefix, str(landing), str(batch),
                             str(stop_after)])


def add_entries(raw: redis.Redis, store: OnlineStore, count: int, maxlen: int | None = None) -> list[str]:
    """``count`` well-formed entries (one feature each) added straight to the stream; their ids."""
    key = servinglog.stream_key(store.prefix)
    pipe = raw.pipeline(transaction=False)
    for i in range(count):
        pipe.xadd(key, {"served_at": str(1_700_000_000_000_000 + i), "client": "c", "view": "v",
                        "entity": json.dumps({"user_id": i}), "event_ts": "", "features": '["f"]',
                        "values": json.dumps([str(i)]), "statuses": '["PRESENT"]'},
                  maxlen=maxlen, approximate=True)
    return [i.decode() for i in pipe.execute()]


def assert_exactly_once(landing: Path, ids: list[str], target: str = "dev") -> None:
    got = Counter(row["id"] for row in landed(landing, target))
    assert sorted(got) == sorted(ids), "lost or unknown entries"
    assert all(n == 1 for n in got.values()), f"landed twice: {[i for i, n in got.items() if n > 1][:5]}"


def test_a_drain_killed_after_its_first_file_loses_and_repeats_nothing(store, raw, tmp_path):
    ids = add_entries(raw, store, 95)
    proc = run_drain(store, tmp_path, batch=10, stop_after=1)
    assert proc.wait(timeout=60) == 0
    assert len(landed(tmp_path)) == 10
    with pytest.raises(servinglog.DrainLocked, match="another drain .* is running"):
        servinglog.drain(store, tmp_path)  # the dead drain's lease has not run out yet
    time.sleep(1.1)
    report = servinglog.drain(store, tmp_path, batch=10)
    assert report.entries == 85 and report.lost_warning is None
    assert_exactly_once(tmp_path, ids)


def test_a_drain_killed_by_sigkill_anywhere_loses_and_repeats_nothing(store, raw, tmp_path):
    ids = add_entries(raw, store, 3000)
    proc = run_drain(store, tmp_path, batch=7)
    deadline = time.monotonic() + 60
    while len(list(servinglog.log_dir(tmp_path, "dev").glob("date=*/*.parquet"))) < 20 and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(1.1)  # its lease runs out
    servinglog.drain(store, tmp_path, batch=500)
    assert_exactly_once(tmp_path, ids)


class Crash(Exception):
    pass


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.tuples(st.just("log"), st.integers(1, 25)),
    st.tuples(st.just("drain"), st.integers(1, 9), st.sampled_from([None, "landed", "trimmed"]), st.integers(1, 3)),
), max_size=10))
def test_any_interleaving_of_logging_drains_and_crashes_lands_each_entry_once(store, raw, monkeypatch, ops):
    from feature_store import landing as landing_module

    raw.delete(servinglog.stream_key(store.prefix))
    landing = Path(tempfile.mkdtemp())
    crash: dict = {"at": None, "after": 0, "files": 0}
    real = landing_module.write_parquet_durably

    def write_then_maybe_crash(table, final, **kwargs):
        path = real(table, final, **kwargs)
        crash["files"] += 1
        if crash["at"] == "landed" and crash["files"] >= crash["after"]:
            raise Crash  # landed, not yet trimmed from the stream
        return path

    def progress(report, path):
        if crash["at"] == "trimmed" and report.files >= crash["after"]:
            raise Crash

    monkeypatch.setattr(landing_module, "write_parquet_durably", write_then_maybe_crash)
    ids: list[str] = []
    try:
        for op in ops:
            if op[0] == "log":
                ids += add_entries(raw, store, op[1])
                continue
            _, batch, at, after = op
            crash.update(at=at, after=after, files=0)
            try:
                servinglog.drain(store, landing, batch=batch, on_progress=progress)
            except Crash:
                pass
        crash["at"] = None
        report = servinglog.drain(store, landing, batch=4)
        assert report.lost_warning is None
        assert_exactly_once(landing, ids)
    finally:
        shutil.rmtree(landing)


def test_two_drains_at_once_one_fails_and_nothing_lands_twice(store, raw, tmp_path):
    ids = add_entries(raw, store, 40)
    started, release = threading.Event(), threading.Event()
    results: dict = {}

    def first_drain():
        def progress(report, path):
            started.set()
            release.wait(10)

        results["first"] = servinglog.drain(store, tmp_path, batch=10, on_progress=progress)

    thread = threading.Thread(target=first_drain)
    thread.start()
    assert started.wait(10)
    other = OnlineStore.for_registry(REG, url=store.url)
    with pytest.raises(servinglog.DrainLocked, match="another drain of the serving log .* is running"):
        servinglog.drain(other, tmp_path, batch=10)
    release.set()
    thread.join(10)
    assert results["first"].entries == 40
    assert servinglog.drain(other, tmp_path).entries == 0  # the lease was released: the next one runs
    assert_exactly_once(tmp_path, ids)
    other.close()


def test_two_targets_drained_into_one_landing_folder_stay_apart(store, raw, tmp_path):
    """dev and prod drained from one checkout share its landing folder: each target has its own
    folder, checkpoint and reader, so neither resumes from the other's ids, warns a false loss or
    skips (and trims away) the other's entries."""
    prod = OnlineStore.for_registry(make_registry(target="prod"), url=store.url)
    try:
        prod_ids = add_entries(raw, prod, 30)  # prod's reads first: dev's ids are all greater
        dev_ids = add_entries(raw, store, 20)
        dev = servinglog.drain(store, tmp_path, batch=7)
        assert (dev.entries, dev.lost_warning, dev.skipped) == (20, None, 0)
        got = servinglog.drain(prod, tmp_path, batch=7)
        assert (got.entries, got.lost_warning, got.skipped) == (30, None, 0)
        assert_exactly_once(tmp_path, dev_ids, "dev")
        assert_exactly_once(tmp_path, prod_ids, "prod")
        assert servinglog.last_landed(tmp_path, "prod") == id_key(prod_ids[-1])
        assert servinglog.last_landed(tmp_path, "dev") == id_key(dev_ids[-1])
        for s, ids in ((store, dev_ids), (prod, prod_ids)):  # each stream keeps its own marker
            assert [i for i, _ in stream(raw, s)] == [ids[-1]]
        # More of both, drained the other way round: still apart, nothing lost, nothing twice.
        dev_ids += add_entries(raw, store, 5)
        prod_ids += add_entries(raw, prod, 5)
        for s in (prod, store):
            again = servinglog.drain(s, tmp_path)
            assert (again.entries, again.lost_warning) == (5, None)
        assert_exactly_once(tmp_path, dev_ids, "dev")
        assert_exactly_once(tmp_path, prod_ids, "prod")
        assert sorted(p.name for p in (tmp_path / "_fstore" / "serving_log").iterdir()) == ["target=dev",
                                                                                          "target=prod"]
        with pytest.raises(ValueError, match="dbt target 'prod', not 'dev'"):
            servinglog.drain(prod, tmp_path, target="dev")  # would mix prod's log into dev's
        with pytest.raises(ManifestError, match="cannot name a folder"):
            servinglog.read_log(tmp_path, target="../prod")
    finally:
        prod.close()


def test_read_log_opens_only_the_days_of_its_window_and_finds_every_row(store, raw, tmp_path):
    """Entries served over four days, some sent late (after the next day's): each lands under the
    day it was served, and any window reads exactly the rows a full scan filtered would give."""
    key = servinglog.stream_key(store.prefix)
    start = datetime(2026, 3, 1, 22, 0)
    served = [start + timedelta(hours=3 * i, minutes=7 * i, microseconds=i) for i in range(30)]
    order = list(range(30))
    order[8], order[10] = order[10], order[8]  # a read of Mar 2 sent after two of Mar 3 (a late flush)
    for i in order:
        raw.xadd(key, {"served_at": str(online.codec.micros(served[i])), "client": "c", "view": "v",
                       "entity": json.dumps({"user_id": i}), "event_ts": "", "features": '["f","g"]',
                       "values": json.dumps([str(i), None]), "statuses": '["PRESENT","NOT_FOUND"]'})
    report = servinglog.drain(store, tmp_path, batch=8)
    assert (report.entries, report.rows, report.lost_warning) == (30, 60, None)
    folder = servinglog.log_dir(tmp_path, "dev")
    days = sorted(p.name for p in folder.iterdir())
    assert days == [f"date=2026-03-0{d}" for d in range(1, 6)]
    for path in folder.glob("date=*/*.parquet"):  # every row under the day it was served
        got_days = {t.date().isoformat() for t in pq.read_table(path).column("served_at").to_pylist()}
        assert got_days == {path.parent.name[len("date="):]}, path
    everything = pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("date=*/*.parquet"))])
    # A file that is not Parquet, on a day outside the windows below: read_log never opens it.
    (folder / "date=2026-02-01").mkdir()
    (folder / "date=2026-02-01" / "x.parquet").write_bytes(b"not parquet")

    def rows(table) -> list[tuple]:
        return sorted((r["id"], r["feature"], r["served_at"], r["value"]) for r in table.to_pylist())

    def full_scan(since, until) -> list[tuple]:
        def utc(t):
            return t if t is None or t.tzinfo else t.replace(tzinfo=timezone.utc)

        return sorted((r["id"], r["feature"], r["served_at"], r["value"]) for r in everything.to_pylist()
                      if (since is None or r["served_at"] >= utc(since))
                      and (until is None or r["served_at"] < utc(until)))

    day2, day3 = datetime(2026, 3, 2), datetime(2026, 3, 3)
    windows = [
        (day2, day3),  # one whole day
        (day2 + timedelta(hours=5), day3 + timedelta(hours=13, minutes=30)),  # across midnight
        (datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=2))), day3),  # an aware bound
        (served[10], served[11]),  # exactly one entry: since included, until excluded
        (day3, None), (datetime(2026, 3, 1, 23), day2 - timedelta(microseconds=1)),
        (day3 + timedelta(minutes=1), day3 + timedelta(minutes=2)),  # nothing served then
    ]
    for since, until in windows:
        want = full_scan(since, until)
        assert rows(servinglog.read_log(tmp_path, since, until, target="dev")) == want, (since, until)
    assert len(full_scan(served[10], served[11])) == 2
    assert [p.name for p in servinglog.day_folders(folder, day2 + timedelta(hours=5), day3)] == ["date=2026-03-02"]
    with pytest.raises(Exception, match="(?i)parquet"):  # the unbounded read does open it
        servinglog.read_log(tmp_path, target="dev")


def test_a_drain_that_stalls_past_its_lease_lands_nothing_twice(store, raw, tmp_path):
    """A drain paused between reading a batch and landing it, past its lease, while a second drain
    takes the expired lease and lands everything: the first finds its lease gone and lands nothing."""
    ids = add_entries(raw, store, 30)
    stalled, resume = threading.Event(), threading.Event()
    outcome: dict = {}

    def stall(report, path):
        if not stalled.is_set():  # its first batch is read, not yet written
            stalled.set()
            resume.wait(10)

    def first() -> None:
        try:
            outcome["report"] = servinglog.drain(store, tmp_path, batch=10, lease_ms=200, before_landing=stall)
        except servinglog.DrainLocked as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    assert stalled.wait(10)
    time.sleep(0.5)  # its lease runs out
    other = OnlineStore.for_registry(REG, url=store.url)
    try:
        assert servinglog.drain(other, tmp_path, batch=10).entries == 30  # took the lease over
        resume.set()
        thread.join(10)
        assert "report" not in outcome
        assert re.search(r"lost its lease .* stopped before landing \S+\.parquet; 0 file", str(outcome["error"]))
        assert_exactly_once(tmp_path, ids)
        assert not list(tmp_path.rglob("*.tmp"))  # its written file was removed, not renamed
        assert servinglog.drain(other, tmp_path).entries == 0  # and the lease is free again
    finally:
        resume.set()
        thread.join(10)
        other.close()


def test_a_failed_landing_is_the_error_seen_when_redis_is_gone_for_the_release_too(tmp_path):
    from conftest import start_redis

    from feature_store.errors import WarehouseError

    proc, port = start_redis(tmp_path)
    try:
        s = OnlineStore.for_registry(REG, url=f"redis://127.0.0.1:{port}/0", retries=1)
        client = redis.Redis(port=port)
        add_entries(client, s, 5)
        client.close()

        def break_both(report, path):
            proc.terminate()  # Redis goes away, so the lease cannot be released...
            proc.wait(10)
            path.parent.parent.mkdir(parents=True, exist_ok=True)
            path.parent.write_text("a file where the day's folder goes")  # ...and the file cannot land

        with pytest.raises(WarehouseError, match="cannot land the serving log"):
            servinglog.drain(s, tmp_path / "landing", before_landing=break_both)
        s.close()
    finally:
        proc.kill()
        proc.wait(10)


def test_entries_trimmed_at_the_cap_before_a_drain_are_reported_lost(store, raw, tmp_path):
    first = add_entries(raw, store, 50)
    assert servinglog.drain(store, tmp_path).lost_warning is None
    add_entries(raw, store, 1000, maxlen=100)  # the cap trims past the last landed entry
    report = servinglog.drain(store, tmp_path)
    assert report.lost_warning is not None
    assert f"no longer holds the last landed entry {first[-1]}" in report.lost_warning
    assert "Drain more often" in report.lost_warning
    assert 100 <= report.entries < 1000
    assert servinglog.drain(store, tmp_path).lost_warning is None  # nothing lost since


def test_a_stream_trimmed_before_its_first_drain_is_reported_lost(store, raw, tmp_path):
    add_entries(raw, store, 1000, maxlen=100)
    report = servinglog.drain(store, tmp_path)
    assert report.lost_warning is not None and "no serving log has landed" in report.lost_warning


def test_the_cap_trims_the_stream_that_reads_write(store, raw, now, monkeypatch):
    monkeypatch.setattr(servinglog, "DEFAULT_MAXLEN", 100)
    for _ in range(120):
        get_online_features(REG, store, ORDER, USERS, now=now)
    store.flush_serving_log()
    assert 100 <= raw.xlen(servinglog.stream_key(store.prefix)) < 360


def test_drain_on_a_cluster(redis_cluster, now, tmp_path):
    redis_cluster.flush()
    s = OnlineStore.for_registry(REG, url=redis_cluster.url, client="scorer", timeout=2.0, connect_timeout=1.0)
    load(s, now)
    want = logged_reads(s, now, reads=3)
    got = servinglog.drain(s, tmp_path, batch=5)
    assert got.entries == 12 and len(landed(tmp_path)) == len(want)
    reads = s.client.hgetall(day_key(s, now))
    assert int(reads[b"scorer\tuser_order_features:user_7d_orders"]) == 12
    s.close()


# -- dbt and the HTTP server ----------------------------------------------------------------------


@pytest.mark.dbt
def test_the_serving_log_model_reads_the_landed_files(project_copy, store, raw, now, monkeypatch):
    import duckdb
    from conftest import run_dbt

    from feature_store.push import default_landing_dir

    # A session zone other than UTC: the landed instants must still come out as naive UTC.
    monkeypatch.setenv("TZ", "America/New_York")
    database = project_copy / "feature_store.duckdb"

    def model() -> list[dict]:
        with duckdb.connect(str(database), read_only=True) as con:
            cursor = con.execute("select * from main.serving_log order by id, feature")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    run_dbt(project_copy, "build", "--select", "serving_log")  # no file yet: empty, typed, tests pass
    assert model() == []
    logged_reads(store, now, reads=3)
    landing = default_landing_dir(project_copy)
    assert servinglog.drain(store, landing).entries == 12
    # Another target's log in the same landing folder: not dev's, so not in dev's model.
    prod = OnlineStore.for_registry(make_registry(target="prod"), url=store.url)
    add_entries(raw, prod, 4)
    assert servinglog.drain(prod, landing).entries == 4
    prod.close()
    run_dbt(project_copy, "build", "--select", "serving_log")  # the profile's target: dev
    want = sorted(landed(landing), key=lambda r: (r["id"], r["feature"]))
    for row in want:
        for k in ("served_at", "event_ts"):
            row[k] = row[k].replace(tzinfo=None) if row[k] is not None else None
    assert model() == want and len(want) == 36
    assert {r["served_at"] for r in want} == {now}


@pytest.mark.dbt
def test_the_server_records_reads_under_the_tokens_name(built_project, tmp_path):
    import httpx
    from server_support import RedisProcess, ServerProcess, fstore

    project = tmp_path / "project"
    shutil.copytree(built_project, project)
    manifest_path = project / "target" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for node in manifest["nodes"].values():
        if node.get("name") == "user_order_features":
            node["config"]["meta"]["feature_store"]["log_sample_rate"] = 1
    manifest_path.write_text(json.dumps(manifest))
    redis_proc = RedisProcess(tmp_path / "redis").start()
    try:
        assert fstore(project, redis_proc.url, "sync", "--quiet").returncode == 0
        tokens = tmp_path / "tokens.yml"
        tokens.write_text("tokens:\n  - {name: churn-scorer, token: scorer-token-0123456789abcdef, scopes: [read]}\n")
        server = ServerProcess(project, redis_proc.url, tmp_path / "serve.log", "--tokens-file", str(tokens)).start()
        try:
            body = {"features": ["user_order_features:user_7d_orders", "user_order_features:user_lifetime_orders"],
                    "entities": {"user_id": [1, 2, 999999]}}
            answer = httpx.post(f"{server.url}/get-online-features", json=body, timeout=10,
                                headers={"Authorization": "Bearer scorer-token-0123456789abcdef"})
            assert answer.status_code == 200, answer.text
            raw = redis.Redis.from_url(redis_proc.url)
            prefix = f"fs:{manifest['metadata']['project_name']}:dev"
            key = servinglog.stream_key(prefix)
            deadline = time.monotonic() + 5
            while raw.xlen(key) < 3 and time.monotonic() < deadline:  # a quiet server sends them within 1 s
                time.sleep(0.1)
            entries = [{k.decode(): v.decode() for k, v in f.items()} for _, f in raw.xrange(key)]
            assert [e["client"] for e in entries] == ["churn-scorer"] * 3
            assert [e["entity"] for e in entries] == ['{"user_id":1}', '{"user_id":2}', '{"user_id":999999}']
            values = answer.json()["results"][1]["values"]
            assert [json.loads(e["values"])[0] for e in entries] == [None if v is None else str(v) for v in values]
            reads = {k.decode(): int(v) for k, v in raw.hgetall(audit.reads_key(prefix, utc_now().date())).items()}
            assert reads == {"churn-scorer\tuser_order_features:user_7d_orders": 3,
                             "churn-scorer\tuser_order_features:user_lifetime_orders": 3}
            raw.close()
        finally:
            server.stop()
    finally:
        redis_proc.stop()


def test_counts_are_added_up_in_the_process_and_sent_at_most_every_counts_every(redis_url, raw, now, monkeypatch):
    monkeypatch.delenv("FEATURE_STORE_CLIENT", raising=False)
    s = OnlineStore.for_registry(REG, url=redis_url, client="batcher", counts_every=3600)
    load(s, now)
    raw.config_resetstat()
    for _ in range(10):
        get_online_features(REG, s, ORDER[:1], USERS, now=now)
    # The first read sent its counts at once; the nine after it wait for the hour, or a flush.
    assert raw.info("commandstats")["cmdstat_hincrby"]["calls"] == 1
    field = f"batcher\t{ORDER[0]}"
    assert counters(raw, day_key(s, now))[field] == 3
    s.flush_serving_log()
    assert counters(raw, day_key(s, now))[field] == 30
    assert raw.info("commandstats")["cmdstat_hincrby"]["calls"] == 2  # the nine reads in one HINCRBY
    s.close()



def test_counts_added_while_other_threads_take_them_are_all_taken_once(redis_url):
    """The bookkeeping under the reads above, at a thread switch every microsecond: every count
    added is taken exactly once, and taking never trips over a count being added."""
    s = OnlineStore.for_registry(REG, url=redis_url, client="threads")
    adders, adds, errors = 4, 20_000, []
    taken = [Counter(), Counter(), Counter()]  # one per taker (a Counter is no more thread-safe than a dict)
    now_us = int(time.time() * 1e6)

    def add() -> None:
        for _ in range(adds):
            s._count(now_us, ("a", "b"), 1)

    def take(stop: threading.Event, mine: Counter) -> None:
        try:
            while not stop.is_set():
                commands = s._take_records(force=True)
                mine.update({c[2]: c[3] for c in commands if c[0] == "HINCRBY"})
        except Exception as exc:  # noqa: BLE001 - the finding
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        stop = threading.Event()
        takers = [threading.Thread(target=take, args=(stop, taken[i])) for i in range(2)]
        threads = [threading.Thread(target=add) for _ in range(adders)]
        for t in takers + threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        for t in takers:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    commands = s._take_records(force=True)
    taken[2].update({c[2]: c[3] for c in commands if c[0] == "HINCRBY"})
    assert errors == [] and sum(taken, Counter()) == {"a": adders * adds, "b": adders * adds}
    s._counts.clear()
    s.close()

def test_threads_reading_and_flushing_one_store_lose_no_count_and_fail_no_read(redis_url, raw, now, monkeypatch):
    """Counts added by readers while another thread takes them for sending land in one batch or the next."""
    monkeypatch.delenv("FEATURE_STORE_CLIENT", raising=False)
    s = OnlineStore.for_registry(REG, url=redis_url, client="threads", counts_every=0.001)
    load(s, now)
    readers, reads, errors = 4, 300, []

    def read() -> None:
        try:
            for _ in range(reads):
                get_online_features(REG, s, ORDER[:1], USERS, now=now)
        except Exception as exc:  # noqa: BLE001 - any failure of a read is the finding
            errors.append(exc)

    def flush(stop: threading.Event) -> None:
        while not stop.is_set():
            s.flush_serving_log()

    stop = threading.Event()
    flusher = threading.Thread(target=flush, args=(stop,))
    flusher.start()
    threads = [threading.Thread(target=read) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    flusher.join()
    s.flush_serving_log()
    assert errors == [] and s.log_errors == 0
    assert counters(raw, day_key(s, now))[f"threads\t{ORDER[0]}"] == readers * reads * len(USERS)
    s.close()
