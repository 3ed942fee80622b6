"""A team's own dbt project installs this repository as a package and builds features with it, for real.

tests/consumer/ is that project (``acme``): its own name, profile (in a separate profiles
folder, as most teams keep it) and entity, a text join key with leading zeros, and a
feature column named ``order``. It gets this checkout through ``packages.yml`` (``- local:``),
runs ``dbt deps`` and ``dbt build``, then ``fstore`` the way a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import redis

from conftest import REPO

pytestmark = [pytest.mark.dbt, pytest.mark.redis]

BIN = Path(sys.executable).parent
ACME_TABLES = {"orders", "labels", "customer_order_features", "churn_training"}


def run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **env})


@pytest.fixture(scope="module")
def acme(tmp_path_factory) -> tuple[Path, Path]:
    """The consumer project, built: (project dir, profiles dir)."""
    root = tmp_path_factory.mktemp("consumer")
    project = shutil.copytree(REPO / "tests" / "consumer", root / "acme")
    (project / "packages.yml").write_text(f"packages:\n  - local: {REPO}\n")
    profiles = root / "profiles"
    profiles.mkdir()
    (profiles / "profiles.yml").write_text(
        f"acme:\n  target: dev\n  outputs:\n    dev: {{type: duckdb, path: '{project / 'acme.duckdb'}', threads: 2}}\n")
    for args in (["deps"], ["build"]):
        proc = run([str(BIN / "dbt"), *args, "--profiles-dir", str(profiles)], project)
        assert proc.returncode == 0, f"dbt {args[0]} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    return project, profiles


def fstore(acme: tuple[Path, Path], *args: str, redis_url: str | None = None) -> subprocess.CompletedProcess:
    project, profiles = acme
    env = {"FEATURE_STORE_REDIS_URL": redis_url} if redis_url else {}
    return run([str(BIN / "fstore"), *args, "--project-dir", str(project), "--profiles-dir", str(profiles)],
               project, **env)


def test_the_consumer_builds_only_its_own_models(acme):
    project, _ = acme
    con = duckdb.connect(str(project / "acme.duckdb"), read_only=True)
    try:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    finally:
        con.close()
    # None of the example's seeds, staging views, feature views or training sets.
    assert tables == ACME_TABLES


def test_validate_and_list_see_only_the_consumers_view(acme):
    proc = fstore(acme, "validate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 feature views, 2 features, 1 entities: ok" in proc.stdout
    listed = json.loads(fstore(acme, "list", "--json").stdout)
    assert [v["view"] for v in listed] == ["customer_order_features"]


def test_the_training_model_and_fstore_historical_agree(acme, tmp_path):
    project, _ = acme
    con = duckdb.connect(str(project / "acme.duckdb"), read_only=True)
    try:
        model = con.execute('select customer_id, label_ts, "order", spend from churn_training '
                            "order by customer_id, label_ts").fetchall()
    finally:
        con.close()
    # 00042 and 42 are two customers: the text key keeps its zeros.
    assert [(r[0], r[2]) for r in model] == [("00007", None), ("00042", 1), ("00042", 1), ("42", 1)]
    out = tmp_path / "training.parquet"
    proc = fstore(acme, "historical", "--spine", "select customer_id, label_ts from labels", "--timestamp-column",
                  "label_ts", "-f", "customer_order_features", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import pyarrow.parquet as pq

    rows = sorted(pq.read_table(out).to_pylist(), key=lambda r: (r["customer_id"], r["label_ts"]))
    assert [(r["customer_id"], r["order"], r["spend"] and float(r["spend"])) for r in rows] == [
        ("00007", None, None), ("00042", 1, 12.5), ("00042", 1, 7.25), ("42", 1, 1.0)]


def test_sync_and_get_by_a_text_key_with_leading_zeros(acme, redis_url):
    proc = fstore(acme, "sync", "--json", redis_url=redis_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert [v["view"] for v in report["views"]] == ["customer_order_features"]
    assert report["total"]["keys_written"] == 3  # 00042, 00007 and 42
    assert redis.Redis.from_url(redis_url).keys("fs:feature_store:*") == []  # nothing of the example
    got = json.loads(fstore(acme, "get", "customer_order_features", "--entity", "customer_id=00042", "--json",
                            redis_url=redis_url).stdout)
    # Decimals print as their exact text.
    assert (got["customer_id"], got["order"], got["spend"]) == (["00042"], [1], ["7.25"])
    other = json.loads(fstore(acme, "get", "customer_order_features", "-e", "customer_id=42", "--json",
                              redis_url=redis_url).stdout)
    assert (other["customer_id"], other["spend"]) == (["42"], ["1.00"])
