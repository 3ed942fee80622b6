"""Sync (materialization): the latest row per entity of the online views, from the warehouse into Redis.

The promise is that an incremental sync is exactly as correct as a full refresh: after
any sequence of ``dbt build``\\s and syncs, the first sync that starts after the last
build has finished leaves Redis holding what the point-in-time join returns at its
as-of time, for every entity of every online view. How each view's sync keeps it:

1. **One sync of a view at a time.** The sync takes the view's lock in Redis (a key
   with a lease, renewed while it runs); a second sync waits for it (``wait``) or
   fails that view. Every write call carries the lock's token and is refused once the
   token is no longer the lock's value, so a sync whose lock vanished (Redis flushed,
   restarted, failed over) or expired can never write behind a newer one.
2. **Decide what to read, from proofs only.** The last finished sync left its state
   in Redis: its as-of time, the view's definition digest (:func:`definition_digest`),
   the warehouse fingerprints it read (:mod:`feature_store.snapshot`), and the
   server's run id and eviction count. The view is read in full when any of these
   says the last sync proves nothing (never synced, definition changed, Redis
   restarted, failed over or evicted keys since, ``full_refresh``); otherwise only the
   entities whose rows may have changed are read.
3. **Write under the write rule** (:mod:`feature_store.writer`): never an older version;
   the same version with other content replaces; unchanged rows cost Redis one
   ``HMGET``. A full read is therefore cheap where little changed.
4. **Record the state only if Redis kept everything.** The server must report the
   same run id and no new evictions after the writes, and the state is written only
   while the lock still holds this sync's token. Otherwise the view fails, and the
   next sync reads it in full.

The next view is read from the warehouse while one is written to Redis (one view
ahead, in one background thread). Each view succeeds or fails on its own: a failure is
recorded on its :class:`ViewReport` (``error``, one line) and the sync goes on with the
next view.
``start``/``end`` backfill the rows changed in a time range in chunks, with a checkpoint
after each chunk, so an interrupted backfill resumes where it stopped.

The library never prints: pass ``progress(view, rows_done, rows_total_or_None)`` and
``on_wait(message)``, and read the returned :class:`SyncReport`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

import pyarrow as pa

from feature_store.codec import EVENT_TS, naive_utc
from feature_store.connection import is_cluster
from feature_store.errors import FeatureStoreError, OnlineStoreError, UnknownFeatureView
from feature_store.online import OnlineStore, ServerFacts
from feature_store.registry import FeatureView, Registry, parse_duration
from feature_store.writelag import LagRecorder
from feature_store.writer import BatchWriter, WriteResult, definition_digest, lock_lost

__all__ = ["SyncReport", "ViewReport", "definition_digest", "select_views", "sync"]

Progress = Callable[[str, int, "int | None"], None]
# (registry, view_name, *, as_of, since, previous, batch_rows, wait, on_wait) -> a reader
# like feature_store.snapshot.SnapshotReader: iterable of batches, total_rows, fingerprints, plan, close().
Source = Callable[..., Any]

SAMPLE_ROWS = 5
CLUSTER_BATCH_FACTOR = 10
@dataclass
class ViewReport:
    """What the sync did for one view."""

    view: str
    rows_read: int = 0  # latest-row-per-entity rows read from the warehouse
    keys_written: int = 0  # keys written (in a dry run: that would be written)
    skipped_older: int = 0  # Redis already held a newer version
    unchanged: int = 0  # Redis already held this version with this content
    expired_on_arrival: int = 0  # older than the ttl already: not written
    # The view's own time, read and write. The next view is read while this one writes, so the
    # views' seconds add up to more than the sync's.
    seconds: float = 0.0
    read_seconds: float = 0.0  # the warehouse's part: fingerprints, the point-in-time read, the spool
    compile_seconds: float = 0.0  # of read_seconds: dbt compiling the query (0 when cached)
    mode: str = "incremental"  # "incremental", "full" or "backfill"
    reason: str = ""  # why the view was read in full
    read: str = ""  # which entities were read
    since: datetime | None = None  # backfill: rows changed after this were read
    as_of: datetime | None = None  # the latest row per entity as of this time
    chunks: int = 0  # chunks synced in this run (a backfill has one per chunk)
    error: str | None = None  # why this view failed (the others went on)
    sample: list[dict] = field(default_factory=list)  # dry run: some rows that would be written

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0

    def _add(self, result: WriteResult) -> None:
        self.keys_written += result.written
        self.skipped_older += result.skipped_older
        self.unchanged += result.unchanged
        self.expired_on_arrival += result.expired_on_arrival


_TOTALS = ("rows_read", "keys_written", "skipped_older", "unchanged", "expired_on_arrival")


@dataclass
class SyncReport:
    """The summary of one :func:`sync`: per view, totals, warnings and failures."""

    views: dict[str, ViewReport]
    now: datetime
    dry_run: bool = False
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> dict[str, str]:
        """The views that failed, with their one-line reasons."""
        return {v.view: v.error for v in self.views.values() if v.error}

    @property
    def ok(self) -> bool:
        return not self.failed

    def _total(self, name: str) -> int:
        return sum(getattr(v, name) for v in self.views.values())

    rows_read = property(lambda self: self._total("rows_read"))
    keys_written = property(lambda self: self._total("keys_written"))
    skipped_older = property(lambda self: self._total("skipped_older"))
    unchanged = property(lambda self: self._total("unchanged"))
    expired_on_arrival = property(lambda self: self._total("expired_on_arrival"))

    def to_dict(self) -> dict:
        """Plain data (datetimes as ISO text), e.g. for ``fstore sync --json``.

        ``{"now", "dry_run", "ok", "views": [{"view", "rows_read", ...}], "total": {...},
        "warnings": [...], "sample": [...]}``
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
        totals = {k: getattr(self, k) for k in _TOTALS}
        sample = [{"view": v.view, **clean(row)} for v in self.views.values() for row in v.sample]
        return {"now": clean(self.now), "dry_run": self.dry_run, "ok": self.ok, "views": views,
                "total": {**totals, "seconds": self.seconds}, "warnings": list(self.warnings), "sample": sample}


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
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
    lease: float = 30.0,
) -> SyncReport:
    """Write the latest value per entity of the selected views into Redis; see the module docstring.

    ``now`` (default: the clock; naive means UTC) is the time the values are taken as
    of. ``full_refresh`` reads every entity (Redis still skips unchanged rows).
    ``start``/``end`` backfill the rows changed in that range, ``chunk`` at a time.
    ``dry_run`` reads and counts (Redis tells what it would skip) but writes nothing.
    ``wait`` is how long (seconds) to wait for another sync of the same view or for a
    ``dbt build`` holding the DuckDB file, telling ``on_wait`` why; ``lease`` how long
    a dead sync's lock outlives it. ``source`` replaces
    :func:`feature_store.snapshot.snapshot` (tests). ``batch_rows`` is small so that
    Redis starts on the first rows while the next batch is encoded.

    Raises only for bad arguments or an unreachable Redis; a view that fails is
    reported in :attr:`SyncReport.failed` and the others still sync.
    """
    began = time.perf_counter()
    now = naive_utc(now) or datetime.now(timezone.utc).replace(tzinfo=None)
    start, end = naive_utc(start), naive_utc(end)
    chunk = parse_duration(chunk) if isinstance(chunk, str) else chunk
    if start is not None and end is None:
        end = now
    if start is not None and end is not None and start >= end:
        raise ValueError(f"backfill start {start} is not before end {end}")
    if chunk <= timedelta(0):
        raise ValueError(f"chunk must be a positive duration, got {chunk}")
    chosen = select_views(registry, views, select)
    if source is None:
        from feature_store.snapshot import snapshot  # the warehouse's drivers: only when syncing from it

        source = snapshot
    store.ping()  # fail before any warehouse work when Redis is unreachable

    report = SyncReport(views={}, now=now, dry_run=dry_run)
    facts = store.server_facts()
    if facts is None:
        report.warnings.append("this Redis user may not run INFO, so the sync cannot tell whether Redis lost data "
                               "since the last sync: every view is read in full")
    elif facts.can_evict:
        report.warnings.append(
            f"Redis may evict feature keys: maxmemory {facts.maxmemory:,} bytes with maxmemory-policy "
            f"{facts.policy}; set maxmemory-policy noeviction (or raise maxmemory) on a feature store. A sync "
            "fails when keys are evicted while it runs, and the next one rewrites what was lost")
    job = _Job(registry, store, source, now=now, start=start, end=end, chunk=chunk, full_refresh=full_refresh,
               dry_run=dry_run, progress=progress, batch_rows=batch_rows, wait=wait, on_wait=on_wait, lease=lease,
               began=began)
    for view in chosen:
        report.views[view.name] = ViewReport(view.name)
    # Read ahead: while a view is written to Redis, one thread reads the next view from the
    # warehouse. The two sides wait on different servers, so a sync of several views takes
    # about the longer side instead of the sum of both. Never more than one view ahead: the
    # next view's lock is taken and its rows spooled only when this view's write begins.
    ahead: Future[_Prepared] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fstore-read") as pool:

        def read(view: FeatureView) -> Future[_Prepared]:
            return pool.submit(job.prepare, view, report.views[view.name])

        try:
            ahead = read(chosen[0]) if chosen else None
            for i, view in enumerate(chosen):
                vr = report.views[view.name]
                assert ahead is not None  # each view's read is submitted before its turn
                prepared: _Prepared | None = None
                try:
                    prepared = ahead.result()
                except Exception as exc:  # noqa: BLE001 - one view's failure must not stop the others
                    _failed(vr, exc)
                ahead = read(chosen[i + 1]) if i + 1 < len(chosen) else None
                if prepared is None:
                    continue
                try:
                    job.finish(prepared, vr)
                except Exception as exc:  # noqa: BLE001 - as above
                    _failed(vr, exc)
        finally:
            # Interrupted: the read under way finishes, then releases its lock and spooled rows.
            if ahead is not None and ahead.exception() is None:
                ahead.result().cleanup.close()
    report.seconds = time.perf_counter() - began
    return report


