"""The online store: key layout, value codec, never-regress writes, and reads (TTL, fallbacks, statuses).

Runs against the session redis-server; the registry is a handwritten manifest
(tests/online_support.py), so no dbt is needed here.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
import warnings
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pytest
import redis
from feature_store import codec
from feature_store.errors import EntityDataFrameError, FeatureMissing, OnlineStoreError
from feature_store.online import FieldStatus, OnlineStore, get_online_features
from feature_store.writer import BatchWriter, write_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from online_support import make_registry, utc_now
from redis.crc import key_slot

pytestmark = pytest.mark.redis

REG = make_registry()
HYPO = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def mark_synced(store: OnlineStore) -> None:
    """Record a finished sync of every view, as `fstore sync` would: reads then serve what is there."""
    client = redis.Redis.from_url(store.url)
    for name in REG.views:
        client.hset(store.sync_key(name), "as_of", "2026-01-01 00:00:00")
    client.close()


@pytest.fixture
def store(redis_url):
    s = OnlineStore.for_registry(REG, url=redis_url)
    mark_synced(s)
    yield s
    s.close()


def rows(view_name: str, data: list[dict], schema: dict[str, pa.DataType]) -> pa.Table:
    """A snapshot-shaped table: the view's join keys and features, __event_ts, __created_ts."""
    view = REG.view(view_name)
    cols = list(view.join_keys) + view.feature_names + ["__event_ts", "__created_ts"]
    types = {"__event_ts": pa.timestamp("us"), "__created_ts": pa.timestamp("us"), **schema}
    return pa.table({c: pa.array([d.get(c) for d in data], types[c]) for c in cols})


ORDER_TYPES = {"user_id": pa.int64(), "user_7d_orders": pa.int64(), "user_avg_amount": pa.decimal128(12, 2),
               "user_last_order_ts": pa.timestamp("us")}
TXN_TYPES = {"user_id": pa.int64(), "txn_velocity_60s": pa.int64(), "txn_amount_10m": pa.float64(),
             "txn_last_category": pa.string()}


# -- codec ------------------------------------------------------------------------------------

ALL_TYPES = {
    "int": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "float": (pa.float64(), st.floats(allow_nan=True, allow_infinity=True)),
    "decimal": (pa.decimal128(18, 4), st.decimals(min_value=-10**13, max_value=10**13, places=4,
                                                    allow_nan=False, allow_infinity=False)),
    "string": (pa.string(), st.text(st.characters(blacklist_categories=("Cs",)))),
    "bool": (pa.bool_(), st.booleans()),
    "timestamp": (pa.timestamp("us"), st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 1, 1))),
    "date": (pa.date32(), st.dates(min_value=date(1000, 1, 1))),
}


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("kind", list(ALL_TYPES))
def test_codec_round_trips_every_type_through_arrow_and_python(kind):
    arrow_type, values = ALL_TYPES[kind]

    @HYPO
    @given(st.lists(st.one_of(st.none(), values), max_size=20))
    def check(data):
        encoded = codec.encode_column(kind, pa.array(data, arrow_type)).to_pylist()
        decode = codec.decoder(kind)
        for original, text in zip(data, encoded):
            if original is None:
                assert text is None  # NULL stays NULL: the field is left out of the hash
                continue
            assert same(decode(text.encode()), original), (original, text)
            assert same(decode(codec.encode_value(kind, original).encode()), original)

    check()


def test_float32_columns_read_back_as_the_warehouse_returns_them():
    col = pa.array([0.1, 1e38, None], pa.float32())
    decoded = [codec.decoder("float")(t.encode()) if t else None for t in codec.encode_column("float", col).to_pylist()]
    assert decoded == col.to_pylist()


def test_codec_keeps_timezone_awareness_and_normalises_to_utc():
    berlin = timezone(timedelta(hours=1))
    aware = datetime(2025, 1, 1, 1, 2, 3, 4, tzinfo=berlin)
    col = pa.array([aware], pa.timestamp("us", "Europe/Berlin"))
    text = codec.encode_column("timestamp", col)[0].as_py()
    assert text == "2025-01-01 00:02:03.000004Z"
    assert codec.decoder("timestamp")(text.encode()) == aware
    assert codec.encode_value("timestamp", aware) == text
    assert codec.decoder("decimal")(b"27.40") == Decimal("27.40")  # scale kept


# -- keys -------------------------------------------------------------------------------------


