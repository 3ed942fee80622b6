"""DUMP payloads built column-wise: byte for byte what Redis writes, and restored as written.

The session redis-server runs with ``sanitize-dump-payload yes``, so it checks every
listpack entry of every payload restored here (and by the sync tests).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feature_store import rdb

pytestmark = pytest.mark.redis


def payloads(fields: list[str], values: list[pa.Array]) -> list[bytes]:
    body, checksum = rdb.hash_payloads(fields, values)
    return pc.binary_join_element_wise(body, checksum, b"").to_pylist()


def test_the_checksum_is_redis_crc64():
    # CRC-64/Jones as Redis ships it: crc64(0, "123456789") in its own self-test.
    assert int(rdb._crc64_column(pa.array([b"123456789"]))[0]) == 0xE9C6D914C4B8D9CA


def test_payloads_equal_the_servers_own_dump(redis_url):
    raw = redis.Redis.from_url(redis_url)
    values = {"__event_ts": "t1795800000000000", "name": "é {x}", "empty": "", "longest_short": "z" * 63}
    raw.hset("dumped", mapping=values)
    raw.config_set("rdbcompression", "no")  # DUMP compresses strings over 20 bytes by default
    try:
        dumped = raw.dump("dumped")
    finally:
        raw.config_set("rdbcompression", "yes")
    assert payloads(list(values), [pa.array([v]) for v in values.values()]) == [dumped]


# Value sizes around every boundary of the formats: listpack string headers (64, 4096),
# backlens (128, 16383, 2097151) and RDB string lengths (64, 16384).
SIZES = [0, 1, 62, 63, 64, 123, 124, 125, 126, 127, 128, 4093, 4094, 4095, 4096, 16379, 16380, 16383, 16384,
         2_097_140, 2_097_151]
VALUE = st.one_of(st.none(), st.binary(max_size=200), st.sampled_from(SIZES).map(lambda n: b"v" * n))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), n_fields=st.integers(1, 6), n_rows=st.integers(1, 4))
def test_restored_payloads_hold_exactly_the_row(redis_url, data, n_fields, n_rows):
    names = data.draw(st.lists(st.text(min_size=1, max_size=70), min_size=n_fields, max_size=n_fields,
                               unique=True), label="fields")
    rows = [[data.draw(st.binary(min_size=1, max_size=20), label="first")]  # one field always set
            + [data.draw(VALUE, label="value") for _ in names[1:]] for _ in range(n_rows)]
    columns = [pa.array([row[j] for row in rows], pa.binary()) for j in range(n_fields)]
    raw = redis.Redis.from_url(redis_url)
    for i, payload in enumerate(payloads(names, columns)):
        raw.restore("restored", 0, payload, replace=True)
        expected = {name.encode(): value for name, value in zip(names, rows[i]) if value is not None}
        assert raw.hgetall("restored") == expected
    raw.delete("restored")
