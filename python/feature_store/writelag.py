"""Online write lag: how long after their event time rows reached Redis, recorded by the writers.

``fstore monitor`` alerts when values reach the online store late: when the 95th percentile
of *write time minus event time* exceeds the view's ``freshness_sla`` times ``lag_factor``.

What is measured: the rows a writer wrote **as a newer version than Redis held** (no key,
or a greater ``(event ts, created ts)``), as the write script reports them per call
(:mod:`feature_store.writer`, :attr:`~feature_store.writer.WriteResult.newer`). Not the
rows written again at the same version with other content (a logic fix rebuilt at the
same timestamps is not lateness), and not those skipped as older or unchanged (a sync
reads whole fingerprint partitions, so most rows it reads are unchanged neighbours). A
late row (event time before the last sync, in the warehouse only after it) is measured
when the sync that finds it writes it: its lag is that sync's time minus its old event
time. Lags are computed column-wise with numpy (no Python loop over rows) and left in
Redis, where the monitor reads them without dbt or the warehouse:

* the sync (:mod:`feature_store.materialize`) as fields of the view's sync state hash,
  saved with the rest of the state when a sync finishes (:data:`SYNC_FIELDS`), over the
  rows that sync wrote as newer versions, write time on the sync's clock (its ``now`` plus
  the time until Redis answered for the row's batch). Only an incremental sync (a previous
  finished sync proves what Redis holds) measures: a sync that reads the view in full
  (first deploy, definition change, Redis restarted or flushed, ``--full-refresh``) writes
  history that is old by nature, so it records ``write_lag_rows`` 0, no p95 or max, and
  the reason in ``write_lag_note``; the monitor then says the lag was not measured. A
  backfill leaves the fields as they were;
* a push (:mod:`feature_store.push`), which takes no lock and runs concurrently, as a capped
  Redis list per view (:func:`push_lag_key`) of ``<written at>,<lag>`` entries, newest first:
  every push adds the lags of the rows it wrote as newer versions, trims the list to
  :data:`PUSH_KEEP` and sets its expiry to :data:`PUSH_WINDOW`; the monitor reads only the
  entries written within :data:`PUSH_WINDOW` of the clock, so one old backfill push stops
  counting after a day, and a view no longer pushed loses its list.

Lags are seconds; times are epoch seconds (UTC). Nothing here imports dbt or the warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_store.codec import micros, micros_column, naive_utc

if TYPE_CHECKING:  # pragma: no cover
    from feature_store.online import OnlineStore

__all__ = ["LagRecorder", "PUSH_KEEP", "PUSH_WINDOW", "SYNC_FIELDS", "WriteLag", "push_lag_key", "read_write_lag",
           "record_push_lag"]

# The sync state fields holding the last finished sync's write lag.
SYNC_FIELDS = ("write_lag_p95_s", "write_lag_max_s", "write_lag_rows", "write_lag_at", "write_lag_note")
# Pushed rows whose lag a view's list keeps: enough for a stable p95, small enough to read at once.
PUSH_KEEP = 1000
# The pushes the monitor judges: those written within this window of the clock. Also the
# expiry each push gives the list, so a view no longer pushed loses it.
PUSH_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class WriteLag:
    """The write lag of one writer of a view: ``source`` "sync" or "push"; seconds; ``at`` the write time (UTC).

    ``note``: why there is no p95 (e.g. the sync read the view in full), else "".
    """

    source: str
    rows: int
    p95_s: float | None
    max_s: float | None
    at: datetime | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rows": self.rows, "p95_s": self.p95_s, "max_s": self.max_s,
                "at": self.at.isoformat(sep=" ") if self.at else None, "note": self.note}


def _micros(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Event times as int64 microseconds since the epoch (UTC), NULLs dropped."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    column = pc.drop_null(column)
    return np.asarray(micros_column(column).to_numpy(zero_copy_only=False), dtype=np.int64)


class LagRecorder:
    """Collects the write lag of rows batch by batch; :meth:`fields` summarizes it for the sync state.

    The caller hands in only the rows to measure: those written as newer versions.
    """

    def __init__(self) -> None:
        self._lags: list[np.ndarray] = []
        self._at: datetime | None = None

    def add(self, event_ts: pa.Array | pa.ChunkedArray, written_at: datetime) -> None:
        """Rows with event times ``event_ts`` were written at ``written_at`` (naive = UTC)."""
        at = naive_utc(written_at)
        ts = _micros(event_ts)
        if ts.size:
            self._lags.append(micros(at) - ts)
        self._at = at if self._at is None else max(self._at, at)

    def lags(self) -> np.ndarray:
        """Every lag collected, in seconds."""
        return np.concatenate(self._lags) / 1e6 if self._lags else np.empty(0)

    def fields(self, finished: datetime) -> dict[str, Any]:
        """The sync state fields (:data:`SYNC_FIELDS`) of a sync that measured, finished at ``finished``.

        p95 and max are empty (and the note says why) when it wrote no newer version.
        """
        lags = self.lags()
        at = self._at if lags.size and self._at else naive_utc(finished)
        return {
            "write_lag_p95_s": f"{np.percentile(lags, 95):.3f}" if lags.size else "",
            "write_lag_max_s": f"{lags.max():.3f}" if lags.size else "",
            "write_lag_rows": int(lags.size),
            "write_lag_at": at.isoformat(sep=" "),
            "write_lag_note": "" if lags.size else "the sync wrote no row as a newer version",
        }

    @staticmethod
    def not_measured(why: str, finished: datetime) -> dict[str, Any]:
        """The sync state fields of a sync that did not measure (it read the view in full): no p95, ``why``."""
        return {"write_lag_p95_s": "", "write_lag_max_s": "", "write_lag_rows": 0,
                "write_lag_at": naive_utc(finished).isoformat(sep=" "), "write_lag_note": why}


def push_lag_key(store: "OnlineStore", view_name: str) -> str:
    """The list of a view's recent pushed-row lags: beside its sync state, in the same hash slot."""
    return f"{store.sync_key(view_name)}:push_lag"


