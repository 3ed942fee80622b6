"""Online == offline, checked: the comparison the consistency and scenario tests share.

For every entity of an online view, what ``get_online_features(now=T)`` returns must be
what the point-in-time join returns for ``(entity, T)``: the same values, and missing
exactly where the training set has NULL. One copy, so the single check in
tests/test_consistency.py and the step-by-step one in tests/test_scenarios.py cannot
drift apart. The engine tests (Postgres, Spark) share the training-set and sync checks
below for the same reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from feature_store import offline
from feature_store.errors import EntityDataFrameError
from feature_store.materialize import sync
from feature_store.online import FieldStatus, OnlineStore, get_online_features
from feature_store.registry import FeatureView, Registry
from feature_store.warehouse import open_warehouse

# A mismatch report names this many entities; the count says how many more there were.
SHOWN = 5


def utc_now() -> datetime:
    """The wall clock as naive UTC, the form the sync and the reads take."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def online_views(registry: Registry) -> list[FeatureView]:
    return sorted((v for v in registry.views.values() if v.online), key=lambda v: v.name)


def entities(registry: Registry, view: FeatureView) -> pa.Table:
    """Every entity key that has a row in the view's warehouse table."""
    with open_warehouse(registry) as wh:
        keys = ", ".join(wh.quote(k) for k in view.join_keys)
        not_null = " and ".join(f"{wh.quote(k)} is not null" for k in view.join_keys)
        return wh.fetch(f"select distinct {keys} from {view.relation} where {not_null} order by {keys}")


def latest_event_ts(registry: Registry, view: FeatureView, as_of: datetime) -> dict[tuple, datetime | None]:
    """Each entity's latest event timestamp at or before ``as_of``; None when it is older than the ttl.

    Plain SQL on the view's table rather than the sync's own snapshot read, so the
    oracle does not share the code it checks.
    """
    with open_warehouse(registry) as wh:
        keys = ", ".join(wh.quote(k) for k in view.join_keys)
        not_null = " and ".join(f"{wh.quote(k)} is not null" for k in view.join_keys)
        ts = wh.quote(view.timestamp)
        rows = wh.fetch(f"select {keys}, max({ts}) as latest from {view.relation} where {not_null} "
                        f"and {ts} <= timestamp '{as_of.isoformat(sep=' ')}' group by {keys}").to_pylist()
    n = len(view.join_keys)
    return {tuple(list(r.values())[:n]): (r["latest"] if view.ttl is None or r["latest"] >= as_of - view.ttl else None)
            for r in rows}


def expired_by_wall_clock(registry: Registry, view: FeatureView, synced_at: datetime, wall: datetime) -> set[tuple]:
    """Entities live at ``synced_at`` whose ttl ran out by ``wall``.

    A sync at T takes values as of T but writes them later, with Redis expiring each key
    at event ts + ttl on the wall clock: such a row is rightly absent online although the
    join at T still has it.
    """
    if view.ttl is None:
        return set()
    return {k for k, e in latest_event_ts(registry, view, synced_at).items()
            if e is not None and synced_at < e + view.ttl <= wall}


def compare(registry: Registry, store: OnlineStore, view: FeatureView, keys: pa.Table, at: datetime,
            expired: set) -> int:
    """Assert online == historical for every entity at ``at``; returns the number of values compared.

    Every mismatch is collected before failing, so one message shows how widespread a
    divergence is rather than only its first entity.
    """
    spine = keys.append_column("event_timestamp", pa.array([at] * keys.num_rows, pa.timestamp("us")))
    historical = offline.get_historical_features(registry, spine, [view.name]).to_arrow().to_pylist()
    rows = keys.to_pylist()
    online = get_online_features(registry, store, [view.name], rows, now=at, apply_fallbacks=False)
    values, statuses = online.to_dict(), online.statuses
    compared = 0
    wrong: list[str] = []
    for i, (row, hist) in enumerate(zip(rows, historical)):
        assert all(hist[k] == row[k] for k in view.join_keys)  # the training set keeps the spine's order
        for f in view.features:
            got, status, want = values[f.name][i], statuses[f.name][i], hist[f.name]
            compared += 1
            if got == want and (status is FieldStatus.PRESENT or want is None):
                continue
            if f.fallback is not None and f.fallback.kind == "impute" and got is None and want == f.fallback.value:
                continue  # the training set imputes in SQL; the online raw read does not
            if tuple(row.values()) in expired and got is None:
                continue  # its ttl ran out between T and the write: Redis would have dropped it anyway
            wrong.append(f"{row} {f.name}: online {got!r} ({status}) != historical {want!r}")
    if wrong:
        more = f"\n  ... and {len(wrong) - SHOWN} more" if len(wrong) > SHOWN else ""
        raise AssertionError(f"{view.name} at {at}: {len(wrong)} of {compared} values differ online from the "
                             f"point-in-time join:\n  " + "\n  ".join(wrong[:SHOWN]) + more)
    return compared


