"""The sync's read of the warehouse: what changed in a view, and the latest row per entity.

Two questions, answered in one connection to the warehouse, so both answers describe the
same data (DuckDB lets no writer in while it is open; PostgreSQL reads in one REPEATABLE
READ transaction):

* **What may have changed since the last sync?** :class:`Fingerprints` split the view's
  entities into hash partitions and digest each partition's rows (every column the
  view declares, every row of history). A partition whose digest is unchanged holds
  exactly the rows it held at the last sync, so its entities' latest rows as of the
  new time differ only where a row's event time falls between the two syncs. That is
  what an incremental sync reads: the changed partitions, plus the entities with a row
  in ``(last as_of, as_of]``. No watermark of ours, no clock and no assumption about
  how the model is built (a rebuilt table keeps its timestamps; a late row may carry an
  old one) enters the proof.
* **The latest row per entity as of a time**: the point-in-time macro with a spine of
  the entities to read, so online values come from the one definition.

The SQL that differs between engines (the hashes) comes from the macros in
macros/sync.sql, compiled by dbt with the point-in-time join in one call.

The rows are spooled to Parquet files in a temporary folder and the connection is
closed before anything is written to Redis: the file is held for the queries alone,
not while Redis works, so a ``dbt build`` scheduled after the sync starts is kept
waiting as briefly as possible.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from feature_store.codec import naive_utc
from feature_store.compiler import compile_call, macro_call
from feature_store.registry import SPINE_RELATION as SPINE
from feature_store.registry import SPINE_ROW as ROW
from feature_store.registry import SPINE_TS as TS
from feature_store.registry import FeatureView, Registry
from feature_store.warehouse import Warehouse, open_warehouse

__all__ = ["Fingerprints", "SnapshotReader", "count_entities", "snapshot"]

# Entities per snapshot query: DuckDB's join memory grows with the entities it joins at
# once, so a large view is read in hash partitions of about this many (one after another).
PARTITION_KEYS = 100_000
# Fingerprint partitions: about this many entities each, so a change touching 1% of the
# entities at random re-reads a few percent of them; at most MAX_PARTS (16 hex digits
# each: the state stays within 1 MB per view).
ENTITIES_PER_PART = 2
MAX_PARTS = 65_536
_EMPTY = "0" * 16
_KEYS = "__fs_keys"


@dataclass(frozen=True)
class Fingerprints:
    """A digest per hash partition of a view's entities, back to back: 16 hex digits each.

    Partition ``p`` holds the entities with ``entity_hash(keys) mod parts = p``; its digest
    is a hash of its row count and of the sum of its rows' hashes (macros/sync.sql).
    """

    parts: int
    text: str

    @classmethod
    def decode(cls, parts: int, text: str) -> "Fingerprints | None":
        """Fingerprints as stored in the sync state; None when ``text`` is not ``parts`` digests."""
        if parts < 1 or len(text) != parts * 16:
            return None
        return cls(parts, text)


def choose_parts(entities: int) -> int:
    """The fingerprint partitions for a view of ``entities`` entities: a power of two."""
    parts = 1
    while parts * ENTITIES_PER_PART < entities and parts < MAX_PARTS:
        parts *= 2
    return parts


class SnapshotReader:
    """The rows of a snapshot, spooled to Parquet: iterate for Arrow record batches, then :meth:`close`.

    ``total_rows`` is the number of entities read; ``fingerprints`` the view's partition
    digests at the time of the read (None for a backfill read); ``plan`` says in words
    what was read and why; ``compile_seconds`` how long dbt took to compile the query
    (0 when cached).
    """

    compile_seconds = 0.0

    def __init__(self, folder: Path, files: list[Path], batch_rows: int, total_rows: int,
                 fingerprints: Fingerprints | None, plan: str):
        self._folder, self._files, self._batch_rows = folder, files, batch_rows
        self.total_rows = total_rows
        self.fingerprints = fingerprints
        self.plan = plan

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for path in self._files:
            yield from pq.ParquetFile(path).iter_batches(batch_size=self._batch_rows)

    def read_all(self) -> pa.Table:
        """Every row, as one table."""
        return pa.concat_tables([pq.read_table(path) for path in self._files]) if self._files else pa.table({})

    def close(self) -> None:
        """Delete the spooled rows."""
        shutil.rmtree(self._folder, ignore_errors=True)


def snapshot(
    registry: Registry,
    view_name: str,
    as_of: datetime,
    since: datetime | None = None,
    batch_rows: int = 50_000,
    previous: tuple[Fingerprints, datetime] | None = None,
    duckdb_config: dict | None = None,
    partition_keys: int = PARTITION_KEYS,
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
) -> SnapshotReader:
    """The latest row per entity of ``view_name`` as of ``as_of``: what the online store holds.

    Which entities are read:

    * ``previous`` = (the fingerprints and as-of time of the last finished sync): the
      entities of changed partitions and those with a row timed after the last as-of
      (see the module docstring); the new fingerprints come back on the reader;
    * ``since`` (a backfill chunk): the entities with a row created, or timed, after it;
    * neither: every entity (a full read), with fingerprints.

    The batches carry the join keys, the features, ``__event_ts`` and ``__created_ts``; a
    NULL ``__event_ts`` marks an entity whose latest row is already older than the ttl
    (expired on arrival). Rows come in no particular order. The read runs on the target's
    warehouse (:func:`feature_store.warehouse.open_warehouse`); ``wait``/``on_wait``: how
    long to wait for a ``dbt build`` that holds a DuckDB file, and how to say so.
    """
    view = registry.view(view_name)
    as_of_sql = timestamp_literal(as_of)
    if previous is not None:
        parts = previous[0].parts
    else:
        parts = choose_parts(count_entities(registry, view, duckdb_config, wait=wait, on_wait=on_wait))
    # Compiled before the read opens the warehouse: a DuckDB file stays free for `dbt build`
    # while dbt starts up.
    began = time.perf_counter()
    queries = _queries(registry, view, parts)
    compiled = time.perf_counter() - began
    folder = Path(tempfile.mkdtemp(prefix=f"fstore-{view.name}-"))
    wh = open_warehouse(registry, duckdb_config, wait=wait, on_wait=on_wait)
    try:
        q = wh.quote
        keys = ", ".join(q(k) for k in view.join_keys)
        where = [f"{q(k)} IS NOT NULL" for k in view.join_keys] + [f"{q(view.timestamp)} <= {as_of_sql}"]
        entity_hash = queries["entity_hash"]
        fingerprints = None
        if since is not None:
            changed_col = view.created_timestamp or view.timestamp
            since_sql = timestamp_literal(since)
            # A row known before the chunk but with an event time inside it was not live then.
            where.append(f"({q(changed_col)} > {since_sql} OR {q(view.timestamp)} > {since_sql})")
            plan = f"rows changed after {since_sql[10:]}"
        else:
            fingerprints = _fingerprints(wh, queries["fingerprints"], parts)
            plan = "every entity"
            if previous is not None:
                old, old_as_of = previous
                changed = _changed_parts(old, fingerprints)
                if naive_utc(old_as_of) > naive_utc(as_of):
                    plan = "every entity (as of a time before the last sync's)"
                elif 2 * len(changed) > parts:
                    plan = f"every entity ({len(changed)} of {parts} partitions changed)"
                else:
                    in_changed = (f"mod({entity_hash}, {parts}) IN ({', '.join(map(str, changed))})"
                                  if changed else "1 = 0")
                    where.append(f"({in_changed} OR {q(view.timestamp)} > {timestamp_literal(old_as_of)})")
                    plan = (f"{len(changed)} of {parts} partitions changed, and rows timed after "
                            f"{timestamp_literal(old_as_of)[10:]}")

        # The entities to read, found once (one scan) and counted: the sync's ETA. Row ids
        # must be unique: the join may match its per-view results back on them.
        wh.temp_table(_KEYS, f"SELECT DISTINCT {keys}, {as_of_sql} AS {TS} FROM {view.relation} "
                             f"WHERE {' AND '.join(where)}")
        total = wh.scalar(f"SELECT count(*) FROM {_KEYS}")
        chunks = max(1, -(-total // partition_keys))
        cols = ", ".join([q(c) for c in (*view.join_keys, *view.feature_names)]
                         + [f"{q(view.name + '__event_timestamp')} AS __event_ts",
                            f"{q(view.name + '__created_timestamp')} AS __created_ts"])
        files = []
        for c in range(chunks if total else 0):
            part = "" if chunks == 1 else f" WHERE mod({entity_hash}, {chunks}) = {c}"
            wh.temp_view(SPINE, f"SELECT *, row_number() OVER (ORDER BY {keys}) AS {ROW} FROM {_KEYS}{part}")
            path = folder / f"part-{c}.parquet"
            wh.spool(f"SELECT {cols} FROM ({queries['latest']}) AS pit", path)
            files.append(path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        wh.close()
    reader = SnapshotReader(folder, files, batch_rows, total, fingerprints, plan)
    reader.compile_seconds = compiled
    return reader


def count_entities(registry: Registry, view: FeatureView, duckdb_config: dict | None = None, *,
                   wait: float = 0.0, on_wait: Callable[[str], None] | None = None) -> int:
    """The number of entities (distinct non-NULL keys) of ``view`` in the warehouse."""
    with open_warehouse(registry, duckdb_config, wait=wait, on_wait=on_wait) as wh:
        keys = ", ".join(wh.quote(k) for k in view.join_keys)
        not_null = " AND ".join(f"{wh.quote(k)} IS NOT NULL" for k in view.join_keys)
        return wh.scalar(f"SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {view.relation} WHERE {not_null}) AS e")


def _queries(registry: Registry, view: FeatureView, parts: int) -> dict[str, str]:
    """The view's sync SQL from the ``feature_store.sync_queries`` macro (compiled once, cached)."""
    columns = [*view.join_keys, view.timestamp, *([view.created_timestamp] if view.created_timestamp else []),
               *view.feature_names]
    text = compile_call(registry, macro_call(
        "sync_queries", view=view.name, relation=view.relation, keys=list(view.join_keys), columns=columns,
        parts=parts, spine=SPINE, timestamp=TS, row_id=ROW))
    return json.loads(text)


def _fingerprints(wh: Warehouse, sql: str, parts: int) -> Fingerprints:
    """Partition digests of every row of the view (one scan); partitions without rows get the empty digest."""
    table = wh.fetch(sql)
    digests = np.full(parts, _EMPTY.encode(), dtype="S16")
    p = table.column("p").to_numpy(zero_copy_only=False).astype(np.int64)
    digests[p] = np.array(table.column("d").to_pylist(), dtype="S16")
    return Fingerprints(parts, digests.tobytes().decode())


def _changed_parts(old: Fingerprints, new: Fingerprints) -> list[int]:
    """The partitions whose digests differ (compared as arrays: no Python loop over 65,536 digests)."""
    before = np.frombuffer(old.text.encode(), dtype="S16")
    after = np.frombuffer(new.text.encode(), dtype="S16")
    return np.flatnonzero(before != after).tolist()


def timestamp_literal(value: datetime) -> str:
    """A SQL TIMESTAMP literal of ``value`` in naive UTC (standard SQL: every engine reads it)."""
    return f"TIMESTAMP '{naive_utc(value).isoformat(sep=' ')}'"
