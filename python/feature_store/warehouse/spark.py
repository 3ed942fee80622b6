"""The Spark warehouse: a SparkSession built the way dbt-spark's ``session`` method builds it.

The session gets Hive support and every ``server_side_parameters`` entry of the target
(where tables and the metastore live, the master, the time zone), so it sees the tables
``dbt build --target <spark target>`` made. Results come back with ``DataFrame.toArrow()``
and a DataFrame spine goes in with ``createDataFrame(pyarrow.Table)``, both public in
PySpark 4 (https://spark.apache.org/docs/latest/api/python/reference/pyspark.sql/api/pyspark.sql.DataFrame.toArrow.html).

A Spark JVM takes seconds to start, so the session is made once per process and kept;
closing a :class:`SparkWarehouse` drops only its temporary views. Settings take effect only
when the JVM starts: a process that already runs a SparkSession with other settings keeps
them. Relative paths in the settings resolve against the dbt project directory, as they do
for dbt, which runs there. With an embedded Derby metastore (the default), one process at a
time may open it: the process holding a session keeps it until it exits, so run ``dbt
build`` and the Python reads one after another.

Other dbt-spark methods (thrift, http, odbc) reach a remote server through the generic
DB-API path (:mod:`feature_store.warehouse.dbapi`).
"""

from __future__ import annotations

from contextlib import chdir
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa

from feature_store.errors import WarehouseError
from feature_store.registry import Registry
from feature_store.warehouse import Warehouse
from feature_store.warehouse.profile import credentials

__all__ = ["SparkWarehouse"]

_sessions: dict[tuple, Any] = {}


class SparkWarehouse(Warehouse):
    """The process's SparkSession for the target; temporary views are dropped at close."""

    engine = "spark"

    def __init__(self, session: Any):
        self.session = session
        self._views: list[str] = []

    @classmethod
    def open(cls, registry: Registry, config: dict | None = None, *, wait: float = 0.0,
             on_wait: Callable[[str], None] | None = None) -> Warehouse:
        creds = credentials(registry)
        method = str(getattr(creds, "method", ""))
        if method != "session":
            from feature_store.warehouse.dbapi import DbApiWarehouse

            return DbApiWarehouse.open(registry, config, wait=wait, on_wait=on_wait)
        parameters = {str(k): str(v) for k, v in (creds.server_side_parameters or {}).items()}
        key = (str(registry.project_dir), tuple(sorted(parameters.items())))
        if key not in _sessions:
            _sessions[key] = _start_session(registry.project_dir, parameters)
        return cls(_sessions[key])

    def quote(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def execute(self, sql: str) -> None:
        self._sql(sql)

    def fetch(self, sql: str) -> pa.Table:
        try:
            table = self._sql(sql).toArrow()
        except Exception as exc:  # noqa: BLE001 - py4j and Spark raise several error types
            raise WarehouseError(f"Spark: {_message(exc)}") from None
        return _naive_utc(table)

    def batches(self, sql: str) -> Iterator[pa.RecordBatch]:
        # toArrow() collects the result in the driver: bounded by the sync reading entities in
        # chunks of snapshot.PARTITION_KEYS, not streamed batch by batch.
        yield from self.fetch(sql).to_batches()

    def upload(self, name: str, table: pa.Table) -> None:
        try:
            self.session.createDataFrame(table).createOrReplaceTempView(name)
        except Exception as exc:  # noqa: BLE001
            raise WarehouseError(f"Spark: loading the spine failed: {_message(exc)}") from None
        self._views.append(name)

    def temp_table(self, name: str, sql: str) -> None:
        # Cached: the statements that follow read it several times (count, then per chunk).
        self._sql(f"CACHE TABLE {name} AS {sql}")
        self._views.append(name)

    def temp_view(self, name: str, sql: str) -> None:
        self._sql(f"CREATE OR REPLACE TEMPORARY VIEW {name} AS {sql}")
        self._views.append(name)

    def naive_utc(self, expr: str, arrow_type: pa.DataType) -> str:
        # Spark's TIMESTAMP is an instant shown in the session time zone (UTC here): the
        # cast to a naive timestamp keeps the UTC wall time; text that is no time gives NULL.
        return f"try_cast({expr} AS TIMESTAMP_NTZ)"

    def close(self) -> None:
        for name in dict.fromkeys(reversed(self._views)):
            self.session.catalog.dropTempView(name)
        self._views.clear()

    def _sql(self, sql: str):
        try:
            return self.session.sql(sql)
        except Exception as exc:  # noqa: BLE001
            raise WarehouseError(f"Spark: {_message(exc)}") from None


def _start_session(project_dir: Path, parameters: dict[str, str]):
    """A Hive-enabled SparkSession with ``parameters``, its JVM started in ``project_dir``."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise WarehouseError("the spark target needs PySpark: pip install 'feature-store[spark]'") from None
    builder = SparkSession.builder.enableHiveSupport()
    for name, value in parameters.items():
        builder = builder.config(name, value)
    with chdir(project_dir):  # the JVM resolves relative paths against its start directory
        try:
            return builder.getOrCreate()
        except Exception as exc:  # noqa: BLE001 - a JVM that cannot start raises several kinds
            raise WarehouseError(f"Spark could not start: {_message(exc)}") from None


def _naive_utc(table: pa.Table) -> pa.Table:
    """Spark's TIMESTAMP columns (UTC instants) as naive UTC timestamps, as every engine returns them."""
    fields = [pa.field(f.name, pa.timestamp(f.type.unit)) if pa.types.is_timestamp(f.type) and f.type.tz else f
              for f in table.schema]
    return table.cast(pa.schema(fields)) if fields != list(table.schema) else table


def _message(exc: Exception) -> str:
    return str(exc).strip().split("\n")[0]
