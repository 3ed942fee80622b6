"""The DuckDB warehouse: the target's file, opened read-only, for as short a time as a read takes.

DuckDB lets one process write a file, or any number of processes read it, not both at
once: while a read here has the file open, a ``dbt build`` in another process cannot open
it, and while a build runs, reads cannot. So every read opens the file, runs, fetches its
whole result and closes it again, and :func:`connect` can wait for a build to finish.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable, Iterator

import duckdb
import pyarrow as pa

from feature_store.errors import WarehouseError
from feature_store.registry import Registry
from feature_store.warehouse import Warehouse

__all__ = ["DEFAULT_DUCKDB_CONFIG", "DuckDBWarehouse", "connect"]

# Large spines spill to disk instead of growing without bound: at 1M users x 5M spine rows
# this keeps the process under 2 GiB (bench/historical.py). Raise it on bigger machines
# with FeatureStore(duckdb_config={"memory_limit": "8GB"}).
DEFAULT_DUCKDB_CONFIG = {"memory_limit": "1200MB"}

# A retry every half second at most, a message to on_wait about once a second.
_FIRST_RETRY, _MAX_RETRY, _NOTE_EVERY = 0.05, 0.5, 1.0
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")


def connect(registry: Registry, config: dict | None = None, *, wait: float = 0.0,
            on_wait: Callable[[str], None] | None = None) -> duckdb.DuckDBPyConnection:
    """Open the target's DuckDB file read-only; close it as soon as the read is done.

    Read-only does not make a connection harmless to a writer: DuckDB allows one writing
    process *or* any number of reading processes per file, so while this connection is open
    a ``dbt build`` in another process fails with DuckDB's lock error. Hold it only for one
    read (open, run, fetch the whole result, close).

    When another process holds the write lock (usually a running ``dbt build``), the open is
    retried with a short backoff for up to ``wait`` seconds; ``on_wait`` receives a message
    saying so about once a second (this library never prints). When the file is still locked
    at the deadline, or at once with ``wait=0``, raises :class:`WarehouseError`.
    """
    path = registry.target.path
    if registry.target.type != "duckdb" or path is None:
        raise WarehouseError(f"target {registry.target.name!r} is not a DuckDB file; open it with "
                             "feature_store.warehouse.open_warehouse")
    if not path.exists():
        raise WarehouseError(f"warehouse file {path} does not exist; run `dbt build` first")
    start = time.monotonic()
    deadline = start + wait
    delay, next_note = _FIRST_RETRY, start
    while True:
        try:
            con = duckdb.connect(str(path), read_only=True, config={**DEFAULT_DUCKDB_CONFIG, **(config or {})})
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).replace(str(path), "").lower():  # a path may contain "lock" too
                raise WarehouseError(f"cannot open warehouse file {path}: {exc}") from None
            holder = _LOCK_HOLDER.search(str(exc))
            who = f"another process (PID {holder.group(2)}, {holder.group(1)})" if holder else "another process"
            now = time.monotonic()
            if now >= deadline:
                waited = f" still, after waiting {wait:g}s" if wait > 0 else ""
                raise WarehouseError(
                    f"warehouse file {path} is locked{waited}: {who} holds DuckDB's write lock, usually a running "
                    "`dbt build` (DuckDB lets no process read a file while another writes it); run this after the "
                    "build has finished, or let it wait for the build (fstore --wait 60s, or wait=60 in Python)"
                ) from None
            if on_wait is not None and now >= next_note:
                on_wait(f"waiting for {path}: {who} holds DuckDB's write lock (usually a running `dbt build`); "
                        f"{now - start:.0f}s of {wait:g}s")
                next_note = now + _NOTE_EVERY
            time.sleep(min(delay, deadline - now))
            delay = min(delay * 2, _MAX_RETRY)
    con.execute("SET TimeZone = 'UTC'")
    return con


class DuckDBWarehouse(Warehouse):
    """The target's DuckDB file through :func:`connect`; queries' errors become :class:`WarehouseError`."""

    engine = "duckdb"

    def spine_row_number(self, time_expr: str) -> str:
        return "row_number() over ()"  # the rows in the order they are read

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    @classmethod
    def open(cls, registry: Registry, config: dict | None = None, *, wait: float = 0.0,
             on_wait: Callable[[str], None] | None = None) -> "DuckDBWarehouse":
        return cls(connect(registry, config, wait=wait, on_wait=on_wait))

    def execute(self, sql: str) -> None:
        try:
            self.con.execute(sql)
        except duckdb.Error as exc:
            raise WarehouseError(f"DuckDB: {exc}") from None

    def fetch(self, sql: str) -> pa.Table:
        try:
            return self.con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise WarehouseError(f"DuckDB: {exc}") from None

    def batches(self, sql: str) -> Iterator[pa.RecordBatch]:
        try:
            reader = self.con.sql(sql).fetch_record_batch()
        except duckdb.Error as exc:
            raise WarehouseError(f"DuckDB: {exc}") from None
        yield from reader

    def upload(self, name: str, table: pa.Table) -> None:
        # Registered, not copied: DuckDB scans the Arrow table in place.
        self.con.register(name, table)

    def temp_table(self, name: str, sql: str) -> None:
        self.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def spool(self, sql: str, path: Path) -> int:
        # DuckDB writes Parquet itself, in parallel, without the rows passing through Python.
        self.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")
        return self.scalar(f"SELECT count(*) FROM read_parquet('{path}')")

    def close(self) -> None:
        self.con.close()
