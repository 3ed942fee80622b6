"""Push: validation, the write rule, retries, the durable landing, and the loop push -> online -> build -> training.

Rows are validated in full before anything is written; a rejected request leaves Redis
and the landing folder untouched. Accepted rows land as Parquet first (atomically), then
go to Redis through the sync's own writer. The registry of tests/online_support.py covers
every value type; the loop runs on a real `dbt build` of the example project. Redis is a
real redis-server throughout, and failures are real ones (an unreachable server, a killed
process), not stand-ins for the stores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis

from conftest import REPO, free_port, run_dbt, start_redis
from feature_store.errors import FeatureStoreError, OnlineStoreError, WarehouseError
from feature_store.materialize import sync
from feature_store.online import FieldStatus, OnlineStore, get_online_features
from feature_store.push import PushRejected, PushResult, default_landing_dir, push_rows
from feature_store.writelag import PUSH_WINDOW, push_lag_key, read_write_lag
from online_support import MemorySource, make_registry, make_tables, utc_now

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")]

REG = make_registry()
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def now():
    return utc_now().replace(microsecond=0)


@pytest.fixture
def store(redis_url):
    s = OnlineStore.for_registry(REG, url=redis_url)
    yield s
    s.close()


@pytest.fixture
def landing(tmp_path) -> Path:
    return tmp_path / "push"


def mark_synced(store: OnlineStore, *views: str) -> None:
    """Reads serve a view only once a sync has finished in this Redis; a push alone does not make one."""
    client = redis.Redis.from_url(store.url)
    for view in views:
        client.hset(store.sync_key(view), "as_of", "2026-01-01 00:00:00")
    client.close()


def landed_files(landing: Path) -> list[Path]:
    """What the dbt macro's glob (<dir>/<view>/**/*.parquet) reads."""
    return sorted(landing.glob("*/**/*.parquet"))


def txn(user_id, at: datetime, velocity=3, amount=12.5, category="grocery") -> dict:
    return {"user_id": user_id, "event_ts": at.isoformat(), "txn_velocity_60s": velocity,
            "txn_amount_10m": amount, "txn_last_category": category}


def read(store, view, user_ids, features=None):
    got = get_online_features(REG, store, features or [view], [{"user_id": u} for u in user_ids],
                              apply_fallbacks=False)
    return got.to_dict(), got.statuses


# -- validation ------------------------------------------------------------------------------


def _cases(now: datetime) -> list:
    ok = txn(1, now - timedelta(seconds=5))
    ts = (now - timedelta(seconds=5)).isoformat()
    types = {"user_id": 1, "event_ts": ts, "f_int": 1, "f_float": 1.5, "f_decimal": "1.25", "f_string": "x",
             "f_bool": True, "f_ts": ts, "f_tstz": ts + "Z", "f_date": "2025-11-03"}
    return [
        # (view, rows, row, field, words in the message)
        ("user_txn_featurs", [ok], None, None, "did you mean 'user_txn_features'"),
        ("offline_only", [{"user_id": 1, "event_ts": ts, "f": 1}], None, None, "not online"),
        ("user_txn_features", {"user_id": 1}, None, None, "must be a list"),
        ("user_txn_features", [ok, "not a row"], 1, None, "must be an object"),
        ("user_txn_features", [ok, {**ok, "txn_velocty_60s": 3}], 1, "txn_velocty_60s",
         "did you mean 'txn_velocity_60s'"),
        ("user_txn_features", [ok, {**ok, "txn_velocity_60s": "abc"}], 1, "txn_velocity_60s", "declared bigint"),
        ("user_txn_features", [ok, {**ok, "txn_velocity_60s": 3.0}], 1, "txn_velocity_60s", "give an integer"),
        ("user_txn_features", [ok, {**ok, "txn_velocity_60s": True}], 1, "txn_velocity_60s", "give an integer"),
        ("user_txn_features", [ok, {**ok, "user_id": 1.0}], 1, "user_id", "declared int"),
        ("user_txn_features", [ok, {**ok, "user_id": "042"}], 1, "user_id", "leading zeros"),
        ("user_txn_features", [ok, {k: v for k, v in ok.items() if k != "user_id"}], 1, "user_id",
         "missing join key"),
        ("user_txn_features", [ok, {**ok, "user_id": None}], 1, "user_id", "missing join key"),
        ("user_txn_features", [ok, {k: v for k, v in ok.items() if k != "event_ts"}], 1, "event_ts",
         "missing event timestamp"),
        ("user_txn_features", [ok, {**ok, "event_ts": "yesterday"}], 1, "event_ts", "ISO 8601"),
        ("user_txn_features", [ok, {**ok, "event_ts": 1764547200}], 1, "event_ts", "ISO 8601"),
        ("user_txn_features", [ok, {**ok, "event_ts": (now + timedelta(hours=1)).isoformat()}], 1, "event_ts",
         "ahead of the clock"),
        ("user_txn_features", [ok, {k: v for k, v in ok.items() if k != "txn_amount_10m"}], 1, "txn_amount_10m",
         "missing feature"),
        ("user_txn_features", [ok, {**ok, "txn_amount_10m": "12.5"}], 1, "txn_amount_10m", "give a number"),
        ("user_txn_features", [ok, {**ok, "txn_last_category": 7}], 1, "txn_last_category", "give text"),
        ("user_txn_features", [ok, {**ok, "txn_velocity_60s": 4}], 1, "event_ts",
         "same user_id and timestamps as row 0"),
        ("all_types", [types, {**types, "f_decimal": "1.23456"}], 1, "f_decimal", "more than 4 decimal places"),
        ("all_types", [types, {**types, "f_decimal": 10**15}], 1, "f_decimal", "more than 18 digits"),
        ("all_types", [types, {**types, "f_date": ts}], 1, "f_date", "ISO date"),
        ("all_types", [types, {**types, "f_bool": "yes"}], 1, "f_bool", "true or false"),
        ("all_types", [types, {**types, "f_int": 2**63}], 1, "f_int", "64-bit"),
        ("all_types", [types, {**types, "f_tstz": "2025-13-01T00:00:00Z"}], 1, "f_tstz", "ISO 8601"),
    ]


