"""The offline store: point-in-time-correct training sets from the warehouse.

``get_historical_features`` checks the entity dataframe (the spine), asks dbt to
compile the ``feature_store.point_in_time_join`` macro for the requested features
(cached), loads the spine into the target's warehouse and runs the SQL there. There is
no second copy of the join SQL in Python.

Every read opens the warehouse (:func:`feature_store.warehouse.open_warehouse`), runs,
fetches its whole result and closes it again, so on DuckDB a ``dbt build`` is kept
waiting as briefly as possible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from feature_store.codec import INT_KEY_PATTERN
from feature_store.compiler import compile_call, macro_call
from feature_store.errors import EntityDataFrameError, WarehouseError
from feature_store.registry import (
    RESERVED_PREFIX,
    SPINE_RELATION,
    SPINE_ROW,
    SPINE_TS,
    Feature,
    Registry,
    output_names,
    type_kind,
)
from feature_store.warehouse import open_warehouse

__all__ = ["RetrievalJob", "get_historical_features", "null_rates"]

# The join's own names (reserved in the registry: spine columns and feature columns may
# not start with RESERVED_PREFIX, in any case, as DuckDB names are case-insensitive).
SPINE, ROW, TS = SPINE_RELATION, SPINE_ROW, SPINE_TS
SOURCE = "__fs_source"  # a warehouse spine's own rows, before ROW and TS are added

def _normalize_ttl_override(registry: Registry, ttl_override) -> Any:
    if ttl_override is None or isinstance(ttl_override, (str, timedelta)):
        return ttl_override
    if isinstance(ttl_override, dict):
        for name in ttl_override:
            registry.view(name)  # unknown view: did-you-mean error now, not a compile error later
        return dict(ttl_override)
    raise EntityDataFrameError(f"ttl_override must be a duration like '2d', a timedelta, or a mapping of view "
                               f"to duration; got {ttl_override!r}")


@dataclass(frozen=True)
class _SqlSpine:
    """A warehouse spine: the user's checked relation or SELECT, and the SELECT adding ROW and TS to it."""

    source: str
    select: str


@dataclass
class RetrievalJob:
    """A training-set query, run on the first ``to_arrow()`` / ``to_df()``.

    The run opens the warehouse (:func:`~feature_store.warehouse.open_warehouse`; on
    DuckDB waiting up to ``wait`` seconds for a writer, with ``on_wait`` told about it),
    fetches the whole result and closes the connection before returning, so a ``dbt
    build`` can start as soon as it has.
    """

    registry: Registry
    sql: str
    spine: pa.Table | _SqlSpine
    features: list[Feature]
    columns: list[str] = field(default_factory=list)
    duckdb_config: dict | None = None
    wait: float = 0.0
    on_wait: Callable[[str], None] | None = None
    _result: pa.Table | None = None

    def to_arrow(self) -> pa.Table:
        """The training set as a pyarrow Table, rows in the spine's order."""
        if self._result is None:
            self._result = self._run()
        return self._result

    def to_df(self) -> pd.DataFrame:
        """The training set as a pandas DataFrame, rows in the spine's order."""
        return self.to_arrow().to_pandas()

    def _run(self) -> pa.Table:
        with open_warehouse(self.registry, self.duckdb_config, wait=self.wait, on_wait=self.on_wait) as wh:
            if isinstance(self.spine, pa.Table):
                wh.upload(SPINE, self.spine)
            else:
                wh.temp_view(SOURCE, self.spine.source)
                wh.temp_view(SPINE, self.spine.select)
            try:
                table = wh.fetch(f"SELECT * FROM ({self.sql}) AS pit ORDER BY {ROW}")
            except WarehouseError as exc:
                raise WarehouseError(f"the training-set query failed: {exc}\n-- SQL:\n{self.sql}") from None
        return table.drop_columns([ROW, TS])


