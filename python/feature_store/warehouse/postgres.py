"""The PostgreSQL warehouse, through the ADBC PostgreSQL driver.

ADBC reads results with ``COPY ... TO STDOUT (FORMAT binary)`` straight into Arrow record
batches, and loads a DataFrame spine with ``COPY ... FROM STDIN``: no row passes through
Python objects either way (https://arrow.apache.org/adbc/current/driver/postgresql.html).

A connection reads inside one ``REPEATABLE READ`` transaction, so every statement of a
read (the sync's fingerprints and its point-in-time read) sees the same snapshot of the
data, as a read of the DuckDB file does; the transaction is rolled back at close, which
also drops the temporary tables. Session time zone UTC: a ``timestamptz`` spine column is
converted to UTC, naive timestamps are taken as UTC (docs/point-in-time.md).
"""

from __future__ import annotations

from typing import Callable, Iterator
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from feature_store.errors import WarehouseError
from feature_store.registry import Registry
from feature_store.warehouse import Warehouse
from feature_store.warehouse.profile import credentials

__all__ = ["PostgresWarehouse"]

# dbt-postgres credential fields that are libpq connection parameters of the same meaning.
_LIBPQ_FIELDS = ("sslmode", "sslcert", "sslkey", "sslrootcert", "application_name", "connect_timeout",
                 "keepalives_idle")


class PostgresWarehouse(Warehouse):
    """A libpq session on the target's database, opened with the dbt profile's credentials."""

    engine = "postgres"

    def spine_row_number(self, time_expr: str) -> str:
        return "row_number() over ()"  # the rows in the order they are read

    def __init__(self, con):
        self.con = con
        self.cur = con.cursor()

    @classmethod
    def open(cls, registry: Registry, config: dict | None = None, *, wait: float = 0.0,
             on_wait: Callable[[str], None] | None = None) -> "PostgresWarehouse":
        import adbc_driver_manager
        import adbc_driver_postgresql.dbapi

        creds = credentials(registry)
        try:
            con = adbc_driver_postgresql.dbapi.connect(libpq_uri(creds), autocommit=True)
        except adbc_driver_manager.Error as exc:
            raise WarehouseError(
                f"cannot connect to PostgreSQL at {creds.host}:{creds.port} as {creds.user} (target "
                f"{registry.target.name!r}): {_message(exc)}") from None
        warehouse = cls(con)
        try:
            warehouse.execute("SET TIME ZONE 'UTC'")
            warehouse.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        except BaseException:
            warehouse.close()
            raise
        return warehouse

    def execute(self, sql: str) -> None:
        self._run(sql)

    def batches(self, sql: str) -> Iterator[pa.RecordBatch]:
        self._run(sql)
        reader = self.cur.fetch_record_batch()
        for batch in reader:
            yield _decoded(batch)

    def fetch(self, sql: str) -> pa.Table:
        self._run(sql)
        table = self.cur.fetch_arrow_table()
        return pa.Table.from_batches([_decoded(b) for b in table.to_batches()], schema=_decoded_schema(table.schema))

    def naive_utc(self, expr: str, arrow_type: pa.DataType) -> str:
        if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
            return f"CAST({expr} AS TIMESTAMP)"  # no TRY_CAST: text that is no timestamp fails the check
        return super().naive_utc(expr, arrow_type)

    def upload(self, name: str, table: pa.Table) -> None:
        import adbc_driver_manager

        try:
            self.cur.adbc_ingest(name, table, mode="create", temporary=True)
        except adbc_driver_manager.Error as exc:
            raise WarehouseError(f"PostgreSQL: loading the spine failed: {_message(exc)}") from None
        # Fresh statistics: without them the planner guesses a 1,000-row spine is a huge one.
        self.execute(f"ANALYZE {name}")

    def temp_table(self, name: str, sql: str) -> None:
        self.execute(f"CREATE TEMPORARY TABLE {name} AS {sql}")
        self.execute(f"ANALYZE {name}")

    def close(self) -> None:
        try:
            self.cur.close()
        finally:
            self.con.close()  # an open transaction is rolled back

    def _run(self, sql: str) -> None:
        import adbc_driver_manager

        try:
            self.cur.execute(sql)
        except adbc_driver_manager.Error as exc:
            raise WarehouseError(f"PostgreSQL: {_message(exc)}") from None


def libpq_uri(creds) -> str:
    """A libpq connection URI from dbt-postgres credentials (the password percent-encoded)."""
    user = quote(str(creds.user), safe="")
    password = f":{quote(str(creds.password), safe='')}" if getattr(creds, "password", None) else ""
    params = [f"{field}={quote(str(getattr(creds, field)), safe='')}" for field in _LIBPQ_FIELDS
              if getattr(creds, field, None) not in (None, "", 0)]  # 0: the system default
    host = f"[{creds.host}]" if ":" in str(creds.host) else str(creds.host)
    query = ("?" + "&".join(params)) if params else ""
    return f"postgresql://{user}{password}@{host}:{int(creds.port)}/{quote(str(creds.database), safe='')}{query}"


def _message(exc: Exception) -> str:
    return str(exc).split("\n")[0]


def _numeric_type(field: pa.Field) -> pa.DataType | None:
    """The Arrow type a PostgreSQL ``numeric`` column is read as, else None.

    ADBC hands ``numeric`` over as text (an opaque extension type) since its range exceeds
    every Arrow decimal. A declared ``numeric(p, s)`` with p <= 38 becomes decimal128(p, s)
    exactly; an unconstrained ``numeric`` (what ``avg`` and ``sum`` of integers return)
    becomes float64, as DuckDB returns ``avg``.
    """
    meta = field.metadata or {}
    if meta.get(b"POSTGRESQL:type") != b"numeric":
        return None
    typmod = int(meta.get(b"POSTGRESQL:typmod", b"-1"))
    if typmod >= 4:
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        if 0 < precision <= 38:
            return pa.decimal128(precision, scale)
    return pa.float64()


def _decoded_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, _numeric_type(f) or f.type) for f in schema])


def _decoded(batch: pa.RecordBatch) -> pa.RecordBatch:
    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        target = _numeric_type(field)
        if target is not None:
            storage = column.storage if isinstance(column, pa.ExtensionArray) else column
            column = pc.cast(storage, target)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=_decoded_schema(batch.schema))
