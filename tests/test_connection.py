"""redis_client: every URL form, and clients that survive a cluster master's restart and a Sentinel failover.

URL parsing is checked on the clients redis-py builds (they connect lazily), except
for the cluster form, whose client connects when built: its parsing is checked on
``_parse`` and its behaviour on a real local cluster (tests/cluster_support.py).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time

import pytest
import redis
from cluster_support import LocalCluster, LocalSentinel, free_port
from feature_store.connection import _parse, is_cluster, redact, redis_client
from feature_store.errors import OnlineStoreError
from redis.connection import SSLConnection
from redis.exceptions import RedisClusterException
from redis.sentinel import (
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

TIMEOUTS = {"timeout": 0.5, "connect_timeout": 0.3}
# What a client may raise while a node is down or the cluster reconfigures itself.
REDIS_FAILURES = (redis.RedisError, RedisClusterException)


def _retries(retry) -> int:
    return retry.get_retries() if hasattr(retry, "get_retries") else retry._retries


# -- plain ----------------------------------------------------------------------------------


def test_a_plain_url_with_user_password_and_db():
    client = redis_client("redis://ann:s%40cret@127.0.0.1:1234/3", **TIMEOUTS)
    kwargs = client.connection_pool.connection_kwargs
    assert not is_cluster(client)
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 1234, 3)
    assert (kwargs["username"], kwargs["password"]) == ("ann", "s@cret")
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.5, 0.3)
    assert _retries(kwargs["retry"]) == 0
    assert client.connection_pool.connection_class is not SSLConnection


def test_rediss_is_tls_and_url_options_win_over_the_arguments():
    client = redis_client("rediss://:pw@redis.example:6380/0?socket_timeout=2&ssl_cert_reqs=none", **TIMEOUTS)
    pool = client.connection_pool
    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["socket_timeout"] == 2.0
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.3
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"


# -- cluster (parsing) ----------------------------------------------------------------------


def test_a_cluster_url_names_its_startup_nodes_and_credentials():
    spec = _parse("redis+cluster://ann:p%40ss@10.0.0.1:7000,node-b:7001,[::1]:7002,node-d")
    assert spec.kind == "cluster"
    assert spec.nodes == (("10.0.0.1", 7000), ("node-b", 7001), ("::1", 7002), ("node-d", 6379))
    assert spec.options == {"username": "ann", "password": "p@ss"}


def test_a_tls_cluster_url_turns_ssl_on_with_its_options():
    spec = _parse("rediss+cluster://:pw@h1:7000/0?ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=no&socket_timeout=1")
    assert spec.nodes == (("h1", 7000),)
    assert spec.options == {"password": "pw", "ssl": True, "ssl_ca_certs": "/etc/ca.pem",
                            "ssl_check_hostname": False, "socket_timeout": 1.0}


# -- sentinel (parsing) ---------------------------------------------------------------------


def test_a_sentinel_url_gives_a_master_client_with_the_password_db_and_timeouts():
    client = redis_client("redis+sentinel://ann:pw@s1:26379,s2:26380/mymaster/2", **TIMEOUTS)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.is_master and pool.service_name == "mymaster"
    assert pool.connection_class is SentinelManagedConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("ann", "pw", 2)
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.5, 0.3)
    assert _retries(kwargs["retry"]) == 0
    sentinels = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
    assert [(s["host"], s["port"]) for s in sentinels] == [("s1", 26379), ("s2", 26380)]
    # The master's password is not sent to the sentinels.
    assert all(s.get("password") is None and s["socket_timeout"] == 0.5 for s in sentinels)
    assert all(_retries(s["retry"]) == 0 for s in sentinels)
    assert not is_cluster(client)


def test_a_tls_sentinel_url_uses_tls_everywhere_and_takes_the_sentinel_password_from_the_query():
    url = "rediss+sentinel://:pw@s1/svc?sentinel_password=s%26p&sentinel_username=watch&ssl_cert_reqs=none"
    pool = redis_client(url, **TIMEOUTS).connection_pool
    assert pool.connection_class is SentinelManagedSSLConnection
    assert (pool.connection_kwargs["password"], pool.connection_kwargs.get("db", 0)) == ("pw", 0)
    (sentinel,) = pool.sentinel_manager.sentinels
    assert sentinel.connection_pool.connection_class is SSLConnection
    kwargs = sentinel.connection_pool.connection_kwargs
    assert (kwargs["port"], kwargs["username"], kwargs["password"]) == (26379, "watch", "s&p")
    assert kwargs["ssl_cert_reqs"] == "none"


# -- bad URLs and redaction -------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://:secret@h:1",
    "h:1",
    "redis+cluster://:secret@",
    "redis+cluster://:secret@h1:1,,h2:2",
    "redis+cluster://:secret@h1:port",
    "redis+cluster://:secret@h1:70000",
    "redis+cluster://:secret@[::1:7000",
    "redis+cluster://:secret@h1:7000/3",
    "redis+cluster://:secret@h1:7000?sentinel_password=x",
    "rediss+cluster://:secret@h1:7000?ssl_cert_req=none",
    "redis+sentinel://:secret@s1:26379",
    "redis+sentinel://:secret@s1:26379/svc/zero",
    "redis+sentinel://:secret@s1:26379/svc/0/extra",
    "redis+sentinel://:secret@s1:26379/svc?socket_timeout=soon",
    "redis://:secret@h:1/0?socket_timeout=soon",
])
def test_a_bad_url_is_an_online_store_error_naming_it_without_the_password(url):
    with pytest.raises(OnlineStoreError) as err:
        redis_client(url, **TIMEOUTS)
    message = str(err.value)
    assert "secret" not in message
    assert ":***@" in message or "@" not in url
    assert "is not a Redis URL" in message
    assert "redis+cluster://[[user]:password@]host:port[,host:port...]" in message
    assert "redis+sentinel://" in message and "sentinel_password" in message


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://h:1/0", "redis://h:1/0"),
    ("redis://ann:pw@h:1/0", "redis://ann:***@h:1/0"),
    ("redis+cluster://:p@w@h1:1,h2:2", "redis+cluster://:***@h1:1,h2:2"),
    ("redis+sentinel://:pw@s1,s2:2/svc/1?sentinel_password=sp&socket_timeout=1",
     "redis+sentinel://:***@s1,s2:2/svc/1?sentinel_password=***&socket_timeout=1"),
    (":pw@h:1", ":***@h:1"),
])
def test_redact_hides_every_password(url, shown):
    assert redact(url) == shown


def test_the_module_imports_no_dbt_duckdb_or_pyarrow():
    code = ("import sys, feature_store.connection;"
            "print(','.join(m for m in ('dbt', 'duckdb', 'pyarrow', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# -- a real cluster -----------------------------------------------------------------------------


def _key_on(client, port: int, tag: str) -> str:
    """A key whose hash slot the master on ``port`` serves."""
    for i in range(10_000):
        key = f"{tag}:{i}"
        if client.get_node_from_key(key).port == port:
            return key
    raise AssertionError(f"no key maps to port {port}")


def test_a_cluster_client_reads_and_writes_on_every_master(redis_cluster):
    redis_cluster.flush()
    client = redis_client(redis_cluster.url, **TIMEOUTS)
    try:
        assert is_cluster(client)
        assert {n.port for n in client.get_primaries()} == set(redis_cluster.ports)
        for port in redis_cluster.ports:
            key = _key_on(client, port, "every")
            assert client.set(key, f"on {port}")
            assert client.get(key) == f"on {port}".encode()
            with redis.Redis(port=port) as node:
                assert node.get(key) == f"on {port}".encode()  # stored where the slot map says
    finally:
        client.close()


def test_cluster_url_options_reach_every_node(redis_cluster):
    client = redis_client(redis_cluster.url + "?socket_timeout=1.5", **TIMEOUTS)
    try:
        for node in client.get_nodes():
            kwargs = node.redis_connection.connection_pool.connection_kwargs
            assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (1.5, 0.3)
    finally:
        client.close()


def test_a_cluster_client_follows_a_reshard(redis_cluster):
    redis_cluster.flush()
    client = redis_client(redis_cluster.url, **TIMEOUTS)
    try:
        src, dst = redis_cluster.ports[0], redis_cluster.ports[2]
        keys = [f"moving:{i}" for i in range(300)]
        for key in keys:
            client.set(key, key)
        redis_cluster.reshard(src, dst, 500)
        # MOVED redirects are not failures: the client follows them without an error.
        assert [client.get(k) for k in keys] == [k.encode() for k in keys]
    finally:
        client.close()


def test_no_reachable_cluster_node_is_an_online_store_error():
    url = f"redis+cluster://:secret@127.0.0.1:{free_port()}"
    with pytest.raises(OnlineStoreError, match="cannot reach the Redis Cluster") as err:
        redis_client(url, **TIMEOUTS)
    assert "secret" not in str(err.value)


def test_the_same_cluster_client_recovers_within_seconds_after_a_master_restarts(redis_cluster):
    redis_cluster.flush()
    client = redis_client(redis_cluster.url, timeout=0.25, connect_timeout=0.25)
    victim = redis_cluster.ports[1]
    key = _key_on(client, victim, "restart")
    client.set(key, "before")
    log: list[tuple[float, BaseException | None]] = []
    stop = threading.Event()

    def reads() -> None:  # the client is used from this thread only
        while not stop.is_set():
            try:
                client.get(key)
                log.append((time.monotonic(), None))
            except REDIS_FAILURES as exc:
                log.append((time.monotonic(), exc))
            time.sleep(0.02)

    reader = threading.Thread(target=reads)
    reader.start()
    try:
        time.sleep(0.2)
        redis_cluster.restart(victim)
        restarted = time.monotonic()
        deadline = restarted + 10
        while time.monotonic() < deadline and not _stable(log, restarted, successes=20):
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join(timeout=10)
    errors = [t for t, exc in log if exc is not None]
    assert errors, "the restart was not noticed: the test did not exercise a failure"
    assert _stable(log, restarted, successes=20), f"the client never recovered: {log[-3:]}"
    last_error = max(errors)
    assert last_error - restarted < 5, f"errors went on for {last_error - restarted:.1f} s after the restart"
    # The same client object serves the restarted master again (its data is gone: no persistence).
    assert client.get(key) is None
    assert client.set(key, "after") and client.get(key) == b"after"
    client.close()


def _stable(log, since: float, successes: int) -> bool:
    """Whether the last ``successes`` reads, all after ``since``, succeeded."""
    tail = log[-successes:]
    return len(tail) == successes and all(exc is None and t > since for t, exc in tail)


def test_a_password_protected_cluster(tmp_path):
    cluster = LocalCluster(tmp_path / "cluster", password="cl-pw").start()
    try:
        client = redis_client(cluster.url, **TIMEOUTS)
        assert client.set("k", "v") and client.get("k") == b"v"
        client.close()
        with pytest.raises(OnlineStoreError, match="cannot reach the Redis Cluster"):
            redis_client(cluster.url.replace(":cl-pw@", ":wrong@"), **TIMEOUTS)
    finally:
        cluster.stop()


# -- a real sentinel ----------------------------------------------------------------------------


@pytest.mark.parametrize("kill", [False, True], ids=["sentinel-failover", "master-killed"])
def test_the_same_sentinel_client_writes_to_the_new_master_within_seconds(redis_sentinel, kill):
    client = redis_client(redis_sentinel.url, timeout=0.25, connect_timeout=0.25)
    assert client.set("k", "before")
    new = redis_sentinel.failover(kill=kill)
    failed_over = time.monotonic()
    with redis.Redis(port=new) as master:
        # After SENTINEL FAILOVER the old master still takes writes for seconds: a write
        # that succeeds is not enough, it must land on the new master.
        for n in itertools.count():
            try:
                client.set("k", n)
                if master.get("k") == str(n).encode():
                    break
            except redis.RedisError:
                pass
            assert time.monotonic() - failed_over < 5, "no write reached the new master within 5 s"
            time.sleep(0.05)
    assert client.connection_pool.master_address == ("127.0.0.1", new)
    client.close()


def test_sentinel_and_master_passwords(tmp_path):
    deployment = LocalSentinel(tmp_path / "sentinel", password="m-pw", sentinel_password="s-pw").start()
    try:
        client = redis_client(deployment.url, **TIMEOUTS)
        assert client.set("k", "v") and client.get("k") == b"v"
        client.close()
        # Without its own password the sentinel refuses to name the master.
        no_sentinel_pw = redis_client(deployment.url.split("?")[0], **TIMEOUTS)
        with pytest.raises(redis.ConnectionError, match="No master found"):
            no_sentinel_pw.set("k", "v")
        no_sentinel_pw.close()
    finally:
        deployment.stop()
