"""The offline store: point-in-time-correct training sets from the warehouse.

``get_historical_features`` checks the entity dataframe (the spine), asks dbt to
compile the ``feature_store.point_in_time_join`` macro for the requested features
(cached), registers the spine in a read-only DuckDB connection and runs the SQL.
There is no second copy of the join SQL in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterable

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from feature_store.compiler import compile_call
from feature_store.errors import EntityDataFrameError, WarehouseError
from feature_store.registry import Feature, Registry, format_duration, output_names

__all__ = ["RetrievalJob", "connect", "get_historical_features", "macro_call", "null_rates"]

# Large spines spill to disk instead of growing without bound: at 1M users x 5M spine rows
# this keeps the process under 2 GiB (bench/historical.py). Raise it on bigger machines
# with FeatureStore(duckdb_config={"memory_limit": "8GB"}).
DEFAULT_DUCKDB_CONFIG = {"memory_limit": "1200MB"}

SPINE = "__fs_spine"
ROW = "__fs_row"
TS = "__fs_ts"


def connect(registry: Registry, config: dict | None = None) -> duckdb.DuckDBPyConnection:
    """Open the target's DuckDB file read-only, so a concurrent ``dbt build`` is not disturbed."""
    path = registry.target.path
    if registry.target.type != "duckdb" or path is None:
        raise WarehouseError(
            f"target {registry.target.name!r} is a {registry.target.type} target; the Python API reads DuckDB "
            "targets (on other engines, build training sets as dbt models with feature_store.point_in_time_join)")
    if not path.exists():
        raise WarehouseError(f"warehouse file {path} does not exist; run `dbt build` first")
    try:
        con = duckdb.connect(str(path), read_only=True, config={**DEFAULT_DUCKDB_CONFIG, **(config or {})})
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise WarehouseError(
                f"warehouse file {path} is locked by another process (a running `dbt build`?); "
                "retry when it has finished") from None
        raise WarehouseError(f"cannot open warehouse file {path}: {exc}") from None
    con.execute("SET TimeZone = 'UTC'")
    return con


