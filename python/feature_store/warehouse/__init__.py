"""The warehouse seam: everything the Python layer runs on the dbt target after dbt compiled it.

dbt compiles every statement that carries feature logic (the point-in-time join, the
sync's fingerprints). What runs it is a :class:`Warehouse`: one open connection to the
target, with the few operations the training sets and the sync need, answered in Arrow:

* :meth:`Warehouse.fetch` / :meth:`Warehouse.batches`: run a SELECT, whole or streamed;
* :meth:`Warehouse.upload`: a DataFrame spine into a temporary table;
* :meth:`Warehouse.temp_table` / :meth:`Warehouse.temp_view`: name a SELECT for the
  statements that follow on the same connection;
* :meth:`Warehouse.spool`: a result into a Parquet file, streamed.

One implementation per engine family, chosen by the target's ``type`` in profiles.yml:

========== ========================================================================
duckdb     the DuckDB file, read-only, opened per read (:mod:`.duckdb`)
postgres   the ADBC PostgreSQL driver: COPY in binary, Arrow out (:mod:`.postgres`)
spark      a SparkSession on dbt-spark's ``session`` settings (:mod:`.spark`)
any other  the dbt adapter's own DB-API connection, rows into Arrow (:mod:`.dbapi`)
========== ========================================================================

Credentials come from profiles.yml as dbt renders them (:mod:`.profile`): there is no
second configuration. Nothing here imports dbt for a DuckDB target.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from feature_store.errors import WarehouseError
from feature_store.registry import Registry

__all__ = ["Warehouse", "open_warehouse"]

# The module and class for each engine family; every other adapter goes through DB-API.
_ENGINES = {"duckdb": ("duckdb", "DuckDBWarehouse"), "postgres": ("postgres", "PostgresWarehouse"),
            "spark": ("spark", "SparkWarehouse")}


class Warehouse:
    """One open connection to the target's warehouse. Use as a context manager.

    Hold it for one read: on DuckDB an open connection keeps a ``dbt build`` out (its
    single-writer lock), on the others it holds a server session and its temporary tables.
    """

    engine = "generic"

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def quote(self, name: str) -> str:
        """``name`` as a quoted identifier of this engine."""
        return '"' + name.replace('"', '""') + '"'

    def execute(self, sql: str) -> None:
        """Run a statement that returns nothing (or whose result is not wanted)."""
        raise NotImplementedError

    def fetch(self, sql: str) -> pa.Table:
        """The whole result of a SELECT."""
        raise NotImplementedError

    def batches(self, sql: str) -> Iterator[pa.RecordBatch]:
        """The result of a SELECT as record batches, streamed: memory stays bounded."""
        raise NotImplementedError

    def schema(self, sql: str) -> pa.Schema:
        """The columns of a SELECT's result, without reading its rows."""
        return self.fetch(f"SELECT * FROM ({sql}\n) AS __fs_q WHERE 1 = 0").schema

    def scalar(self, sql: str):
        """The first column of the first row of a SELECT."""
        table = self.fetch(sql)
        return table.column(0)[0].as_py() if table.num_rows else None

    def spine_row_number(self, time_expr: str) -> str:
        """Numbers a warehouse spine's rows: in the order they are read where the engine allows
        ``over ()`` (DuckDB, PostgreSQL), else in the order of their time."""
        return f"row_number() over (order by {time_expr})"

    def naive_utc(self, expr: str, arrow_type: pa.DataType) -> str:
        """``expr`` (a spine column read as ``arrow_type``) as a naive UTC timestamp; NULL where
        text is not a timestamp, on engines that can say so without failing the query."""
        if pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None:
            return f"({expr} AT TIME ZONE 'UTC')"
        if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
            return f"TRY_CAST({expr} AS TIMESTAMP)"
        return expr

    def upload(self, name: str, table: pa.Table) -> None:
        """``table`` as the temporary table ``name`` (a DataFrame spine)."""
        raise WarehouseError(
            f"a DataFrame spine cannot be loaded into a {self.engine} warehouse by fstore; pass the spine as a "
            "warehouse table name or a SELECT instead")

    def temp_table(self, name: str, sql: str) -> None:
        """Materialize a SELECT as the temporary table ``name`` for this connection."""
        self.execute(f"CREATE TEMPORARY TABLE {name} AS {sql}")

    def temp_view(self, name: str, sql: str) -> None:
        """Name a SELECT (not run yet) ``name`` for this connection, replacing any earlier one."""
        self.execute(f"CREATE OR REPLACE TEMPORARY VIEW {name} AS {sql}")

    def spool(self, sql: str, path: Path) -> int:
        """Write the result of a SELECT to the Parquet file ``path``, streamed; the rows written."""
        rows, writer = 0, None
        try:
            for batch in self.batches(sql):
                if writer is None:
                    writer = pq.ParquetWriter(path, batch.schema)
                writer.write_batch(batch)
                rows += batch.num_rows
            if writer is None:
                pq.write_table(self.schema(sql).empty_table(), path)
        finally:
            if writer is not None:
                writer.close()
        return rows

    def close(self) -> None:
        """Release the connection (and with it every temporary table)."""


def open_warehouse(registry: Registry, config: dict | None = None, *, wait: float = 0.0,
                   on_wait: Callable[[str], None] | None = None) -> Warehouse:
    """A connection to ``registry``'s dbt target, by the target's type.

    ``config``: engine settings (DuckDB: its config dict, e.g. ``{"memory_limit": "8GB"}``;
    ignored elsewhere). ``wait``/``on_wait``: on DuckDB, how long to wait for a ``dbt build``
    holding the file, and how to say so; elsewhere the server handles concurrent readers.
    """
    module_name, class_name = _ENGINES.get(registry.target.type, ("dbapi", "DbApiWarehouse"))
    module = importlib.import_module(f"feature_store.warehouse.{module_name}")
    return getattr(module, class_name).open(registry, config, wait=wait, on_wait=on_wait)