def test_key_layout_is_readable_and_hash_tagged(store):
    orders, txn = REG.view("user_order_features"), REG.view("user_txn_features")
    assert store.prefix == "fs:proj:dev"
    assert store.key(orders, {"user_id": 42}) == "fs:proj:dev:{user_id=42}:user_order_features"
    assert store.key(orders, {"user_id": "42"}) == store.key(orders, {"user_id": 42})  # from a command line
    assert key_slot(store.key(orders, {"user_id": 42}).encode()) == key_slot(store.key(txn, {"user_id": 42}).encode())
    pair = REG.view("merchant_pair")
    assert store.key(pair, {"user_id": 1, "merchant": "a}b{c,d=e%"}) == \
        "fs:proj:dev:{merchant=a%7Db%7Bc%2Cd%3De%25,user_id=1}:merchant_pair"


@HYPO
@given(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.text(st.characters(blacklist_categories=("Cs",)))),
                min_size=1, max_size=10))
def test_arrow_keys_equal_python_keys_and_keep_one_slot_per_entity(pairs):
    view = REG.view("merchant_pair")
    kinds = {"user_id": "int", "merchant": "string"}
    cols = {"user_id": pa.array([p[0] for p in pairs], pa.int64()), "merchant": pa.array([p[1] for p in pairs])}
    arrow_tags = codec.entity_tag_column(view.join_keys, kinds, cols).to_pylist()
    for (uid, merchant), tag in zip(pairs, arrow_tags):
        assert tag == codec.entity_tag(view.join_keys, kinds, {"user_id": uid, "merchant": merchant})
        assert tag.count("{") == 1 and tag.count("}") == 1  # nothing in a value can end the hash tag early



def test_timestamp_keys_are_one_key_whether_aware_or_naive():
    naive = datetime(2025, 1, 2, 3, 4, 5, 6)
    aware = naive.replace(tzinfo=timezone.utc).astimezone(timezone(timedelta(hours=2)))
    kinds = {"ts": "timestamp"}
    expected = "{ts=2025-01-02 03:04:05.000006}"
    assert codec.entity_tag(["ts"], kinds, {"ts": naive}) == expected
    assert codec.entity_tag(["ts"], kinds, {"ts": aware}) == expected
    assert codec.entity_tag(["ts"], kinds, {"ts": aware.isoformat()}) == expected
    for column in (pa.array([naive], pa.timestamp("us")), pa.array([aware], pa.timestamp("us", "Europe/Paris")),
                   pa.array([naive.replace(microsecond=0)], pa.timestamp("s"))):
        got = codec.entity_tag_column(["ts"], kinds, {"ts": column}).to_pylist()
        assert got == [expected if column.type.unit == "us" else "{ts=2025-01-02 03:04:05.000000}"]

def test_prefix_separates_targets(redis_url):
    dev = OnlineStore.for_registry(make_registry(target="dev"), url=redis_url)
    prod = OnlineStore.for_registry(make_registry(target="prod"), url=redis_url)
    view = REG.view("user_txn_features")
    write_rows(dev, view, rows("user_txn_features", [{"user_id": 1, "txn_velocity_60s": 3, "__event_ts": utc_now()}],
                         TXN_TYPES))
    assert prod.prefix == "fs:proj:prod"
    # prod has never been synced into this Redis: nothing there is served as if it were real.
    assert get_online_features(REG, prod, ["user_txn_features:txn_velocity_60s"], [{"user_id": 1}],
                               apply_fallbacks=False).statuses["txn_velocity_60s"] == [FieldStatus.NOT_SYNCED]


# -- writes -----------------------------------------------------------------------------------


def test_every_type_round_trips_through_redis_and_null_differs_from_missing(store):
    view = REG.view("all_types")
    now = utc_now()
    data = [
        {"user_id": 1, "f_int": -(2**63), "f_float": 0.1, "f_decimal": Decimal("-12.3400"), "f_string": "é {x}",
         "f_bool": False, "f_ts": datetime(2025, 1, 2, 3, 4, 5, 6), "f_tstz": datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
         "f_date": date(2025, 1, 2), "__event_ts": now},
        {"user_id": 2, "__event_ts": now},  # every feature NULL
    ]
    types = {"user_id": pa.int64(), "f_int": pa.int64(), "f_float": pa.float64(), "f_decimal": pa.decimal128(18, 4),
             "f_string": pa.string(), "f_bool": pa.bool_(), "f_ts": pa.timestamp("us"),
             "f_tstz": pa.timestamp("us", "UTC"), "f_date": pa.date32()}
    result = write_rows(store, view, rows("all_types", data, types))
    assert (result.written, result.skipped_older, result.expired_on_arrival) == (2, 0, 0)
    response = get_online_features(REG, store, ["all_types"], [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}])
    got = response.to_dict()
    for name in view.feature_names:
        assert same(got[name][0], data[0][name]), name
        assert got[name][1:] == [None, None]
    statuses = response.statuses
    assert statuses["f_int"] == [FieldStatus.PRESENT, FieldStatus.NULL_VALUE, FieldStatus.NOT_FOUND]
    raw = redis.Redis.from_url(store.url)
    stored = raw.hgetall(store.key(view, {"user_id": 2}))
    assert set(stored) == {b"__event_ts", b"__definition"} and stored[b"__event_ts"] == str(codec.micros(now)).encode()
    assert raw.ttl(store.key(view, {"user_id": 1})) == -1  # no ttl on the view: no expiry


