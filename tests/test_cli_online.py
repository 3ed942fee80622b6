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
