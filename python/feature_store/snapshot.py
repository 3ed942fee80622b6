"""The sync's read of the warehouse: the latest row per entity of one view (placeholder, being rewritten)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

import duckdb
import pyarrow as pa

from feature_store.compiler import compile_call
from feature_store.offline import ROW, SPINE, TS, connect, macro_call
from feature_store.registry import Registry

# Entities per snapshot query: DuckDB's join memory grows with the entities it joins at
# once, so a large view is read in hash partitions of about this many (one after another).
PARTITION_KEYS = 100_000


def snapshot(
    registry: Registry,
    view_name: str,
    as_of: datetime,
    since: datetime | None = None,
    batch_rows: int = 50_000,
    duckdb_config: dict | None = None,
    partition_keys: int = PARTITION_KEYS,
) -> tuple["SnapshotReader", duckdb.DuckDBPyConnection]:
    """The latest row per entity of ``view_name`` as of ``as_of``: what the online store holds.

    Computed by the same point-in-time macro, with a spine of the view's entity keys at
    ``as_of`` (keys whose rows changed after ``since``, when given). The batches carry the
    join keys, the features, ``__event_ts`` and ``__created_ts``; a NULL ``__event_ts`` marks
    an entity whose latest row is already older than the ttl (expired on arrival). More
    than ``partition_keys`` entities are read in hash partitions, one query each, so memory
    stays flat as the view grows; rows come in no particular order. The caller closes the
    returned connection once the reader is drained.
    """
    view = registry.view(view_name)
    as_of_utc = _naive_utc(as_of)
    keys = ", ".join(f'"{k}"' for k in view.join_keys)
    changed_col = view.created_timestamp or view.timestamp
    where = [f'"{k}" IS NOT NULL' for k in view.join_keys] + [f'"{view.timestamp}" <= TIMESTAMP \'{as_of_utc}\'']
    if since is not None:
        # A row known before the last sync but with an event time after it was not live then.
        since_sql = f"TIMESTAMP '{_naive_utc(since)}'"
        where.append(f'("{changed_col}" > {since_sql} OR "{view.timestamp}" > {since_sql})')

    def spine(extra: list[str]) -> str:
        distinct = (f"SELECT DISTINCT {keys}, TIMESTAMP '{as_of_utc}' AS {TS} "
                    f"FROM {view.relation} WHERE {' AND '.join(where + extra)}")
        # Row ids must be unique: the join may match its per-view results back on them.
        return f"SELECT *, row_number() OVER () AS {ROW} FROM ({distinct}) AS keys"

    sql = compile_call(registry, macro_call(
        "point_in_time_join", spine=SPINE, timestamp=TS, features=[view.name], full_feature_names=False,
        row_id=ROW, include_timestamps=True,
    ))
    cols = ", ".join([f'"{c}"' for c in (*view.join_keys, *view.feature_names)]
                     + [f'"{view.name}__event_timestamp" AS __event_ts',
                        f'"{view.name}__created_timestamp" AS __created_ts'])
    con = connect(registry, duckdb_config)
    try:
        # Counted before streaming (one connection runs one query at a time): the sync's ETA.
        total = con.execute(f"SELECT count(*) FROM ({spine([])}) AS spine").fetchall()[0][0]
        parts = max(1, -(-total // partition_keys))
        spines = [spine([]) if parts == 1 else spine([f"hash({keys}) % {parts} = {p}"]) for p in range(parts)]
        reader = SnapshotReader(con, spines, f"SELECT {cols} FROM ({sql}) AS pit", batch_rows, total)
    except BaseException:
        con.close()
        raise
    return reader, con


class SnapshotReader:
    """Arrow record batches of a snapshot (one query per partition of its entities), and how many rows they hold."""

    def __init__(self, con: duckdb.DuckDBPyConnection, spines: list[str], query: str, batch_rows: int,
                 total_rows: int):
        self._con, self._spines, self._query, self._batch_rows = con, spines, query, batch_rows
        self.total_rows = total_rows

    def _readers(self) -> Iterable[pa.RecordBatchReader]:
        for spine in self._spines:
            self._con.execute(f"CREATE OR REPLACE TEMP VIEW {SPINE} AS {spine}")
            yield self._con.sql(self._query).to_arrow_reader(self._batch_rows)

    def __iter__(self):
        for reader in self._readers():
            yield from reader

    def read_all(self) -> pa.Table:
        """Every batch, as one table."""
        tables = [reader.read_all() for reader in self._readers()]
        return pa.concat_tables(tables)


def _naive_utc(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(sep=" ")

