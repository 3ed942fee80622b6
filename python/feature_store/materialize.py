"""Sync (materialization): the latest row per entity of the online views, from the warehouse into Redis.

For each view, :func:`sync` asks the warehouse for the latest row per entity as of
``now`` (:func:`feature_store.offline.snapshot`: the point-in-time macro, so online
values come from the one definition), streams it as Arrow batches, and writes them
with the never-regress script (:mod:`feature_store.writer`), so a re-run, an
out-of-order run or a backfill never replaces a value with an older one.

Incremental by default: after a view is fully written, its *watermark* (the ``now``
of that sync) is stored in Redis; the next sync reads only entities with rows created
or changed after it. ``full_refresh`` ignores the watermark. ``start``/``end`` backfill
a time range in chunks, with a checkpoint after each chunk, so an interrupted
backfill resumes where it stopped. Nothing is advanced before Redis has acknowledged
every row it covers: a sync killed at any point and run again ends in the same state
as one clean run.

The library never prints: pass ``progress(view, rows_done, rows_total_or_None)``
and read the returned :class:`SyncReport`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from feature_store.errors import UnknownFeatureView
from feature_store.online import OnlineStore, WriteResult
from feature_store.registry import FeatureView, Registry, parse_duration

__all__ = ["SyncReport", "ViewReport", "select_views", "sync"]

Progress = Callable[[str, int, "int | None"], None]
# (registry, view_name, as_of, since, batch_rows) -> (RecordBatchReader, something with .close())
Source = Callable[..., tuple[Any, Any]]

SAMPLE_ROWS = 5


@dataclass
class ViewReport:
    """What the sync did for one view."""

    view: str
    rows_read: int = 0  # latest-row-per-entity rows read from the warehouse
    keys_written: int = 0  # keys written (in a dry run: that would be written)
    skipped_older: int = 0  # Redis already held a row at least as new
    expired_on_arrival: int = 0  # older than the ttl already: not written
    seconds: float = 0.0
    mode: str = "incremental"  # "incremental", "full" or "backfill"
    since: datetime | None = None  # rows changed after this were read (None: all)
    as_of: datetime | None = None  # the latest row per entity as of this time
    chunks: int = 0  # chunks synced in this run (a backfill has one per chunk)
    sample: list[dict] = field(default_factory=list)  # dry run: some rows that would be written

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0

    def _add(self, result: WriteResult) -> None:
        self.keys_written += result.written
        self.skipped_older += result.skipped_older
        self.expired_on_arrival += result.expired_on_arrival


@dataclass
class SyncReport:
    """The summary of one :func:`sync`: per view, and totals."""

    views: dict[str, ViewReport]
    now: datetime
    dry_run: bool = False
    seconds: float = 0.0

    @property
    def rows_read(self) -> int:
        return sum(v.rows_read for v in self.views.values())

    @property
    def keys_written(self) -> int:
        return sum(v.keys_written for v in self.views.values())

    @property
    def skipped_older(self) -> int:
        return sum(v.skipped_older for v in self.views.values())

    @property
    def expired_on_arrival(self) -> int:
        return sum(v.expired_on_arrival for v in self.views.values())

    def to_dict(self) -> dict:
        """Plain data (datetimes as ISO text), e.g. for ``fstore sync --json``.

        ``{"now", "dry_run", "views": [{"view", "rows_read", ...}], "total": {...}, "sample": [...]}``
        """
        def clean(value):
            if isinstance(value, datetime):
                return value.isoformat(sep=" ")
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        views = []
        for v in self.views.values():
            data = clean(asdict(v))
            data.pop("sample")
            views.append(data)
        totals = {k: getattr(self, k) for k in ("rows_read", "keys_written", "skipped_older", "expired_on_arrival")}
        sample = [{"view": v.view, **clean(row)} for v in self.views.values() for row in v.sample]
        return {"now": clean(self.now), "dry_run": self.dry_run, "views": views,
                "total": {**totals, "seconds": self.seconds}, "sample": sample}


def select_views(registry: Registry, views: Iterable[str] | None = None, select: str | None = None) -> list[FeatureView]:
    """The views a sync covers: ``views`` by name (online or not), plus the online views ``select`` matches.

    ``select`` takes dbt-like terms separated by spaces or commas: ``tag:<tag>``,
    ``owner:<owner>`` or a view name. Without either argument: every ``online: true`` view.
    """
    chosen: dict[str, FeatureView] = {}
    for name in views or ():
        view = registry.view(name)
        chosen[view.name] = view
    online = [v for v in sorted(registry.views.values(), key=lambda v: v.name) if v.online]
    if select:
        for term in select.replace(",", " ").split():
            method, _, value = term.partition(":")
            if not value:
                view = registry.view(term)  # a bare name: explicit, so an offline-only view is allowed
                chosen[view.name] = view
                continue
            if method == "tag":
                matched = [v for v in online if value in v.tags]
                known = sorted({t for v in online for t in v.tags})
            elif method == "owner":
                matched = [v for v in online if v.owner == value]
                known = sorted({v.owner for v in online if v.owner})
            else:
                raise UnknownFeatureView(f"cannot select {term!r}: use tag:<tag>, owner:<owner> or a view name")
            if not matched:
                raise UnknownFeatureView(
                    f"no online feature view matches {term!r}; {method}s of online views: {', '.join(known) or 'none'}")
            chosen.update((v.name, v) for v in matched)
    elif not views:
        chosen = {v.name: v for v in online}
    return list(chosen.values())


def _naive_utc(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def sync(
    registry: Registry,
    store: OnlineStore,
    *,
    views: Iterable[str] | None = None,
    select: str | None = None,
    full_refresh: bool = False,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Progress | None = None,
    batch_rows: int = 10_000,
    chunk: timedelta | str = timedelta(days=1),
    source: Source | None = None,
) -> SyncReport:
    """Write the latest value per entity of the selected views into Redis; see the module docstring.

    ``now`` (default: the clock; naive means UTC) is the time the values are taken as
    of. ``start``/``end`` backfill the rows changed in that range, ``chunk`` at a time.
    ``dry_run`` reads and counts (Redis tells what it would skip) but writes nothing.
    ``source`` replaces :func:`feature_store.offline.snapshot` (tests, or a push
    API feeding its own batches). ``batch_rows`` is small so that Redis starts on the
    first rows while the next batch is encoded (larger batches leave it idle longer at
    the start of each view and gain nothing: encoding is column-wise either way).
    """
    began = time.perf_counter()
    now = _naive_utc(now) or datetime.now(timezone.utc).replace(tzinfo=None)
    start, end = _naive_utc(start), _naive_utc(end)
    chunk = parse_duration(chunk) if isinstance(chunk, str) else chunk
    if start is not None and end is None:
        end = now
    if start is not None and start >= end:
        raise ValueError(f"backfill start {start} is not before end {end}")
    if chunk <= timedelta(0):
        raise ValueError(f"chunk must be a positive duration, got {chunk}")
    chosen = select_views(registry, views, select)
    if source is None:
        from feature_store.snapshot import snapshot as source  # duckdb: only when syncing from the warehouse
    store.ping()  # fail before any warehouse work when Redis is unreachable

    report = SyncReport(views={}, now=now, dry_run=dry_run)
    jobs: list[_Job] = []
    for view in chosen:
        vr = report.views[view.name] = ViewReport(view.name)
        windows = _windows(store, view, vr, now=now, start=start, end=end, chunk=chunk, full_refresh=full_refresh)
        if windows:
            vr.since, vr.as_of = windows[0][0], windows[-1][1]
        jobs += [_Job(view, vr, since, as_of, label) for since, as_of, label in windows]
    _run(registry, store, jobs, source, dry_run=dry_run, progress=progress, batch_rows=batch_rows)
    report.seconds = time.perf_counter() - began
    return report


def _windows(store: OnlineStore, view: FeatureView, vr: ViewReport, *, now, start, end, chunk, full_refresh):
    """The (since, as_of, checkpoint label) windows to read, oldest first."""
    if end is not None:  # backfill
        vr.mode = "backfill"
        label = f"{start.isoformat(sep=' ') if start else '-'}/{end.isoformat(sep=' ')}"
        if start is None:
            return [(None, end, label)]
        done = None if full_refresh else store.get_checkpoint(view.name, label)
        out, lo = [], start
        while lo < end:
            hi = min(lo + chunk, end)
            if done is None or hi > done:
                out.append((lo, hi, label))
            lo = hi
        return out
    if full_refresh:
        vr.mode = "full"
        return [(None, now, None)]
    return [(store.get_watermark(view.name), now, None)]


@dataclass
class _Job:
    """One snapshot read and written: a view's incremental window, or one backfill chunk."""

    view: FeatureView
    report: ViewReport
    since: datetime | None
    as_of: datetime
    label: str | None  # backfill checkpoint label; None for the incremental watermark