def get_historical_features(
    registry: Registry,
    entity_df: pd.DataFrame | pa.Table | str,
    features: Iterable[str] | None = None,
    timestamp_column: str = "event_timestamp",
    full_feature_names: bool = False,
    ttl_override: str | timedelta | dict | None = None,
    as_of_created: bool = False,
    duckdb_config: dict | None = None,
    *,
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
    feature_service: str | None = None,
    include_timestamps: bool = False,
) -> RetrievalJob:
    """Attach ``features`` to every row of ``entity_df`` as they were at its ``timestamp_column``.

    ``features`` are ``view:feature`` references (a bare ``view`` means all its features);
    instead of them, ``feature_service`` names an ML model (a dbt exposure of type ml) and
    takes its features (:meth:`~feature_store.registry.Registry.feature_service`).

    ``entity_df`` (the spine) is one of:

    - a pandas DataFrame or a pyarrow Table;
    - the name of a warehouse table or view: a plain identifier, optionally quoted and
      optionally qualified (``labels``, ``main."Churn Labels"``);
    - one SELECT statement (``WITH``, ``UNION`` and trailing comments are fine), checked by
      DuckDB's own parser: several statements, or any other kind, are refused.

    Column names starting with ``__fs_`` (in any case) are reserved. Join-key columns of a
    DataFrame or Table are converted to the key's declared type only where no value can
    change meaning: integer keys take integer columns, float or decimal columns holding
    whole numbers, and text in plain decimal form (``"42"``, not ``"4_2"``, ``" 42"`` or
    ``"042"``; see :func:`feature_store.codec.entity_tag`); string keys take text only;
    timestamp keys take timestamps or ISO 8601 text; date keys take dates, ISO dates or
    midnight timestamps. Anything else is refused, naming the column, the first bad row
    (counting from 0) and its value. NULL keys are kept and match no feature row. A
    warehouse spine's keys are compared as DuckDB types them. Every problem with the input
    is reported before the training-set query runs; a warehouse spine is checked with one
    short read of the warehouse.

    ``wait`` and ``on_wait`` apply to each opening of the warehouse file, as in
    :func:`~feature_store.warehouse.open_warehouse`. See docs/point-in-time.md for the exact point-in-time rule.

    ``include_timestamps`` also returns, per view, ``<view>__event_timestamp`` and
    ``<view>__created_timestamp``: the timestamps of the matched row (NULL when none
    matched), after the features.
    """
    feats = registry.resolve(registry.requested_features(features, feature_service))
    if not feats:
        raise EntityDataFrameError("no features requested; pass features=['view:feature', ...] or a view name")
    names = output_names(feats, full_feature_names)
    if include_timestamps:  # the macro's names; checked against the spine's columns like the features'
        names += [f"{v}__{t}_timestamp" for v in dict.fromkeys(f.view for f in feats) for t in ("event", "created")]
    ttl_override = _normalize_ttl_override(registry, ttl_override)

    spine: pa.Table | _SqlSpine
    if isinstance(entity_df, str):
        spine, columns = _warehouse_spine(registry, entity_df, timestamp_column, duckdb_config, wait, on_wait)
        _check_spine_columns(registry, feats, columns, names)
    else:
        spine, columns = _arrow_spine(registry, feats, names, entity_df, timestamp_column)

    extra = {"include_timestamps": True} if include_timestamps else {}  # the same call text (and cache) as before
    sql = compile_call(registry, macro_call(
        "point_in_time_join",
        spine=SPINE, timestamp=TS, features=[f.ref for f in feats], full_feature_names=full_feature_names,
        ttl_override=ttl_override, as_of_created=as_of_created, row_id=ROW, **extra,
    ))
    return RetrievalJob(registry, sql, spine, feats, columns + names, duckdb_config, wait=wait, on_wait=on_wait)


def _check_reserved(columns: Iterable[str], where: str) -> None:
    reserved = [c for c in columns if c.lower().startswith(RESERVED_PREFIX)]
    if reserved:
        raise EntityDataFrameError(
            f"column(s) {', '.join(map(repr, reserved))} of {where}: names starting with {RESERVED_PREFIX!r} are "
            "reserved by feature_store; rename them")


def _check_spine_columns(registry: Registry, feats: list[Feature], columns: list[str], names: list[str]) -> None:
    problems = []
    for view_name in dict.fromkeys(f.view for f in feats):
        view = registry.view(view_name)
        for key in view.join_keys:
            if key not in columns:
                problems.append(f"join key {key!r} is missing from the entity dataframe; "
                                f"feature view {view.name} needs it")
    clash = [n for n in names if n in columns]
    if clash:
        problems.append(f"feature column(s) {', '.join(clash)} would overwrite entity dataframe columns; "
                        "rename them or pass full_feature_names=True")
    if problems:
        raise EntityDataFrameError("; ".join(problems) + f" (columns present: {', '.join(columns)})")


def _arrow_spine(registry: Registry, feats: list[Feature], names: list[str], entity_df,
                 timestamp_column: str) -> tuple[pa.Table, list[str]]:
    """The spine as an Arrow table with ROW and TS appended, and its own columns."""
    if isinstance(entity_df, pd.DataFrame):
        _check_reserved(map(str, entity_df.columns), "the entity dataframe")
        table = pa.Table.from_pandas(entity_df, preserve_index=False)
    elif isinstance(entity_df, pa.Table):
        _check_reserved(entity_df.column_names, "the entity dataframe")
        table = entity_df
    else:
        raise EntityDataFrameError(
            f"entity_df must be a pandas DataFrame, a pyarrow Table or a warehouse table name/SELECT; "
            f"got {type(entity_df).__name__}")
    columns = table.column_names
    if timestamp_column not in columns:
        raise EntityDataFrameError(
            f"timestamp column {timestamp_column!r} is not in the entity dataframe (columns: "
            f"{', '.join(columns)}); pass timestamp_column=")
    _check_spine_columns(registry, feats, columns, names)
    for key, (kind, declared) in _key_types(registry, feats).items():
        i = columns.index(key)
        table = table.set_column(i, key, _key_column(key, kind, declared, table.column(i)))
    ts = _utc_naive(table.column(timestamp_column), timestamp_column)
    table = table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    return table.append_column(TS, ts), columns


