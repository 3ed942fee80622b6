"""THE guarantee: after a sync at time T, online reads equal the point-in-time join at T.

On the example project (``built_project``: a real ``dbt build`` on DuckDB) and a real
redis-server: for every entity of every online view, ``get_online_features(now=T)``
returns what ``get_historical_features`` returns for ``(entity, T)`` — the same values,
and missing exactly where the training set has NULL. Then again at a later reading
time R with no new rows: the read-time TTL check keeps the two in step as values age.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from feature_store import offline, snapshot
from feature_store.materialize import sync
from feature_store.online import FieldStatus, OnlineStore, get_online_features
from feature_store.registry import Registry

pytestmark = [pytest.mark.dbt, pytest.mark.redis, pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")]


def entities(registry: Registry, view) -> pa.Table:
    """Every entity key that has a row in the view's warehouse table."""
    keys = ", ".join(f'"{k}"' for k in view.join_keys)
    not_null = " and ".join(f'"{k}" is not null' for k in view.join_keys)
    con = offline.connect(registry)
    try:
        return con.sql(f"select distinct {keys} from {view.relation} where {not_null} order by {keys}").to_arrow_table()
    finally:
        con.close()


def latest_event_ts(registry: Registry, view, as_of: datetime) -> dict[tuple, datetime | None]:
    reader, con = snapshot.snapshot(registry, view.name, as_of=as_of)
    try:
        return {tuple(r[k] for k in view.join_keys): r["__event_ts"] for r in reader.read_all().to_pylist()}
    finally:
        con.close()


def compare(registry, store, view, keys: pa.Table, at: datetime, expired_by_wall_clock: set) -> int:
    """Assert online == historical for every entity at ``at``; returns the number of values compared."""
    spine = keys.append_column("event_timestamp", pa.array([at] * keys.num_rows, pa.timestamp("us")))
    historical = offline.get_historical_features(registry, spine, [view.name]).to_arrow().to_pylist()
    rows = keys.to_pylist()
    online = get_online_features(registry, store, [view.name], rows, now=at, apply_fallbacks=False)
    values, statuses = online.to_dict(), online.statuses
    compared = 0
    for i, (row, hist) in enumerate(zip(rows, historical)):
        assert all(hist[k] == row[k] for k in view.join_keys)  # the training set keeps the spine's order
        for f in view.features:
            got, status, want = values[f.name][i], statuses[f.name][i], hist[f.name]
            compared += 1
            if got == want and (status is FieldStatus.PRESENT or want is None):
                continue
            if f.fallback is not None and f.fallback.kind == "impute" and got is None and want == f.fallback.value:
                continue  # the training set imputes in SQL; the online raw read does not
            if tuple(row.values()) in expired_by_wall_clock and got is None:
                continue  # its ttl ran out between T and the write: Redis would have dropped it anyway
            raise AssertionError(f"{view.name} {row} {f.name} at {at}: online {got!r} ({status}) != "
                                 f"historical {want!r}")
    return compared


def test_online_reads_equal_the_point_in_time_join_at_sync_time(built_project, redis_url):
    registry = Registry.load(built_project)
    store = OnlineStore.for_registry(registry, url=redis_url)
    online_views = [v for v in registry.views.values() if v.online]
    assert {v.name for v in online_views} >= {"user_order_features", "user_txn_features"}

    T = datetime.now(timezone.utc).replace(tzinfo=None)
    seen: dict[str, tuple[int, int | None]] = {}
    report = sync(registry, store, now=T, progress=lambda view, done, total: seen.__setitem__(view, (done, total)))
    # The progress callback knows each view's total up front (for the ETA) and ends on it.
    assert seen == {v: (r.rows_read, r.rows_read) for v, r in report.views.items()}
    wall_after = datetime.now(timezone.utc).replace(tzinfo=None)
    assert report.keys_written > 0
    later = T + timedelta(hours=3)  # no new rows: every 10m value has aged out, the 2d ones have not

    compared = 0
    for view in online_views:
        keys = entities(registry, view)
        assert keys.num_rows > 0, view.name
        # Rows live at T whose event ts + ttl passed before they were written: not stored (by design).
        expired = {k for k, e in latest_event_ts(registry, view, T).items()
                   if e is not None and view.ttl is not None and T < e + view.ttl <= wall_after}
        compared += compare(registry, store, view, keys, T, expired)
        compared += compare(registry, store, view, keys, later, expired)
    assert compared > 1000

    # Re-runs change nothing: incremental reads nothing new since the watermark, and a
    # full refresh re-reads every entity and skips each as equal.
    incremental = sync(registry, store, now=T)
    assert incremental.rows_read == 0 and all(v.since == T for v in incremental.views.values())
    again = sync(registry, store, now=T, full_refresh=True)
    assert again.keys_written == 0 and again.skipped_older == report.keys_written
