"""Online write lag: how long after their event time rows reached Redis, recorded by the writers.

``fstore monitor`` alerts when values reach the online store late: when the 95th percentile
of *write time minus event time* exceeds the view's ``freshness_sla`` times ``lag_factor``.
The writers measure it on the rows they write, column-wise with numpy (no Python loop over
rows), and leave it in Redis, where the monitor reads it without dbt or the warehouse:

* the sync (:mod:`feature_store.materialize`) as fields of the view's sync state hash,
  saved with the rest of the state when a sync finishes (:data:`SYNC_FIELDS`): the rows
  it counts are those new since the last finished sync (event time after its as-of), or
  every live row it read when it read the view in full without a previous sync;
* a push (:mod:`feature_store.push`), which takes no lock and runs concurrently, as a capped
  Redis list per view (:func:`push_lag_key`) of ``<written at>,<lag>`` entries, newest first:
  every push adds its rows' lags and trims the list to :data:`PUSH_KEEP`, so the monitor sees
  the recent pushes, not only the last one.

Lags are seconds; times are epoch seconds (UTC). Nothing here imports dbt or the warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_store.codec import micros, micros_column, naive_utc

if TYPE_CHECKING:  # pragma: no cover
    from feature_store.online import OnlineStore

__all__ = ["LagRecorder", "PUSH_KEEP", "SYNC_FIELDS", "WriteLag", "push_lag_key", "read_write_lag",
           "record_push_lag"]

# The sync state fields holding the last finished sync's write lag.
SYNC_FIELDS = ("write_lag_p95_s", "write_lag_max_s", "write_lag_rows", "write_lag_at")
# Pushed rows whose lag a view's list keeps: enough for a stable p95, small enough to read at once.
PUSH_KEEP = 1000


@dataclass(frozen=True)
class WriteLag:
    """The write lag of one writer of a view: ``source`` "sync" or "push"; seconds; ``at`` the write time (UTC)."""

    source: str
    rows: int
    p95_s: float | None
    max_s: float | None
    at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rows": self.rows, "p95_s": self.p95_s, "max_s": self.max_s,
                "at": self.at.isoformat(sep=" ") if self.at else None}


def _micros(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Event times as int64 microseconds since the epoch (UTC), NULLs dropped."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    column = pc.drop_null(column)
    return np.asarray(micros_column(column).to_numpy(zero_copy_only=False), dtype=np.int64)


class LagRecorder:
    """Collects the write lag of rows batch by batch; :meth:`fields` summarizes it for the sync state.

    ``after``: count only rows timed after it (the last finished sync's as-of: rows new since).
    """

    def __init__(self, after: datetime | None = None):
        self._after = None if after is None else micros(naive_utc(after))
        self._lags: list[np.ndarray] = []
        self._at: datetime | None = None

    def add(self, event_ts: pa.Array | pa.ChunkedArray, written_at: datetime) -> None:
        """The rows of one batch with event times ``event_ts`` were written at ``written_at`` (naive = UTC)."""
        at = naive_utc(written_at)
        ts = _micros(event_ts)
        if self._after is not None:
            ts = ts[ts > self._after]
        if ts.size:
            self._lags.append(micros(at) - ts)
        self._at = at

    def lags(self) -> np.ndarray:
        """Every lag collected, in seconds."""
        return np.concatenate(self._lags) / 1e6 if self._lags else np.empty(0)

    def fields(self) -> dict[str, Any]:
        """The sync state fields (:data:`SYNC_FIELDS`); p95 and max empty when no row counted."""
        lags = self.lags()
        return {
            "write_lag_p95_s": f"{np.percentile(lags, 95):.3f}" if lags.size else "",
            "write_lag_max_s": f"{lags.max():.3f}" if lags.size else "",
            "write_lag_rows": int(lags.size),
            "write_lag_at": self._at.isoformat(sep=" ") if self._at else "",
        }


def push_lag_key(store: "OnlineStore", view_name: str) -> str:
    """The list of a view's recent pushed-row lags: beside its sync state, in the same hash slot."""
    return f"{store.sync_key(view_name)}:push_lag"


def record_push_lag(store: "OnlineStore", view_name: str, event_ts: pa.Array | pa.ChunkedArray,
                    written_at: datetime) -> None:
    """Add the lags of rows pushed at ``written_at`` to the view's list, keeping the newest :data:`PUSH_KEEP`.

    One pipelined round trip (LPUSH, LTRIM). Raises :class:`~feature_store.errors.OnlineStoreError`
    when Redis fails.
    """
    recorder = LagRecorder()
    recorder.add(event_ts, written_at)
    lags = recorder.lags()[-PUSH_KEEP:]
    if not lags.size:
        return
    at = naive_utc(written_at).replace(tzinfo=timezone.utc).timestamp()
    entries = [f"{at:.3f},{lag:.3f}" for lag in lags.tolist()]
    key = push_lag_key(store, view_name)

    def attempt() -> Any:
        pipe = store.write_client.pipeline(transaction=False)
        pipe.lpush(key, *entries)
        pipe.ltrim(key, 0, PUSH_KEEP - 1)
        return pipe.execute()

    store.call(f"recording the push write lag of {view_name}", attempt)


def read_write_lag(store: "OnlineStore", view_name: str) -> list[WriteLag]:
    """What the writers of ``view_name`` recorded: the last finished sync's lag, and the recent pushes'."""
    found: list[WriteLag] = []
    state = store.sync_state(view_name)
    if state.get("write_lag_at"):
        found.append(WriteLag(
            "sync", int(state.get("write_lag_rows") or 0),
            float(state["write_lag_p95_s"]) if state.get("write_lag_p95_s") else None,
            float(state["write_lag_max_s"]) if state.get("write_lag_max_s") else None,
            datetime.fromisoformat(state["write_lag_at"])))
    key = push_lag_key(store, view_name)
    raw = store.call(f"reading the push write lag of {view_name}", lambda: store.client.lrange(key, 0, PUSH_KEEP - 1))
    if raw:
        pairs = np.array([[float(x) for x in item.decode().split(",")] for item in raw])
        at = datetime.fromtimestamp(float(pairs[:, 0].max()), timezone.utc).replace(tzinfo=None)
        found.append(WriteLag("push", len(pairs), float(np.percentile(pairs[:, 1], 95)), float(pairs[:, 1].max()),
                              at))
    return found
