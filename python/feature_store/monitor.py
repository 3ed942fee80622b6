"""Monitors: drift, freshness and fill rate of every feature, against thresholds from its meta.

:func:`run_monitors` checks each feature view and feature, and returns a :class:`MonitorRun`
(``fstore monitor`` prints it, appends it to the history and exits 1 on any alert):

* **Drift** between an offline sample, the view's rows of the last :data:`OFFLINE_DAYS`
  days before the run's day (today excluded: its rows are still arriving), at most
  :data:`SAMPLE_ROWS` drawn at random, and the online sample, the values the serving log
  recorded in the last :data:`ONLINE_WINDOW` (status ``PRESENT``). Numeric features
  (int, float, decimal): the two-sample Kolmogorov–Smirnov statistic
  (``scipy.stats.ks_2samp``) and the population stability index over ``psi_bins``
  quantile bins of the offline sample; string and bool features: PSI over the categories.
  ``PSI = sum((a - e) * ln(a / e))``, i.e. ``rel_entr(a, e) + rel_entr(e, a)``
  (``scipy.special.rel_entr``), an empty bin counting as :data:`PSI_FLOOR`. Timestamps
  and dates are not checked for drift: they move with time by nature.
* **Fill rate**: the share of non-NULL values among the entities' latest offline rows
  (every entity the view knows, as of the run), and among the served values (a value
  served as a fallback, ``IMPUTED``, did not exist: it counts as missing).
* **Freshness**: offline lag, the run's time minus the view's latest event time, against
  ``freshness_sla``; online write lag, write time minus event time of the rows the sync
  and pushes wrote as newer versions than Redis held, late rows included (an incremental
  sync measures, a full read does not; :mod:`feature_store.writelag`), p95 and max, warned
  above the SLA and alerted above ``lag_factor`` times it.
* **Skew**: the served values recomputed through the point-in-time join
  (:func:`feature_store.skew.audit_skew`), alerted above ``skew_max`` differing.

Thresholds (meta ``monitors:`` on the view or the column, the column's winning; defaults
in :data:`DEFAULT_THRESHOLDS`): KS warns above ``ks_warn`` and alerts above ``ks_alert``;
PSI warns from ``psi_warn`` and alerts from ``psi_alert``; fill rates alert below
``fill_rate_min``. A side with fewer than :data:`MIN_SAMPLES` values gives the level
``insufficient data``, never an alert, and a note saying which side.

The offline queries are dbt macros (``macros/monitor.sql``, dispatched per engine),
compiled once for all the views of a run (and cached), then run on the target's
warehouse (:mod:`feature_store.warehouse`) in one connection.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_store import servinglog
from feature_store.codec import naive_utc
from feature_store.errors import WarehouseError
from feature_store.registry import Feature, FeatureView, Registry, format_duration

if TYPE_CHECKING:  # pragma: no cover
    from feature_store.online import OnlineStore

__all__ = ["DEFAULT_THRESHOLDS", "FeatureResult", "HISTORY_DIR", "LEVELS", "MonitorRun", "ViewResult",
           "history_schema", "ks_statistic", "psi_categorical", "psi_numeric", "read_history", "run_monitors",
           "thresholds", "write_history"]

# Defaults from common practice, overridden by meta `monitors:` (registry.MONITOR_KEYS).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks_warn": 0.1,
    "ks_alert": 0.2,
    "psi_warn": 0.1,
    "psi_alert": 0.25,
    "psi_bins": 10,
    "fill_rate_min": 0.99,
    "skew_max": 0.001,
    "lag_factor": 2.0,
}
# Fewer values than this on a side and a statistic says more about chance than about drift.
MIN_SAMPLES = 30
OFFLINE_DAYS = 7
ONLINE_WINDOW = timedelta(hours=1)
# The offline sample per view: a KS or PSI on 20,000 values is as good as on millions.
SAMPLE_ROWS = 20_000
# An empty bin's share in PSI: ln(0) is infinite, and one empty bin must not dominate.
PSI_FLOOR = 1e-4
# The one-row relation the compiled queries read their time bounds from (macros/monitor.sql).
WINDOW = "__fs_monitor_window"
HISTORY_DIR = "monitor_history"

# From best to worst; a run's verdict is its worst level, and only "alert" fails it. "not checked"
# ranks below "ok", so a view whose one checked measure is fine reads "ok".
LEVELS = ("not checked", "ok", "insufficient data", "warn", "alert")
_RANK = {level: i for i, level in enumerate(LEVELS)}
_NUMERIC = ("int", "float", "decimal")
_CATEGORICAL = ("string", "bool")


def worst(*levels: str) -> str:
    """The worst of ``levels`` (``not checked`` when none)."""
    return max(levels, key=_RANK.__getitem__, default="not checked")


def thresholds(view: FeatureView, feature: Feature | None = None) -> dict[str, float]:
    """The thresholds of ``feature`` (or of ``view``): the defaults, the view's ``monitors:``, the column's."""
    return {**DEFAULT_THRESHOLDS, **view.monitors, **(feature.monitors if feature is not None else {})}


# -- statistics ---------------------------------------------------------------------------------


def ks_statistic(offline: np.ndarray, online: np.ndarray) -> float:
    """The two-sample Kolmogorov–Smirnov statistic: the largest gap between the two ECDFs (0 to 1)."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(offline, online).statistic)


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI of two count vectors over the same bins."""
    from scipy.special import rel_entr

    e = np.maximum(expected / expected.sum(), PSI_FLOOR)
    a = np.maximum(actual / actual.sum(), PSI_FLOOR)
    return float(np.sum(rel_entr(a, e) + rel_entr(e, a)))


def psi_numeric(offline: np.ndarray, online: np.ndarray, bins: int = 10) -> float:
    """PSI over ``bins`` quantile bins of the offline sample, each quantile edge (the minimum and
    maximum too) also a bin of its own, for the values equal to it.

    A value that fills several quantiles (the 0 of a count feature, the 95% majority of a
    binary one, a constant) is then one bin instead of sharing one with the values above it,
    where a change of its share would not show; values beyond the offline range online get
    the open-ended outer bins. Edges hit by no value are empty on both sides and add nothing.
    """
    edges = np.unique(np.quantile(offline, np.linspace(0, 1, int(bins) + 1)))

    def bin_of(values: np.ndarray) -> np.ndarray:
        # Interval bins at even numbers (2i: below edge i), the edges' own at odd ones (2i + 1).
        i = np.searchsorted(edges, values, side="left")
        on_edge = edges[np.minimum(i, len(edges) - 1)] == values
        return 2 * i + on_edge

    count = 2 * len(edges) + 1
    expected = np.bincount(bin_of(offline), minlength=count)
    actual = np.bincount(bin_of(online), minlength=count)
    return _psi(expected.astype(float), actual.astype(float))


def psi_categorical(offline: np.ndarray, online: np.ndarray) -> float:
    """PSI over the categories seen on either side (a category new online is an empty offline bin)."""
    categories, codes = np.unique(np.concatenate([offline, online]).astype(str), return_inverse=True)
    expected = np.bincount(codes[: len(offline)], minlength=len(categories))
    actual = np.bincount(codes[len(offline):], minlength=len(categories))
    return _psi(expected.astype(float), actual.astype(float))


# -- results ------------------------------------------------------------------------------------


@dataclass
class FeatureResult:
    """The checks of one feature. ``level`` is the worst of its drift and fill levels."""

    view: str
    feature: str
    kind: str | None
    method: str  # "ks+psi", "psi", or "-" (not checked)
    ks: float | None = None
    psi: float | None = None
    drift_level: str = "not checked"
    n_offline: int = 0
    n_online: int = 0
    fill_offline: float | None = None
    fill_online: float | None = None
    n_fill_offline: int = 0
    n_fill_online: int = 0
    fill_level: str = "not checked"
    thresholds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def level(self) -> str:
        return worst(self.drift_level, self.fill_level)

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.feature}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view, "feature": self.feature, "kind": self.kind, "level": self.level,
            "drift": {"method": self.method, "ks": self.ks, "psi": self.psi, "level": self.drift_level,
                      "n_offline": self.n_offline, "n_online": self.n_online},
            "fill": {"offline": self.fill_offline, "online": self.fill_online, "n_offline": self.n_fill_offline,
                     "n_online": self.n_fill_online, "level": self.fill_level},
            "thresholds": dict(self.thresholds), "notes": list(self.notes),
        }


@dataclass
class ViewResult:
    """The freshness of one view: offline lag, and the online write lag its writers recorded."""

    view: str
    online: bool
    freshness_sla: timedelta | None
    latest_event: datetime | None = None
    offline_lag: timedelta | None = None
    offline_level: str = "not checked"
    write_lag: list[Any] = field(default_factory=list)  # feature_store.writelag.WriteLag, per writer
    write_level: str = "not checked"
    entities: int = 0
    lag_factor: float = DEFAULT_THRESHOLDS["lag_factor"]
    notes: list[str] = field(default_factory=list)

    @property
    def level(self) -> str:
        return worst(self.offline_level, self.write_level)

    @property
    def write_p95(self) -> float | None:
        """The worst p95 write lag (seconds) among the writers that recorded one."""
        values = [w.p95_s for w in self.write_lag if w.p95_s is not None]
        return max(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view, "online": self.online, "level": self.level,
            "freshness_sla": format_duration(self.freshness_sla) if self.freshness_sla else None,
            "freshness_sla_s": self.freshness_sla.total_seconds() if self.freshness_sla else None,
            "latest_event": self.latest_event.isoformat(sep=" ") if self.latest_event else None,
            "offline_lag_s": self.offline_lag.total_seconds() if self.offline_lag is not None else None,
            "offline_level": self.offline_level,
            "write_lag": [w.to_dict() for w in self.write_lag], "write_level": self.write_level,
            "lag_factor": self.lag_factor, "entities": self.entities, "notes": list(self.notes),
        }


@dataclass
class MonitorRun:
    """One run of the monitors: per view, per feature, the skew audit, and the alerts."""

    run_at: datetime  # the wall clock when the run started (naive UTC)
    now: datetime  # the time the data was judged at (``--now``; naive UTC)
    offline_window: tuple[datetime, datetime]
    online_window: tuple[datetime, datetime]
    views: list[ViewResult]
    features: list[FeatureResult]
    skew: list[Any] = field(default_factory=list)  # feature_store.skew.SkewResult
    seconds: float = 0.0
    # (view, feature) -> (offline values, online values), for the report's plots.
    samples: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def alerts(self) -> list[str]:
        """One line per alert, naming the view or feature, the measure and its threshold."""
        lines = []
        for v in self.views:
            sla = format_duration(v.freshness_sla)
            if v.offline_level == "alert":
                lag = format_lag(v.offline_lag.total_seconds()) if v.offline_lag is not None else "no rows"
                lines.append(f"{v.view}: offline lag {lag} is over the freshness_sla {sla}")
            if v.write_level == "alert":
                p95 = v.write_p95 or 0.0
                lines.append(f"{v.view}: online write lag p95 {format_lag(p95)} is over {v.lag_factor:g} x the "
                             f"freshness_sla {sla}")
        for f in self.features:
            t = f.thresholds
            if f.drift_level == "alert":
                parts = []
                if f.ks is not None and f.ks > t["ks_alert"]:
                    parts.append(f"KS {f.ks:.3f} > {t['ks_alert']:g}")
                if f.psi is not None and f.psi >= t["psi_alert"]:
                    parts.append(f"PSI {f.psi:.3f} >= {t['psi_alert']:g}")
                lines.append(f"{f.ref}: drift, {' and '.join(parts)} (offline n={f.n_offline}, online "
                             f"n={f.n_online})")
            if f.fill_level == "alert":
                for side, rate, n in (("offline", f.fill_offline, f.n_fill_offline),
                                      ("online", f.fill_online, f.n_fill_online)):
                    if rate is not None and n >= MIN_SAMPLES and rate < t["fill_rate_min"]:
                        lines.append(f"{f.ref}: {side} fill rate {rate:.1%} is below {t['fill_rate_min']:.1%} "
                                     f"(n={n})")
        for s in self.skew:
            if s.alert:
                lines.append(f"{s.view}:{s.feature}: skew, {s.differing} of {s.compared} served values "
                             f"({s.share:.2%}) differ from the training-set join (max {s.threshold:.2%})")
        return lines

    @property
    def ok(self) -> bool:
        """No alert fired (warnings and insufficient data do not fail a run)."""
        return not self.alerts

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``fstore monitor --json``."""
        return {
            "run_at": self.run_at.isoformat(sep=" "), "now": self.now.isoformat(sep=" "), "ok": self.ok,
            "offline_window": [t.isoformat(sep=" ") for t in self.offline_window],
            "online_window": [t.isoformat(sep=" ") for t in self.online_window],
            "views": [v.to_dict() for v in self.views],
            "features": [f.to_dict() for f in self.features],
            "skew": [s.to_dict() for s in self.skew],
            "alerts": self.alerts, "seconds": round(self.seconds, 3),
        }


