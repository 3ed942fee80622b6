"""The skew audit: were the values served online the values training would get?

Online reads log a sample of what they served (:mod:`feature_store.servinglog`: the
entity, when it was served, the value as text and its status). :func:`audit_skew` takes
that log and recomputes every logged value through the point-in-time join, at the
entity and the instant it was served, with the offline API
(:func:`feature_store.offline.get_historical_features`, one join per view and chunk of
the log; there is no second copy of the join). It then compares each served value with
the training-set value of the same feature:

* ``PRESENT``: the served value must equal the join's, compared typed (the log's text
  decoded by the feature's kind): integers, decimals (``27.4 == 27.40``), strings,
  booleans and dates by value; floats bit for bit, as the online store keeps them (any
  NaN equals NaN; ``-0.0`` is not ``0.0``); timestamps as naive UTC instants.
* ``NULL_VALUE``, ``NOT_FOUND``, ``OUTSIDE_MAX_AGE`` and ``IMPUTED`` (a fallback served
  because the value was missing): the join must give NULL. An imputed default against a
  value offline is skew, even when the two happen to be equal: the row was missing online.
* ``NOT_SYNCED``: not compared, counted under ``skipped`` (the store held no sync of the
  view: an outage, not a skew of values).

A difference within ``tolerance`` (1 s) of the ttl's edge, where the read's clock and
Redis's own expiry decide a few milliseconds apart, is not counted either (skipped as
``boundary``). Everything else is: a view not synced since its last build, a late row,
a logic fix rebuilt without a sync. Each differing value gets a reason from the two
rows' event times (:data:`REASONS`). docs/skew.md says how to read the report.

The alert threshold of a feature is its ``monitors.skew_max`` meta, else the
``threshold`` given, else :data:`DEFAULT_SKEW_MAX` (0.1%); it fires when the share of
differing values is above it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from feature_store import codec
from feature_store.monitor import DEFAULT_THRESHOLDS
from feature_store.offline import get_historical_features
from feature_store.registry import Feature, FeatureView, Registry, type_kind
from feature_store.servinglog import value_text

__all__ = ["DEFAULT_SKEW_MAX", "REASONS", "SkewResult", "audit_skew", "decode_served", "differs"]

# Alert above this share of differing values, unless the feature's `monitors.skew_max` says otherwise.
DEFAULT_SKEW_MAX = DEFAULT_THRESHOLDS["skew_max"]
# Spine rows per point-in-time join: the offline API handles a million rows in about a GiB.
DEFAULT_CHUNK_ROWS = 1_000_000
# Differences this close to the ttl's edge (or to the served time) are clocks, not skew.
DEFAULT_TOLERANCE = timedelta(seconds=1)
DEFAULT_EXAMPLES = 5
_INT_TEXT = re.compile(codec.INT_KEY_PATTERN)

# Statuses saying no value was found online (IMPUTED: found missing, then a default was served).
MISSING = frozenset({"NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE", "IMPUTED"})
PRESENT = "PRESENT"
NOT_SYNCED = "NOT_SYNCED"

# Why a served value differs from the training set's, from the event times of the row served
# (the log's event_ts) and of the row the join matched.
REASONS = {
    "changed": "the same row holds another value offline: rebuilt at the same timestamps (a logic fix) "
               "and not synced since",
    "stale": "offline matched a newer row than the one served: built (or arrived late) after the last sync",
    "ahead": "online served a newer row than offline has: pushed but not yet built, or removed offline",
    "missing_online": "nothing was served (or a default) where the training set has a value",
    "missing_offline": "a value was served where the training set has NULL",
    "ttl": "the same row, live for one side's ttl and not for the other's: the view's ttl changed since the read",

}
# Why a logged value was not compared.
SKIPPED = {
    "not_synced": "the view had no finished sync in that Redis (NOT_SYNCED)",
    "boundary": "within the tolerance of the ttl's edge or of the served time: clocks, not skew",
    "unknown_view": "the view is no longer in the registry",
    "unknown_feature": "the feature is no longer in the view",
    "bad_entry": "the logged entity does not parse as the view's join keys, or the entry has no served time",
    "bad_value": "the logged value does not parse as the feature's type",
    "unknown_status": "a status this version does not know",
}


@dataclass
class SkewResult:
    """The audit of one feature: how many served values were compared and how many differ."""

    view: str
    feature: str
    compared: int = 0
    differing: int = 0
    threshold: float = DEFAULT_SKEW_MAX
    examples: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # by reason: see SKIPPED
    reasons: dict[str, int] = field(default_factory=dict)  # differing values by reason: see REASONS

    @property
    def share(self) -> float:
        """Differing values over compared ones (0.0 when none was compared)."""
        return self.differing / self.compared if self.compared else 0.0

    @property
    def alert(self) -> bool:
        """Whether the share is above the threshold."""
        return self.share > self.threshold

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.feature}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view, "feature": self.feature, "compared": self.compared, "differing": self.differing,
            "share": self.share, "threshold": self.threshold, "alert": self.alert,
            "reasons": dict(self.reasons), "skipped": dict(self.skipped), "examples": list(self.examples),
        }


# -- comparing one value -------------------------------------------------------------------------


def decode_served(kind: str | None, text: str) -> Any:
    """A served value of ``kind`` from the log's text (:func:`feature_store.servinglog.value_text`).

    Timestamps come back as naive UTC; ValueError when the text is not of that kind.
    """
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "decimal":
        try:
            return Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{text!r} is not a decimal") from None
    if kind == "bool":
        if text not in ("true", "false"):
            raise ValueError(f"{text!r} is not true/false")
        return text == "true"
    if kind == "timestamp":
        return codec.naive_utc(datetime.fromisoformat(text))
    if kind == "date":
        return date.fromisoformat(text)
    return text


def _offline_value(kind: str | None, value: Any) -> Any:
    """A value of the training set in the form :func:`decode_served` gives (None stays None)."""
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "decimal":
        return value if isinstance(value, Decimal) else Decimal(str(value))
    if kind == "timestamp":
        if isinstance(value, datetime):
            return codec.naive_utc(value)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day)
        return codec.naive_utc(str(value))
    if kind == "date":
        return value.date() if isinstance(value, datetime) else value
    if kind == "bool":
        return bool(value)
    if kind in ("string", None) and not isinstance(value, str):
        return value_text(value)
    return value


def _same(kind: str | None, served: Any, offline: Any) -> bool:
    if kind == "float":
        if math.isnan(served) or math.isnan(offline):
            return math.isnan(served) and math.isnan(offline)
        return served == offline and math.copysign(1.0, served) == math.copysign(1.0, offline)
    return served == offline


def differs(kind: str | None, status: str, served: str | None, offline: Any) -> bool:
    """Whether a logged value (its ``status`` and text ``served``) differs from the training
    set's value ``offline`` of a feature of ``kind``. ``NOT_SYNCED`` is never compared (ValueError);
    nor is a status outside :class:`~feature_store.online.FieldStatus` (ValueError), or a text that
    is not of ``kind`` (ValueError)."""
    if status == PRESENT and served is not None:
        if offline is None:
            return True
        return not _same(kind, decode_served(kind, served), _offline_value(kind, offline))
    if status in MISSING or status == PRESENT:  # a PRESENT without a value is no value
        return offline is not None
    raise ValueError(f"status {status!r} is not compared")


# -- the audit -----------------------------------------------------------------------------------


def _threshold(feature: Feature | None, default: float | None) -> float:
    value = feature.monitors.get("skew_max") if feature is not None else None  # the view's, or the column's
    if value is not None:
        return float(value)
    return DEFAULT_SKEW_MAX if default is None else float(default)


def _key_parser(view: FeatureView) -> tuple[Callable[[dict], tuple], pa.Schema]:
    """Parse an entity (the log's JSON object) into the view's join keys, typed as declared,
    and the Arrow schema of those keys; KeyError/ValueError/TypeError when it does not fit."""
    kinds = {k: type_kind(view.column_types.get(k)) for k in view.join_keys}
    types = {"int": pa.int64(), "string": pa.string(), "bool": pa.bool_(), "timestamp": pa.timestamp("us"),
             "date": pa.date32(), "float": pa.float64()}

    def one(kind: str | None, value: Any) -> Any:
        if value is None:
            return None  # a NULL key matches nothing, online and offline alike
        if kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and _INT_TEXT.fullmatch(value):  # the online read's rule for int text
                return int(value)
            raise ValueError(value)
        if kind == "string":
            if not isinstance(value, str):
                raise TypeError(value)
            return value
        if kind == "bool":
            if isinstance(value, str) and value in ("true", "false"):
                return value == "true"
            if not isinstance(value, bool):
                raise TypeError(value)
            return value
        if kind == "timestamp":
            if not isinstance(value, str):
                raise TypeError(value)
            return codec.naive_utc(value)  # ISO text, as the log writes times
        if kind == "date":
            if not isinstance(value, str):
                raise TypeError(value)
            return date.fromisoformat(value)
        if kind == "float":
            return float(value)
        return value

    def parse(entity: dict) -> tuple:
        return tuple(one(kinds[k], entity[k]) for k in view.join_keys)

    fields = [pa.field(k, types.get(kinds[k] or "", pa.string())) for k in view.join_keys]
    return parse, pa.schema(fields)


def _spine_ts_column(view: FeatureView) -> str:
    name = "served_at"
    while name in view.column_types or name in view.join_keys:
        name = "_" + name
    return name


def _micros(column: pa.ChunkedArray | pa.Array) -> list[int | None]:
    """A timestamp column as integer microseconds since the epoch (UTC), NULLs as None."""
    return codec.micros_column(column).to_pylist()


def _iso(us: int | None) -> str | None:
    return None if us is None else codec.from_micros(us).isoformat(sep=" ")


class _ViewAudit:
    """The audit of one view's logged rows."""

    def __init__(self, view: FeatureView, rows: pa.Table, *, default: float | None, max_examples: int,
                 tolerance_us: int):
        self.view, self.max_examples, self.tolerance_us = view, max_examples, tolerance_us
        self.default = default
        self.ttl_us = int(view.ttl.total_seconds() * 1_000_000) if view.ttl is not None else None
        self.features = {f.name: f for f in view.features}
        self.results: dict[str, SkewResult] = {
            f.name: SkewResult(view.name, f.name, threshold=_threshold(f, default)) for f in view.features}
        self.ids = rows.column("id").to_pylist()
        self.served_at = _micros(rows.column("served_at"))
        self.clients = rows.column("client").to_pylist()
        self.entity_text = rows.column("entity").to_pylist()
        self.event_ts = _micros(rows.column("event_ts"))
        self.feature = rows.column("feature").to_pylist()
        self.value = rows.column("value").to_pylist()
        self.status = rows.column("status").to_pylist()

    def result(self, feature: str) -> SkewResult:
        r = self.results.get(feature)
        if r is None:  # a feature the view no longer has: reported, never compared
            r = self.results[feature] = SkewResult(self.view.name, feature, threshold=_threshold(None, self.default))
        return r

    def skip(self, i: int, reason: str) -> None:
        skipped = self.result(self.feature[i]).skipped
        skipped[reason] = skipped.get(reason, 0) + 1

    def entries(self) -> tuple[list[tuple], list[int], list[list[int]], pa.Schema]:
        """The spine's entries (one per logged read: keys and served time) and each entry's rows to compare."""
        parse, schema = _key_parser(self.view)
        index: dict[str, int] = {}
        keys: list[tuple] = []
        served: list[int] = []
        rows_of: list[list[int]] = []
        parsed: dict[str, tuple | None] = {}
        for i, entry_id in enumerate(self.ids):
            status = self.status[i]
            if self.feature[i] not in self.features:
                self.skip(i, "unknown_feature")
                continue
            if status == NOT_SYNCED:
                self.skip(i, "not_synced")
                continue
            if status != PRESENT and status not in MISSING:
                self.skip(i, "unknown_status")
                continue
            e = index.get(entry_id)
            if e is None:
                text = self.entity_text[i]
                if text not in parsed:
                    try:
                        entity = orjson.loads(text)
                        parsed[text] = parse(entity) if isinstance(entity, dict) else None
                    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
                        parsed[text] = None
                key = parsed[text]
                if key is None or self.served_at[i] is None:
                    self.skip(i, "bad_entry")
                    continue
                e = index[entry_id] = len(keys)
                keys.append(key)
                served.append(self.served_at[i] or 0)  # never 0: checked above
                rows_of.append([])
            rows_of[e].append(i)
        return keys, served, rows_of, schema

    def compare(self, i: int, offline: Any, e_off: int | None) -> None:
        name = self.feature[i]
        feature, result = self.features[name], self.results[name]
        status, text, e_on, t = self.status[i], self.value[i], self.event_ts[i], self.served_at[i] or 0
        try:
            if not differs(feature.kind, status, text, offline):
                result.compared += 1
                return
        except (ValueError, TypeError, ArithmeticError):
            self.skip(i, "bad_value")
            return
        served_missing = status in MISSING or text is None
        if status != "NULL_VALUE" and self._at_boundary(served_missing, t, e_on, e_off):
            self.skip(i, "boundary")
            return
        reason = self._reason(status, served_missing, offline is None, e_on, e_off, t)
        result.compared += 1
        result.differing += 1
        result.reasons[reason] = result.reasons.get(reason, 0) + 1
        if len(result.examples) < self.max_examples:
            try:
                entity = orjson.loads(self.entity_text[i])
            except orjson.JSONDecodeError:
                entity = self.entity_text[i]
            result.examples.append({
                "entity": entity, "served_at": _iso(t), "client": self.clients[i], "status": status,
                "served": text, "offline": value_text(offline), "served_event_ts": _iso(e_on),
                "offline_event_ts": _iso(e_off), "reason": reason,
            })

    def _at_boundary(self, served_missing: bool, t: int, e_on: int | None, e_off: int | None) -> bool:
        """A difference the read's clock and the ttl's edge (or Redis's expiry) explain, within the tolerance."""
        tol = self.tolerance_us
        if self.ttl_us is not None:
            edge = t - self.ttl_us
            if served_missing and e_off is not None and 0 <= e_off - edge < tol and e_on in (None, e_off):
                return True  # expired online a moment early (Redis expires on its own clock)
            if not served_missing and e_off is None and e_on is not None and abs(e_on - edge) < tol:
                return True  # live online a moment late
        # A row timed a moment after the read: the writer's clock ran ahead of the reader's.
        return not served_missing and e_off is None and e_on is not None and 0 < e_on - t < tol

    def _reason(self, status: str, served_missing: bool, offline_missing: bool, e_on: int | None,
                e_off: int | None, t: int) -> str:
        if e_on is not None and e_off is not None:
            if e_off > e_on:
                return "stale"
            if e_off < e_on:
                return "ahead"
            # The same row, expired for the read's ttl check and live for the join's (not at the edge).
            return "ttl" if status == "OUTSIDE_MAX_AGE" and not offline_missing else "changed"
        if not served_missing and e_on is not None and self.ttl_us is not None and e_on < t - self.ttl_us:
            return "ttl"  # served live, beyond the join's ttl: the ttl was shortened since
        if served_missing:
            return "missing_online"
        if offline_missing:
            return "missing_offline"
        return "changed"


def audit_skew(
    registry: Registry,
    log: pa.Table,
    *,
    wait: float = 0.0,
    max_examples: int = DEFAULT_EXAMPLES,
    threshold: float | None = None,
    views: Iterable[str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    progress: Callable[[str, int, int], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> list[SkewResult]:
    """Recompute every served value of the serving log through the point-in-time join and compare.

    ``log`` is the landed serving log (:func:`feature_store.servinglog.read_log`, schema
    :func:`~feature_store.servinglog.log_schema`). For each view, one spine row per logged
    read (its join keys, parsed from the entity by their declared types, at its
    ``served_at``) goes through :func:`~feature_store.offline.get_historical_features`, at
    most ``chunk_rows`` rows a call (``progress(view, done, total)`` after each); each served
    value is compared with the same feature's value (:func:`differs`).

    Returns one :class:`SkewResult` per feature of every logged view (``views``: only
    those), in the registry's order, then features and views the registry no longer has
    (never compared, counted under ``skipped``). A feature's threshold is its
    ``monitors.skew_max`` meta, else ``threshold``, else :data:`DEFAULT_SKEW_MAX`. Up to
    ``max_examples`` differing values per feature are kept as examples. ``wait`` and
    ``on_wait`` are the warehouse's, as in the offline API.
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    wanted = set(views) if views is not None else None
    results: list[SkewResult] = []
    logged = [v for v in dict.fromkeys(log.column("view").to_pylist()) if v is not None]
    for name in sorted(logged, key=lambda v: (v not in registry.views, v)):
        if wanted is not None and name not in wanted:
            continue
        rows = log.filter(pc.equal(log.column("view"), name))
        if name not in registry.views:
            counts: dict[str, int] = {}
            for f in rows.column("feature").to_pylist():
                counts[f] = counts.get(f, 0) + 1
            results += [SkewResult(name, f, threshold=_threshold(None, threshold), skipped={"unknown_view": n})
                        for f, n in counts.items()]
            continue
        audit = _ViewAudit(registry.view(name), rows, default=threshold, max_examples=max_examples,
                           tolerance_us=int(tolerance.total_seconds() * 1_000_000))
        _run_view(registry, audit, chunk_rows, wait, progress, on_wait)
        results += list(audit.results.values())
    return results


def _run_view(registry: Registry, audit: _ViewAudit, chunk_rows: int, wait: float,
              progress: Callable[[str, int, int], None] | None, on_wait: Callable[[str], None] | None) -> None:
    view = audit.view
    keys, served, rows_of, schema = audit.entries()
    total = len(keys)
    if progress is not None:
        progress(view.name, 0, total)
    if not total:
        return
    logged = {audit.feature[i] for rows in rows_of for i in rows}
    names = [f.name for f in view.features if f.name in logged]
    ts_name = _spine_ts_column(view)
    event_col = f"{view.name}__event_timestamp"
    for start in range(0, total, chunk_rows):
        stop = min(start + chunk_rows, total)
        columns = {k: pa.array([key[j] for key in keys[start:stop]], schema.field(k).type)
                   for j, k in enumerate(view.join_keys)}
        columns[ts_name] = pa.array(served[start:stop], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        spine = pa.table(columns)
        table = get_historical_features(registry, spine, [f"{view.name}:{n}" for n in names],
                                        timestamp_column=ts_name, include_timestamps=True, wait=wait,
                                        on_wait=on_wait).to_arrow()
        values = {n: table.column(n).to_pylist() for n in names}
        e_off = _micros(table.column(event_col))
        for e in range(start, stop):
            r = e - start
            for i in rows_of[e]:
                audit.compare(i, values[audit.feature[i]][r], e_off[r])
        if progress is not None:
            progress(view.name, stop, total)