def _jinja(value: Any) -> str:
    """A Python value as a Jinja literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_jinja(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_jinja(k)}: {_jinja(v)}" for k, v in value.items()) + "}"
    if isinstance(value, timedelta):
        return _jinja(format_duration(value))
    return str(value)


def macro_call(name: str, **kwargs: Any) -> str:
    """``{{ feature_store.<name>(k=v, ...) }}`` with the values as Jinja literals."""
    args = ", ".join(f"{k}={_jinja(v)}" for k, v in kwargs.items())
    return f"{{{{ feature_store.{name}({args}) }}}}"


def _normalize_ttl_override(registry: Registry, ttl_override) -> Any:
    if ttl_override is None or isinstance(ttl_override, (str, timedelta)):
        return ttl_override
    if isinstance(ttl_override, dict):
        for name in ttl_override:
            registry.view(name)  # unknown view: did-you-mean error now, not a compile error later
        return dict(ttl_override)
    raise EntityDataFrameError(f"ttl_override must be a duration like '2d', a timedelta, or a mapping of view "
                               f"to duration; got {ttl_override!r}")


@dataclass
class RetrievalJob:
    """A training-set query, run on the first ``to_arrow()`` / ``to_df()``."""

    registry: Registry
    sql: str
    spine: pa.Table | str
    features: list[Feature]
    columns: list[str] = field(default_factory=list)
    duckdb_config: dict | None = None
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
        con = connect(self.registry, self.duckdb_config)
        try:
            if isinstance(self.spine, pa.Table):
                con.register(SPINE, self.spine)
            else:
                con.execute(f"CREATE TEMP VIEW {SPINE} AS {self.spine}")
            query = f"SELECT * EXCLUDE ({ROW}, {TS}) FROM ({self.sql}) AS pit ORDER BY {ROW}"
            try:
                return con.sql(query).to_arrow_table()
            except duckdb.Error as exc:
                raise WarehouseError(f"the training-set query failed: {exc}\n-- SQL:\n{self.sql}") from None
        finally:
            con.close()


def get_historical_features(
    registry: Registry,
    entity_df: pd.DataFrame | pa.Table | str,
    features: Iterable[str],
    timestamp_column: str = "event_timestamp",
    full_feature_names: bool = False,
    ttl_override: str | timedelta | dict | None = None,
    as_of_created: bool = False,
    duckdb_config: dict | None = None,
) -> RetrievalJob:
    """Attach ``features`` to every row of ``entity_df`` as they were at its ``timestamp_column``.

    ``entity_df`` is a pandas DataFrame, a pyarrow Table, or the name of a table/view
    (or a SELECT) in the warehouse. Every problem with the input is reported before
    any query runs. See DESIGN.md for the exact point-in-time rule.
    """
    if isinstance(features, str):
        features = [features]
    feats = registry.resolve(features)
    if not feats:
        raise EntityDataFrameError("no features requested; pass features=['view:feature', ...] or a view name")
    names = output_names(feats, full_feature_names)
    ttl_override = _normalize_ttl_override(registry, ttl_override)

    if isinstance(entity_df, str):
        spine, columns = _warehouse_spine(registry, entity_df, timestamp_column)
    else:
        spine = _arrow_spine(entity_df, timestamp_column)
        columns = [c for c in spine.column_names if c not in (ROW, TS)]
    _check_spine_columns(registry, feats, columns, names, timestamp_column)

    sql = compile_call(registry, macro_call(
        "point_in_time_join",
        spine=SPINE, timestamp=TS, features=[f.ref for f in feats], full_feature_names=full_feature_names,
        ttl_override=ttl_override, as_of_created=as_of_created, row_id=ROW,
    ))
    return RetrievalJob(registry, sql, spine, feats, columns + names, duckdb_config)


def _check_spine_columns(registry: Registry, feats: list[Feature], columns: list[str], names: list[str],
                         timestamp_column: str) -> None:
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
    for reserved in (ROW, TS):
        if reserved in columns:
            problems.append(f"column {reserved!r} is reserved by feature_store; rename it")
    if problems:
        raise EntityDataFrameError("; ".join(problems) + f" (columns present: {', '.join(columns)})")


def _arrow_spine(entity_df, timestamp_column: str) -> pa.Table:
    if isinstance(entity_df, pd.DataFrame):
        table = pa.Table.from_pandas(entity_df, preserve_index=False)
    elif isinstance(entity_df, pa.Table):
        table = entity_df
    else:
        raise EntityDataFrameError(
            f"entity_df must be a pandas DataFrame, a pyarrow Table or a warehouse table name/SELECT; "
            f"got {type(entity_df).__name__}")
    if timestamp_column not in table.column_names:
        raise EntityDataFrameError(
            f"timestamp column {timestamp_column!r} is not in the entity dataframe (columns: "
            f"{', '.join(table.column_names)}); pass timestamp_column=")
    ts = _utc_naive(table.column(timestamp_column), timestamp_column)
    table = table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    return table.append_column(TS, ts)


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


def _warehouse_spine(registry: Registry, relation: str, timestamp_column: str) -> tuple[str, list[str]]:
    source = relation.strip()
    if source.lower().startswith(("select", "with", "(", "from")):
        source = f"({source.strip('()') if source.startswith('(') else source})"
    con = connect(registry)
    try:
        try:
            desc = con.execute(f"DESCRIBE SELECT * FROM {source} AS s").fetchall()
        except duckdb.Error as exc:
            raise EntityDataFrameError(f"entity_df {relation!r} is not a readable table or query: {exc}") from None
        types = {row[0]: row[1].upper() for row in desc}
        if timestamp_column not in types:
            raise EntityDataFrameError(
                f"timestamp column {timestamp_column!r} is not in {relation} (columns: {', '.join(types)})")
        ts_expr = f'"{timestamp_column}"'
        if "TIME ZONE" in types[timestamp_column]:
            ts_expr = f"({ts_expr} AT TIME ZONE 'UTC')"
        elif types[timestamp_column] in ("VARCHAR", "TEXT"):
            ts_expr = f"TRY_CAST({ts_expr} AS TIMESTAMP)"
        nulls, bad = con.execute(
            f'SELECT count(*) FILTER (WHERE "{timestamp_column}" IS NULL), '
            f'count(*) FILTER (WHERE "{timestamp_column}" IS NOT NULL AND {ts_expr} IS NULL) FROM {source} AS s'
        ).fetchone()
    finally:
        con.close()
    if nulls:
        raise EntityDataFrameError(f"{nulls} row(s) of {relation} have a NULL in timestamp column {timestamp_column!r}")
    if bad:
        raise EntityDataFrameError(f"{bad} row(s) of {relation} have a {timestamp_column!r} that is not a timestamp")
    sql = (f"SELECT *, row_number() OVER () AS {ROW}, CAST({ts_expr} AS TIMESTAMP) AS {TS} "
           f"FROM {source} AS s")
    return sql, list(types)


def null_rates(table: pa.Table, columns: list[str]) -> dict[str, float]:
    """Share of NULLs per column (0.0 for an empty table)."""
    n = table.num_rows
    return {c: (table.column(c).null_count / n if n else 0.0) for c in columns}
