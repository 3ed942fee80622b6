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

Landed offline, the log is long: one row per (entry, feature), :func:`log_schema`, under
``<landing>/_fstore/serving_log/target=<dbt target>/date=YYYY-MM-DD/<first id>_<last id>.parquet``:
one folder per dbt target (each target has its own stream, and its own checkpoint), one per
UTC day the reads were served (``served_at``), which :func:`read_log` prunes to its window.

:func:`drain` moves the stream into those files, each entry exactly once however often it
is killed: the landed files are its checkpoint (docs/serving-log.md).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from feature_store.codec import from_micros
from feature_store.errors import FeatureStoreError, ManifestError, WarehouseError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from feature_store.online import OnlineStore

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


# A target name becomes a folder name, and a glob pattern in dbt (macros/landing.sql): none of these.
_NOT_IN_TARGET = re.compile(r"[/\\*?\[\]{}\x00-\x1f\x7f]")


def check_target(target: str) -> str:
    """``target`` (a dbt target name) if it can name its folder, ``target=<target>``; else ManifestError."""
    if not isinstance(target, str) or target in ("", ".", "..") or _NOT_IN_TARGET.search(target):
        raise ManifestError(f"the dbt target name {target!r} cannot name a folder of fstore's landed files "
                         "(target=<name>): it must be non-empty, not . or .., without / \\ * ? [ ] { } or "
                         "control characters")
    return target


def target_of(prefix: str) -> str | None:
    """The dbt target of a store prefix ``fs:<project>:<target>`` (OnlineStore.for_registry's), or None."""
    parts = prefix.split(":", 2)
    return parts[2] if len(parts) == 3 and parts[0] == "fs" and parts[1] and parts[2] else None


def fstore_dir(landing_dir: str | Path, name: str, target: str) -> Path:
    """``<landing>/_fstore/<name>/target=<target>``: fstore's own files of one kind for one dbt target."""
    return Path(landing_dir) / FSTORE_DIR / name / f"target={check_target(target)}"


def log_dir(landing_dir: str | Path, target: str) -> Path:
    """Where the serving log of dbt target ``target`` lands under the push landing folder."""
    return fstore_dir(landing_dir, LOG_DIR, target)


def day_folders(folder: Path, since: datetime | None = None, until: datetime | None = None) -> list[Path]:
    """The ``date=YYYY-MM-DD`` folders under ``folder`` whose UTC day overlaps ``[since, until)``, sorted
    (naive bounds are UTC; None: unbounded). Folders not named so are not fstore's: left out."""
    lo = _utc(since).date() if since is not None else None
    # The last day [since, until) reaches: the day of the instant just before until.
    hi = (_utc(until) - timedelta(microseconds=1)).date() if until is not None else None
    out = []
    for path in folder.glob("date=*"):
        try:
            day = date.fromisoformat(path.name[len("date="):])
        except ValueError:
            continue
        if path.is_dir() and (lo is None or day >= lo) and (hi is None or day <= hi):
            out.append(path)
    return sorted(out)


def landed_files(folder: Path, since: datetime | None = None, until: datetime | None = None) -> list[str]:
    """The Parquet files of the ``date=`` folders under ``folder`` that overlap ``[since, until)``, sorted."""
    return [str(p) for day in day_folders(folder, since, until) for p in sorted(day.glob("*.parquet"))]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


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


