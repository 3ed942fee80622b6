"""The read audit: who reads which feature, counted per day in Redis.

Every online read increments, in the same round trip as the read itself, one counter per
feature read: field ``<client>\\t<view>:<feature>`` of the hash ``<prefix>:__reads:<YYYY-MM-DD>``
(the UTC day), by the number of entity rows read. Day hashes expire after
:data:`RETENTION_DAYS`. ``fstore audit`` and ``fstore deprecations`` read them back.
"""

from __future__ import annotations

from datetime import date

# How long a day's counters are kept.
RETENTION_DAYS = 90


def reads_key(prefix: str, day: date) -> str:
    """The hash of ``day``'s read counters of the store with key ``prefix``."""
    return f"{prefix}:__reads:{day.isoformat()}"


def reads_field(client: str, ref: str) -> str:
    """The counter field of ``client`` reading feature ``ref`` (``view:feature``)."""
    return f"{client}\t{ref}"


def split_field(field: str) -> tuple[str, str]:
    """``(client, ref)`` of a counter field."""
    client, _, ref = field.rpartition("\t")
    return client, ref