def format_lag(seconds: float) -> str:
    """A lag for people: 42s, 13m, 5.2h, 3.1d."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


# -- the run ------------------------------------------------------------------------------------


def run_monitors(
    registry: Registry,
    landing_dir: str | Path,
    *,
    views: Iterable[str] | None = None,
    now: datetime | None = None,
    wait: float = 0.0,
    store: "OnlineStore | None" = None,
    skew: bool = True,
    on_wait: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> MonitorRun:
    """Check drift, fill rate and freshness of ``views`` (default: every feature view); see the module docstring.

    ``landing_dir`` holds the drained serving log (:func:`feature_store.servinglog.read_log`); the
    registry's dbt target's is read.
    ``now`` (default: the clock; naive means UTC) is the time the data is judged at.
    ``store``: the online store whose recorded write lag is read (None: not checked).
    ``skew``: also run the skew audit on the online window's log. ``wait``/``on_wait``: how
    long to wait for a ``dbt build`` holding a DuckDB file, and how to say so;
    ``progress(step)`` is told each step as it starts.
    """
    began = time.perf_counter()
    run_at = datetime.now(timezone.utc).replace(tzinfo=None)
    now = naive_utc(now) if now is not None else run_at
    chosen = [registry.view(v) for v in views] if views else sorted(registry.views.values(), key=lambda v: v.name)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    offline_window = (today - timedelta(days=OFFLINE_DAYS), today)
    online_window = (now - ONLINE_WINDOW, now)
    say = progress or (lambda _step: None)

    say("reading the offline sample and snapshot")
    offline = _offline(registry, chosen, offline_window, now, wait, on_wait)
    say("reading the serving log")
    log = servinglog.read_log(landing_dir, since=online_window[0], until=online_window[1],
                              target=registry.target.name)

    run = MonitorRun(run_at=run_at, now=now, offline_window=offline_window, online_window=online_window,
                     views=[], features=[])
    for view in chosen:
        say(f"checking {view.name}")
        sample, snapshot = offline[view.name]
        served = log.filter(pc.equal(log.column("view"), view.name)) if log.num_rows else log
        run.views.append(_check_view(view, snapshot, now, store))
        for feature in view.features:
            result, values = _check_feature(view, feature, sample, snapshot, served)
            run.features.append(result)
            if values is not None:
                run.samples[(view.name, feature.name)] = values
    if skew and log.num_rows:
        say("auditing skew against the point-in-time join")
        from feature_store.skew import audit_skew

        run.skew = audit_skew(registry, log, wait=wait, on_wait=on_wait, views=[v.name for v in chosen])
    run.seconds = time.perf_counter() - began
    return run


def _offline(registry: Registry, views: list[FeatureView], window: tuple[datetime, datetime], now: datetime,
             wait: float, on_wait: Callable[[str], None] | None) -> dict[str, tuple[pa.Table, dict[str, Any]]]:
    """Per view: the drift sample (a table of the sampled features) and the snapshot's one row (a dict)."""
    from feature_store.compiler import compile_call, macro_call
    from feature_store.snapshot import timestamp_literal
    from feature_store.warehouse import open_warehouse

    specs = []
    for v in views:
        specs.append({
            "name": v.name, "relation": v.relation, "keys": list(v.join_keys), "timestamp": v.timestamp,
            "created_timestamp": v.created_timestamp, "features": v.feature_names,
            "sampled": [f.name for f in v.features if f.kind in _NUMERIC + _CATEGORICAL],
        })
    # One compile for every view of the run (one dbt start-up, then cached): the SQL reads its
    # time bounds from WINDOW, so it does not change from run to run.
    queries = json.loads(compile_call(registry, macro_call("monitor_queries", views=specs, window=WINDOW,
                                                           sample_rows=SAMPLE_ROWS)))
    out: dict[str, tuple[pa.Table, dict[str, Any]]] = {}
    with open_warehouse(registry, wait=wait, on_wait=on_wait) as wh:
        wh.temp_view(WINDOW, f"SELECT {timestamp_literal(window[0])} AS __fs_start, {timestamp_literal(window[1])} "
                             f"AS __fs_end, {timestamp_literal(now)} AS __fs_now")
        for v, spec in zip(views, specs, strict=True):
            q = queries.get(v.name)
            if q is None:
                raise WarehouseError(f"the monitor_queries macro returned no queries for {v.name}; is the "
                                     "feature_store dbt package current? Run `dbt deps`")
            sample = wh.fetch(q["sample"]) if spec["sampled"] else pa.table({})
            snap = wh.fetch(q["snapshot"]).to_pylist()
            out[v.name] = (sample, snap[0] if snap else {"__fs_rows": 0, "__fs_latest": None})
    return out