def test_rejects_rows_that_do_not_fit_naming_row_and_field_and_writes_nothing(store, landing, now):
    client = redis.Redis.from_url(store.url)
    for view, rows, row, field, words in _cases(now):
        with pytest.raises(PushRejected) as info:
            push_rows(REG, store, view, rows, landing_dir=landing)
        err = info.value
        assert (err.row, err.field) == (row, field), (view, str(err))
        assert words in str(err), str(err)
        if row is not None:
            assert f"row {row}" in str(err) and (field is None or field in str(err))
        assert isinstance(err, FeatureStoreError)
        # The valid row 0 of the same request was not written either: validation comes first.
        assert client.dbsize() == 0, (view, words)
        assert not landing.exists(), (view, words)
    client.close()


def test_values_are_taken_by_declared_type_and_read_back_exactly(store, landing, now):
    mark_synced(store, "all_types")
    at = now - timedelta(seconds=5)
    row = {"user_id": "7", "event_ts": at.isoformat() + "+00:00", "f_int": "-9223372036854775808", "f_float": 2,
           "f_decimal": 12.5, "f_string": "ünïcode {a}", "f_bool": "false",
           "f_ts": "2025-11-03T01:02:03.000004", "f_tstz": "2025-11-03T02:02:03+01:00", "f_date": "2025-11-03"}
    result = push_rows(REG, store, "all_types", [row], landing_dir=landing)
    assert (result.rows, result.written, result.unchanged, result.older) == (1, 1, 0, 0)
    got, statuses = read(store, "all_types", [7])
    assert got["f_int"] == [-(2**63)] and got["f_float"] == [2.0] and got["f_decimal"] == [Decimal("12.5000")]
    assert got["f_string"] == ["ünïcode {a}"] and got["f_bool"] == [False]
    assert got["f_ts"] == [datetime(2025, 11, 3, 1, 2, 3, 4)]
    assert got["f_tstz"] == [datetime(2025, 11, 3, 1, 2, 3, tzinfo=timezone.utc)]
    assert got["f_date"] == [datetime(2025, 11, 3).date()]
    assert all(s == [FieldStatus.PRESENT] for s in statuses.values())
    # Landed with the declared types, at the row's event hour.
    [path] = landed_files(landing)
    assert path.parent == landing / "all_types" / f"date={at.date().isoformat()}" / f"hour={at.hour:02d}"
    table = pq.read_table(path)
    assert table.schema.field("f_decimal").type.scale == 4 and str(table.schema.field("f_tstz").type.tz) == "UTC"
    assert table.to_pylist()[0]["event_ts"] == at and table.to_pylist()[0]["f_int"] == -(2**63)
    # None for a feature is NULL: an absent field online.
    push_rows(REG, store, "all_types", [{**row, "event_ts": (at + timedelta(seconds=1)).isoformat(), "f_string": None}],
              landing_dir=landing)
    got, statuses = read(store, "all_types", [7])
    assert got["f_string"] == [None] and statuses["f_string"] == [FieldStatus.NULL_VALUE]