def _failed(vr: ViewReport, exc: Exception) -> None:
    # Ours name the view and the fix; anything else (a value the codec cannot carry, a
    # warehouse error) is shown with its type, on one line.
    text = " ".join(str(exc).split())
    vr.error = text if isinstance(exc, FeatureStoreError) else f"{type(exc).__name__}: {text}"


@dataclass
class _Prepared:
    """A view made ready to write: its lock held, its sync state read and its rows read."""

    view: FeatureView
    cleanup: ExitStack  # releases the lock and deletes the spooled rows
    before: ServerFacts | None  # the server's facts before anything of this view was read
    state: dict[str, str]
    definition: str
    fence: tuple[str, str]
    reader: Any = None  # None for a backfill, which reads chunk by chunk as it writes


@dataclass
class _Job:
    """What one :func:`sync` call does per view."""

    registry: Registry
    store: OnlineStore
    source: Source
    now: datetime
    start: datetime | None
    end: datetime | None
    chunk: timedelta
    full_refresh: bool
    dry_run: bool
    progress: Progress | None
    batch_rows: int
    wait: float
    on_wait: Callable[[str], None] | None
    lease: float
    began: float  # time.perf_counter() when the sync started, at `now` on its clock

    def _clock(self, perf: float) -> datetime:
        """The time on the sync's clock of the ``time.perf_counter()`` reading ``perf``: its ``now``
        plus the time since it started, so a sync run as of another time (tests, replays)
        measures the write lag against that time."""
        return self.now + timedelta(seconds=perf - self.began)

    def prepare(self, view: FeatureView, vr: ViewReport) -> _Prepared:
        """Take the view's lock, read its sync state and (unless backfilling) its rows from the warehouse."""
        began = time.perf_counter()
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        cleanup = ExitStack()
        try:
            cleanup.enter_context(_Lock(self.store, view.name, token, self.lease, self.wait, self.on_wait))
            before = self.store.server_facts()
            prepared = _Prepared(view, cleanup, before, self.store.sync_state(view.name), definition_digest(view),
                                 (self.store.lock_key(view.name), token))
            if self.end is None:
                previous, vr.reason = _previous(prepared.state, prepared.definition, before, self.full_refresh)
                vr.mode = "incremental" if previous else "full"
                vr.as_of = self.now
                prepared.reader = self._read(vr, as_of=self.now, since=None, previous=previous)
                cleanup.callback(prepared.reader.close)
                vr.read = getattr(prepared.reader, "plan", "")
        except BaseException:
            cleanup.close()
            raise
        finally:
            vr.seconds += time.perf_counter() - began
        return prepared

    def finish(self, prepared: _Prepared, vr: ViewReport) -> None:
        """Write what :meth:`prepare` read, check that Redis kept it and record the view's sync state."""
        began = time.perf_counter()
        view, before, fence = prepared.view, prepared.before, prepared.fence
        try:
            if self.end is not None:
                self._backfill(view, vr, prepared.state, prepared.definition, fence)
                return
            # The write lag (fstore monitor) of the rows this sync writes as newer versions than
            # Redis held, late ones included; measured only when reading incrementally: a full
            # read (first deploy, recovery) writes history that is old by nature.
            lag = LagRecorder() if vr.mode == "incremental" else None
            try:
                self._write(view, vr, prepared.reader, prepared.definition, fence, 0, lag)
            except OnlineStoreError:
                _check_kept(self.store, view.name, before)  # the precise reason, when Redis evicted or restarted
                raise
            vr.chunks = 1
            if self.dry_run:
                return
            _check_kept(self.store, view.name, before)
            fingerprints = getattr(prepared.reader, "fingerprints", None)
            finished = self._clock(time.perf_counter())
            lag_fields = (lag.fields(finished) if lag is not None else LagRecorder.not_measured(
                f"not measured: the sync read the view in full ({vr.reason})", finished))
            fields: dict[str, Any] = {
                "as_of": self.now.isoformat(sep=" "),
                "synced_at": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" "),
                "mode": vr.mode,
                "rows_read": vr.rows_read,
                "keys_written": vr.keys_written,
                "definition": prepared.definition,
                "fingerprint_parts": fingerprints.parts if fingerprints else 0,
                "fingerprints": fingerprints.text if fingerprints else "",
                "run_id": before.run_id if before else "",
                "evicted_keys": before.evicted_keys if before else 0,
                **lag_fields,
            }
            if not self.store.save_sync_state(view.name, fence[1], fields):
                raise lock_lost(view.name)
        finally:
            prepared.cleanup.close()  # the lock, and the spooled rows
            vr.seconds += time.perf_counter() - began

    def _backfill(self, view: FeatureView, vr: ViewReport, state: dict, definition: str, fence) -> None:
        vr.mode = "backfill"
        end = self.end
        assert end is not None  # a backfill has an end
        label = f"{self.start.isoformat(sep=' ') if self.start else '-'}/{end.isoformat(sep=' ')}"
        checkpoint = None if self.full_refresh else state.get(f"backfill {label}")
        done = datetime.fromisoformat(checkpoint) if checkpoint else None
        windows: list[tuple[datetime | None, datetime]] = []
        lo = self.start
        if lo is None:
            windows = [(None, end)]
        while lo is not None and lo < end:
            hi = min(lo + self.chunk, end)
            if done is None or hi > done:
                windows.append((lo, hi))
            lo = hi
        if windows:
            vr.since, vr.as_of = windows[0][0], windows[-1][1]
        rows_before = 0
        for since, as_of in windows:
            reader = self._read(vr, as_of=as_of, since=since, previous=None)
            try:
                vr.read = getattr(reader, "plan", "")
                self._write(view, vr, reader, definition, fence, rows_before)
            finally:
                reader.close()
            rows_before = vr.rows_read
            vr.chunks += 1
            if not self.dry_run and not self.store.save_sync_state(
                    view.name, fence[1], {f"backfill {label}": as_of.isoformat(sep=" ")}):
                raise lock_lost(view.name)

    def _read(self, vr: ViewReport, **window):
        began = time.perf_counter()
        # On a cluster a script call carries one slot's rows: batches ten times larger put
        # several rows of a slot in one call instead of one.
        batch_rows = self.batch_rows * (CLUSTER_BATCH_FACTOR if is_cluster(self.store.write_client) else 1)
        reader = self.source(self.registry, vr.view, batch_rows=batch_rows, wait=self.wait,
                             on_wait=self.on_wait, **window)
        vr.read_seconds += time.perf_counter() - began
        vr.compile_seconds += getattr(reader, "compile_seconds", 0.0)
        return reader

    def _write(self, view: FeatureView, vr: ViewReport, reader, definition: str, fence, rows_before: int,
               lag: LagRecorder | None = None) -> None:
        total = getattr(reader, "total_rows", None)
        total = None if total is None else rows_before + total
        # The event times of the batches submitted and not yet acknowledged, oldest first: the
        # writer answers once per batch, in order, with the positions of its newer versions.
        pending: deque[pa.Array | pa.ChunkedArray] = deque()
        with BatchWriter(self.store, view, definition=definition, fence=fence, dry_run=self.dry_run) as writer:
            for batch in reader:
                vr.rows_read += batch.num_rows
                if self.dry_run and len(vr.sample) < SAMPLE_ROWS:
                    vr.sample += _sample(self.store, view, batch, SAMPLE_ROWS - len(vr.sample))
                writer.submit(batch)
                if lag is not None:
                    pending.append(batch.column(EVENT_TS))
                self._acknowledge(writer, vr, total, lag, pending)
        self._acknowledge(writer, vr, total, lag, pending)

    def _acknowledge(self, writer, vr: ViewReport, total: int | None, lag: LagRecorder | None,
                     pending: deque) -> None:
        for result in writer.acknowledged():
            vr._add(result)
            if lag is not None:
                event_ts = pending.popleft()
                if result.newer.size:
                    # Written when Redis answered for the batch, on the sync's clock.
                    lag.add(event_ts.take(pa.array(result.newer)), self._clock(result.answered))
            if self.progress is not None:
                done = vr.keys_written + vr.skipped_older + vr.unchanged + vr.expired_on_arrival
                self.progress(vr.view, done, total)


