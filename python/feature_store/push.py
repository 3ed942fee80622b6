"""Push: rows from a stream processor into both stores, online now and offline at the next build.

:func:`push_rows` takes rows of one online feature view (dicts of column: value, the
view's declared columns), checks every row against the view's declared columns and
types, and then

1. **lands them offline**: one Parquet file per event hour of the rows, under
   ``<landing_dir>/<view>/date=YYYY-MM-DD/hour=HH/<digest>.parquet``, written to a temporary
   name, fsynced, renamed and its directory fsynced. The view's model unions the folder in
   (the dbt macro ``feature_store.pushed_rows``), so training sets see the rows after the
   next ``dbt build``;
2. **writes them online** with the sync's own writer (:func:`feature_store.writer.write_rows`,
   the write script): a row's version is ``(event ts, created ts)``, an older version never
   replaces a newer one, the key expires at event ts + ttl, the hash carries the view's
   ``__definition`` digest. Values go through the same Arrow encoder as the sync's, so a
   pushed row and the same row read back from the warehouse are stored byte for byte alike.

It returns only once both writes are durable: the Parquet file fsynced and renamed, and
Redis having acknowledged every write call. Nothing is written unless every row passes.

Why this order, and what a crash leaves (docs/push.md says more):

* Offline first. A crash or a Redis failure after the landing and before the online write
  leaves the rows landed but the push unacknowledged; the client retries. A retry lands the
  same files again (a file's name is the digest of its rows, so it replaces itself) and
  writes online under the write rule (an equal row is *unchanged*), so retrying is
  idempotent. Rows no client retries still reach Redis at the next build and sync.
* A push does not take the sync's lock and is never blocked by a running sync: the write
  rule, decided atomically in Redis per row, is what orders the two. A pushed row that the
  warehouse does not have yet is newer online than offline; a sync in the meantime finds
  the warehouse's older row and skips it (never-regress), or does not read the entity at
  all (its fingerprints have not changed). After the next build the warehouse holds the
  pushed row too, its fingerprint changes, and the sync finds it *unchanged* online.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import re
import reprlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Context, Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import pyarrow as pa

from feature_store import codec
from feature_store.errors import ManifestError, OnlineStoreError, PushRejected, UnknownFeatureView, WarehouseError
from feature_store.landing import write_parquet_durably
from feature_store.registry import FeatureView, Registry, _did_you_mean, _read_yaml, format_duration, type_kind
from feature_store.writelag import record_push_lag
from feature_store.writer import WriteResult, write_rows

if TYPE_CHECKING:  # pragma: no cover
    from feature_store.online import OnlineStore

__all__ = ["PUSH_DIR_VAR", "PushRejected", "PushResult", "default_landing_dir", "push_rows"]

# The global var naming the landing folder, read by the dbt macro feature_store.pushed_rows
# and by default_landing_dir; relative paths are relative to the dbt project directory.
PUSH_DIR_VAR = "feature_store:push_dir"
DEFAULT_PUSH_DIR = "push"

# How far past the clock a pushed event timestamp may be (producers' clocks drift). A row
# from further ahead would be served online at once, though the point-in-time join would
# not use it before its time, and it would outrank every real row until then.
FUTURE_TOLERANCE = timedelta(minutes=1)

# The widest integer each declared type holds; anything else of kind int is a bigint online.
_INT_BITS = {"tinyint": 8, "int1": 8, "byte": 8, "smallint": 16, "int2": 16, "short": 16,
             "int": 32, "integer": 32, "int4": 32, "signed": 32}
_DECIMAL_TYPE = re.compile(r"^(?:decimal|numeric|number|dec)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)$")
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# DuckDB's DECIMAL without precision and scale.
_BARE_DECIMAL = (18, 3)
_TZ_TYPES = re.compile(r"timestamptz|timestamp_tz|timestamp_ltz|with time zone")


@dataclass
class PushResult:
    """What one push did. ``rows`` = ``written`` + ``unchanged`` + ``older``; every row was landed.

    ``written``: rows Redis now holds. ``unchanged``: Redis held that row already (a retry).
    ``older``: not written online because Redis holds a newer version of the entity, or
    because the row is already past its view's ttl (Redis would drop it at once); these
    are still landed offline, for training sets. ``landed``: the Parquet files written.
    """

    rows: int
    written: int
    unchanged: int
    older: int
    landed: list[str] = field(default_factory=list)


def push_rows(registry: Registry, store: "OnlineStore", view_name: str, rows: list[dict], *,
              landing_dir: Path) -> PushResult:
    """Validate ``rows`` of the online view ``view_name``, land them under ``landing_dir``, write them to Redis.

    Each row maps the view's declared columns to values: every join key and the event
    timestamp (not NULL), every feature (``None`` for NULL), the created timestamp if the
    view declares one (optional). Values are taken strictly by the declared type, as join
    keys are everywhere (:func:`feature_store.codec.entity_tag`): an int column takes ints
    or their plain decimal text (``"42"``, never ``"042"`` or ``42.0``), a string column
    text only, timestamps a datetime or ISO 8601 text (naive means UTC), dates a date or
    ISO text, booleans True/False or ``"true"``/``"false"``; a float column takes ints and
    floats, a decimal column ints, floats, Decimals or decimal text that fit its precision
    and scale without rounding.

    Raises :class:`PushRejected` (``row``, ``field``) before anything is written when the
    view is unknown or not online, a row has an unknown column, a missing or NULL join key
    or event timestamp, a missing feature, a value of the wrong type, an event timestamp
    more than :data:`FUTURE_TOLERANCE` ahead of the clock, or two rows have the same keys and
    timestamps but other values. Then :class:`WarehouseError` if the landing files cannot be
    written and :class:`~feature_store.errors.OnlineStoreError` if Redis fails: the push is
    then not acknowledged, and retrying it is safe.
    """
    view = _online_view(registry, view_name)
    if not isinstance(rows, (list, tuple)):
        raise PushRejected(f"rows must be a list of objects (column: value), got {type(rows).__name__}")
    checked = _Validator(view).table(rows)
    if checked.num_rows == 0:
        return PushResult(rows=0, written=0, unchanged=0, older=0, landed=[])
    landed = _land(view, checked, Path(landing_dir))
    result = write_rows(store, view, _online_rows(view, checked))
    _record_lag(store, view, checked, result)
    return PushResult(rows=len(rows), written=result.written, unchanged=result.unchanged,
                      older=result.skipped_older + result.expired_on_arrival, landed=[str(p) for p in landed])


def default_landing_dir(project_dir: str | os.PathLike) -> Path:
    """The landing folder the dbt project reads: the var ``feature_store:push_dir`` of its
    ``dbt_project.yml`` (default ``push``), relative paths taken from ``project_dir``.

    A value given only on dbt's command line (``--vars``) is not seen here: pass that
    folder to :func:`push_rows` yourself.
    """
    project_dir = Path(project_dir)
    project = _read_yaml(project_dir / "dbt_project.yml")
    project_vars = project.get("vars")
    value = (project_vars.get(PUSH_DIR_VAR) if isinstance(project_vars, dict) else None) or DEFAULT_PUSH_DIR
    if not isinstance(value, str) or "{{" in value:
        raise ManifestError(
            f"{project_dir / 'dbt_project.yml'}: vars.\"{PUSH_DIR_VAR}\" must be a literal folder path, got "
            f"{value!r}; or pass landing_dir to push_rows yourself")
    path = Path(value)
    return path if path.is_absolute() else project_dir / path


# -- validation ------------------------------------------------------------------------------


def _online_view(registry: Registry, view_name: Any) -> FeatureView:
    if not isinstance(view_name, str):
        raise PushRejected(f"the view must be a feature view's name, got {reprlib.repr(view_name)}")
    try:
        view = registry.view(view_name)
    except UnknownFeatureView as exc:
        raise PushRejected(str(exc)) from None
    if not view.online:
        online = sorted(v.name for v in registry.views.values() if v.online)
        raise PushRejected(
            f"feature view {view.name} is not online (meta.feature_store.online is false): a push writes to the "
            f"online store; set online: true on the model, or load these rows into the warehouse instead. "
            f"Online views: {', '.join(online) or 'none'}")
    return view


class _Validator:
    """Checks and converts a request's rows into one Arrow table of the view's declared columns."""

    def __init__(self, view: FeatureView):
        self.view = view
        self.columns = list(view.column_types)  # the declared order, the files' column order
        self.kinds = {c: type_kind(t) for c, t in view.column_types.items()}
        self.key_kinds = {k: self.kinds[k] for k in view.join_keys}
        times = [view.timestamp] + ([view.created_timestamp] if view.created_timestamp else [])
        self.features = [c for c in self.columns if c not in view.join_keys and c not in times]
        self.latest = codec.naive_utc(datetime.now(timezone.utc)) + FUTURE_TOLERANCE

    def table(self, rows: list | tuple) -> pa.Table:
        values: dict[str, list] = {c: [] for c in self.columns}
        seen: dict[tuple, int] = {}
        for i, row in enumerate(rows):
            converted = self._row(i, row)
            version = tuple(converted[c] for c in (*self.view.join_keys, self.view.timestamp,
                                                   self.view.created_timestamp) if c)
            first = seen.setdefault(version, i)
            if first != i and any(_differs(values[c][first], converted[c]) for c in self.columns):
                raise self._reject(
                    i, self.view.timestamp,
                    f"same {', '.join(self.view.join_keys)} and timestamps as row {first} but other values; "
                    "one version of an entity has one set of values (send the row once, or give it a later "
                    "timestamp)")
            for c in self.columns:
                values[c].append(converted[c])
        arrays = [pa.array(values[c], _arrow_type(self.kinds[c], self.view.column_types[c])) for c in self.columns]
        return pa.table(arrays, names=self.columns)

    def _row(self, i: int, row: Any) -> dict[str, Any]:
        view = self.view
        if not isinstance(row, Mapping):
            raise self._reject(i, None, f"must be an object of column: value, got {type(row).__name__}")
        for name in row:
            if name not in view.column_types:
                raise self._reject(
                    i, str(name), f"unknown column: feature view {view.name} has no column {name!r}"
                    f"{_did_you_mean(name, self.columns)}; its columns: {', '.join(self.columns)}")
        for key in view.join_keys:
            if row.get(key) is None:
                raise self._reject(i, key, f"missing join key: every row needs {', '.join(view.join_keys)}, not null")
            try:  # the online key's own rule, so a push never lands a key a read would refuse
                codec.entity_tag([key], self.key_kinds, row)
            except ValueError as exc:
                raise self._reject(i, key, str(exc)) from None
        if row.get(view.timestamp) is None:
            raise self._reject(i, view.timestamp, "missing event timestamp: every row needs one, not null")
        for feature in self.features:
            if feature not in row:
                raise self._reject(
                    i, feature, "missing feature: a pushed row replaces the entity's whole row, so give every "
                    f"feature of {view.name} ({', '.join(self.features)}), null for a NULL value")
        out = {}
        for c in self.columns:
            try:
                out[c] = _convert(self.kinds[c], view.column_types[c], row.get(c))
            except ValueError as exc:
                raise self._reject(i, c, f"declared {view.column_types[c]}, got {reprlib.repr(row.get(c))}; {exc}") from None
        event = out[view.timestamp]
        moment = event if isinstance(event, datetime) else datetime(event.year, event.month, event.day)
        if moment > self.latest:
            raise self._reject(
                i, view.timestamp, f"{event.isoformat()} is more than {format_duration(FUTURE_TOLERANCE)} ahead of the clock (UTC); "
                "an event timestamp says when the values became true, so it cannot be in the future")
        return out

    def _reject(self, i: int, column: str | None, problem: str) -> PushRejected:
        where = f"row {i}" + (f", column {column}" if column else "")
        return PushRejected(f"push to {self.view.name}: {where}: {problem}", row=i, field=column)


def _differs(a: Any, b: Any) -> bool:
    # NaN is a value here: pushing the same NaN twice is the same row.
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return False
    return a != b or type(a) is not type(b)


def _convert(kind: str | None, data_type: str | None, value: Any) -> Any:
    """``value`` as the Python value of a column of ``kind`` (None stays None); ValueError saying what to give."""
    if value is None:
        return None
    if kind == "int":
        if isinstance(value, str) and re.fullmatch(codec.INT_KEY_PATTERN, value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError("give an integer, or its plain decimal text such as '42'")
        bits = _INT_BITS.get(" ".join((data_type or "").lower().split()), 64)
        if not -(2 ** (bits - 1)) <= int(value) < 2 ** (bits - 1):
            raise ValueError(f"out of range for a {bits}-bit integer")
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float)):
            raise ValueError("give a number")
        return float(value)
    if kind == "decimal":
        return _decimal(data_type, value)
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError("give text (a JSON string)")
        return value
    if kind == "bool":
        if isinstance(value, str) and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            raise ValueError("give true or false")
        return value
    if kind == "timestamp":
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("give ISO 8601 text such as '2025-11-03T00:07:54Z' (naive means UTC)") from None
        if not isinstance(value, datetime):
            raise ValueError("give ISO 8601 text such as '2025-11-03T00:07:54Z' (naive means UTC)")
        return codec.naive_utc(value)
    if kind == "date":
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value)
            except ValueError:
                raise ValueError("give an ISO date such as '2025-11-03'") from None
        if isinstance(value, datetime) or not isinstance(value, date):
            raise ValueError("give an ISO date such as '2025-11-03'")
        return value
    raise ValueError("this type cannot be pushed (the online store cannot hold it)")


def _decimal(data_type: str | None, value: Any) -> Decimal:
    precision, scale = _decimal_shape(data_type)
    if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value):
        number = Decimal(value)
    elif isinstance(value, float) and math.isfinite(value):
        number = Decimal(repr(value))  # the shortest text of the double: 17.62, not 17.6199999...
    elif isinstance(value, Decimal) and value.is_finite():
        number = value
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        number = Decimal(int(value))
    else:
        raise ValueError("give a number or decimal text such as '27.40'")
    try:  # room for any decimal(38, s): the default context keeps 28 digits
        exact = number.quantize(Decimal(1).scaleb(-scale), context=Context(prec=80))
    except InvalidOperation:
        exact = None
    if exact is None or exact != number:
        raise ValueError(f"more than {scale} decimal places; round it first (nothing is rounded for you)")
    if len(exact.as_tuple().digits) > precision and exact != 0:
        raise ValueError(f"more than {precision} digits")
    return exact


def _decimal_shape(data_type: str | None) -> tuple[int, int]:
    m = _DECIMAL_TYPE.match(" ".join((data_type or "").lower().split()))
    if not m:
        return _BARE_DECIMAL
    return int(m.group(1)), int(m.group(2) or 0)


def _arrow_type(kind: str | None, data_type: str | None) -> pa.DataType:
    """The Arrow type a column is landed (and encoded) as: what the warehouse hands the sync for it."""
    if kind == "int":
        return pa.int64()
    if kind == "float":
        return pa.float64()
    if kind == "decimal":
        return pa.decimal128(*_decimal_shape(data_type))
    if kind == "bool":
        return pa.bool_()
    if kind == "timestamp":
        aware = bool(_TZ_TYPES.search(" ".join((data_type or "").lower().split())))
        return pa.timestamp("us", "UTC") if aware else pa.timestamp("us")
    if kind == "date":
        return pa.date32()
    return pa.string()


def _online_rows(view: FeatureView, table: pa.Table) -> pa.Table:
    """The landed table as the writer takes it: the time columns renamed to the hash's fields."""
    names = {view.timestamp: codec.EVENT_TS}
    if view.created_timestamp:
        names[view.created_timestamp] = codec.CREATED_TS
    return table.rename_columns([names.get(c, c) for c in table.column_names])