def _check_view(view: FeatureView, snapshot: dict[str, Any], now: datetime, store: "OnlineStore | None") -> ViewResult:
    t = thresholds(view)
    result = ViewResult(view=view.name, online=view.online, freshness_sla=view.freshness_sla,
                        entities=int(snapshot.get("__fs_rows") or 0), lag_factor=float(t["lag_factor"]))
    latest = snapshot.get("__fs_latest")
    if latest is not None and not isinstance(latest, datetime):  # a date column
        latest = datetime(latest.year, latest.month, latest.day)
    result.latest_event = naive_utc(latest) if latest is not None else None
    sla = view.freshness_sla
    if result.latest_event is not None:
        result.offline_lag = now - result.latest_event
    if sla is None:
        result.notes.append("no freshness_sla: freshness not checked (declare one, e.g. freshness_sla: 26h)")
    elif result.offline_lag is None:
        result.offline_level = "alert"
        result.notes.append(f"no rows timed up to {now.isoformat(sep=' ')}")
    else:
        result.offline_level = "alert" if result.offline_lag > sla else "ok"
    if not view.online:
        return result
    if store is None:
        result.notes.append("online write lag not checked: no online store given")
        return result
    from feature_store.writelag import read_write_lag

    result.write_lag = read_write_lag(store, view.name)
    measured = [w for w in result.write_lag if w.p95_s is not None]
    if sla is None:
        return result
    if not measured:
        why = "; ".join(f"{w.source}: {w.note}" for w in result.write_lag if w.note)
        result.notes.append("online write lag not measured: " + (
            why or "no incremental sync has finished, and no push wrote a newer row in the last 24h"))
        return result
    levels = []
    for w in measured:
        assert w.p95_s is not None
        levels.append("alert" if w.p95_s > result.lag_factor * sla.total_seconds()
                      else "warn" if w.p95_s > sla.total_seconds() else "ok")
    result.write_level = worst(*levels)
    return result