def record_push_lag(store: "OnlineStore", view_name: str, event_ts: pa.Array | pa.ChunkedArray,
                    written_at: datetime) -> None:
    """Add the lags of rows pushed at ``written_at`` to the view's list, keeping the newest :data:`PUSH_KEEP`.

    ``event_ts``: the event times of the rows the push wrote as newer versions. One
    pipelined round trip (LPUSH, LTRIM, EXPIRE of :data:`PUSH_WINDOW`); nothing when there
    is no row. Raises :class:`~feature_store.errors.OnlineStoreError` when Redis fails.
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
        pipe.expire(key, int(PUSH_WINDOW.total_seconds()))
        return pipe.execute()

    store.call(f"recording the push write lag of {view_name}", attempt)


def read_write_lag(store: "OnlineStore", view_name: str, *, now: datetime | None = None) -> list[WriteLag]:
    """What the writers of ``view_name`` recorded: the last finished sync's lag, and the recent pushes'.

    Pushes count when written within :data:`PUSH_WINDOW` up to ``now`` (default: the
    clock; naive means UTC): the window is real time, like the list's expiry.
    """
    found: list[WriteLag] = []
    state = store.sync_state(view_name)
    if state.get("write_lag_at"):
        found.append(WriteLag(
            "sync", int(state.get("write_lag_rows") or 0),
            float(state["write_lag_p95_s"]) if state.get("write_lag_p95_s") else None,
            float(state["write_lag_max_s"]) if state.get("write_lag_max_s") else None,
            datetime.fromisoformat(state["write_lag_at"]), state.get("write_lag_note", "")))
    key = push_lag_key(store, view_name)
    raw = store.call(f"reading the push write lag of {view_name}", lambda: store.client.lrange(key, 0, PUSH_KEEP - 1))
    if raw:
        pairs = np.array([[float(x) for x in item.decode().split(",")] for item in raw])
        clock = naive_utc(now) or datetime.now(timezone.utc).replace(tzinfo=None)
        since = (clock - PUSH_WINDOW).replace(tzinfo=timezone.utc).timestamp()
        pairs = pairs[(pairs[:, 0] >= since) & (pairs[:, 0] <= clock.replace(tzinfo=timezone.utc).timestamp())]
        if pairs.size:
            at = datetime.fromtimestamp(float(pairs[:, 0].max()), timezone.utc).replace(tzinfo=None)
            found.append(WriteLag("push", len(pairs), float(np.percentile(pairs[:, 1], 95)),
                                  float(pairs[:, 1].max()), at))
    return found