def _record_lag(store: "OnlineStore", view: FeatureView, table: pa.Table, result: WriteResult) -> None:
    """Record for ``fstore monitor`` the write lag of the rows this push wrote as newer versions
    than Redis held (``result.newer``, positions in ``table``): not a retry's unchanged rows, not
    older ones, not those past the ttl (never sent).

    The rows are durable in both stores by now: a monitoring aid that cannot be recorded
    (Redis gone a moment later) must not fail a push the client would then retry for nothing.
    """
    if not result.newer.size:
        return
    written_at = datetime.now(timezone.utc).replace(tzinfo=None)
    events = table.column(view.timestamp).take(pa.array(result.newer))
    try:
        record_push_lag(store, view.name, events, written_at)
    except OnlineStoreError:
        pass


# -- landing ---------------------------------------------------------------------------------


def _hours(view: FeatureView, table: pa.Table) -> dict[tuple[str, str], list[int]]:
    """Row indices per (date, hour) of the row's event timestamp (UTC)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, ts in enumerate(table.column(view.timestamp).to_pylist()):
        moment = codec.naive_utc(ts) if isinstance(ts, datetime) else datetime(ts.year, ts.month, ts.day)
        groups.setdefault((moment.date().isoformat(), f"{moment.hour:02d}"), []).append(i)
    return groups


def _land(view: FeatureView, table: pa.Table, landing_dir: Path) -> list[Path]:
    """Write the rows as one Parquet file per event hour, each durable before returning."""
    landed = []
    for (day, hour), indices in sorted(_hours(view, table).items()):
        part = table.take(pa.array(indices, pa.int64()))
        folder = landing_dir / view.name / f"date={day}" / f"hour={hour}"
        landed.append(_write_durably(part, folder))
    return landed


def _digest(table: pa.Table) -> str:
    """A name for the file from its rows alone, so a retried push replaces its own file."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:32]


def _write_durably(table: pa.Table, folder: Path) -> Path:
    """``table`` as ``folder/<digest>.parquet``, all or nothing, on disk when this returns
    (:func:`feature_store.landing.write_parquet_durably`)."""
    try:
        return write_parquet_durably(table, folder / f"{_digest(table)}.parquet")
    except OSError as exc:
        raise WarehouseError(
            f"cannot land pushed rows in {folder}: {exc}; nothing was written online and the push was not "
            "acknowledged, so the client may retry. Check that the landing folder is writable and has space") from None