def test_write_expires_keys_at_event_ts_plus_ttl_and_skips_expired_rows(store):
    view = REG.view("user_txn_features")  # ttl 10m
    now = utc_now().replace(microsecond=500_000)
    data = [{"user_id": 1, "txn_velocity_60s": 1, "__event_ts": now - timedelta(minutes=4)},
            {"user_id": 2, "txn_velocity_60s": 1, "__event_ts": now - timedelta(minutes=11)},  # past its ttl
            {"user_id": 3, "txn_velocity_60s": None, "__event_ts": None}]  # expired as of the snapshot
    result = write_rows(store, view, rows("user_txn_features", data, TXN_TYPES))
    assert (result.rows, result.written, result.expired_on_arrival) == (3, 1, 2)
    raw = redis.Redis.from_url(store.url)
    expires = (now - timedelta(minutes=4) + timedelta(minutes=10)).replace(tzinfo=timezone.utc)
    assert raw.pexpiretime(store.key(view, {"user_id": 1})) == math.ceil(expires.timestamp() * 1000)
    assert raw.exists(store.key(view, {"user_id": 2})) == 0


def test_rewriting_the_same_rows_is_a_no_op_and_older_rows_never_win(store):
    view = REG.view("user_order_features")
    t = utc_now()
    new = [{"user_id": 1, "user_7d_orders": 5, "__event_ts": t, "__created_ts": t}]
    old = [{"user_id": 1, "user_7d_orders": 4, "__event_ts": t - timedelta(hours=1), "__created_ts": t}]
    assert write_rows(store, view, rows("user_order_features", new, ORDER_TYPES)).written == 1
    again = write_rows(store, view, rows("user_order_features", new, ORDER_TYPES))
    assert (again.written, again.skipped_older, again.unchanged) == (0, 0, 1)
    assert write_rows(store, view, rows("user_order_features", old, ORDER_TYPES)).skipped_older == 1
    # Same event time, later created time: a correction, which wins; NULL created loses.
    fix = [{"user_id": 1, "user_7d_orders": 6, "__event_ts": t, "__created_ts": t + timedelta(seconds=1)}]
    assert write_rows(store, view, rows("user_order_features", fix, ORDER_TYPES)).written == 1
    nul = [{"user_id": 1, "user_7d_orders": 7, "__event_ts": t, "__created_ts": None}]
    assert write_rows(store, view, rows("user_order_features", nul, ORDER_TYPES)).skipped_older == 1
    got = get_online_features(REG, store, ["user_order_features:user_7d_orders"], [{"user_id": 1}])
    assert got.to_dict()["user_7d_orders"] == [6]



def test_a_newer_row_replaces_the_whole_hash(store):
    """Fields the row does not carry (a feature since dropped from the view) do not outlive it."""
    view = REG.view("user_txn_features")
    t = utc_now()
    write_rows(store, view, rows("user_txn_features", [{"user_id": 1, "txn_velocity_60s": 1, "__event_ts": t}], TXN_TYPES))
    raw = redis.Redis.from_url(store.url)
    key = store.key(view, {"user_id": 1})
    raw.hset(key, "dropped_feature", "1")
    later = [{"user_id": 1, "txn_velocity_60s": 2, "__event_ts": t + timedelta(seconds=1)}]
    assert write_rows(store, view, rows("user_txn_features", later, TXN_TYPES)).written == 1
    assert set(raw.hgetall(key)) == {b"__event_ts", b"txn_velocity_60s", b"__definition"}


WRITE = st.tuples(st.integers(0, 3), st.integers(0, 4), st.one_of(st.none(), st.integers(0, 2)))


def version(w: tuple) -> tuple:
    """The order of (user, hours ago, created seconds or None) writes: a smaller e is a later event time."""
    return (-w[1], -1 if w[2] is None else w[2])