def _previous(state: dict[str, str], definition: str, facts: ServerFacts | None, full_refresh: bool):
    """(fingerprints, as_of) of the last finished sync when they prove what Redis holds, else (None, why not)."""
    from feature_store.snapshot import Fingerprints

    if full_refresh:
        return None, "--full-refresh"
    if not state.get("as_of"):
        return None, "no finished sync in this Redis (never synced, or Redis lost the sync state)"
    if state.get("definition") != definition:
        return None, "the view's definition changed since the last sync"
    if facts is None:
        return None, "Redis does not let this user run INFO, so data loss cannot be ruled out"
    if state.get("run_id") != facts.run_id:
        return None, "Redis restarted or failed over since the last sync"
    if facts.evicted_keys > int(state.get("evicted_keys") or 0):
        return None, "Redis evicted keys since the last sync"
    fingerprints = Fingerprints.decode(int(state.get("fingerprint_parts") or 0), state.get("fingerprints", ""))
    if fingerprints is None:
        return None, "the last sync left no warehouse fingerprints"
    return (fingerprints, datetime.fromisoformat(state["as_of"])), ""


def _check_kept(store: OnlineStore, view_name: str, before: ServerFacts | None) -> None:
    """Fail the view when Redis may have dropped what this sync wrote (eviction, restart, failover)."""
    after = store.server_facts()
    if before is None or after is None:
        return
    if after.run_id != before.run_id:
        raise OnlineStoreError(f"Redis restarted or failed over while {view_name} was synced (run id "
                               f"{before.run_id[:8]} -> {after.run_id[:8]}); the next sync reads it in full")
    if after.evicted_keys > before.evicted_keys:
        raise OnlineStoreError(
            f"Redis evicted {after.evicted_keys - before.evicted_keys:,} keys while {view_name} was synced "
            f"(maxmemory-policy {after.policy}); rows may be missing: give Redis more memory or set "
            "maxmemory-policy noeviction, then run `fstore sync` again (it rewrites what was lost)")


