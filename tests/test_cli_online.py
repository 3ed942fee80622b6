"""End-to-end: `fstore sync` and `fstore get` as a platform engineer runs them, on a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import redis

FSTORE = str(Path(sys.executable).parent / "fstore")


def fstore(project: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FSTORE, *args, "--project-dir", str(project)], capture_output=True, text=True,
                          env={**os.environ, "FEATURE_STORE_REDIS_URL": redis_url})


def live_user(project: Path) -> int:
    con = duckdb.connect(str(project / "feature_store.duckdb"), read_only=True)
    try:
        return con.execute("select user_id from user_txn_features order by event_ts desc limit 1").fetchone()[0]
    finally:
        con.close()


def test_sync_then_get(built_project, redis_url):
    first = fstore(built_project, redis_url, "sync", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    by_view = {v["view"]: v for v in report["views"]}
    assert set(by_view) == {"user_order_features", "user_txn_features"}  # online views only
    assert by_view["user_order_features"]["keys_written"] > 0
    client = redis.Redis.from_url(redis_url)
    keys = client.keys("fs:feature_store:dev:*")
    assert len([k for k in keys if b"_sync" not in k]) == report["total"]["keys_written"]

    again = json.loads(fstore(built_project, redis_url, "sync", "--json").stdout)
    assert again["total"]["keys_written"] == 0  # incremental: nothing new

    user = live_user(built_project)
    got = fstore(built_project, redis_url, "get", "user_txn_features", "--entity", f"user_id={user}", "--json")
    assert got.returncode == 0, got.stderr
    data = json.loads(got.stdout)
    assert data["user_id"] == [user]
    assert data["txn_velocity_60s__status"] == ["PRESENT"] and data["txn_velocity_60s"][0] >= 1

    table = fstore(built_project, redis_url, "get", "user_order_features", "-e", f"user_id={user}")
    assert table.returncode == 0
    assert "user_7d_orders" in table.stdout and "PRESENT" in table.stdout
    assert "deprecated" in table.stderr  # the tombstoned legacy feature warns


def test_dry_run_writes_nothing(built_project, redis_url):
    proc = fstore(built_project, redis_url, "sync", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would write" in proc.stdout
    client = redis.Redis.from_url(redis_url)
    assert client.dbsize() == 0


def test_unknown_entity_is_not_found(built_project, redis_url):
    fstore(built_project, redis_url, "sync", "--view", "user_order_features")
    proc = fstore(built_project, redis_url, "get", "user_order_features", "-e", "user_id=987654", "--json")
    data = json.loads(proc.stdout)
    assert data["user_7d_orders"] == [0] and data["user_7d_orders__status"] == ["IMPUTED"]
    assert data["user_avg_basket_30d__status"] == ["NOT_FOUND"]


def test_redis_down_is_a_clear_error(built_project):
    proc = fstore(built_project, "redis://127.0.0.1:1/0", "sync")
    assert proc.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_entity_argument(built_project, redis_url):
    proc = fstore(built_project, redis_url, "get", "user_order_features", "-e", "user_id")
    assert proc.returncode == 2 and "KEY=VALUE" in proc.stderr


def test_a_failing_view_is_named_the_others_sync_and_the_exit_status_is_1(built_project, redis_url):
    client = redis.Redis.from_url(redis_url)
    client.set("fs:feature_store:dev:{_sync}:user_txn_features:lock", "elsewhere:1:x", px=60_000)
    proc = fstore(built_project, redis_url, "sync", "--wait", "0", "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "Failed: user_txn_features: another sync of user_txn_features is running (elsewhere:1:x)" in proc.stderr
    report = json.loads(proc.stdout)
    by_view = {v["view"]: v for v in report["views"]}
    assert report["ok"] is False and by_view["user_order_features"]["keys_written"] > 0
    assert by_view["user_txn_features"]["error"].startswith("another sync")


def test_status_shows_each_views_last_sync_and_what_redis_holds(built_project, redis_url):
    before = json.loads(fstore(built_project, redis_url, "status", "--json").stdout)
    assert {r["view"]: r["synced_at"] for r in before} == {"user_order_features": None, "user_txn_features": None}
    report = json.loads(fstore(built_project, redis_url, "sync", "--json").stdout)
    proc = fstore(built_project, redis_url, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["view"]: r for r in json.loads(proc.stdout)}
    for v in report["views"]:
        row = rows[v["view"]]
        assert row["as_of"] == v["as_of"] and row["mode"] == "full" and row["definition_changed"] is False
        assert row["keys_written"] == v["keys_written"] == row["keys_in_redis"]
        assert row["entities_offline"] == v["rows_read"]
    table = fstore(built_project, redis_url, "status")
    assert "user_order_features" in table.stdout and "same" in table.stdout


def test_reads_after_redis_lost_its_data_say_not_synced(built_project, redis_url):
    fstore(built_project, redis_url, "sync")
    redis.Redis.from_url(redis_url).flushall()
    proc = fstore(built_project, redis_url, "get", "user_order_features", "-e", f"user_id={live_user(built_project)}",
                  "--json")
    data = json.loads(proc.stdout)
    assert data["user_7d_orders"] == [None] and data["user_7d_orders__status"] == ["NOT_SYNCED"]


def test_redis_timeout_and_retries_bound_a_hung_server(built_project):
    import socket
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # accepts (the kernel does) and never answers
    try:
        began = time.monotonic()
        proc = fstore(built_project, f"redis://127.0.0.1:{server.getsockname()[1]}/0", "--redis-timeout", "0.1",
                      "--redis-retries", "0", "get", "user_order_features", "-e", "user_id=1")
        assert proc.returncode == 1 and "cannot reach Redis" in proc.stderr
        assert time.monotonic() - began < 20  # process start-up included; a hang would be minutes
    finally:
        server.close()