def assert_never_regresses(store: OnlineStore, batches: list[list[tuple]]) -> None:
    """Write ``batches`` in order; every key must then read back its newest version.

    Each write also tells exactly which of its rows it wrote as a newer version than Redis held
    (``WriteResult.newer``, what the write lag is measured on), in the batch's positions,
    however the rows were split into calls (on a cluster: by slot).
    """
    view = REG.view("user_order_features")
    base = utc_now().replace(microsecond=0)

    def row(uid, e, c):  # the value is a function of the version: equal versions are the same row
        return {"user_id": uid, "user_7d_orders": e * 10 + (c if c is not None else 9),
                "__event_ts": base - timedelta(hours=e), "__created_ts": None if c is None else base + timedelta(seconds=c)}

    newest: dict[int, tuple] = {}
    for batch in batches:
        result = write_rows(store, view, rows("user_order_features", [row(*w) for w in batch], ORDER_TYPES))
        assert result.written + result.skipped_older + result.unchanged == len(batch)
        newer = []
        for i, w in enumerate(batch):
            if w[0] not in newest or version(w) > version(newest[w[0]]):
                newest[w[0]] = w
                newer.append(i)
        assert result.newer.tolist() == newer, (batch, result.newer)
    uids = sorted(newest)
    got = get_online_features(REG, store, ["user_order_features:user_7d_orders"], [{"user_id": u} for u in uids])
    assert got.to_dict()["user_7d_orders"] == [row(*newest[u])["user_7d_orders"] for u in uids]


def empty_synced_store(redis_url: str) -> OnlineStore:
    """A store on an emptied Redis whose views count as synced (hypothesis runs many examples per test)."""
    redis.Redis.from_url(redis_url).flushall()
    store = OnlineStore.for_registry(REG, url=redis_url)
    mark_synced(store)
    return store


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(WRITE, min_size=1, max_size=6), min_size=1, max_size=6))
def test_never_regress_final_state_is_the_newest_write_per_key(redis_url, batches):
    """Any order of writes, batched any way, leaves the newest (event ts, created ts) per key."""
    store = empty_synced_store(redis_url)
    assert_never_regresses(store, batches)
    store.close()


CONTENT_WRITE = st.tuples(st.integers(0, 2), st.integers(0, 2), st.one_of(st.none(), st.integers(0, 1)),
                          st.one_of(st.none(), st.integers(0, 2)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(CONTENT_WRITE, min_size=1, max_size=6), min_size=1, max_size=6))
def test_the_newest_version_wins_and_at_a_tie_the_last_content_written(redis_url, batches):
    """Rebuilds at the same timestamps: among writes of the newest version, the last one's content stays."""
    store = empty_synced_store(redis_url)
    view = REG.view("user_order_features")
    base = utc_now().replace(microsecond=0)

    def row(uid, e, c, value):  # value None: a NULL feature, which must replace a value too
        return {"user_id": uid, "user_7d_orders": value, "__event_ts": base - timedelta(hours=e),
                "__created_ts": None if c is None else base + timedelta(seconds=c)}

    final = {}
    for batch in batches:
        latest_in_batch = {}
        for w in batch:  # one row per key per batch, as a snapshot has
            latest_in_batch[w[0]] = w
        result = write_rows(store, view, rows("user_order_features", [row(*w) for w in latest_in_batch.values()],
                                        ORDER_TYPES))
        expected_unchanged = sum(1 for w in latest_in_batch.values() if final.get(w[0]) == w)
        assert result.unchanged == expected_unchanged
        for uid, w in latest_in_batch.items():
            if uid not in final or version(w) >= version(final[uid]):
                final[uid] = w
    uids = sorted(final)
    got = get_online_features(REG, store, ["user_order_features:user_7d_orders"], [{"user_id": u} for u in uids],
                              apply_fallbacks=False)
    assert got.to_dict()["user_7d_orders"] == [final[u][3] for u in uids]
    store.close()


def test_writes_recover_from_a_script_flush(store):
    view = REG.view("user_txn_features")
    write_rows(store, view, rows("user_txn_features", [{"user_id": 1, "txn_velocity_60s": 1, "__event_ts": utc_now()}], TXN_TYPES))
    redis.Redis.from_url(store.url).script_flush()
    later = [{"user_id": 1, "txn_velocity_60s": 2, "__event_ts": utc_now()}]
    assert write_rows(store, view, rows("user_txn_features", later, TXN_TYPES)).written == 1
    redis.Redis.from_url(store.url).script_flush()
    got = get_online_features(REG, store, ["user_txn_features:txn_velocity_60s"], [{"user_id": 1}])
    assert got.to_dict()["txn_velocity_60s"] == [2]


# -- reads ------------------------------------------------------------------------------------


