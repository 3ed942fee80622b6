"""The sync's warehouse read: partition fingerprints prove what changed, on a real dbt build on DuckDB.

Each test works on its own copy of the built example project, so it may change the
warehouse the way a rebuild would (same timestamps, other values; late rows) with a
write connection of its own.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import duckdb
import pytest

from feature_store.materialize import sync
from feature_store.online import OnlineStore, get_online_features
from feature_store.registry import Registry
from feature_store.snapshot import Fingerprints, choose_parts, snapshot

pytestmark = [pytest.mark.dbt, pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")]


@pytest.fixture
def project(built_project, tmp_path):
    """A private copy of the built project (warehouse file, manifest and compile cache included)."""
    return shutil.copytree(built_project, tmp_path / "project")


def newest_event(registry: Registry, view: str) -> datetime:
    con = duckdb.connect(str(registry.target.path), read_only=True)
    try:
        return con.sql(f"select max(event_ts) from {registry.view(view).relation}").fetchall()[0][0]
    finally:
        con.close()


def write(registry: Registry, sql: str) -> None:
    """Change the warehouse as a rebuild would, through a write connection of our own."""
    con = duckdb.connect(str(registry.target.path))
    try:
        con.execute(sql)
    finally:
        con.close()


def read(registry, view, as_of, **kwargs) -> tuple[list[dict], object]:
    reader = snapshot(registry, view, as_of=as_of, **kwargs)
    try:
        return reader.read_all().to_pylist(), reader
    finally:
        reader.close()


def test_a_large_snapshot_is_read_in_partitions_with_the_same_rows(project):
    registry = Registry.load(project)
    as_of = newest_event(registry, "user_order_features") + timedelta(minutes=1)
    by_key = lambda rows: sorted(rows, key=lambda r: r["user_id"])  # noqa: E731
    whole, reader = read(registry, "user_order_features", as_of)
    assert reader.total_rows == len(whole) > 20 and reader.plan == "every entity"
    parts, reader = read(registry, "user_order_features", as_of, partition_keys=7, batch_rows=5)
    assert reader.total_rows == len(whole) and by_key(parts) == by_key(whole)


def test_fingerprints_prove_which_entities_changed(project):
    registry = Registry.load(project)
    view = registry.view("user_order_features")
    as_of = newest_event(registry, view.name) + timedelta(minutes=1)
    rows, first = read(registry, view.name, as_of)
    fps = first.fingerprints
    assert fps.parts == choose_parts(len(rows)) > 1 and Fingerprints.decode(fps.parts, fps.text) == fps
    assert Fingerprints.decode(fps.parts, fps.text[:-1]) is None and len(set(fps.text[i:i + 16] for i in range(0, len(fps.text), 16))) > 1

    # Nothing changed: nothing to read, the proof is the fingerprints alone.
    rows, again = read(registry, view.name, as_of, previous=(fps, as_of))
    assert rows == [] and again.fingerprints == fps and again.plan.startswith("0 of")

    # A logic fix for one user: the same timestamps, another value.
    users = sorted(r["user_id"] for r in read(registry, view.name, as_of)[0])
    user, late_user = users[3], users[-1]
    write(registry, f"update {view.relation} set user_7d_orders = user_7d_orders + 1000 where user_id = {user}")
    rows, fixed = read(registry, view.name, as_of, previous=(fps, as_of))
    assert user in {r["user_id"] for r in rows}
    differ = [p for p in range(fps.parts) if fixed.fingerprints.text[16 * p:16 * p + 16] != fps.text[16 * p:16 * p + 16]]
    assert len(differ) == 1 and fixed.plan.startswith("1 of") and len(rows) < first.total_rows / 10
    assert next(r for r in rows if r["user_id"] == user)["user_7d_orders"] >= 1000

    # A late row: timed before the last sync, inserted after it.
    write(registry, f"insert into {view.relation} by name select * replace (event_ts + interval 1 second as event_ts, "
                    f"4242 as user_7d_orders) from {view.relation} where user_id = {late_user} "
                    f"order by event_ts desc limit 1")
    rows, late = read(registry, view.name, as_of + timedelta(seconds=2), previous=(fixed.fingerprints, as_of))
    assert next(r for r in rows if r["user_id"] == late_user)["user_7d_orders"] == 4242

    # Rows timed after the last as-of are read even where nothing changed.
    later = as_of + timedelta(days=400)
    rows, _ = read(registry, view.name, later, previous=(late.fingerprints, later - timedelta(days=1)))
    assert rows == []
    rows, _ = read(registry, view.name, later, previous=(late.fingerprints, as_of - timedelta(days=3)))
    assert len(rows) > 0


@pytest.mark.redis
def test_an_incremental_sync_reads_what_changed_and_a_fix_at_the_same_timestamps_lands(project, redis_url):
    registry = Registry.load(project)
    store = OnlineStore.for_registry(registry, url=redis_url)
    view = registry.view("user_order_features")
    now = newest_event(registry, view.name) + timedelta(hours=1)
    first = sync(registry, store, now=now, views=[view.name])
    vr = first.views[view.name]
    assert first.ok and vr.mode == "full" and vr.keys_written > 0

    again = sync(registry, store, now=now + timedelta(seconds=1), views=[view.name])
    assert again.ok and again.views[view.name].mode == "incremental"
    assert again.rows_read == 0 and again.keys_written == 0

    user = get_online_features(registry, store, [view.name], [{"user_id": u} for u in range(1, 60)], now=now,
                               apply_fallbacks=False)
    live = [u for u, v in zip(range(1, 60), user.to_dict()["user_7d_orders"]) if v is not None][0]
    write(registry, f"update {view.relation} set user_7d_orders = 999 where user_id = {live}")
    fixed = sync(registry, store, now=now + timedelta(seconds=2), views=[view.name])
    assert fixed.ok and fixed.views[view.name].mode == "incremental"
    assert 0 < fixed.rows_read < vr.rows_read / 10 and fixed.keys_written == 1
    got = get_online_features(registry, store, [f"{view.name}:user_7d_orders"], [{"user_id": live}], now=now)
    assert got.to_dict()["user_7d_orders"] == [999]