def read_log(landing_dir: str | Path, since: datetime | None = None, until: datetime | None = None, *,
             target: str) -> "pa.Table":
    """The serving log of dbt target ``target`` landed under ``landing_dir`` (:func:`log_schema`), the
    rows served in ``[since, until)`` (naive means UTC; None: unbounded).

    Reads only the ``date=`` folders of the days the window overlaps (the drain files each
    entry under the day it was served), and gives the window to the scan, which skips the
    row groups whose ``served_at`` statistics fall outside it.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    schema = log_schema()
    files = landed_files(log_dir(landing_dir, target), since, until)
    if not files:
        return schema.empty_table()
    served_at = ds.field("served_at")
    condition = None
    for bound, upper in ((since, False), (until, True)):
        if bound is not None:
            b = pa.scalar(_utc(bound), type=schema.field("served_at").type)
            c = served_at < b if upper else served_at >= b
            condition = c if condition is None else condition & c
    return ds.dataset(files, schema=schema, format="parquet").to_table(filter=condition)


# -- drain ----------------------------------------------------------------------------------

# The drain's lease: a lock among the sync's (OnlineStore.lock_key), under a name no dbt model has.
DRAIN_LOCK = "__serving_log_drain"
DRAIN_LEASE_MS = 30_000

_LANDED = re.compile(r"(\d+)-(\d+)_(\d+)-(\d+)")


class DrainLocked(FeatureStoreError):
    """Another drain of the same serving log holds its lease (or took it over from this one)."""


@dataclass
class DrainReport:
    """What one :func:`drain` landed: stream ``entries``, long ``rows`` (one per feature), ``files``.

    ``lost_warning`` says when the stream lost entries before any drain landed them (its cap,
    :data:`DEFAULT_MAXLEN`, trimmed them); ``skipped`` counts entries not in the log's format,
    trimmed without landing (nothing written by a read looks like that).
    """

    entries: int = 0
    rows: int = 0
    files: int = 0
    lost_warning: str | None = None
    skipped: int = 0


def _entry_id(text: str | bytes) -> tuple[int, int]:
    ms, _, seq = (text.decode() if isinstance(text, bytes) else text).partition("-")
    return int(ms), int(seq or 0)


def last_landed(landing_dir: str | Path, target: str) -> tuple[int, int] | None:
    """The id ``(ms, seq)`` of the last entry of dbt target ``target``'s serving log landed under
    ``landing_dir``, or None: where its drain resumes. Only that target's files count: each
    target has a stream of its own, whose ids say nothing of another's."""
    last = None
    for path in log_dir(landing_dir, target).glob("date=*/*.parquet"):
        m = _LANDED.fullmatch(path.stem)
        if m:
            end = (int(m.group(3)), int(m.group(4)))
            last = end if last is None or end > last else last
    return last