@pytest.fixture
def loaded(store):
    """Two users with order features (one with a NULL average) and one with txn features 4 min old."""
    now = utc_now()
    write_rows(store, REG.view("user_order_features"), rows("user_order_features", [
        {"user_id": 1, "user_7d_orders": 5, "user_avg_amount": Decimal("12.50"), "__event_ts": now - timedelta(hours=1)},
        {"user_id": 2, "user_7d_orders": 0, "__event_ts": now - timedelta(hours=1)},
    ], ORDER_TYPES))
    write_rows(store, REG.view("user_txn_features"), rows("user_txn_features", [
        {"user_id": 1, "txn_velocity_60s": 3, "txn_amount_10m": 99.5, "txn_last_category": "grocery",
         "__event_ts": now - timedelta(minutes=4)},
    ], TXN_TYPES))
    return store, now


def test_response_is_feasts_shape(loaded):
    store, now = loaded
    feats = ["user_order_features:user_7d_orders", "user_order_features:user_avg_amount",
             "user_txn_features:txn_amount_10m"]
    response = get_online_features(REG, store, feats, [{"user_id": 1}, {"user_id": 2}])
    assert response.to_dict() == {"user_id": [1, 2], "user_7d_orders": [5, 0],
                                  "user_avg_amount": [Decimal("12.50"), None], "txn_amount_10m": [99.5, None]}
    full = get_online_features(REG, store, feats, [{"user_id": 1}], full_feature_names=True).to_dict()
    assert list(full) == ["user_id", "user_order_features__user_7d_orders", "user_order_features__user_avg_amount",
                          "user_txn_features__txn_amount_10m"]
    df = response.to_df(include_status=True)
    assert list(df["user_avg_amount__status"]) == ["PRESENT", "NULL_VALUE"]
    assert list(df["txn_amount_10m__status"]) == ["PRESENT", "NOT_FOUND"]
    stamps = response.to_dict(include_event_timestamps=True)["user_7d_orders__ts"]
    assert stamps == [now - timedelta(hours=1)] * 2


def test_ttl_is_checked_at_read_time_against_the_event_ts(loaded):
    store, now = loaded
    feats = ["user_txn_features:txn_amount_10m", "user_txn_features:txn_velocity_60s"]
    fresh = get_online_features(REG, store, feats, [{"user_id": 1}], now=now)
    assert fresh.to_dict()["txn_amount_10m"] == [99.5]
    # 7 minutes later the row is 11 minutes old: past the 10m ttl, though Redis still holds it.
    later = now + timedelta(minutes=7)
    raw = get_online_features(REG, store, feats, [{"user_id": 1}], now=later, apply_fallbacks=False)
    assert raw.to_dict()["txn_amount_10m"] == [None]
    assert raw.statuses["txn_amount_10m"] == [FieldStatus.OUTSIDE_MAX_AGE]
    with pytest.raises(FeatureMissing) as info:  # txn_velocity_60s is gated
        get_online_features(REG, store, feats, [{"user_id": 1}], now=later)
    assert info.value.feature == "user_txn_features:txn_velocity_60s"
    assert info.value.entity == {"user_id": 1}
    assert "older than the ttl 10m" in info.value.reason
    # Boundary: exactly ttl old is still live (e >= t - ttl), like the point-in-time join.
    edge = now - timedelta(minutes=4) + timedelta(minutes=10)
    assert get_online_features(REG, store, feats, [{"user_id": 1}], now=edge).statuses["txn_amount_10m"] == \
        [FieldStatus.PRESENT]


def test_fallbacks_impute_gate_and_none(loaded):
    store, _ = loaded
    response = get_online_features(REG, store, ["user_order_features:user_7d_orders", "user_txn_features:txn_amount_10m"],
                                   [{"user_id": 1}, {"user_id": 9}, {"user_id": 8}])
    got = response.to_dict(include_status=True)
    assert got["user_7d_orders"] == [5, 0, 0]
    assert got["user_7d_orders__status"] == ["PRESENT", "IMPUTED", "IMPUTED"]
    assert response.imputed == {"user_7d_orders": 2}
    assert got["txn_amount_10m"] == [99.5, None, None]  # no fallback: None
    with pytest.raises(FeatureMissing, match=r"user_txn_features:txn_velocity_60s is gated and has no value for "
                                             r"user_id=9"):
        get_online_features(REG, store, ["user_txn_features:txn_velocity_60s"], [{"user_id": 1}, {"user_id": 9}])
    # For a person at a terminal (`fstore get`): no raise, the status says why.
    looked = get_online_features(REG, store, ["user_txn_features:txn_velocity_60s"], [{"user_id": 1}, {"user_id": 9}],
                                 gate="status")
    assert looked.to_dict(include_status=True)["txn_velocity_60s__status"] == ["PRESENT", "NOT_FOUND"]


