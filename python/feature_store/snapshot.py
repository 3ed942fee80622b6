"""The sync's read of the warehouse: what changed in a view, and the latest row per entity.

Two questions, answered in one connection (DuckDB lets no writer in while it is open,
so both answers describe the same data):

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

The rows are spooled to Parquet files in a temporary folder and the connection is
closed before anything is written to Redis: the file is held for the queries alone,
not while Redis works, so a ``dbt build`` scheduled after the sync starts is kept
waiting as briefly as possible.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from feature_store.codec import naive_utc
from feature_store.compiler import compile_call, macro_call
from feature_store.registry import SPINE_RELATION as SPINE
from feature_store.registry import SPINE_ROW as ROW
from feature_store.registry import SPINE_TS as TS
from feature_store.registry import FeatureView, Registry
from feature_store.warehouse import connect

__all__ = ["Fingerprints", "SnapshotReader", "snapshot"]

# Entities per snapshot query: DuckDB's join memory grows with the entities it joins at
# once, so a large view is read in hash partitions of about this many (one after another).
PARTITION_KEYS = 100_000
# Fingerprint partitions: about this many entities each, so a change touching 1% of the
# entities at random re-reads a few percent of them; at most MAX_PARTS (16 hex digits
# each: the state stays within 1 MB per view).
ENTITIES_PER_PART = 2
MAX_PARTS = 65_536
_EMPTY = "0" * 16
_CHANGED = "__fs_changed"
_DIGESTS = "__fs_digests"
_KEYS = "__fs_keys"


@dataclass(frozen=True)
class Fingerprints:
    """A digest per hash partition of a view's entities, back to back: 16 hex digits each.

    Partition ``p`` holds the entities with ``hash(keys) % parts = p``; its digest is a
    hash of its row count and of the sum of its rows' hashes (a sum, not an xor:
    replacing two equal rows by two other equal rows changes a sum).
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
    (expired on arrival). Rows come in no particular order. ``wait``/``on_wait``: how
    long to wait for a ``dbt build`` that holds the DuckDB file, and how to say so.
    """
    view = registry.view(view_name)
    as_of_sql = _timestamp_sql(as_of)
    keys = ", ".join(f'"{k}"' for k in view.join_keys)
    not_null = [f'"{k}" IS NOT NULL' for k in view.join_keys]
    where = not_null + [f'"{view.timestamp}" <= {as_of_sql}']
    began = time.perf_counter()
    sql = compile_call(registry, macro_call(
        "point_in_time_join", spine=SPINE, timestamp=TS, features=[view.name], full_feature_names=False,
        row_id=ROW, include_timestamps=True, spine_time="constant",
    ))
    compiled = time.perf_counter() - began
    cols = ", ".join([f'"{c}"' for c in (*view.join_keys, *view.feature_names)]
                     + [f'"{view.name}__event_timestamp" AS __event_ts',
                        f'"{view.name}__created_timestamp" AS __created_ts'])
    folder = Path(tempfile.mkdtemp(prefix=f"fstore-{view.name}-"))
    con = connect(registry, duckdb_config, wait=wait, on_wait=on_wait)
    try:
        fingerprints = None
        if since is not None:
            changed_col = view.created_timestamp or view.timestamp
            since_sql = _timestamp_sql(since)
            # A row known before the chunk but with an event time inside it was not live then.
            where.append(f'("{changed_col}" > {since_sql} OR "{view.timestamp}" > {since_sql})')
            plan = f"rows changed after {since_sql[10:]}"
        else:
            parts = previous[0].parts if previous else None
            if parts is None:
                entities = con.execute(
                    f"SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {view.relation} "
                    f"WHERE {' AND '.join(not_null)}) AS e").fetchall()[0][0]
                parts = choose_parts(entities)
            fingerprints = _fingerprints(con, view, keys, not_null, parts)
            plan = "every entity"
            if previous is not None:
                old, old_as_of = previous
                if naive_utc(old_as_of) > naive_utc(as_of):
                    plan = "every entity (as of a time before the last sync's)"
                else:
                    # Compared in the warehouse: no Python loop over tens of thousands of digests.
                    con.execute(f"CREATE TEMP TABLE {_CHANGED} AS SELECT p FROM {_DIGESTS} "
                                f"WHERE d <> substr($1, p * 16 + 1, 16)", [old.text])
                    changed = con.execute(f"SELECT count(*) FROM {_CHANGED}").fetchall()[0][0]
                    where.append(f"((hash({keys}) % {parts}) IN (SELECT p FROM {_CHANGED}) "
                                 f"OR \"{view.timestamp}\" > {_timestamp_sql(old_as_of)})")
                    plan = (f"{changed} of {parts} partitions changed, and rows timed after "
                            f"{_timestamp_sql(old_as_of)[10:]}")

        # The entities to read, found once (one scan) and counted: the sync's ETA. Row ids
        # must be unique: the join may match its per-view results back on them.
        con.execute(f"CREATE TEMP TABLE {_KEYS} AS SELECT DISTINCT {keys}, {as_of_sql} AS {TS} "
                    f"FROM {view.relation} WHERE {' AND '.join(where)}")
        total = con.execute(f"SELECT count(*) FROM {_KEYS}").fetchall()[0][0]
        chunks = max(1, -(-total // partition_keys))
        files = []
        for c in range(chunks if total else 0):
            part = "" if chunks == 1 else f" WHERE hash({keys}) % {chunks} = {c}"
            con.execute(f"CREATE OR REPLACE TEMP VIEW {SPINE} AS "
                        f"SELECT *, row_number() OVER () AS {ROW} FROM {_KEYS}{part}")
            path = folder / f"part-{c}.parquet"
            con.execute(f"COPY (SELECT {cols} FROM ({sql}) AS pit) TO '{path}' (FORMAT parquet)")
            files.append(path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        con.close()
    reader = SnapshotReader(folder, files, batch_rows, total, fingerprints, plan)
    reader.compile_seconds = compiled
    return reader


def _fingerprints(con, view: FeatureView, keys: str, not_null: list[str], parts: int) -> Fingerprints:
    """Partition digests of every row of ``view`` (one scan), also kept in a temp table for comparing."""
    columns = [*view.join_keys, view.timestamp, *([view.created_timestamp] if view.created_timestamp else []),
               *view.feature_names]
    row_hash = "hash(" + ", ".join(f'"{c}"' for c in columns) + ")"
    con.execute(
        f"CREATE TEMP TABLE {_DIGESTS} AS SELECT r.range AS p, coalesce(f.d, '{_EMPTY}') AS d FROM range({parts}) r "
        f"LEFT JOIN (SELECT hash({keys}) % {parts} AS p, format('{{:016x}}', hash(count(*), sum({row_hash}))) AS d "
        f"FROM {view.relation} WHERE {' AND '.join(not_null)} GROUP BY p) f ON f.p = r.range")
    text = con.execute(f"SELECT string_agg(d, '' ORDER BY p) FROM {_DIGESTS}").fetchall()[0][0]
    return Fingerprints(parts, text)


def _timestamp_sql(value: datetime) -> str:
    """A SQL TIMESTAMP literal of ``value`` in naive UTC."""
    return f"TIMESTAMP '{naive_utc(value).isoformat(sep=' ')}'"