def test_pushed_rows_are_stored_exactly_as_the_sync_stores_them(store, landing, now):
    """Push every live row of the fixture views, then sync the same rows from the 'warehouse':
    the sync finds every entity unchanged (same fields, same text, same definition digest)."""
    tables = make_tables(now, users=40)
    for name in ("all_types", "user_order_features", "user_txn_features", "merchant_pair"):
        rows = [r for r in tables[name].to_pylist() if r["event_ts"] <= now]
        result = push_rows(REG, store, name, rows, landing_dir=landing)
        assert result.rows == len(rows) and result.written + result.unchanged + result.older == len(rows)
    report = sync(REG, store, now=now, source=MemorySource(REG, tables))
    for name in ("all_types", "user_order_features", "user_txn_features", "merchant_pair"):
        vr = report.views[name]
        assert vr.keys_written == 0, name
        assert vr.unchanged == vr.rows_read - vr.expired_on_arrival > 0, name


# -- the write rule ----------------------------------------------------------------------------


def test_an_older_push_never_replaces_a_newer_row(store, landing, now):
    mark_synced(store, "user_txn_features")
    newer = txn(5, now - timedelta(seconds=10), velocity=4)
    assert push_rows(REG, store, "user_txn_features", [newer], landing_dir=landing).written == 1
    older = txn(5, now - timedelta(seconds=40), velocity=1, category="late")
    result = push_rows(REG, store, "user_txn_features", [older], landing_dir=landing)
    assert (result.written, result.unchanged, result.older) == (0, 0, 1)
    got, _ = read(store, "user_txn_features", [5])
    assert got["txn_velocity_60s"] == [4] and got["txn_last_category"] == ["grocery"]
    # Still landed: training sets want the late row at its own time.
    assert any(r["txn_last_category"] == "late" for p in landed_files(landing) for r in pq.read_table(p).to_pylist())
    # A sync that reads an older warehouse row for the entity skips it too.
    tables = {"user_txn_features": make_tables(now, users=6)["user_txn_features"]}
    report = sync(REG, store, views=["user_txn_features"], now=now, source=MemorySource(REG, tables))
    assert report.ok
    got, _ = read(store, "user_txn_features", [5])
    assert got["txn_velocity_60s"] == [4]
    # Rows past the ttl are not written online (Redis would drop them at once) and count as older.
    stale = txn(6, now - timedelta(minutes=30))
    result = push_rows(REG, store, "user_txn_features", [stale], landing_dir=landing)
    assert (result.written, result.older) == (0, 1) and result.landed


def test_a_push_is_not_blocked_by_a_running_sync(store, landing, now):
    mark_synced(store, "user_txn_features")
    assert store.try_lock("user_txn_features", "a-sync-holding-the-lock", 30_000) is None
    try:
        result = push_rows(REG, store, "user_txn_features", [txn(8, now - timedelta(seconds=3))], landing_dir=landing)
    finally:
        store.unlock("user_txn_features", "a-sync-holding-the-lock")
    assert result.written == 1


def test_a_retried_push_is_idempotent(store, landing, now):
    mark_synced(store, "user_txn_features")
    rows = [txn(u, now - timedelta(seconds=u)) for u in range(1, 6)]
    first = push_rows(REG, store, "user_txn_features", rows, landing_dir=landing)
    files = landed_files(landing)
    again = push_rows(REG, store, "user_txn_features", rows, landing_dir=landing)
    assert (first.written, first.unchanged) == (5, 0)
    assert (again.rows, again.written, again.unchanged, again.older) == (5, 0, 5, 0)
    assert again.landed == first.landed and landed_files(landing) == files  # the same files, replaced by themselves
    assert sum(pq.read_table(p).num_rows for p in files) == 5


# -- the write lag a push records (fstore monitor) ---------------------------------------------