def test_reading_a_tombstoned_feature_warns_once_per_process(loaded, monkeypatch):
    from feature_store import online

    monkeypatch.setattr(online, "_warned", set())
    store, _ = loaded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            got = get_online_features(REG, store, ["user_txn_features:txn_last_category"], [{"user_id": 1}])
        other = OnlineStore.for_registry(REG, url=store.url)  # a fresh plan cache: still no second warning
        get_online_features(REG, other, ["user_txn_features"], [{"user_id": 1}])
    assert got.to_dict()["txn_last_category"] == ["grocery"]
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert len(messages) == 1 and "user_txn_features:txn_last_category is deprecated" in messages[0]


def test_one_round_trip_whatever_the_number_of_entities_and_views(loaded, monkeypatch):
    store, _ = loaded
    store.counts_every = 3600  # the read below carries no counts, however slow the machine
    raw = redis.Redis.from_url(store.url)
    feats = ["user_order_features", "user_txn_features:txn_amount_10m"]
    get_online_features(REG, store, feats, [{"user_id": 1}])
    store.flush_serving_log()  # whatever that read sampled: the timed read then carries no XADD
    raw.config_resetstat()
    sends = []
    original = redis.connection.Connection.send_packed_command
    monkeypatch.setattr(redis.connection.Connection, "send_packed_command",
                        lambda self, *a, **k: sends.append(1) or original(self, *a, **k))
    response = get_online_features(REG, store, feats, [{"user_id": i} for i in range(100)])
    assert len(response) == 100 and len(sends) == 1  # every command in one write, then the replies
    stats = raw.info("commandstats")
    assert stats["cmdstat_hmget"]["calls"] == 200  # 100 entities x 2 views
    assert stats["cmdstat_hget"]["calls"] == 2  # whether each view has a finished sync, same round trip
    # Its counts wait in the process: the first read sent that second's, the next go a second
    # later (or at a flush), one HINCRBY per feature for all the reads in between.
    assert set(stats) == {"cmdstat_hmget", "cmdstat_hget", "cmdstat_config|resetstat"}
    store.flush_serving_log()
    stats = raw.info("commandstats")
    assert stats["cmdstat_hincrby"]["calls"] == 4


def test_entity_rows_are_checked(loaded):
    store, _ = loaded
    with pytest.raises(EntityDataFrameError, match="lacks join key 'user_id'"):
        get_online_features(REG, store, ["user_order_features"], [{"userid": 1}])
    assert get_online_features(REG, store, ["user_order_features"], []).to_dict()["user_7d_orders"] == []


def test_null_keys_never_match(loaded):
    store, _ = loaded
    got = get_online_features(REG, store, ["user_order_features:user_7d_orders", "user_order_features:user_avg_amount"],
                              [{"user_id": None}, {"user_id": 1}]).to_dict(include_status=True)
    assert got["user_avg_amount__status"] == ["NOT_FOUND", "PRESENT"]
    assert got["user_7d_orders"] == [0, 5] and got["user_7d_orders__status"] == ["IMPUTED", "PRESENT"]


def test_a_date_feature_returned_as_a_timestamp_is_stored_as_a_date():
    column = pa.array([datetime(2025, 11, 3), None], pa.timestamp("us"))
    stored = codec.encode_column("date", column).to_pylist()
    assert stored == ["2025-11-03", None]
    assert codec.decoder("date")(stored[0].encode()) == date(2025, 11, 3)


def test_same_feature_name_in_two_views_needs_full_feature_names(store):
    from pathlib import Path

    from feature_store.registry import Registry, Target
    from online_support import ENTITIES, VIEWS, _column, _node

    nodes = {f"model.proj.{n}": v for n, v in VIEWS.items()}
    nodes["model.proj.twin"] = _node("twin", ["user"], [_column("user_id", "bigint"), _column("event_ts", "timestamp"),
                                                      _column("f", "bigint")])
    reg = Registry.from_manifest({"nodes": nodes}, ENTITIES, project_name="proj", project_dir=Path("."),
                                 target=Target("dev", "duckdb", None))
    with pytest.raises(EntityDataFrameError, match="both be named 'f'"):
        get_online_features(reg, store, ["offline_only:f", "twin:f"], [{"user_id": 1}])
    both = get_online_features(reg, store, ["offline_only:f", "twin:f"], [{"user_id": 1}], full_feature_names=True)
    assert both.to_dict() == {"user_id": [1], "offline_only__f": [None], "twin__f": [None]}


