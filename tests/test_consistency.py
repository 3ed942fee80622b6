"""THE guarantee: after a sync at time T, online reads equal the point-in-time join at T.

On the example project (``built_project``: a real ``dbt build`` on DuckDB) and a real
redis-server: for every entity of every online view, ``get_online_features(now=T)``
returns what ``get_historical_features`` returns for ``(entity, T)`` — the same values,
and missing exactly where the training set has NULL. Then again at a later reading
time R with no new rows: the read-time TTL check keeps the two in step as values age.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from consistency_support import compare, entities, expired_by_wall_clock
from feature_store.materialize import sync
from feature_store.online import OnlineStore
from feature_store.registry import Registry

pytestmark = [pytest.mark.dbt, pytest.mark.redis, pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")]


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
        expired = expired_by_wall_clock(registry, view, T, wall_after)
        compared += compare(registry, store, view, keys, T, expired)
        compared += compare(registry, store, view, keys, later, expired)
    assert compared > 1000

    # Re-runs change nothing: an incremental sync proves nothing changed and reads nothing,
    # and a full refresh re-reads every entity and Redis skips each as unchanged.
    incremental = sync(registry, store, now=T)
    assert incremental.ok and incremental.rows_read == 0
    assert all(v.mode == "incremental" for v in incremental.views.values())
    again = sync(registry, store, now=T, full_refresh=True)
    assert again.keys_written == 0 and again.unchanged == report.keys_written