def drain(store: "OnlineStore", landing_dir: str | Path, *, target: str | None = None, batch: int = 10_000,
          on_progress: Callable[[DrainReport, Path], None] | None = None,
          before_landing: Callable[[DrainReport, Path], None] | None = None,
          lease_ms: int | None = None) -> DrainReport:
    """Move the serving log of ``store`` from its Redis stream into Parquet files under ``landing_dir``.

    The files land in the folder of the store's dbt ``target`` (default: the one its prefix
    ``fs:<project>:<target>`` names; ValueError if the prefix names another, or none and no
    ``target`` is given): ``serving_log/target=<target>/date=<day served>/``.

    Batches of up to ``batch`` entries are read after the last landed one (``XRANGE``), cut
    where the UTC day they were served changes, exploded to :func:`log_schema` rows, landed
    as one file each, all or nothing (``<first id>_<last id>.parquet``), and only then trimmed
    from the stream (``XTRIM MINID`` of the batch's last id, which stays until the next
    drain). The files are the checkpoint: a drain killed at any point leaves every entry
    landed once or still in the stream after the last landed one, and the next drain goes
    on from there. ``before_landing(report, path)`` is called once a batch is read, before
    its file is written; ``on_progress(report, path)`` after each landed file.

    One drain at a time: a second fails with :class:`DrainLocked` while the first holds its
    lease (``lease_ms``, default :data:`DRAIN_LEASE_MS`). The lease is renewed before each
    batch is read and again just before each file is renamed into place: a drain that
    stalled past its lease (and so may have been overtaken by another) stops with
    :class:`DrainLocked` without landing. (The renewal and the rename are two steps: a stall
    longer than the lease exactly between them can still land a batch twice, rows alike, ids
    included; docs/serving-log.md.) :class:`~feature_store.errors.OnlineStoreError` if
    Redis fails, :class:`~feature_store.errors.WarehouseError` if a file cannot be landed;
    either way rerunning is safe.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    lease = DRAIN_LEASE_MS if lease_ms is None else int(lease_ms)
    if lease < 1:
        raise ValueError(f"lease_ms must be at least 1, got {lease_ms}")
    named = target_of(store.prefix)
    if target is None:
        if named is None:
            raise ValueError(f"the store's prefix {store.prefix!r} is not fs:<project>:<target>: say which dbt "
                             "target its serving log is (drain(..., target=...))")
        target = named
    elif named is not None and named != target:
        raise ValueError(f"the store's prefix {store.prefix!r} is the serving log of dbt target {named!r}, not "
                         f"{target!r}: landing it under target={target} would mix the two")
    check_target(target)
    key = stream_key(store.prefix)
    token = uuid.uuid4().hex
    holder = store.try_lock(DRAIN_LOCK, token, lease)
    if holder is not None:
        raise DrainLocked(
            f"another drain of the serving log {key} is running (its lease {store.lock_key(DRAIN_LOCK)} is held); "
            f"let it finish, or if it died, run again once its lease has expired ({lease / 1000:g} s)")
    try:
        report = _drain_locked(store, key, token, lease, landing_dir, target, batch, on_progress, before_landing)
    except BaseException:
        # Why the drain stopped is the error to see, not Redis also failing the release (it is gone,
        # most likely, and then the lease runs out by itself).
        with contextlib.suppress(Exception):
            store.unlock(DRAIN_LOCK, token)
        raise
    store.unlock(DRAIN_LOCK, token)
    return report


def _drain_locked(store: "OnlineStore", key: str, token: str, lease: int, landing_dir: str | Path, target: str,
                  batch: int, on_progress: Callable[[DrainReport, Path], None] | None,
                  before_landing: Callable[[DrainReport, Path], None] | None) -> DrainReport:
    """:func:`drain` once it holds the lease ``token``."""
    from feature_store.landing import write_parquet_durably

    report = DrainReport()

    def keep_lease(landing: Path | None) -> None:
        if store.renew_lock(DRAIN_LOCK, token, lease):
            return
        stopped = f"stopped before landing {landing.name}" if landing is not None else "stopped"
        raise DrainLocked(
            f"this drain lost its lease on {store.lock_key(DRAIN_LOCK)} (it stalled for more than {lease / 1000:g} s, "
            f"and another drain may have taken over) and {stopped}; {report.files} file(s) were landed, the rest "
            "is still in the stream: run the drain again")

    position = last_landed(landing_dir, target)
    while True:
        keep_lease(None)
        since = position
        entries, lost = store.call("reading the serving log",
                                   lambda: _read_batch(store, key, since, batch))  # noqa: B023
        if lost and report.lost_warning is None:
            report.lost_warning = _lost_warning(key, position, landing_dir, target,
                                                entries[0][0] if entries else None)
        if not entries:
            return report
        entries, day = _one_day(entries)
        first, last = entries[0][0].decode(), entries[-1][0].decode()
        table, skipped = _explode(entries)
        path = log_dir(landing_dir, target) / f"date={day.isoformat()}" / f"{first}_{last}.parquet"
        if before_landing is not None:
            before_landing(report, path)
        try:
            # The lease once more, the file written and synced: renamed into place only by its holder.
            write_parquet_durably(table, path, before_replace=functools.partial(keep_lease, path))
        except OSError as exc:
            raise WarehouseError(
                f"cannot land the serving log in {path.parent}: {exc}; nothing of this batch was trimmed from "
                "Redis, so the next drain lands it. Check that the landing folder is writable and has space") \
                from None
        report.entries += len(entries)
        report.rows += table.num_rows
        report.files += 1
        report.skipped += skipped
        position = _entry_id(last)
        # Everything before the batch's last entry: landed now, or by an earlier drain.
        store.call("trimming the serving log", lambda: store.client.xtrim(key, minid=last, approximate=False))  # noqa: B023
        if on_progress is not None:
            on_progress(report, path)


def _read_batch(store: "OnlineStore", key: str, position: tuple[int, int] | None,
                batch: int) -> tuple[list, bool]:
    """Up to ``batch`` entries after ``position``, and whether the stream lost entries after it that
    no drain read.

    A drain keeps the last entry it landed in the stream (it trims only before it), so the
    read starts *at* it: finding it first proves, in the same command, that nothing after
    it was trimmed. Not finding it means the stream's cap trimmed past it (or Redis lost the
    stream). Before the first drain, XINFO tells: more entries added than held (Redis 7+).
    """
    if position is None:
        pipe = store.client.pipeline(transaction=False)
        pipe.xinfo_stream(key)
        pipe.xrange(key, min="-", max="+", count=batch)
        info, entries = pipe.execute(raise_on_error=False)
        if isinstance(entries, Exception):
            raise entries
        if isinstance(info, Exception):
            if "no such key" in str(info):
                return entries, False
            raise info
        added = info.get("entries-added")
        return entries, added is not None and int(added) > int(info.get("length", 0))
    found: Any = store.client.xrange(key, min=f"{position[0]}-{position[1]}", max="+", count=batch + 1)
    if found and _entry_id(found[0][0]) == position:
        return found[1:], False
    return found[:batch], bool(found)


def _lost_warning(key: str, position: tuple[int, int] | None, landing_dir: str | Path, target: str,
                  first: bytes | None) -> str:
    cap = f"its cap (about {DEFAULT_MAXLEN:,} entries, XADD MAXLEN ~)"
    until = f" and before {first.decode()}" if first else ""
    if position is None:
        what = (f"no serving log has landed under {log_dir(landing_dir, target)} yet, and Redis already trimmed {key} "
                f"at {cap}: the entries logged before {first.decode() if first else 'its first'} were never drained "
                "(or the landed files were removed)")
    else:
        what = (f"{key} no longer holds the last landed entry {position[0]}-{position[1]}: the entries logged after "
                f"it{until} were lost, trimmed at {cap} before a drain landed them (or Redis lost its data)")
    return f"the serving log lost entries: {what}. Drain more often, or lower the views' log_sample_rate"


def _day(entry: tuple[int, int]) -> date:
    return from_micros(entry[0] * 1000).date()


def _served_day(served_at: Any) -> date | None:
    """The UTC day of a ``served_at`` (µs since the epoch, as text), or None if it is not one."""
    try:
        return from_micros(int(served_at)).date()
    except (TypeError, ValueError, OverflowError):
        return None


def _one_day(entries: list) -> tuple[list, date]:
    """The leading entries served on one UTC day (``served_at``), and that day: one file, one
    date= folder, so that :func:`read_log` finds every row of a window in the folders of its days.

    Entries not in the log's format land no row: they go with the entries around them. A
    batch of nothing else is filed under the day Redis logged its first entry.
    """
    day = None
    for i, (_, fields) in enumerate(entries):
        served = _served_day(fields.get(b"served_at"))
        if served is None:
            continue
        if day is None:
            day = served
        elif served != day:
            return entries[:i], day
    return entries, day if day is not None else _day(_entry_id(entries[0][0]))


def _explode(entries: list) -> tuple["pa.Table", int]:
    """Stream entries as :func:`log_schema` rows, one per feature; entries not in the format are skipped."""
    import pyarrow as pa

    schema = log_schema()
    columns: dict[str, list] = {name: [] for name in schema.names}
    skipped = 0
    for raw_id, raw in entries:
        try:
            f = {k.decode(): v.decode() for k, v in raw.items()}
            features, values, statuses = (json.loads(f[k]) for k in ("features", "values", "statuses"))
            if not (isinstance(features, list) and len(features) == len(values) == len(statuses)):
                raise ValueError("features, values and statuses differ in length")
            served_at = int(f["served_at"])
            if _served_day(served_at) is None:  # beyond what a date= folder can name
                raise ValueError(f"served_at {served_at} is out of range")
            event_ts = int(f["event_ts"]) if f["event_ts"] else None
            client, view, entity = f["client"], f["view"], f["entity"]
        except (KeyError, ValueError, TypeError, UnicodeDecodeError):
            skipped += 1
            continue
        entry_id = raw_id.decode()
        for name, value, status in zip(features, values, statuses, strict=True):
            columns["id"].append(entry_id)
            columns["served_at"].append(served_at)
            columns["client"].append(client)
            columns["view"].append(view)
            columns["entity"].append(entity)
            columns["event_ts"].append(event_ts)
            columns["feature"].append(str(name))
            columns["value"].append(None if value is None else str(value))
            columns["status"].append(str(status))
    arrays = []
    for field in schema:
        if pa.types.is_timestamp(field.type):
            arrays.append(pa.array(columns[field.name], pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(columns[field.name], field.type))
    return pa.Table.from_arrays(arrays, schema=schema), skipped