class _Lock:
    """The view's sync lock: taken (waiting up to ``wait`` seconds), renewed while held, released."""

    def __init__(self, store: OnlineStore, view_name: str, token: str, lease: float, wait: float,
                 on_wait: Callable[[str], None] | None):
        self.store, self.view_name, self.token = store, view_name, token
        self.lease_ms = max(int(lease * 1000), 1000)
        self.wait, self.on_wait = wait, on_wait
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "_Lock":
        deadline = time.monotonic() + self.wait
        told = 0.0
        while True:
            holder = self.store.try_lock(self.view_name, self.token, self.lease_ms)
            if holder is None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise OnlineStoreError(
                    f"another sync of {self.view_name} is running ({holder or 'its lock just expired'}); it "
                    f"holds the view's lock until it finishes, or for up to {self.lease_ms // 1000}s if it died. "
                    "Run again later, or pass --wait to wait for it")
            if self.on_wait is not None and time.monotonic() - told >= 1.0:
                told = time.monotonic()
                self.on_wait(f"{self.view_name}: waiting for another sync ({holder}) to finish, {left:.0f}s left")
            time.sleep(min(0.2, left))
        self._thread = threading.Thread(target=self._renew, name=f"fs-lock-{self.view_name}", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_ms / 3000):
            try:
                if not self.store.renew_lock(self.view_name, self.token, self.lease_ms):
                    return  # gone: the fenced writes and the state save refuse from now on
            except FeatureStoreError:
                continue  # Redis unreachable for a moment: the writes report it

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.store.unlock(self.view_name, self.token)
        except FeatureStoreError:
            pass  # unreachable: the lease ends it


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