def check_all(registry: Registry, store: OnlineStore, synced_at: datetime, *, at: datetime | None = None,
              wall_margin: timedelta = timedelta(seconds=10)) -> dict[str, int]:
    """``compare`` every entity of every online view at ``at`` (default: the sync time ``synced_at``).

    Values counted per view are returned. ``wall_margin`` extends the wall-clock expiry
    allowance past this call's start: a key may expire while the check itself runs.
    """
    at = synced_at if at is None else at
    wall = utc_now() + wall_margin
    compared = {}
    for view in online_views(registry):
        keys = entities(registry, view)
        assert keys.num_rows > 0, f"{view.name} has no entities in the warehouse"
        compared[view.name] = compare(registry, store, view, keys, at,
                                      expired_by_wall_clock(registry, view, synced_at, wall))
    return compared


CHURN_FEATURES = ["user_order_features:user_7d_orders", "user_order_features:user_lifetime_orders",
                  "user_order_features:user_avg_basket_30d", "user_order_features:last_order_ts"]


def check_training_set_api(registry: Registry, engine: str, spine_sql: str, to_spine=lambda table: table) -> pa.Table:
    """get_historical_features on the example built on ``engine`` gives the rows `dbt build` put
    into churn_training_set: from a DataFrame spine (``to_spine`` of the labels, in the model's
    row order) and from the SELECT ``spine_sql`` (in any order); a missing timestamp column is
    refused by name. Returns the DataFrame spine's training set."""
    with open_warehouse(registry) as wh:
        assert wh.engine == engine
        trained = wh.fetch("select * from main.churn_training_set order by spine_row_number")
        spine_cols = wh.schema("select * from main.stg_churn_labels").names
    want = trained.drop_columns(["spine_row_number"])
    assert want.num_rows > 0

    out = offline.get_historical_features(registry, to_spine(trained.select(spine_cols)), CHURN_FEATURES,
                                          timestamp_column="label_ts").to_arrow()
    assert out.column_names == want.column_names
    assert out.to_pylist() == want.to_pylist()

    from_sql = offline.get_historical_features(registry, spine_sql, CHURN_FEATURES,
                                               timestamp_column="label_ts").to_arrow()
    key = lambda r: (r["user_id"], r["label_ts"])  # noqa: E731 - a SELECT spine has no defined row order
    assert sorted(from_sql.to_pylist(), key=key) == sorted(want.to_pylist(), key=key)
    with pytest.raises(EntityDataFrameError, match="label_tss"):
        offline.get_historical_features(registry, "main.stg_churn_labels", CHURN_FEATURES,
                                        timestamp_column="label_tss")
    return out


def check_synced_then_resync(registry: Registry, store: OnlineStore, synced_at: datetime) -> None:
    """After a sync at ``synced_at``: online == offline for every entity of every online view,
    and a second sync at the same time proves nothing changed and reads nothing."""
    compared = check_all(registry, store, synced_at)
    assert sum(compared.values()) > 1000
    again = sync(registry, store, now=synced_at)
    assert again.ok and again.rows_read == 0
    assert all(v.mode == "incremental" for v in again.views.values())
