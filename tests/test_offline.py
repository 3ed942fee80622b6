"""The Python API for training sets: input checks, timezones, order, caching, read-only use."""

from __future__ import annotations

import copy
import dataclasses
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_store import FeatureStore
from feature_store.errors import EntityDataFrameError, UnknownFeature, UnknownFeatureView, WarehouseError
from feature_store.offline import get_historical_features
from feature_store.warehouse.duckdb import connect
from feature_store.registry import Registry

FSTORE = str(Path(sys.executable).parent / "fstore")


@pytest.fixture(scope="module")
def store(built_project) -> FeatureStore:
    return FeatureStore(project_dir=built_project)


@pytest.fixture(scope="module")
def latest(built_project) -> tuple[int, datetime]:
    """A user and a time at which its user_order_features row is live."""
    con = duckdb.connect(str(built_project / "feature_store.duckdb"), read_only=True)
    try:
        uid, ts = con.execute(
            "select user_id, event_ts from user_order_features order by event_ts desc, user_id limit 1").fetchone()
    finally:
        con.close()
    return uid, ts


def spine(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "event_timestamp"])


@pytest.mark.parametrize("df,features,match", [
    (pd.DataFrame({"user_id": [1]}), ["user_order_features"], "timestamp column 'event_timestamp' is not in"),
    (pd.DataFrame({"uid": [1], "event_timestamp": [datetime(2026, 1, 1)]}), ["user_order_features"],
     "join key 'user_id' is missing .* feature view user_order_features needs it"),
    (spine([(1, None), (2, None), (3, datetime(2026, 1, 1))]), ["user_order_features"],
     "2 row\\(s\\) have a NULL in timestamp column"),
    (pd.DataFrame({"user_id": [1, 2], "event_timestamp": ["2026-01-01", "not a time"]}), ["user_order_features"],
     "1 row\\(s\\) of timestamp column 'event_timestamp' cannot be parsed"),
    (spine([(1, datetime(2026, 1, 1))]), ["user_order_features:user_7d_orders", "user_order_features:user_7d_orders"],
     None),
])
def test_input_errors_before_any_query(store, df, features, match):
    if match is None:  # a repeated reference is not an error: it is requested once
        assert store.get_historical_features(df, features).columns == ["user_id", "event_timestamp", "user_7d_orders"]
        return
    with pytest.raises(EntityDataFrameError, match=match):
        store.get_historical_features(df, features)


def test_unknown_view_and_feature_suggest(store):
    df = spine([(1, datetime(2026, 1, 1))])
    with pytest.raises(UnknownFeatureView, match="did you mean 'user_txn_features'"):
        store.get_historical_features(df, ["user_txn_feature"])
    with pytest.raises(UnknownFeature, match="did you mean 'txn_velocity_60s'"):
        store.get_historical_features(df, ["user_txn_features:txn_velocity_60"])


def test_duplicate_feature_names_need_full_feature_names():
    import copy

    import orjson
    import yaml

    fixture = Path(__file__).parent / "fixtures" / "registry"
    manifest = orjson.loads((fixture / "manifest.json").read_bytes())
    cols = manifest["nodes"]["model.feature_store.txn_features"]["columns"]
    cols["user_7d_orders"] = {**copy.deepcopy(cols["txn_amount"]), "name": "user_7d_orders"}
    entities = yaml.safe_load((fixture / "dbt_project.yml").read_text())["vars"]["feature_store:entities"]
    registry = Registry.from_manifest(manifest, entities)
    df = pd.DataFrame({"user_id": [1], "txn_id": [1], "event_timestamp": [datetime(2026, 1, 1)]})
    with pytest.raises(EntityDataFrameError, match="would both be named 'user_7d_orders'.*full_feature_names=True"):
        get_historical_features(registry, df, ["user_order_features:user_7d_orders", "txn_features:user_7d_orders"])