# -- connection -------------------------------------------------------------------------------


def test_redis_down_is_a_clear_error_after_bounded_retries():
    from conftest import free_port

    port = free_port()  # nothing listens here
    store = OnlineStore(f"redis://:s3cret@127.0.0.1:{port}/0", prefix="fs:p:t", retries=2, backoff=0.01,
                        connect_timeout=0.5)
    began = time.monotonic()
    with pytest.raises(OnlineStoreError) as info:
        get_online_features(REG, store, ["user_order_features"], [{"user_id": 1}])
    assert time.monotonic() - began < 3
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "s3cret" not in message and "redis-server is running" in message
    with pytest.raises(OnlineStoreError):
        store.ping()


def test_url_defaults_to_the_environment(monkeypatch, redis_url):
    monkeypatch.setenv("FEATURE_STORE_REDIS_URL", redis_url)
    assert OnlineStore(prefix="x").url == redis_url
    monkeypatch.delenv("FEATURE_STORE_REDIS_URL")
    assert OnlineStore(prefix="x").url == "redis://localhost:6379/0"
    with pytest.raises(OnlineStoreError, match="not a Redis URL"):
        OnlineStore("http://nope", prefix="x")


def test_the_serving_path_imports_no_dbt_duckdb_or_offline_store():
    code = (
        "import sys; sys.path.insert(0, 'tests');"
        "import feature_store.online, feature_store.codec;"
        "from feature_store import FeatureStore;"
        "bad = [m for m in ('dbt', 'duckdb', 'feature_store.offline', 'feature_store.compiler',"
        "                   'feature_store.materialize') if m in sys.modules];"
        "print(','.join(bad))"
    )
    from conftest import REPO

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == ""


