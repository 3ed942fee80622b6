"""The serving log: a sample of what online reads served, in Redis and then offline.

Online reads (in-process and over HTTP) sample what they served, per feature view at the
view's ``log_sample_rate`` (meta; default :data:`DEFAULT_SAMPLE_RATE`), and append one
entry per sampled (view, entity row) to a capped Redis Stream, ``<prefix>:__serving_log``.
``fstore monitor`` drains the stream into Parquet files under the push landing folder,
which dbt reads as a source (the macro ``feature_store.serving_log``) and monitors query
with SQL.

A stream entry's fields (all text, readable in ``redis-cli XRANGE``):

==============  ==========================================================================
field           value
==============  ==========================================================================
``served_at``   when the read was served, integer microseconds since the epoch (UTC)
``client``      the client's name (``FeatureStore(client=...)``, ``$FEATURE_STORE_CLIENT``,
                or the HTTP token's name)
``view``        the feature view
``entity``      the entity's join keys as a JSON object, keys sorted: ``{"user_id":42}``
``event_ts``    the served row's event timestamp (µs since the epoch, UTC); empty if none
``features``    JSON list of the feature names read from the view
``values``      JSON list of the values served, as text (:func:`value_text`) or null
``statuses``    JSON list of the statuses (``PRESENT``, ``IMPUTED``, ...)
==============  ==========================================================================

Landed offline, the log is long: one row per (entry, feature), :data:`LOG_SCHEMA`, under
``<landing>/_fstore/serving_log/date=YYYY-MM-DD/<first id>_<last id>.parquet``.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

# The share of (view, entity row) reads logged when a view's meta does not say.
DEFAULT_SAMPLE_RATE = 0.01
# The stream is capped (XADD MAXLEN ~): a drain that falls this far behind loses the oldest.
DEFAULT_MAXLEN = 100_000

# Our own files under the push landing folder; a view cannot be named this (a leading _ and
# a folder name dbt never gives a model), so it never meets a view's pushed rows.
FSTORE_DIR = "_fstore"
LOG_DIR = "serving_log"


def stream_key(prefix: str) -> str:
    """The Redis Stream of the serving log of the store with key ``prefix``."""
    return f"{prefix}:__serving_log"


def log_dir(landing_dir: str | Path) -> Path:
    """Where drained serving-log files land under the push landing folder."""
    return Path(landing_dir) / FSTORE_DIR / LOG_DIR


def value_text(value: Any) -> str | None:
    """A served value as the log's text: numbers as Python prints them, timestamps in ISO
    form, booleans ``true``/``false``, None as None. SQL casts it back (``value::double``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def log_schema() -> "pa.Schema":
    """The landed serving log: one row per served feature value."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema([
        ("id", pa.string()),          # the stream entry id, "<ms>-<seq>": unique per entry
        ("served_at", ts),
        ("client", pa.string()),
        ("view", pa.string()),
        ("entity", pa.string()),      # JSON object of the join keys
        ("event_ts", ts),
        ("feature", pa.string()),
        ("value", pa.string()),
        ("status", pa.string()),
    ])


def read_log(landing_dir: str | Path, since: datetime | None = None, until: datetime | None = None) -> "pa.Table":
    """The landed serving log (:func:`log_schema`), rows served in ``[since, until)`` (UTC)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    schema = log_schema()
    files = sorted(str(p) for p in log_dir(landing_dir).glob("date=*/*.parquet"))
    if not files:
        return schema.empty_table()
    table = ds.dataset(files, schema=schema, format="parquet").to_table()
    mask = None
    for bound, op in ((since, "greater_equal"), (until, "less")):
        if bound is not None:
            b = bound if bound.tzinfo else bound.replace(tzinfo=timezone.utc)
            m = getattr(pc, op)(table["served_at"], pa.scalar(b, type=schema.field("served_at").type))
            mask = m if mask is None else pc.and_(mask, m)
    return table.filter(mask) if mask is not None else table
