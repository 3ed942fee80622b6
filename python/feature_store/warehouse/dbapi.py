"""Any other dbt adapter: its own DB-API connection, rows fetched in batches into Arrow.

The connection is the one dbt opens for a build: the adapter's connection manager,
given the profile's credentials. So every engine dbt reaches (Snowflake, BigQuery,
Trino, Databricks, ...) is reachable here without a driver of ours. It is the slow
path: rows pass through Python tuples (``fetchmany``), and a DataFrame spine cannot be
bulk-loaded (pass the spine as a warehouse table or SELECT).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pyarrow as pa

from feature_store.errors import WarehouseError
from feature_store.registry import Registry
from feature_store.warehouse import Warehouse
from feature_store.warehouse.profile import credentials

__all__ = ["DbApiWarehouse"]

BATCH_ROWS = 10_000


class DbApiWarehouse(Warehouse):
    """A DB-API connection opened by the target's dbt adapter."""

    def __init__(self, connection: Any, adapter_class: Any, engine: str):
        self.connection = connection  # dbt's Connection; .handle is the DB-API connection
        self.adapter_class = adapter_class
        self.engine = engine

    @classmethod
    def open(cls, registry: Registry, config: dict | None = None, *, wait: float = 0.0,
             on_wait: Callable[[str], None] | None = None) -> "DbApiWarehouse":
        from dbt.adapters.contracts.connection import Connection, ConnectionState
        from dbt.adapters.factory import get_adapter_class_by_name

        creds = credentials(registry)
        adapter_class = get_adapter_class_by_name(registry.target.type)
        connection = Connection(type=creds.type, name="fstore", state=ConnectionState.INIT, transaction_open=False,
                                handle=None, credentials=creds)
        try:
            connection = adapter_class.ConnectionManager.open(connection)
        except Exception as exc:  # noqa: BLE001 - each adapter raises its own driver's errors
            raise WarehouseError(f"the {registry.target.type} adapter could not connect (target "
                                 f"{registry.target.name!r}): {exc}") from None
        if connection.state != ConnectionState.OPEN:
            raise WarehouseError(f"the {registry.target.type} adapter could not connect (target "
                                 f"{registry.target.name!r})")
        return cls(connection, adapter_class, registry.target.type)

    def quote(self, name: str) -> str:
        return self.adapter_class.quote(name)

    def execute(self, sql: str) -> None:
        cursor = self._cursor(sql)
        cursor.close()

    def fetch(self, sql: str) -> pa.Table:
        batches = list(self.batches(sql))
        return pa.Table.from_batches(batches) if batches else self.schema(sql).empty_table()

    def batches(self, sql: str) -> Iterator[pa.RecordBatch]:
        cursor = self._cursor(sql)
        try:
            names = [d[0] for d in cursor.description]
            while True:
                try:
                    rows = cursor.fetchmany(BATCH_ROWS)
                except Exception as exc:  # noqa: BLE001
                    raise WarehouseError(f"{self.engine}: {exc}") from None
                if not rows:
                    return
                yield pa.RecordBatch.from_pydict({n: [r[i] for r in rows] for i, n in enumerate(names)})
        finally:
            cursor.close()

    def schema(self, sql: str) -> pa.Schema:
        # Types from values: a result without rows has only names here, typed as NULL columns.
        cursor = self._cursor(f"SELECT * FROM ({sql}\n) AS __fs_q WHERE 1 = 0")
        try:
            return pa.schema([(d[0], pa.null()) for d in cursor.description])
        finally:
            cursor.close()

    def close(self) -> None:
        handle = self.connection.handle
        if handle is not None:
            handle.close()

    def _cursor(self, sql: str):
        cursor = self.connection.handle.cursor()
        try:
            cursor.execute(sql)
        except Exception as exc:  # noqa: BLE001 - the driver's own error types
            cursor.close()
            raise WarehouseError(f"{self.engine}: {exc}") from None
        return cursor