def test_feature_may_not_overwrite_a_spine_column(store):
    clash = pd.DataFrame({"user_id": [1], "event_timestamp": [datetime(2026, 1, 1)], "user_7d_orders": [3]})
    with pytest.raises(EntityDataFrameError, match="would overwrite entity dataframe columns"):
        store.get_historical_features(clash, ["user_order_features:user_7d_orders"])
    job = store.get_historical_features(clash, ["user_order_features:user_7d_orders"], full_feature_names=True)
    assert job.columns[-1] == "user_order_features__user_7d_orders"


def test_values_order_and_timezones(store, latest):
    uid, ts = latest
    ts_utc = ts.replace(tzinfo=timezone.utc)
    berlin = ts_utc.astimezone(timezone(timedelta(hours=1)))
    df = pd.DataFrame({
        "user_id": [uid, 999_999, uid, uid, None],
        # aware (another zone, same instant), naive UTC, one microsecond before the row, far future
        "event_timestamp": [berlin, ts, ts - timedelta(microseconds=1), ts + timedelta(days=30), ts],
        "label": ["a", "b", "c", "d", "e"],
    })
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    out = store.get_historical_features(df, ["user_order_features:user_lifetime_orders"]).to_df()
    assert list(out["label"]) == ["a", "b", "c", "d", "e"]  # the spine's order and columns
    assert list(out.columns) == ["user_id", "event_timestamp", "label", "user_lifetime_orders"]
    values = out["user_lifetime_orders"].tolist()
    assert values[0] is not None and not pd.isna(values[0])
    assert pd.isna(values[1])  # unknown user
    assert pd.isna(values[3])  # beyond the 2d ttl
    assert pd.isna(values[4])  # NULL key never matches
    # the row one microsecond earlier is the previous day's, itself within ttl
    assert not pd.isna(values[2])