class _Opened:
    """A job's snapshot, opened and its first batch fetched (so the warehouse has done its work)."""

    def __init__(self, registry, job: _Job, source: Source, batch_rows: int):
        self.reader, self.connection = source(registry, job.view.name, as_of=job.as_of, since=job.since,
                                              batch_rows=batch_rows)
        self.total = getattr(self.reader, "total_rows", None)  # None: the source cannot tell
        try:
            self.batches = iter(self.reader)
            self.first = next(self.batches, None)
        except BaseException:
            self.connection.close()
            raise

    def __iter__(self):
        if self.first is not None:
            yield self.first
            self.first = None
            yield from self.batches


def _run(registry, store, jobs: list[_Job], source: Source, *, dry_run, progress, batch_rows) -> None:
    done: dict[str, int] = {}
    opened: _Opened | None = None
    try:
        for i, job in enumerate(jobs):
            began = time.perf_counter()
            current, opened = opened or _Opened(registry, job, source, batch_rows), None
            vr = job.report
            total = None if current.total is None else done.get(vr.view, 0) + current.total
            failed_next: BaseException | None = None
            try:
                with store.writer(job.view, dry_run=dry_run) as writer:
                    for batch in current:
                        vr.rows_read += batch.num_rows
                        if dry_run and len(vr.sample) < SAMPLE_ROWS:
                            vr.sample += _sample(store, job.view, batch, SAMPLE_ROWS - len(vr.sample))
                        writer.submit(batch)
                        _acknowledge(writer, vr, progress, done, total)
                    # Everything is read: free this query's memory, and let the warehouse compute
                    # the next snapshot while Redis works through the rest of this one.
                    current.connection.close()
                    if i + 1 < len(jobs):
                        try:
                            opened = _Opened(registry, jobs[i + 1], source, batch_rows)
                        except Exception as exc:  # finish this job's bookkeeping first
                            failed_next = exc
                _acknowledge(writer, vr, progress, done, total)
            finally:
                current.connection.close()
            vr.chunks += 1
            if not dry_run:
                # Every row of the window is acknowledged: only now may the next run skip it.
                if job.label is not None:
                    store.set_checkpoint(job.view.name, job.label, job.as_of)
                else:
                    old = store.get_watermark(job.view.name)
                    store.set_watermark(job.view.name, max(job.as_of, old) if old else job.as_of)
            vr.seconds += time.perf_counter() - began
            if failed_next is not None:
                raise failed_next
    finally:
        if opened is not None:
            opened.connection.close()


def _acknowledge(writer, vr: ViewReport, progress: Progress | None, done: dict[str, int],
                 total: int | None) -> None:
    for result in writer.acknowledged():
        vr._add(result)
        done[vr.view] = done.get(vr.view, 0) + result.rows
        if progress is not None:
            progress(vr.view, done[vr.view], total)


def _sample(store: OnlineStore, view: FeatureView, batch, limit: int) -> list[dict]:
    """A few rows of ``batch`` as they would be written: the key and the field values."""
    out = []
    for row in batch.slice(0, limit * 4).to_pylist():
        if row.get("__event_ts") is None:
            continue
        out.append({"key": store.key(view, row), **{f.name: row.get(f.name) for f in view.features},
                    "__event_ts": row["__event_ts"], "__created_ts": row.get("__created_ts")})
        if len(out) >= limit:
            break
    return out