def _key_types(registry: Registry, feats: list[Feature]) -> dict[str, tuple[str | None, str | None]]:
    """Each join key of the requested views: its kind and declared type (views agree; the registry checks)."""
    types: dict[str, tuple[str | None, str | None]] = {}
    for view_name in dict.fromkeys(f.view for f in feats):
        view = registry.view(view_name)
        for key in view.join_keys:
            declared = view.column_types.get(key)
            if key not in types or types[key][1] is None:
                types[key] = (type_kind(declared), declared)
    return types


_INT_TEXT = f"^(?:{INT_KEY_PATTERN})$"


def _key_column(name: str, kind: str | None, declared: str | None, col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Join-key column ``name`` in its declared kind; EntityDataFrameError where a value could change meaning."""
    if pa.types.is_dictionary(col.type):  # pandas categoricals
        col = col.cast(col.type.value_type)
    typ = col.type
    if kind is None or pa.types.is_null(typ):
        return col
    text = pa.types.is_string(typ) or pa.types.is_large_string(typ)
    if kind == "int":
        if pa.types.is_integer(typ):
            return col
        fix = "give integers, or their plain decimal text such as '42' (no spaces, '_', '+' or leading zeros)"
        if text:
            _refuse_first(name, declared, col, pc.invert(pc.match_substring_regex(col, _INT_TEXT)), fix)
        if text or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
            return _strict_cast(name, declared, col, pa.int64(), fix)
    elif kind == "string":
        if text:
            return col
    elif kind == "timestamp":
        if pa.types.is_timestamp(typ):
            return col.cast(pa.timestamp(typ.unit)) if typ.tz else col  # Arrow stores UTC: naive UTC, as online
        if text:
            given = col.to_pandas()
            parsed = pd.to_datetime(given, format="ISO8601", utc=True, errors="coerce")
            _refuse_first(name, declared, col, pa.chunked_array([pa.array(parsed.isna() & given.notna())]),
                          "give timestamps or ISO 8601 text such as '2025-11-03T00:07:54Z'")
            return pa.chunked_array([pa.array(parsed.dt.tz_localize(None), pa.timestamp("us"))])
    elif kind == "date":
        fix = "give dates, ISO dates such as '2025-11-03', or timestamps at midnight"
        if pa.types.is_date(typ):
            return col
        if pa.types.is_timestamp(typ):
            dates = col.cast(pa.date32())
            _refuse_first(name, declared, col, pc.not_equal(dates.cast(typ), col), fix)
            return dates
        if text:
            return _strict_cast(name, declared, col, pa.date32(), fix)
    elif kind == "bool":
        if pa.types.is_boolean(typ):
            return col
    elif pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):  # float, decimal
        return col
    raise EntityDataFrameError(
        f"join key column {name!r} of the entity dataframe has type {typ}, but the feature views declare "
        f"{name} as {declared}; convert the column to {kind} first")


def _refuse_first(name: str, declared: str | None, col: pa.ChunkedArray, bad: pa.ChunkedArray, fix: str) -> None:
    """Raise for the first row where ``bad`` is true (NULL keys are never bad)."""
    row = pc.index(bad, True).as_py()
    if row >= 0:
        raise _bad_key(name, declared, col, row, fix)


def _strict_cast(name: str, declared: str | None, col: pa.ChunkedArray, target: pa.DataType,
                 fix: str) -> pa.ChunkedArray:
    try:
        return col.cast(target, safe=True)
    except pa.ArrowInvalid:
        pass
    lo, hi = 0, len(col)  # the first value that does not cast is in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            col.slice(lo, mid - lo).cast(target, safe=True)
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    raise _bad_key(name, declared, col, lo, fix)


def _bad_key(name: str, declared: str | None, col: pa.ChunkedArray, row: int, fix: str) -> EntityDataFrameError:
    return EntityDataFrameError(
        f"join key column {name!r} is declared {declared}, but row {row} (counting from 0) holds "
        f"{col[row].as_py()!r}; {fix}")


def _utc_naive(col: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """The column as naive-UTC microsecond timestamps; errors for NULL or unparseable values."""
    typ = col.type
    if pa.types.is_timestamp(typ):
        parsed = col.cast(pa.timestamp("us", tz=typ.tz)) if typ.unit != "us" else col
    elif pa.types.is_date(typ):
        parsed = col.cast(pa.timestamp("us"))
    elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
        values = pd.to_datetime(pd.Series(col.to_pandas()), utc=True, errors="coerce", format="mixed")
        bad = int((values.isna() & pd.Series(col.is_valid().to_pandas())).sum())
        if bad:
            raise EntityDataFrameError(f"{bad} row(s) of timestamp column {name!r} cannot be parsed as timestamps")
        parsed = pa.chunked_array([pa.array(values.dt.tz_localize(None), pa.timestamp("us"))])
    else:
        raise EntityDataFrameError(f"timestamp column {name!r} has type {typ}; give timestamps (or ISO strings)")
    nulls = parsed.null_count
    if nulls:
        raise EntityDataFrameError(f"{nulls} row(s) have a NULL in timestamp column {name!r}; "
                                   "drop them or give them a time")
    if pa.types.is_timestamp(parsed.type) and parsed.type.tz is not None:
        parsed = parsed.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
    return parsed


# A table or view name: identifiers, bare or double-quoted, up to catalog.schema.name.
_IDENTIFIER = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_RELATION = re.compile(rf"{_IDENTIFIER}(?:\.{_IDENTIFIER}){{0,2}}")


def _spine_source(entity_df: str, engine: str) -> str:
    """The SELECT reading a warehouse spine, once it is known to be a relation name or one SELECT.

    On DuckDB the text is checked with DuckDB's own parser; other engines refuse several
    statements in one prepared statement themselves.
    """
    text = entity_df.strip()
    if _RELATION.fullmatch(text):
        return f"SELECT * FROM {text}"
    if engine != "duckdb":
        return text + "\n"  # a trailing `-- comment` must not swallow what follows
    import duckdb

    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise EntityDataFrameError(
            f"entity_df {entity_df!r} is neither a table/view name nor a SELECT DuckDB can parse: {exc}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        found = ", ".join(st.type.name for st in statements) or "no statement"
        raise EntityDataFrameError(
            f"entity_df {entity_df!r} holds {found}; give one SELECT (no ';' and further statements) "
            "or a table/view name")
    # Appended after `AS`, not wrapped in parentheses: a trailing `-- comment` or `;` stays harmless.
    return text


def _warehouse_spine(registry: Registry, entity_df: str, timestamp_column: str, duckdb_config: dict | None,
                     wait: float, on_wait: Callable[[str], None] | None) -> tuple[_SqlSpine, list[str]]:
    """The spine of a warehouse relation or SELECT, checked in one short read, and its columns."""
    with open_warehouse(registry, duckdb_config, wait=wait, on_wait=on_wait) as wh:
        source = _spine_source(entity_df, wh.engine)
        try:
            wh.temp_view(SOURCE, source)
            schema = wh.schema(f"SELECT * FROM {SOURCE}")
        except WarehouseError as exc:
            raise EntityDataFrameError(f"entity_df {entity_df!r} is not a readable table or query: {exc}") from None
        types = {f.name: f.type for f in schema}
        _check_reserved(types, f"entity_df {entity_df!r}")
        if timestamp_column not in types:
            raise EntityDataFrameError(
                f"timestamp column {timestamp_column!r} is not in {entity_df} (columns: {', '.join(types)})")
        column = wh.quote(timestamp_column)
        ts_expr = wh.naive_utc(column, types[timestamp_column])
        try:
            nulls, bad = wh.fetch(
                f"SELECT sum(CASE WHEN {column} IS NULL THEN 1 ELSE 0 END) AS nulls, "
                f"sum(CASE WHEN {column} IS NOT NULL AND {ts_expr} IS NULL THEN 1 ELSE 0 END) AS bad "
                f"FROM {SOURCE}").to_pylist()[0].values()
        except WarehouseError as exc:
            raise EntityDataFrameError(
                f"timestamp column {timestamp_column!r} of {entity_df} does not read as timestamps: {exc}") from None
        select = (f"SELECT *, {wh.spine_row_number(ts_expr)} AS {ROW}, CAST({ts_expr} AS TIMESTAMP) AS {TS} "
                  f"FROM {SOURCE}")
    if nulls:
        raise EntityDataFrameError(
            f"{nulls} row(s) of {entity_df} have a NULL in timestamp column {timestamp_column!r}")
    if bad:
        raise EntityDataFrameError(
            f"{bad} row(s) of {entity_df} have a {timestamp_column!r} that is not a timestamp")
    return _SqlSpine(source, select), list(types)


def null_rates(table: pa.Table, columns: list[str]) -> dict[str, float]:
    """Share of NULLs per column (0.0 for an empty table)."""
    n = table.num_rows
    return {c: (table.column(c).null_count / n if n else 0.0) for c in columns}
