"""Join keys are taken as their declared type, strictly: a value that is not plainly the key is refused."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
import redis
from feature_store import codec
from feature_store.errors import EntityDataFrameError
from feature_store.online import OnlineStore, get_online_features
from feature_store.writer import write_rows
from online_support import make_registry, utc_now

REG = make_registry()
INT = {"user_id": "int"}
PAIR = {"user_id": "int", "merchant": "string"}

NOT_AN_INT = ["4_2", " 42", "42 ", "42\n", "٤٢", "+42", "042", "-0", "", "4.2e1", b"42", 42.0, np.float64(42), True,
              np.bool_(True), Decimal(42), [42]]


@pytest.mark.parametrize("tag", [codec.tagger(["user_id"], INT), lambda row: codec.entity_tag(["user_id"], INT, row)],
                         ids=["tagger", "entity_tag"])
def test_int_keys_take_ints_and_plain_decimal_text_only(tag):
    for value in (42, np.int64(42), np.uint8(42), "42"):
        assert tag({"user_id": value}) == "{user_id=42}", value
    assert tag({"user_id": "-7"}) == "{user_id=-7}" and tag({"user_id": "0"}) == "{user_id=0}"
    for value in NOT_AN_INT:
        with pytest.raises(ValueError, match=r"join key 'user_id' is declared int and got .*; give an int"):
            tag({"user_id": value})


def test_string_keys_take_str_only():
    tag = codec.tagger(["user_id", "merchant"], PAIR)
    assert tag({"user_id": 1, "merchant": "42"}) == "{merchant=42,user_id=1}"
    for value in (42, b"acme", 4.2):
        with pytest.raises(ValueError, match=r"join key 'merchant' is declared string and got .*; give a str"):
            tag({"user_id": 1, "merchant": value})


def test_time_bool_and_decimal_keys_follow_their_declared_type():
    def tag(kind, value):
        return codec.entity_tag(["k"], {"k": kind}, {"k": value})

    assert tag("date", date(2025, 11, 3)) == tag("date", "2025-11-03") == "{k=2025-11-03}"
    assert tag("timestamp", "2025-11-03T01:00:00+01:00") == "{k=2025-11-03 00:00:00.000000}"
    assert tag("bool", False) == tag("bool", "false") == "{k=false}"
    assert tag("decimal", Decimal("27.40")) == tag("decimal", "27.40") == "{k=27.40}"
    refused = [("date", datetime(2025, 11, 3, 12)), ("date", "3 Nov 2025"), ("timestamp", date(2025, 11, 3)),
               ("timestamp", 1762128000), ("bool", "no"), ("bool", 0), ("float", "1.5"), ("decimal", 1.5)]
    for kind, value in refused:
        with pytest.raises(ValueError, match=f"join key 'k' is declared {kind} and got"):
            tag(kind, value)


@pytest.mark.redis
def test_online_reads_refuse_a_lenient_int_key(redis_url):
    store = OnlineStore.for_registry(REG, url=redis_url)
    client = redis.Redis.from_url(redis_url)
    client.hset(store.sync_key("user_order_features"), "as_of", "2026-01-01 00:00:00")
    client.close()
    view = REG.view("user_order_features")
    write_rows(store, view, pa.table({
        "user_id": pa.array([42], pa.int64()), "user_7d_orders": pa.array([5], pa.int64()),
        "user_avg_amount": pa.array([None], pa.decimal128(12, 2)), "user_last_order_ts": pa.array([None],
                                                                                                  pa.timestamp("us")),
        "__event_ts": pa.array([utc_now()], pa.timestamp("us")), "__created_ts": pa.array([None], pa.timestamp("us")),
    }))
    feats = ["user_order_features:user_7d_orders"]
    try:
        assert get_online_features(REG, store, feats, [{"user_id": "42"}, {"user_id": None}]).to_dict() == \
            {"user_id": ["42", None], "user_7d_orders": [5, 0]}
        for value in ("4_2", "٤٢", 42.0, b"42"):
            with pytest.raises(EntityDataFrameError, match=r"feature view user_order_features: join key 'user_id' "
                                                           r"is declared int and got " + repr(value).replace(".", r"\.")):
                get_online_features(REG, store, feats, [{"user_id": value}])
    finally:
        store.close()