def test_password_urls_work_and_a_wrong_password_is_a_clear_error(tmp_path):
    from conftest import start_redis

    proc, port = start_redis(tmp_path, "--requirepass", "s3cret")
    try:
        good = OnlineStore.for_registry(REG, url=f"redis://:s3cret@127.0.0.1:{port}/0")
        mark_synced(good)
        write_rows(good, REG.view("user_txn_features"),
                   rows("user_txn_features", [{"user_id": 1, "txn_velocity_60s": 2, "__event_ts": utc_now()}], TXN_TYPES))
        got = get_online_features(REG, good, ["user_txn_features:txn_velocity_60s"], [{"user_id": 1}])
        assert got.to_dict()["txn_velocity_60s"] == [2]
        assert "s3cret" not in repr(good)
        bad = OnlineStore.for_registry(REG, url=f"redis://:wrong@127.0.0.1:{port}/0", retries=0)
        with pytest.raises(OnlineStoreError, match="refused the credentials") as info:
            bad.ping()
        assert "wrong" not in str(info.value)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def hung_server():
    """A TCP server on loopback that accepts connections and never answers; counts the connections."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)  # kept open, never read from or written to

    threading.Thread(target=serve, daemon=True).start()
    return server, accepted


def test_a_hung_redis_bounds_a_read_with_the_default_settings():
    server, accepted = hung_server()
    try:
        store = OnlineStore(f"redis://127.0.0.1:{server.getsockname()[1]}/0", prefix="fs:proj:dev")
        began = time.monotonic()
        with pytest.raises(OnlineStoreError, match="cannot reach Redis"):
            get_online_features(REG, store, ["user_order_features"], [{"user_id": 1}])
        elapsed = time.monotonic() - began
        # One attempt per retry, no nesting (the landed code waited 164 s here). The bound is
        # ~1 s by construction; a slow machine gets slack, a regression to nested retries does not.
        assert len(accepted) == store.retries + 1 == 3
        assert elapsed < 5, elapsed
        quick = OnlineStore(f"redis://127.0.0.1:{server.getsockname()[1]}/0?socket_timeout=0.05", prefix="p",
                            retries=0)
        with pytest.raises(OnlineStoreError):
            quick.ping()
        assert len(accepted) == 4
    finally:
        server.close()
        for conn in accepted:
            conn.close()


def test_refused_credentials_are_not_retried(tmp_path):
    from conftest import start_redis

    proc, port = start_redis(tmp_path, "--requirepass", "s3cret")
    try:
        admin = redis.Redis(port=port, password="s3cret")
        admin.config_resetstat()
        bad = OnlineStore(f"redis://:wrong@127.0.0.1:{port}/0", prefix="p", retries=5, backoff=0.2)
        began = time.monotonic()
        with pytest.raises(OnlineStoreError, match="refused the credentials"):
            bad.ping()
        assert time.monotonic() - began < 0.5  # five retries with backoff would take 6 s
        assert admin.info("stats")["total_connections_received"] == 1  # one attempt (admin connected before the reset)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_view_never_synced_here_is_not_synced_not_imputed_and_gated_features_raise(redis_url):
    store = OnlineStore.for_registry(REG, url=redis_url)
    view = REG.view("user_order_features")
    write_rows(store, view, rows("user_order_features", [{"user_id": 1, "user_7d_orders": 3, "__event_ts": utc_now()}],
                           ORDER_TYPES))
    got = get_online_features(REG, store, ["user_order_features:user_7d_orders"], [{"user_id": 1}, {"user_id": 2}])
    # user_7d_orders imputes 0 when missing: an empty or foreign Redis must not look like real zeros.
    assert got.to_dict()["user_7d_orders"] == [None, None] and got.imputed == {}
    assert got.statuses["user_7d_orders"] == [FieldStatus.NOT_SYNCED] * 2
    with pytest.raises(FeatureMissing, match="no finished sync"):
        get_online_features(REG, store, ["user_txn_features:txn_velocity_60s"], [{"user_id": 1}])
    mark_synced(store)
    got = get_online_features(REG, store, ["user_order_features:user_7d_orders"], [{"user_id": 1}, {"user_id": 2}])
    assert got.to_dict()["user_7d_orders"] == [3, 0]
    assert got.statuses["user_7d_orders"] == [FieldStatus.PRESENT, FieldStatus.IMPUTED]


def test_the_same_version_with_other_content_replaces_the_stored_row(store):
    """A logic fix rebuilt at the same timestamps must reach Redis; an equal row is skipped."""
    view = REG.view("user_order_features")
    t = utc_now()
    first = [{"user_id": 1, "user_7d_orders": 27, "__event_ts": t, "__created_ts": t},
             {"user_id": 2, "user_7d_orders": 5, "__event_ts": t, "__created_ts": None}]
    assert write_rows(store, view, rows("user_order_features", first, ORDER_TYPES)).written == 2
    fixed = [dict(first[0], user_7d_orders=999), dict(first[1], user_7d_orders=None)]
    result = write_rows(store, view, rows("user_order_features", fixed, ORDER_TYPES))
    assert (result.written, result.unchanged, result.skipped_older) == (2, 0, 0)
    got = get_online_features(REG, store, ["user_order_features:user_7d_orders"], [{"user_id": 1}, {"user_id": 2}],
                              apply_fallbacks=False)
    assert got.to_dict()["user_7d_orders"] == [999, None]
    again = write_rows(store, view, rows("user_order_features", fixed, ORDER_TYPES))
    assert (again.written, again.unchanged) == (0, 2)


def test_a_changed_definition_rewrites_equal_rows_and_moves_the_expiry(store):
    import dataclasses

    view = REG.view("user_txn_features")  # ttl 10m
    t = utc_now().replace(microsecond=0) - timedelta(minutes=5)
    data = rows("user_txn_features", [{"user_id": 1, "txn_velocity_60s": 2, "__event_ts": t}], TXN_TYPES)
    write_rows(store, view, data)
    raw = redis.Redis.from_url(store.url)
    key = store.key(view, {"user_id": 1})
    assert raw.pexpiretime(key) == int((t + timedelta(minutes=10)).replace(tzinfo=timezone.utc).timestamp() * 1000)
    longer = dataclasses.replace(view, ttl=timedelta(days=1))
    assert write_rows(store, longer, data).written == 1  # same row, new definition
    assert raw.pexpiretime(key) == int((t + timedelta(days=1)).replace(tzinfo=timezone.utc).timestamp() * 1000)
    assert write_rows(store, longer, data).unchanged == 1


def test_a_fenced_write_is_refused_once_the_lock_is_not_the_writers(store):
    view = REG.view("user_txn_features")
    lock = store.lock_key(view.name)
    raw = redis.Redis.from_url(store.url)
    data = rows("user_txn_features", [{"user_id": 1, "txn_velocity_60s": 2, "__event_ts": utc_now()}], TXN_TYPES)
    raw.set(lock, "mine")
    with BatchWriter(store, view, fence=(lock, "mine")) as w:
        w.submit(data)
    assert [r.written for r in w.acknowledged()] == [1]
    raw.delete(lock)  # what FLUSHALL, a restart or a failover does to it
    with pytest.raises(OnlineStoreError, match="sync lock of user_txn_features is gone"):
        with BatchWriter(store, view, fence=(lock, "mine")) as w:
            w.submit(data)