def test_a_push_records_the_write_lag_of_the_rows_it_wrote_as_newer_versions(store, landing, now):
    mark_synced(store, "user_txn_features")
    key = push_lag_key(store, "user_txn_features")
    client = redis.Redis.from_url(store.url)
    at = utc_now()
    rows = [txn(u, now - timedelta(seconds=60 * u)) for u in (1, 2, 3)]
    push_rows(REG, store, "user_txn_features", rows, landing_dir=landing)
    pushed = next(w for w in read_write_lag(store, "user_txn_features") if w.source == "push")
    assert pushed.rows == 3 and 180 <= pushed.max_s < (utc_now() - now).total_seconds() + 180
    # The list expires a window after the last push: a view no longer pushed loses it.
    assert PUSH_WINDOW.total_seconds() - 60 < client.ttl(key) <= PUSH_WINDOW.total_seconds()
    # A retry (unchanged), an older row (skipped), a row past the ttl (not sent) and a same-version
    # rewrite are not lateness: nothing is added. A newer row is.
    push_rows(REG, store, "user_txn_features", rows, landing_dir=landing)
    push_rows(REG, store, "user_txn_features", [txn(1, now - timedelta(seconds=90))], landing_dir=landing)
    push_rows(REG, store, "user_txn_features", [txn(4, now - timedelta(minutes=30))], landing_dir=landing)
    push_rows(REG, store, "user_txn_features", [txn(2, now - timedelta(seconds=120), velocity=9)],
              landing_dir=landing)
    assert client.llen(key) == 3
    push_rows(REG, store, "user_txn_features", [txn(1, now - timedelta(seconds=5))], landing_dir=landing)
    entries = [item.decode().split(",") for item in client.lrange(key, 0, -1)]
    assert len(entries) == 4 and 5 <= float(entries[0][1]) < (utc_now() - now).total_seconds() + 5
    assert all(at.replace(tzinfo=timezone.utc).timestamp() - 1 <= float(e[0]) for e in entries)
    client.close()


def test_the_monitor_reads_only_the_pushes_of_the_last_window(store, landing, now):
    mark_synced(store, "user_txn_features")
    key = push_lag_key(store, "user_txn_features")
    client = redis.Redis.from_url(store.url)
    # An old backfill push, a day and an hour ago, with lags of days, still in the list.
    old = (utc_now() - PUSH_WINDOW - timedelta(hours=1)).replace(tzinfo=timezone.utc).timestamp()
    client.lpush(key, *[f"{old:.3f},{3 * 86400 + i:.3f}" for i in range(50)])
    assert [w for w in read_write_lag(store, "user_txn_features") if w.source == "push"] == []
    push_rows(REG, store, "user_txn_features", [txn(1, now - timedelta(seconds=30))], landing_dir=landing)
    pushed = next(w for w in read_write_lag(store, "user_txn_features") if w.source == "push")
    assert pushed.rows == 1 and pushed.max_s < 120  # the backfill's days no longer count
    assert client.llen(key) == 51  # still stored until trimmed or expired, but not judged
    # Judged as of two hours ago, the backfill is inside the window and the new push not yet made.
    earlier = read_write_lag(store, "user_txn_features", now=utc_now() - timedelta(hours=2))
    assert next(w for w in earlier if w.source == "push").rows == 50
    client.close()


# -- landing: atomic, durable, ordered before the online write ---------------------------------