def _online_values(served: pa.Table, feature: str) -> tuple[pa.Table, pa.Array]:
    """The feature's logged reads, and the values of those served PRESENT."""
    rows = served.filter(pc.equal(served.column("feature"), feature)) if served.num_rows else served
    present = rows.filter(pc.equal(rows.column("status"), "PRESENT")) if rows.num_rows else rows
    values = present.column("value").combine_chunks() if present.num_rows else pa.array([], pa.string())
    return rows, pc.drop_null(values)


def _numbers(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Numeric values (ints, floats, decimals, or their text) as float64, NULLs and NaNs dropped."""
    values = pc.cast(pc.drop_null(column), pa.float64()).to_numpy(zero_copy_only=False)
    return values[~np.isnan(values)]


def _categories(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Categories as the serving log writes them: text as is, booleans ``true``/``false``."""
    column = pc.drop_null(column)
    if pa.types.is_boolean(column.type):
        return np.where(column.to_numpy(zero_copy_only=False), "true", "false")
    return np.asarray(pc.cast(column, pa.string()).to_pylist(), dtype=str)


def _check_feature(view: FeatureView, feature: Feature, sample: pa.Table, snapshot: dict[str, Any],
                   served: pa.Table) -> tuple[FeatureResult, tuple[np.ndarray, np.ndarray] | None]:
    t = thresholds(view, feature)
    kind = feature.kind
    result = FeatureResult(view=view.name, feature=feature.name, kind=kind, method="-", thresholds=t)
    rows, present = _online_values(served, feature.name)

    # Fill rate: offline among the entities' latest rows; online among the served reads.
    entities = int(snapshot.get("__fs_rows") or 0)
    result.n_fill_offline, result.n_fill_online = entities, rows.num_rows
    if entities:
        result.fill_offline = int(snapshot.get(feature.name) or 0) / entities
    if rows.num_rows:
        result.fill_online = len(present) / rows.num_rows
    fill_levels = []
    for side, rate, n in (("offline", result.fill_offline, entities), ("online", result.fill_online, rows.num_rows)):
        if side == "online" and not view.online:
            continue
        if n < MIN_SAMPLES:
            fill_levels.append("insufficient data")
            result.notes.append(f"fill rate {side}: {n} value(s), fewer than {MIN_SAMPLES}")
        elif rate is not None:
            fill_levels.append("alert" if rate < t["fill_rate_min"] else "ok")
    result.fill_level = worst(*fill_levels) if fill_levels else "not checked"

    # Drift.
    if kind not in _NUMERIC + _CATEGORICAL:
        result.notes.append(f"drift not checked for a {kind or 'untyped'} feature: its values move with time")
        return result, None
    if not view.online:
        result.notes.append("drift not checked: an offline-only view is not served")
        return result, None
    column = sample.column(feature.name) if feature.name in sample.column_names else pa.array([], pa.float64())
    numeric = kind in _NUMERIC
    if numeric:
        off = _numbers(column)
        on = _numbers(present)
        result.method = "ks+psi"
    else:
        off = _categories(column)
        on = _categories(present)
        result.method = "psi"
    result.n_offline, result.n_online = len(off), len(on)
    short = [f"{side} {n}" for side, n in (("offline", len(off)), ("online", len(on))) if n < MIN_SAMPLES]
    if short:
        result.drift_level = "insufficient data"
        result.notes.append(f"drift: fewer than {MIN_SAMPLES} values ({', '.join(short)})")
        return result, (off, on)
    levels = []
    if numeric:
        result.ks = ks_statistic(off, on)
        result.psi = psi_numeric(off, on, int(t["psi_bins"]))
        levels.append("alert" if result.ks > t["ks_alert"] else "warn" if result.ks > t["ks_warn"] else "ok")
    else:
        result.psi = psi_categorical(off, on)
    levels.append("alert" if result.psi >= t["psi_alert"] else "warn" if result.psi >= t["psi_warn"] else "ok")
    result.drift_level = worst(*levels)
    return result, (off, on)


# -- history ------------------------------------------------------------------------------------


def history_schema() -> pa.Schema:
    """The monitor history: one row per run and measure (long, so new measures add rows, not columns)."""
    ts = pa.timestamp("us", tz="UTC")
    return pa.schema([
        ("run_at", ts),            # when the run started (wall clock)
        ("as_of", ts),             # the time the data was judged at (--now)
        ("view", pa.string()),
        ("feature", pa.string()),  # NULL for a view's measures (freshness)
        ("metric", pa.string()),   # ks, psi, fill_offline, fill_online, offline_lag_s, write_lag_p95_s, ...
        ("source", pa.string()),   # for write lag: sync or push
        ("value", pa.float64()),
        ("warn", pa.float64()),    # the thresholds the value was judged by (NULL: none)
        ("alert", pa.float64()),
        ("level", pa.string()),    # ok, not checked, insufficient data, warn, alert
        ("n_offline", pa.int64()),
        ("n_online", pa.int64()),
    ])


def _history_rows(run: MonitorRun) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(view: str, feature: str | None, metric: str, value: float | None, level: str, *, warn=None,
            alert=None, n_offline=None, n_online=None, source=None) -> None:
        rows.append({"run_at": run.run_at, "as_of": run.now, "view": view, "feature": feature, "metric": metric,
                     "source": source, "value": value, "warn": warn, "alert": alert, "level": level,
                     "n_offline": n_offline, "n_online": n_online})

    for v in run.views:
        sla = v.freshness_sla.total_seconds() if v.freshness_sla else None
        add(v.view, None, "offline_lag_s", v.offline_lag.total_seconds() if v.offline_lag is not None else None,
            v.offline_level, alert=sla, n_offline=v.entities)
        for w in v.write_lag:
            level = v.write_level if w.p95_s is not None else "not checked"
            add(v.view, None, "write_lag_p95_s", w.p95_s, level, warn=sla,
                alert=sla * v.lag_factor if sla else None, n_online=w.rows, source=w.source)
            add(v.view, None, "write_lag_max_s", w.max_s, level, n_online=w.rows, source=w.source)
    for f in run.features:
        t = f.thresholds
        if f.ks is not None:
            add(f.view, f.feature, "ks", f.ks, f.drift_level, warn=t["ks_warn"], alert=t["ks_alert"],
                n_offline=f.n_offline, n_online=f.n_online)
        if f.psi is not None or f.drift_level == "insufficient data":
            add(f.view, f.feature, "psi", f.psi, f.drift_level, warn=t["psi_warn"], alert=t["psi_alert"],
                n_offline=f.n_offline, n_online=f.n_online)
        add(f.view, f.feature, "fill_offline", f.fill_offline, f.fill_level, alert=t["fill_rate_min"],
            n_offline=f.n_fill_offline)
        if f.fill_online is not None:
            add(f.view, f.feature, "fill_online", f.fill_online, f.fill_level, alert=t["fill_rate_min"],
                n_online=f.n_fill_online)
    for s in run.skew:
        add(s.view, s.feature, "skew_share", s.share, "alert" if s.alert else "ok", alert=s.threshold,
            n_online=s.compared)
    return rows


def history_dir(landing_dir: str | Path, target: str) -> Path:
    """Where the runs against dbt target ``target`` are appended: ``<landing>/_fstore/monitor_history/
    target=<target>`` (the dbt model monitor_history of that target reads it)."""
    return servinglog.fstore_dir(landing_dir, HISTORY_DIR, target)


def write_history(run: MonitorRun, landing_dir: str | Path, *, target: str) -> Path:
    """Append ``run`` (of dbt target ``target``) to its history: one Parquet file,
    ``target=<target>/date=<run day>/<run time>.parquet``, all or nothing."""
    from feature_store.landing import write_parquet_durably

    table = pa.Table.from_pylist(_history_rows(run), schema=history_schema())
    at = run.run_at
    final = history_dir(landing_dir, target) / f"date={at:%Y-%m-%d}" / f"{at:%Y%m%dT%H%M%S%f}.parquet"
    try:
        return write_parquet_durably(table, final)
    except OSError as exc:
        raise WarehouseError(f"cannot append the monitor run to its history in {final.parent}: {exc}; check that "
                             "the landing folder is writable and has space (the run's results were printed)") from None


def read_history(landing_dir: str | Path, *, target: str) -> pa.Table:
    """Every run against dbt target ``target`` appended so far (:func:`history_schema`), oldest first."""
    import pyarrow.dataset as ds

    files = servinglog.landed_files(history_dir(landing_dir, target))
    if not files:
        return history_schema().empty_table()
    table = ds.dataset(files, schema=history_schema(), format="parquet").to_table()
    return table.sort_by([("as_of", "ascending"), ("run_at", "ascending")])
