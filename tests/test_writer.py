"""The write path on value shapes a production Redis sees: huge values, wide views, empty and non-ASCII text.

Each must round-trip exactly and land as the hash Redis itself builds for a plain
``HSET`` of the same fields (same ``OBJECT ENCODING``: the server's own
``hash-max-listpack-*`` settings decide, not our client), and the memory an encoded
batch takes is bounded by the batch's bytes, not by rows x the longest value.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import redis

from feature_store.online import OnlineStore, get_online_features
from feature_store.registry import Registry, Target
from feature_store.writer import encode_write, write_fields, write_rows
from online_support import _column, _node, utc_now

pytestmark = pytest.mark.redis


def registry_with(name: str, columns: list[dict]) -> Registry:
    node = _node(name, ["user"], [_column("user_id", "bigint"), _column("event_ts", "timestamp"), *columns])
    manifest = {"nodes": {f"model.proj.{name}": node}, "metadata": {"project_name": "proj", "adapter_type": "duckdb"}}
    return Registry.from_manifest(manifest, {"user": {"join_keys": ["user_id"]}}, project_name="proj",
                                  project_dir=Path("."), manifest_path=Path("target/manifest.json"),
                                  target=Target("dev", "duckdb", None))


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def write_and_read(reg: Registry, redis_url: str, table: pa.Table) -> tuple[OnlineStore, dict]:
    view = next(iter(reg.views.values()))
    store = OnlineStore.for_registry(reg, url=redis_url)
    redis.Redis.from_url(redis_url).hset(store.sync_key(view.name), "as_of", "2026-01-01 00:00:00")
    result = write_rows(store, view, table)
    assert result.written == table.num_rows
    entities = [{"user_id": u} for u in table.column("user_id").to_pylist()]
    return store, get_online_features(reg, store, [view.name], entities, apply_fallbacks=False).to_dict()


def assert_same_encoding_as_plain_hset(client, store: OnlineStore, view, user_id: int) -> None:
    key = store.key(view, {"user_id": user_id})
    stored = client.hgetall(key)
    client.delete("plain")
    client.hset("plain", mapping=stored)
    assert client.object("encoding", key) == client.object("encoding", "plain"), key


def test_a_one_megabyte_value_empty_strings_and_non_ascii_round_trip(redis_url, client):
    reg = registry_with("texts", [_column("text", "varchar")])
    view = reg.view("texts")
    values = ["x" * (1 << 20), "", "héllo wörld ✓ 日本語 \U0001f600", "a\x00b\r\n$3\r\n", "small"]
    now = utc_now()
    table = pa.table({"user_id": pa.array(range(1, 6), pa.int64()), "text": pa.array(values),
                      "__event_ts": pa.array([now] * 5, pa.timestamp("us")),
                      "__created_ts": pa.nulls(5, pa.timestamp("us"))})
    store, got = write_and_read(reg, redis_url, table)
    assert got["text"] == values
    for user_id in range(1, 6):
        assert_same_encoding_as_plain_hset(client, store, view, user_id)
    # The 1 MB value makes a hashtable, as HSET would; the small rows stay listpacks.
    assert client.object("encoding", store.key(view, {"user_id": 1})) == b"hashtable"
    assert client.object("encoding", store.key(view, {"user_id": 5})) == b"listpack"


def test_a_view_with_500_features_round_trips(redis_url, client):
    names = [f"f{i:03d}" for i in range(500)]
    reg = registry_with("wide", [_column(n, "bigint") for n in names])
    view = reg.view("wide")
    now = utc_now()
    data = {"user_id": pa.array([1, 2], pa.int64()), "__event_ts": pa.array([now, now], pa.timestamp("us")),
            "__created_ts": pa.nulls(2, pa.timestamp("us"))}
    data.update({n: pa.array([i, None if i % 7 == 0 else -i], pa.int64()) for i, n in enumerate(names)})
    store, got = write_and_read(reg, redis_url, pa.table(data))
    for i, n in enumerate(names):
        assert got[n] == [i, None if i % 7 == 0 else -i], n
    assert len(client.hgetall(store.key(view, {"user_id": 1}))) == 502  # 500 features, __event_ts, __definition
    for user_id in (1, 2):
        assert_same_encoding_as_plain_hset(client, store, view, user_id)


def test_one_huge_value_does_not_inflate_the_batch():
    """Memory follows the batch's bytes: a 200 KB value among 10k small rows stays a few MB."""
    reg = registry_with("texts", [_column("text", "varchar")])
    view = reg.view("texts")
    n = 10_000
    values = ["v"] * n
    values[17] = "x" * 200_000
    now = utc_now()
    rows = pa.record_batch({"user_id": pa.array(range(n), pa.int64()), "text": pa.array(values),
                            "__event_ts": pa.array([now] * n, pa.timestamp("us")),
                            "__created_ts": pa.nulls(n, pa.timestamp("us"))})
    before = pa.total_allocated_bytes()
    encoded = encode_write("fs:proj:dev", view, rows, (now + timedelta(seconds=1)).timestamp(), "0" * 16)
    grown = pa.total_allocated_bytes() - before
    assert encoded.n == n and len(encoded.args) == n * len(write_fields(view))
    assert grown < 20 * 2**20, grown  # rows x the longest value would be 2 GB