def test_a_failed_landing_leaves_no_file_and_writes_nothing_online(store, landing, now, monkeypatch):
    def half_then_fail(table, where, **kwargs):
        where.write(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", half_then_fail)  # the module's: the landing looks it up per call
    with pytest.raises(WarehouseError, match="No space left on device.*may retry"):
        push_rows(REG, store, "user_txn_features", [txn(1, now - timedelta(seconds=5))], landing_dir=landing)
    assert landed_files(landing) == []
    assert [p for p in landing.rglob("*") if p.is_file()] == []  # the temporary file is gone too
    assert redis.Redis.from_url(store.url).dbsize() == 0
    monkeypatch.undo()
    assert push_rows(REG, store, "user_txn_features", [txn(1, now - timedelta(seconds=5))],
                     landing_dir=landing).written == 1


def test_redis_down_after_landing_loses_nothing_and_the_retry_completes(store, landing, now):
    rows = [txn(3, now - timedelta(seconds=5)), txn(4, now - timedelta(seconds=4))]
    down = OnlineStore.for_registry(REG, url=f"redis://127.0.0.1:{free_port()}/0", retries=0)
    with pytest.raises(OnlineStoreError, match="cannot reach Redis"):
        push_rows(REG, down, "user_txn_features", rows, landing_dir=landing)
    # Not acknowledged, yet already durable offline: the next build sees the rows.
    files = landed_files(landing)
    assert sum(pq.read_table(p).num_rows for p in files) == 2
    retried = push_rows(REG, store, "user_txn_features", rows, landing_dir=landing)
    assert retried.written == 2 and landed_files(landing) == files  # no second copy offline


PUSHER = """
import sys, time
sys.path[:0] = {paths!r}
from pathlib import Path
from feature_store.online import OnlineStore
from feature_store.push import push_rows
from online_support import make_registry
reg = make_registry()
store = OnlineStore.for_registry(reg, url={url!r}, retries=0)
rows = {rows!r}
push_rows(reg, store, "user_txn_features", rows, landing_dir=Path({landing!r}))
print("acknowledged", flush=True)
"""


def test_a_pusher_killed_between_the_two_writes_leaves_a_whole_file_and_a_retry_finishes(store, landing, now,
                                                                                        tmp_path):
    """kill -9 after the landing, while Redis (paused) has not answered: the landed file is whole
    and readable, no temporary file is visible to the glob, nothing was acknowledged, and the
    client's retry writes Redis without landing a second copy."""
    proc, port = start_redis(tmp_path)
    rows = [txn(u, now - timedelta(seconds=u)) for u in range(1, 4)]
    paused = False
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        paused = True
        code = PUSHER.format(paths=[str(TESTS), str(REPO / "python")], url=f"redis://127.0.0.1:{port}/0",
                             rows=rows, landing=str(landing))
        pusher = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not landed_files(landing) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert landed_files(landing), "the pusher never landed its rows"
        time.sleep(0.2)  # it is now waiting on the paused Redis
        pusher.send_signal(signal.SIGKILL)
        out, _ = pusher.communicate(timeout=10)
        assert "acknowledged" not in out
        os.kill(proc.pid, signal.SIGCONT)
        paused = False
        assert redis.Redis(port=port).dbsize() == 0
    finally:
        if paused:
            os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)
    [path] = landed_files(landing)
    assert pq.read_table(path).num_rows == 3
    assert not [p for p in landing.rglob("*.tmp")]
    retried = push_rows(REG, store, "user_txn_features", rows, landing_dir=landing)
    assert retried.written == 3 and landed_files(landing) == [path]


def test_one_file_per_event_hour_each_durable_and_named_by_its_rows(store, landing, now):
    base = now.replace(minute=30, second=0) - timedelta(hours=3)
    rows = [txn(1, base), txn(2, base + timedelta(hours=1)), txn(3, base + timedelta(hours=1, minutes=5))]
    result = push_rows(REG, store, "user_txn_features", rows, landing_dir=landing)
    assert len(result.landed) == 2 and result.older == 3  # all past the 10m ttl: offline only
    hours = [Path(p).parent.relative_to(landing / "user_txn_features") for p in result.landed]
    first, second = base, base + timedelta(hours=1)
    assert hours == [Path(f"date={t.date().isoformat()}") / f"hour={t.hour:02d}" for t in (first, second)]
    assert [pq.read_table(p).num_rows for p in result.landed] == [1, 2]


def test_default_landing_dir_follows_the_project_var(tmp_path):
    (tmp_path / "dbt_project.yml").write_text("name: p\n")
    assert default_landing_dir(tmp_path) == tmp_path / "push"
    (tmp_path / "dbt_project.yml").write_text('name: p\nvars:\n  "feature_store:push_dir": landing/pushed\n')
    assert default_landing_dir(tmp_path) == tmp_path / "landing" / "pushed"
    (tmp_path / "dbt_project.yml").write_text('name: p\nvars:\n  "feature_store:push_dir": /srv/push\n')
    assert default_landing_dir(tmp_path) == Path("/srv/push")


def test_an_empty_push_writes_nothing(store, landing):
    assert push_rows(REG, store, "user_txn_features", [], landing_dir=landing) == PushResult(0, 0, 0, 0, [])
    assert not landing.exists()


# -- the loop: push -> online now -> warehouse at the next build ---------------------------------