def test_naive_and_aware_spines_agree(store, latest):
    uid, ts = latest
    naive = spine([(uid, ts - timedelta(hours=h)) for h in range(0, 72, 7)])
    aware = naive.assign(event_timestamp=naive["event_timestamp"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo"))
    a = store.get_historical_features(naive, ["user_order_features"]).to_df()
    b = store.get_historical_features(aware, ["user_order_features"]).to_df()
    pd.testing.assert_frame_equal(a.drop(columns="event_timestamp"), b.drop(columns="event_timestamp"))


def test_arrow_and_warehouse_spines(store, built_project):
    labels_sql = "select user_id, label_ts, churned from stg_churn_labels"
    from_sql = store.get_historical_features(labels_sql, ["user_order_features"], timestamp_column="label_ts")
    table = from_sql.to_arrow()
    con = duckdb.connect(str(built_project / "feature_store.duckdb"), read_only=True)
    labels = con.sql(labels_sql).to_arrow_table()
    con.close()
    from_arrow = store.get_historical_features(labels, ["user_order_features"], timestamp_column="label_ts").to_arrow()
    assert table.num_rows == labels.num_rows == from_arrow.num_rows
    assert table.column("user_7d_orders").null_count < table.num_rows  # some labels match features
    assert from_arrow.equals(table)


def test_compiled_sql_is_cached(store, latest):
    uid, ts = latest
    df = spine([(uid, ts)])
    store.get_historical_features(df, ["user_order_features:user_avg_basket_30d"], ttl_override="5d").to_df()
    t0 = time.perf_counter()
    store.get_historical_features(df, ["user_order_features:user_avg_basket_30d"], ttl_override="5d").to_df()
    assert time.perf_counter() - t0 < 1.0, "a repeated call recompiled with dbt"
    cached = list((store.registry.manifest_path.parent / "feature_store" / "compiled").glob("*.sql"))
    assert cached


@pytest.fixture
def private_registry(store, tmp_path) -> Registry:
    """The built project's registry, reading a private copy of its DuckDB file that a test may lock."""
    path = tmp_path / store.registry.target.path.name  # the file name is the catalog name the SQL uses
    shutil.copy(store.registry.target.path, path)
    registry = copy.copy(store.registry)
    registry.target = dataclasses.replace(registry.target, path=path)
    return registry


def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen:
    """Another process holding DuckDB's write lock on ``path`` for ``seconds``, as `dbt build` does."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
         "time.sleep(float(sys.argv[2])); c.close()", str(path), str(seconds)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def open_for_writing(path: Path) -> None:
    """Open ``path`` for writing in another process, as `dbt build` would; fails while anyone holds it."""
    subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()", str(path)],
                   check=True, capture_output=True)


def test_a_locked_warehouse_is_a_prompt_clear_error(private_registry, latest):
    uid, ts = latest
    path = private_registry.target.path
    holder = hold_write_lock(path, 30)
    try:
        job = get_historical_features(private_registry, spine([(uid, ts)]), ["user_order_features"])
        with pytest.raises(WarehouseError, match=rf"warehouse file {re.escape(str(path))} is locked: another process "
                                                 r"\(PID \d+, .*\) holds DuckDB's write lock, usually a running "
                                                 r"`dbt build`.*fstore --wait 60s"):
            job.to_df()
        started = time.monotonic()
        with pytest.raises(WarehouseError, match=r"is locked still, after waiting 0.3s: another process"):
            connect(private_registry, wait=0.3)
        assert time.monotonic() - started < 1.5
    finally:
        holder.kill()
        holder.wait()


def test_connect_waits_for_a_writer_and_says_so(private_registry):
    holder = hold_write_lock(private_registry.target.path, 2)
    notes: list[str] = []
    try:
        started = time.monotonic()
        connect(private_registry, wait=10, on_wait=notes.append).close()
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert 1 < waited < 8
    assert notes and 1 <= len(notes) <= waited + 1.5  # about once a second
    assert f"waiting for {private_registry.target.path}: another process (PID {holder.pid}" in notes[0]
    assert "holds DuckDB's write lock (usually a running `dbt build`); 0s of 10s" in notes[0]


def test_a_training_set_read_waits_for_a_build_and_then_lets_it_write(private_registry):
    job = get_historical_features(private_registry, "stg_churn_labels", ["user_order_features"],
                                  timestamp_column="label_ts", wait=10, on_wait=(notes := []).append)
    open_for_writing(private_registry.target.path)  # checking the spine left the file free
    holder = hold_write_lock(private_registry.target.path, 1)
    try:
        table = job.to_arrow()
    finally:
        holder.kill()
        holder.wait()
    assert table.num_rows > 0 and notes
    open_for_writing(private_registry.target.path)  # the read has closed the file


def test_fstore_historical_writes_a_training_set(built_project, tmp_path, latest):
    uid, ts = latest
    labels = pa.table({"user_id": [uid, uid, 424242], "label_ts": [ts, ts - timedelta(days=10), ts]})
    pq.write_table(labels, tmp_path / "labels.parquet")
    out = tmp_path / "training.parquet"
    proc = subprocess.run(
        [FSTORE, "historical", "--project-dir", str(built_project), "--spine", str(tmp_path / "labels.parquet"),
         "--timestamp-column", "label_ts", "-f", "user_order_features:user_7d_orders,user_txn_features",
         "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Wrote 3 rows" in proc.stdout and "NULL rate: user_7d_orders 33.3%" in proc.stdout
    table = pq.read_table(out)
    assert table.column_names[:2] == ["user_id", "label_ts"] and "txn_velocity_60s" in table.column_names


def test_fstore_historical_bad_input_writes_nothing(built_project, tmp_path):
    pq.write_table(pa.table({"user_id": [1]}), tmp_path / "labels.parquet")
    out = tmp_path / "training.parquet"
    proc = subprocess.run(
        [FSTORE, "historical", "--project-dir", str(built_project), "--spine", str(tmp_path / "labels.parquet"),
         "--timestamp-column", "label_ts", "-f", "user_order_features", "--out", str(out)],
        capture_output=True, text=True)
    assert proc.returncode == 1
    assert "timestamp column 'label_ts' is not in" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