@pytest.mark.dbt
def test_pushed_rows_are_online_now_and_in_training_sets_after_the_next_build(project_copy, redis_url):
    from feature_store import FeatureStore

    now = utc_now().replace(microsecond=0)
    # Both builds land the same computed rows, the seeds' last moment at `now`: after the pushes
    # (the example's data test refuses rows later than the data's own "now"), and before the first
    # sync, so the last sync finds no computed row it has not written, however slow the builds.
    pinned = ["--vars", f'{{shift_seeds_to: "{now.isoformat(sep=" ")}"}}']
    run_dbt(project_copy, "build", *pinned)
    fs = FeatureStore(project_copy, redis_url=redis_url)
    registry = fs.registry
    assert fs.materialize().ok
    # Compiled with no landed file yet: the view unions an empty relation.
    compiled = (project_copy / "target" / "compiled" / "feature_store" / "models" / "features"
                / "user_txn_features.sql").read_text()
    assert "read_parquet" not in compiled

    at = now - timedelta(seconds=5)
    user_id = 900_001  # a new card holder: no computed row of theirs is near the push
    row = {"user_id": user_id, "event_ts": at.isoformat(), "txn_velocity_60s": 9, "txn_amount_1h_sum": 123.45}
    landing = default_landing_dir(project_copy)
    result = push_rows(registry, fs.online_store, "user_txn_features", [row], landing_dir=landing)
    assert (result.written, len(result.landed)) == (1, 1)
    # A row the stream and the batch both computed (same user and time): the pushed one replaces
    # the computed one offline, as the later write of an equal version does online.
    import duckdb

    with duckdb.connect(str(project_copy / "feature_store.duckdb"), read_only=True) as con:
        user, seen = con.execute("select user_id, max(event_ts) from user_txn_features where user_id = 7 "
                                 "and event_ts < ? group by 1", [now - timedelta(minutes=15)]).fetchone()
    both = {"user_id": user, "event_ts": seen.isoformat(), "txn_velocity_60s": 77, "txn_amount_1h_sum": "0.01"}
    assert push_rows(registry, fs.online_store, "user_txn_features", [both], landing_dir=landing).older == 1

    # Online now.
    online = fs.get_online_features(["user_txn_features:txn_velocity_60s", "user_txn_features:txn_amount_1h_sum"],
                                    [{"user_id": user_id}]).to_dict()
    assert online["txn_velocity_60s"] == [9] and online["txn_amount_1h_sum"] == [Decimal("123.45")]

    # Offline at the next build: the training set at the push's time sees it, just before does not.
    spine = pd.DataFrame({"user_id": [user_id, user_id], "label_ts": [at, at - timedelta(microseconds=1)]})
    features = ["user_txn_features:txn_velocity_60s", "user_txn_features:txn_amount_1h_sum"]
    before = fs.get_historical_features(spine, features, timestamp_column="label_ts").to_df()
    assert before["txn_velocity_60s"].isna().all()
    run_dbt(project_copy, "build", *pinned)  # its tests too: still one row per user and time
    after = fs.get_historical_features(spine, features, timestamp_column="label_ts").to_df()
    assert after["txn_velocity_60s"].tolist()[0] == 9 and after["txn_amount_1h_sum"].tolist()[0] == Decimal("123.45")
    assert pd.isna(after["txn_velocity_60s"].tolist()[1])
    replaced = fs.get_historical_features(pd.DataFrame({"user_id": [user], "label_ts": [seen]}), features,
                                          timestamp_column="label_ts").to_df()
    assert replaced["txn_velocity_60s"].tolist() == [77] and replaced["txn_amount_1h_sum"].tolist() == [Decimal("0.01")]

    # The next sync reads the entity (its fingerprint changed) and finds the pushed row unchanged online.
    report = fs.materialize()
    vr = report.views["user_txn_features"]
    assert report.ok and vr.mode == "incremental" and vr.rows_read >= 1
    assert vr.keys_written == 0 and vr.unchanged >= 1
    assert fs.get_online_features(["user_txn_features:txn_velocity_60s"],
                                  [{"user_id": user_id}]).to_dict()["txn_velocity_60s"] == [9]


@pytest.mark.dbt
def test_the_macro_reads_a_named_relation_on_any_engine(project_copy):
    """vars."feature_store:push_relations" points the view at a relation (an external table over
    the landing folder on engines that cannot read the files themselves)."""
    run_dbt(project_copy, "compile", "-s", "user_txn_features", "--vars",
            '{"feature_store:push_relations": {user_txn_features: "landing.pushed_user_txn"}}')
    compiled = (project_copy / "target" / "compiled" / "feature_store" / "models" / "features"
                / "user_txn_features.sql").read_text()
    assert "from landing.pushed_user_txn" in compiled and "select distinct" in compiled
    assert 'cast("txn_amount_1h_sum" as decimal(18,2))' in compiled
