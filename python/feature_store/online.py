"""The online store: the latest feature values per entity in Redis, and reading them.

:class:`OnlineStore` owns the connection (URL, retries with backoff, the key prefix
``fs:<project>:<target>`` that keeps dev and prod apart), writes rows with the
write script, and keeps the sync state and locks. :func:`get_online_features`
reads any number of entities and views in one round trip, checks every value's
age against its view's ttl at read time, applies the features' fallbacks, and
returns an :class:`OnlineResponse` in Feast's shape.

The key and value format is in :mod:`feature_store.codec`; writing (the Lua
script, the vectorised encoding) in :mod:`feature_store.writer`. This module is on
the serving path: it must not import dbt, duckdb or the offline store (a test
checks), and imports pyarrow only when writing.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import math
import os
import random
import threading
import time
import warnings
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Iterator, Mapping

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from feature_store import audit, codec, servinglog
from feature_store.connection import is_cluster, redact, redis_client
from feature_store.errors import EntityDataFrameError, FeatureMissing, OnlineStoreError
from feature_store.registry import Fallback, Feature, FeatureView, Registry, format_duration, output_names, type_kind

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "FieldStatus", "OnlineResponse", "OnlineStore", "ServerFacts", "get_online_features", "get_online_features_async",
    "timeout_settings",
]

DEFAULT_URL = "redis://localhost:6379/0"
URL_ENV = "FEATURE_STORE_REDIS_URL"
CLIENT_ENV = "FEATURE_STORE_CLIENT"  # who reads, for the read counters and the serving log
DEFAULT_CLIENT = "default"
# Serving-log entries waiting for the next round trip, per store; past this, new ones are
# dropped (and counted) rather than let a Redis outage grow the process.
LOG_BUFFER_MAX = 10_000


class FieldStatus(str, Enum):
    """What happened to one value of a response (Feast's names, plus ``IMPUTED`` and ``NOT_SYNCED``)."""

    PRESENT = "PRESENT"  # a live value
    NULL_VALUE = "NULL_VALUE"  # the entity's row exists and holds NULL for this feature
    NOT_FOUND = "NOT_FOUND"  # no row for the entity (none offline, expired, or evicted by Redis)
    OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"  # a row exists but is older than the view's ttl
    IMPUTED = "IMPUTED"  # was missing; the feature's `fallback: {impute: ...}` was served
    # This Redis holds no finished sync of the view: never synced, or its data is gone
    # (flush, restart, failover to an empty replica). Never imputed: a default served from
    # an empty store would look real.
    NOT_SYNCED = "NOT_SYNCED"

    def __str__(self) -> str:
        return self.value


# Stores holding serving-log entries not sent yet. Flushed when the interpreter exits (a
# script that never closes its store), and forgotten in a forked child, which would
# otherwise send the parent's entries a second time.
_WAITING: "weakref.WeakSet[OnlineStore]" = weakref.WeakSet()


def _flush_at_exit() -> None:
    for store in list(_WAITING):
        try:
            store.flush_serving_log()
        except Exception:  # noqa: BLE001 - best effort: at exit there is no one left to tell
            pass


def _forget_in_child() -> None:
    for store in list(_WAITING):
        store._log = []
        store._counts = {}
        store._log_lock = threading.Lock()  # another thread may have held it at the fork


atexit.register(_flush_at_exit)
os.register_at_fork(after_in_child=_forget_in_child)

# Failures that another attempt may get past: the connection, or a cluster whose slots are
# moving or briefly unserved (a master restarting or failing over).
_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, ClusterDownError, TryAgainError, RedisClusterException)


@dataclass(frozen=True)
class ServerFacts:
    """What the sync asks Redis about itself (``INFO``), to notice data it lost behind our back."""

    run_id: str  # changes on every restart, and differs between a master and its replica
    evicted_keys: int  # keys evicted since the server started
    maxmemory: int  # 0: no limit
    policy: str  # maxmemory-policy

    @property
    def can_evict(self) -> bool:
        """Whether this server may evict feature keys when it runs out of memory."""
        return self.maxmemory > 0 and self.policy != "noeviction"


def _async_redis_client(url: str, *, timeout: float, connect_timeout: float) -> Any:
    """:func:`~feature_store.connection.redis_client` for ``redis.asyncio``: the same URL forms, options
    and timeouts, one attempt per command (the caller retries), Sentinel checked as often."""
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.asyncio.sentinel import Sentinel as AsyncSentinel
    from redis.backoff import NoBackoff

    from feature_store import connection

    def no_retry() -> AsyncRetry:
        return AsyncRetry(NoBackoff(), 0)

    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        try:
            return aioredis.Redis.from_url(url, retry=no_retry(), socket_connect_timeout=connect_timeout,
                                           socket_timeout=timeout)
        except (ValueError, TypeError) as exc:
            raise connection._bad_url(url, str(exc)) from None
    spec = connection._parse(url)
    options = {"socket_timeout": timeout, "socket_connect_timeout": connect_timeout, **spec.options}
    if spec.kind == "cluster":
        extra: dict[str, Any] = {}
        if int(redis.__version__.split(".")[0]) < 6:  # as connection._cluster: the count drove the retries
            extra["cluster_error_retry_attempts"] = 0
        # Connects on first use (the first read), not here: a cluster that is down is the
        # read's OnlineStoreError, retried like any other.
        return AsyncRedisCluster(startup_nodes=[AsyncClusterNode(h, p) for h, p in spec.nodes], retry=no_retry(),
                                 **extra, **options)
    sentinel_options = {k: v for k, v in options.items() if k.startswith(("socket_", "ssl"))}
    sentinel_options.update(spec.sentinel_options, retry=no_retry())
    sentinel = AsyncSentinel(list(spec.nodes), sentinel_kwargs=sentinel_options, retry=no_retry(), **options)
    assert spec.service is not None  # _parse gives a sentinel URL its service
    return sentinel.master_for(spec.service, connection_pool_class=_checked_async_sentinel_pool())


_CHECKED_ASYNC_POOL: Any = None


def _checked_async_sentinel_pool() -> Any:
    """The asyncio twin of connection._CheckedSentinelPool: also asks the sentinels where the master
    is every ``SENTINEL_CHECK_SECONDS``, so connections leave a demoted master (see that class)."""
    global _CHECKED_ASYNC_POOL
    if _CHECKED_ASYNC_POOL is None:
        from redis.asyncio.sentinel import SentinelConnectionPool

        from feature_store.connection import SENTINEL_CHECK_SECONDS

        class CheckedAsyncSentinelPool(SentinelConnectionPool):
            _next_check = 0.0

            async def get_connection(self, *args: Any, **kwargs: Any):
                now = time.monotonic()
                if now >= self._next_check:
                    self._next_check = now + SENTINEL_CHECK_SECONDS
                    try:
                        await self.get_master_address()
                    except (redis.ConnectionError, redis.TimeoutError):
                        pass  # no sentinel answers: keep the connections there are
                return await super().get_connection(*args, **kwargs)

        _CHECKED_ASYNC_POOL = CheckedAsyncSentinelPool
    return _CHECKED_ASYNC_POOL


# Fenced state writes: only the holder of the view's sync lock may record a finished sync.
_SAVE_STATE = r"""
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""
_RELEASE_LOCK = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW_LOCK = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def timeout_settings(timeout: float | None = None, retries: int | None = None) -> dict[str, Any]:
    """:class:`OnlineStore` arguments for one per-attempt timeout (connect and read) and a retry
    budget, as ``fstore --redis-timeout/--redis-retries`` and ``FeatureStore`` take them; None keeps the default."""
    settings: dict[str, Any] = {}
    if timeout is not None:
        settings.update(timeout=timeout, connect_timeout=timeout)
    if retries is not None:
        settings["retries"] = retries
    return settings


class OnlineStore:
    """Redis as the online store, under one key prefix.

    ``url`` defaults to ``$FEATURE_STORE_REDIS_URL``, else ``redis://localhost:6379/0``;
    passwords (``redis://:pw@host``) and TLS (``rediss://``) work as in redis-py, and so
    do ``?socket_timeout=…&socket_connect_timeout=…`` in the URL (they win over the
    arguments). Reads are bounded: each attempt waits at most ``connect_timeout`` to
    connect and ``timeout`` for an answer, and a failed attempt is retried ``retries``
    times with exponential backoff from ``backoff`` seconds, so with the defaults a read
    returns or raises :class:`OnlineStoreError` within about a second even when the
    server accepts connections and never answers. Refused credentials are not retried.
    The sync's writes wait up to ``write_timeout`` for an answer (a script call over
    hundreds of rows on a busy server), with the same retries.

    Reads are recorded (docs/serving-log.md): each read counts the entity rows it read per
    feature under the name ``client`` (default ``$FEATURE_STORE_CLIENT``, else ``default``;
    :mod:`feature_store.audit`), and a sample of what it served goes to the serving log
    (:mod:`feature_store.servinglog`). Both ride in a later read's own round trip, never one
    of their own: the log entries in the next read's, the counts, added up in the process,
    at most every ``counts_every`` seconds (so a read rarely pays for a HINCRBY). A quiet
    process sends them with :meth:`flush_serving_log` (the server every second; ``close()``
    and interpreter exit). Neither can fail or delay a read: their failures are counted in
    :attr:`log_errors`. ``record_reads=False`` turns both off (a read-only replica, a benchmark).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str,
        timeout: float = 0.25,
        connect_timeout: float = 0.25,
        retries: int = 2,
        backoff: float = 0.05,
        write_timeout: float = 30.0,
        client: str | None = None,
        record_reads: bool = True,
        counts_every: float = 1.0,
    ):
        self.url = url or os.environ.get(URL_ENV) or DEFAULT_URL
        self.client_name = audit.check_client(client or os.environ.get(CLIENT_ENV) or DEFAULT_CLIENT)
        """Who reads, in the read counters and the serving log (a read may name another)."""
        self.record_reads = record_reads
        self.counts_every = counts_every
        self.prefix = prefix
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self.client = self._client(timeout)
        self._write_client: redis.Redis | RedisCluster | None = None
        self._async_client: Any = None
        self._scripts: dict[tuple[str, bool], Script] = {}
        self._plans: dict[tuple, tuple[Registry, _ReadPlan]] = {}
        self.log_errors = 0
        """Read counters and serving-log entries Redis did not take (error replies, lost connections)."""
        self.log_dropped = 0
        """Serving-log entries dropped because :data:`LOG_BUFFER_MAX` were already waiting."""
        self._log: list[tuple] = []  # serving-log entries waiting to be sent: XADD's field-value pairs
        self._log_lock = threading.Lock()
        self._warned_log = False
        self._counts: dict[tuple[int, str], int] = {}  # (day number, counter field) -> reads not sent yet
        self._counts_due = 0.0  # monotonic time from which a read sends the counts (the first read's at once)

    def _client(self, timeout: float) -> "redis.Redis | RedisCluster":
        return redis_client(self.url, timeout=timeout, connect_timeout=self.connect_timeout)

    @property
    def write_client(self) -> "redis.Redis | RedisCluster":
        """The client the sync writes with (its answers may take longer: ``write_timeout``)."""
        if self._write_client is None:
            self._write_client = self._client(self.write_timeout)
        return self._write_client

    @classmethod
    def for_registry(cls, registry: Registry, url: str | None = None, **kwargs: Any) -> "OnlineStore":
        """The store of ``registry``'s project and dbt target: prefix ``fs:<project>:<target>``."""
        return cls(url, prefix=f"fs:{registry.project_name}:{registry.target.name}", **kwargs)

    def __repr__(self) -> str:
        return f"OnlineStore({redact(self.url)!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        """Send the serving log's waiting entries, then close the connections."""
        self.flush_serving_log()
        self.client.close()
        if self._write_client is not None:
            self._write_client.close()

    @property
    def async_client(self) -> Any:
        """A ``redis.asyncio`` client for the same URL and timeouts, for :func:`get_online_features_async`.

        Made on first use, inside the running event loop (its connections belong to that
        loop); redis.asyncio is imported only then, so sync callers never load it.
        """
        if self._async_client is None:
            self._async_client = _async_redis_client(self.url, timeout=self.timeout,
                                                    connect_timeout=self.connect_timeout)
        return self._async_client

    async def aclose(self) -> None:
        """Send the serving log's waiting entries, then close the asyncio client's connections (the sync
        clients stay open: see :meth:`close`)."""
        if self._async_client is not None:
            await self.aflush_serving_log()
        client, self._async_client = self._async_client, None
        if client is not None:
            await client.aclose() if hasattr(client, "aclose") else await client.close()

    # -- recording reads -------------------------------------------------------------------------

    def flush_serving_log(self) -> int:
        """Send the serving-log entries and read counts waiting for a read's round trip now, in one pipeline.

        Returns how many commands Redis took. Never raises for Redis trouble: what it carried
        is then lost and counted in :attr:`log_errors` (sending it again could count it twice).
        """
        commands = self._take_records(force=True)
        if not commands:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        try:
            replies = pipe.execute(raise_on_error=False)
        except (RedisError, RedisClusterException) as exc:  # close() and exit call this: it must not raise
            self._log_failed(len(commands), exc)
            return 0
        return len(commands) - self._sent(replies)

    async def aflush_serving_log(self) -> int:
        """:meth:`flush_serving_log` on :attr:`async_client` (the server's flush, every second)."""
        commands = self._take_records(force=True)
        if not commands:
            return 0
        pipe = self.async_client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (RedisError, RedisClusterException) as exc:  # the server's periodic task must live on
            self._log_failed(len(commands), exc)
            return 0
        return len(commands) - self._sent(replies)

    def _xadd(self, entry: tuple) -> tuple:
        return ("XADD", servinglog.stream_key(self.prefix), "MAXLEN", "~", servinglog.DEFAULT_MAXLEN, "*", *entry)

    def _buffer_log(self, entries: list[tuple]) -> None:
        with self._log_lock:
            room = LOG_BUFFER_MAX - len(self._log)
            if len(entries) > room:
                self.log_dropped += len(entries) - max(room, 0)
                entries = entries[:max(room, 0)]
            if not self._log:
                _WAITING.add(self)
            self._log.extend(entries)

    def _count(self, now_us: int, fields: tuple[str, ...], n: int) -> None:
        """Add a read of ``n`` entity rows to the counts of ``fields`` on the UTC day of ``now_us``."""
        day = now_us // 86_400_000_000
        with self._log_lock:  # the dict too is read under the lock: _take_records swaps it for a new one
            counts = self._counts
            if not counts:
                _WAITING.add(self)
            for f in fields:
                counts[day, f] = counts.get((day, f), 0) + n

    def _take_records(self, force: bool = False) -> list[tuple]:
        """The recording commands to send now: the counts (when due, or ``force``), as one HINCRBY per
        (day, client, feature) and an EXPIRE of each day's hash, then the waiting log entries (XADD)."""
        now = time.monotonic()
        due = bool(self._counts) and (force or now >= self._counts_due)
        if not self._log and not due:  # the common case, without the lock
            return []
        with self._log_lock:
            entries, self._log = self._log, []
            counts: dict[tuple[int, str], int] = {}
            if due:
                counts, self._counts = self._counts, {}
                self._counts_due = now + self.counts_every
        day_keys = {day: audit.reads_key(self.prefix, date(1970, 1, 1) + timedelta(days=day)) for day, _ in counts}
        commands: list[tuple] = [("HINCRBY", day_keys[day], f, n) for (day, f), n in counts.items()]
        # With every batch of counts (at most one a second): a hash Redis lost and the next
        # HINCRBY made again (a restart, a failover) expires all the same.
        commands += [("EXPIRE", day_keys[day], audit.RETENTION_DAYS * 86_400) for day in sorted(day_keys)]
        commands += [self._xadd(entry) for entry in entries]
        return commands

    def _sent(self, replies: list) -> int:
        """Count the failures among the replies to :meth:`_take_records`'s commands; returns how many."""
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed:
            self._log_failed(len(failed), failed[0])
        return len(failed)

    def _log_failed(self, count: int, exc: BaseException) -> None:
        self.log_errors += count
        if not self._warned_log:
            self._warned_log = True
            warnings.warn(
                f"Redis at {redact(self.url)} did not take read counters or serving-log entries "
                f"({type(exc).__name__}: {exc}); reads are served regardless, and OnlineStore.log_errors counts what "
                "was lost. Check the server's memory (maxmemory), that it is a master, and the key types under the "
                "prefix", RuntimeWarning, stacklevel=2)

    # -- calling Redis -------------------------------------------------------------------------

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn redis-py exceptions into :class:`OnlineStoreError` naming the URL and what to check."""
        try:
            yield
        except AuthenticationError as exc:
            raise OnlineStoreError(
                f"Redis at {redact(self.url)} refused the credentials while {doing} ({exc}); "
                f"check the password in --redis-url / ${URL_ENV}") from None
        except _UNAVAILABLE as exc:
            raise OnlineStoreError(
                f"cannot reach Redis at {redact(self.url)} while {doing} (gave up after {self.retries} "
                f"retries: {exc}); check that redis-server is running and reachable, and the URL in "
                f"--redis-url / ${URL_ENV}") from None
        except RedisError as exc:
            raise OnlineStoreError(f"Redis at {redact(self.url)} answered an error while {doing}: {exc}") from None

    def call(self, doing: str, attempt: Callable[[], Any]) -> Any:
        """``attempt()`` (redis-py calls), retried ``retries`` times with backoff on connection errors
        and timeouts; failures become :class:`OnlineStoreError` saying what we were ``doing``.

        Refused credentials and error replies are not retried: trying again cannot help.
        ``attempt`` must be safe to run again, e.g. build its pipeline afresh.
        """
        with self._errors(doing):
            for n in range(self.retries + 1):
                try:
                    return attempt()
                except AuthenticationError:
                    raise
                except _UNAVAILABLE:
                    if n == self.retries:
                        raise
                    time.sleep(min(self.backoff * 2**n, 1.0))
        raise AssertionError("unreachable")

    async def call_async(self, doing: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """:meth:`call` for coroutines: the same retries, backoff (``asyncio.sleep``) and errors."""
        with self._errors(doing):
            for n in range(self.retries + 1):
                try:
                    return await attempt()
                except AuthenticationError:
                    raise
                except _UNAVAILABLE:
                    if n == self.retries:
                        raise
                    await asyncio.sleep(min(self.backoff * 2**n, 1.0))
        raise AssertionError("unreachable")

    def script(self, source: str, *, write: bool = False) -> Script:
        """A registered Lua script (redis-py loads it on first use, and again after a restart)."""
        client = self.write_client if write else self.client
        registered = self._scripts.get((source, write))
        if registered is None:
            registered = self._scripts[(source, write)] = client.register_script(source)
        return registered

    def ping(self) -> None:
        """Check the connection now (:class:`OnlineStoreError` if Redis cannot be reached)."""
        self.call("connecting", self.client.ping)

    def server_facts(self) -> ServerFacts | None:
        """The server's run id, evictions and memory policy (``INFO``); None if this user may not ask.

        On a cluster, of every master together: a run id that changes when any master
        restarts or fails over, the evictions summed, and the loosest memory policy.
        """
        if is_cluster(self.client):
            ask = lambda: self.client.info(target_nodes=RedisCluster.PRIMARIES)  # noqa: E731
        else:
            ask = self.client.info
        try:
            info = self.call("asking the server about itself (INFO)", ask)
        except OnlineStoreError as exc:
            if "NOPERM" in str(exc) or "unknown command" in str(exc):
                return None
            raise
        nodes = [info] if "run_id" in info else list(info.values())
        evicting = [n for n in nodes if int(n.get("maxmemory", 0)) > 0 and n.get("maxmemory_policy") != "noeviction"]
        worst = evicting[0] if evicting else nodes[0]
        return ServerFacts(run_id=",".join(sorted(str(n.get("run_id", "")) for n in nodes)),
                           evicted_keys=sum(int(n.get("evicted_keys", 0)) for n in nodes),
                           maxmemory=int(worst.get("maxmemory", 0)), policy=str(worst.get("maxmemory_policy", "")))

    # -- keys --------------------------------------------------------------------------------

    def key(self, view: FeatureView, entity: Mapping[str, Any]) -> str:
        """The Redis key of ``entity``'s row of ``view`` (see :mod:`feature_store.codec`)."""
        return codec.view_key(self.prefix, view.name, codec.entity_tag(view.join_keys, _key_kinds(view), entity))

    def sync_key(self, view_name: str) -> str:
        """The hash holding ``view_name``'s sync state: the last finished sync, backfill checkpoints.

        Every view's state and lock share one hash tag, so on a cluster they live on one
        slot and a script may touch a view's state and its lock together.
        """
        return f"{self.prefix}:{{_sync}}:{view_name}"

    def lock_key(self, view_name: str) -> str:
        """The string a running sync of ``view_name`` holds (its token), with a lease."""
        return f"{self.sync_key(view_name)}:lock"

    # -- sync state ----------------------------------------------------------------------------

    def sync_state(self, view_name: str) -> dict[str, str]:
        """The sync state of ``view_name`` (empty: never synced here, or Redis lost it)."""
        raw = self.call(f"reading the sync state of {view_name}", lambda: self.client.hgetall(self.sync_key(view_name)))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def save_sync_state(self, view_name: str, token: str, fields: Mapping[str, Any]) -> bool:
        """Record ``fields`` in the view's sync state if ``token`` still holds its lock (else False)."""
        args = [x for k, v in fields.items() for x in (k, str(v))]
        save = self.script(_SAVE_STATE)
        return bool(self.call(f"saving the sync state of {view_name}",
                              lambda: save(keys=[self.sync_key(view_name), self.lock_key(view_name)], args=[token, *args])))

    def try_lock(self, view_name: str, token: str, lease_ms: int) -> str | None:
        """Take the view's sync lock for ``lease_ms``; None if taken, else the holder's token."""
        key = self.lock_key(view_name)
        if self.call(f"locking {view_name}", lambda: self.client.set(key, token, nx=True, px=lease_ms)):
            return None
        holder = self.call(f"locking {view_name}", lambda: self.client.get(key))
        return holder.decode() if holder else ""

    def renew_lock(self, view_name: str, token: str, lease_ms: int) -> bool:
        """Extend the lease of a lock this token holds (False: it is gone)."""
        renew = self.script(_RENEW_LOCK)
        return bool(self.call(f"renewing the sync lock of {view_name}",
                              lambda: renew(keys=[self.lock_key(view_name)], args=[token, lease_ms])))

    def unlock(self, view_name: str, token: str) -> None:
        """Release the lock if this token still holds it."""
        release = self.script(_RELEASE_LOCK)
        self.call(f"releasing the sync lock of {view_name}",
                  lambda: release(keys=[self.lock_key(view_name)], args=[token]))

    def count_keys(self, view_name: str) -> int:
        """How many keys ``view_name`` has here: a SCAN over the prefix, O(keys), for a person looking."""
        pattern = f"{self.prefix}:{{*=*}}:{view_name}"  # entity tags always hold "name=value"
        return self.call(f"counting the keys of {view_name}",
                         lambda: sum(1 for _ in self.client.scan_iter(match=pattern, count=10_000)))

    def get_checkpoint(self, view_name: str, label: str) -> datetime | None:
        """The end of the last finished chunk of backfill ``label``, or None."""
        raw = self.sync_state(view_name).get(f"backfill {label}")
        return datetime.fromisoformat(raw) if raw else None


# -- reading ----------------------------------------------------------------------------------


def _key_kinds(view: FeatureView) -> dict[str, str | None]:
    return {k: type_kind(view.column_types.get(k)) for k in view.join_keys}


_warned: set[str] = set()


def _warn_deprecated(feature: Feature) -> None:
    """Warn once per process per tombstoned feature."""
    if feature.ref in _warned:
        return
    _warned.add(feature.ref)
    instead = f"; use {feature.replaced_by}" if feature.replaced_by else ""
    warnings.warn(f"feature {feature.ref} is deprecated (tombstone {feature.deprecated}) and will be removed"
                  f"{instead}", FutureWarning, stacklevel=6)  # the caller of get_online_features(_async)


def _fallback_value(feature: Feature, fallback: Fallback) -> Any:
    """The impute value as the feature's Python type (ISO text becomes a datetime / date)."""
    value = fallback.value
    if value is None:
        return None
    kind = feature.kind
    if kind in ("timestamp", "date"):
        return codec.decoder(kind)(str(codec.encode_value(kind, value)).encode())
    if kind == "decimal":
        return Decimal(str(value))
    if kind == "float":
        return float(value)
    return value


@dataclass
class _ViewPlan:
    view: FeatureView
    suffix: str  # ":<view>", appended to the entity tag
    join_keys: tuple[str, ...]
    kinds: dict[str, str | None]
    tag: Callable[[Mapping[str, Any]], str]  # entity row -> "{k=v}"
    fields: tuple[str, ...]  # the HMGET fields: __event_ts, then the requested features
    decoders: tuple[Callable[[bytes], Any], ...]
    columns: tuple[int, ...]  # output column of each requested feature
    ttl_us: int | None
    sample_rate: float  # the share of (view, entity row) reads the serving log samples
    log_features: str  # the serving log's `features` field: JSON list of the feature names


@dataclass
class _ReadPlan:
    views: list[_ViewPlan]
    features: list[Feature]
    names: list[str]
    entity_keys: list[str]
    # (column, feature, fallback, impute value) for features with a fallback
    fallbacks: list[tuple[int, Feature, Fallback, Any]]
    counters: dict[str, tuple[str, ...]] = field(default_factory=dict)  # client -> its counter fields

    def counter_fields(self, client: str) -> tuple[str, ...]:
        """The read counters' fields of ``client`` reading these features (each feature once)."""
        fields = self.counters.get(client)
        if fields is None:
            refs = dict.fromkeys(f.ref for f in self.features)
            fields = self.counters[client] = tuple(audit.reads_field(client, ref) for ref in refs)
        return fields


def _build_plan(registry: Registry, refs: tuple[str, ...], full_feature_names: bool) -> _ReadPlan:
    features = registry.resolve(refs)
    if not features:
        raise EntityDataFrameError("no features requested; pass features=['view:feature', ...] or a view name")
    names = output_names(features, full_feature_names)
    for f in features:
        if f.name in codec.RESERVED_FIELDS:
            raise EntityDataFrameError(f"feature {f.ref} uses the reserved name {f.name!r}; rename the column")
    by_view: dict[str, list[int]] = {}
    for i, f in enumerate(features):
        by_view.setdefault(f.view, []).append(i)
    views, entity_keys = [], []
    for view_name, cols in by_view.items():
        view = registry.view(view_name)
        views.append(_ViewPlan(
            view=view,
            suffix=f":{view.name}",
            join_keys=view.join_keys,
            kinds=_key_kinds(view),
            tag=codec.tagger(view.join_keys, _key_kinds(view)),
            fields=(codec.EVENT_TS, *(features[i].name for i in cols)),
            decoders=tuple(codec.decoder(features[i].kind) for i in cols),
            columns=tuple(cols),
            ttl_us=int(view.ttl.total_seconds() * 1_000_000) if view.ttl is not None else None,
            sample_rate=servinglog.DEFAULT_SAMPLE_RATE if view.log_sample_rate is None else view.log_sample_rate,
            log_features=_json([features[i].name for i in cols]),
        ))
        entity_keys += [k for k in view.join_keys if k not in entity_keys]
    fallbacks = [(i, f, f.fallback, _fallback_value(f, f.fallback) if f.fallback.kind == "impute" else None)
                 for i, f in enumerate(features) if f.fallback is not None]
    for f in features:
        if f.deprecated:
            _warn_deprecated(f)
    return _ReadPlan(views, features, names, entity_keys, fallbacks)


def _plan(store: OnlineStore, registry: Registry, features: Iterable[str], full_feature_names: bool) -> _ReadPlan:
    refs = tuple(features) if not isinstance(features, str) else (features,)
    cache_key = (id(registry), full_feature_names, refs)
    hit = store._plans.get(cache_key)
    if hit is not None and hit[0] is registry:
        return hit[1]
    plan = _build_plan(registry, refs, full_feature_names)
    if len(store._plans) > 1024:
        store._plans.clear()
    store._plans[cache_key] = (registry, plan)  # the registry is kept so its id cannot be reused
    return plan


def _now_us(now: datetime | None) -> int:
    if now is None:
        return time.time_ns() // 1000
    return codec.micros(now)


# Sync keys always hold `name=value` inside the tag, so this one is never written.
NULL_KEY_TAG = "{}"
# The sync-state field that exists once a sync of the view has finished in this Redis.
SYNCED_FIELD = "as_of"


def get_online_features(
    registry: Registry,
    store: OnlineStore,
    features: list[str] | None = None,
    entity_rows: list[dict] | None = None,
    full_feature_names: bool = False,
    now: datetime | None = None,
    gate: str = "raise",
    apply_fallbacks: bool = True,
    *,
    feature_service: str | None = None,
    client: str | None = None,
) -> "OnlineResponse":
    """The latest live value of each feature for each entity row, in one Redis round trip.

    ``features`` are ``view:feature`` references (a bare ``view`` means all its
    features); ``entity_rows`` are dicts holding the views' join keys. A value whose
    event time is older than its view's ttl at ``now`` (default: the clock) is
    ``OUTSIDE_MAX_AGE``; a missing value (absent, expired or NULL) follows its
    feature's fallback: ``impute`` serves the default (status ``IMPUTED``), ``gate``
    raises :class:`FeatureMissing` (with ``gate="status"``: leaves ``None`` and the
    status, for a person looking), none leaves ``None``. ``apply_fallbacks=False``
    shows what Redis holds, without any fallback. A view with no finished sync in
    this Redis (never synced, or its data was lost) gives ``NOT_SYNCED`` for all its
    values: no default is imputed, and gated features raise. Instead of ``features``,
    ``feature_service`` names an ML model (a dbt exposure of type ml) and reads its features.

    The read is recorded under ``client`` (default: the store's :attr:`OnlineStore.client_name`):
    counted per feature (sent with a later read, added up), and sampled into the serving log
    (docs/serving-log.md). Recording never fails nor slows the read.
    """
    read = _Read(registry, store, registry.requested_features(features, feature_service), _rows(entity_rows),
                 full_feature_names, now, gate, apply_fallbacks, client)
    replies = store.call("reading features", read.attempt_sync) if read.n else []
    return read.finish(replies)


async def get_online_features_async(
    registry: Registry,
    store: OnlineStore,
    features: list[str] | None = None,
    entity_rows: list[dict] | None = None,
    full_feature_names: bool = False,
    now: datetime | None = None,
    gate: str = "raise",
    apply_fallbacks: bool = True,
    *,
    feature_service: str | None = None,
    client: str | None = None,
) -> "OnlineResponse":
    """:func:`get_online_features` on asyncio (``redis.asyncio``, hiredis when installed), for servers.

    The same read in every respect: the same keys, one pipeline of the same commands
    (``HMGET`` per view and entity, ``HGET`` of each view's sync state) on
    :attr:`OnlineStore.async_client`, the same retries and timeouts (waiting with
    ``asyncio.sleep``), and the same decoding, ttl check and fallbacks, so both give the
    same response for the same Redis and ``now``, and record the read alike.
    """
    read = _Read(registry, store, registry.requested_features(features, feature_service), _rows(entity_rows),
                 full_feature_names, now, gate, apply_fallbacks, client)
    replies = await store.call_async("reading features", read.attempt_async) if read.n else []
    return read.finish(replies)


def _rows(entity_rows: list[dict] | None) -> list[dict]:
    # entity_rows has a default only so that feature_service can stand in for features before it.
    if entity_rows is None:
        raise EntityDataFrameError("no entity_rows; pass entity_rows=[{<join key>: <value>, ...}, ...]")
    return entity_rows


class _Read:
    """One online read, split around its single round trip so the sync and async clients share the rest:
    the plan and the keys before it (bad references and keys fail before Redis is asked), the commands,
    and decoding, ttl and fallbacks after it."""

    __slots__ = ("registry", "store", "plan", "entity_rows", "n", "now_us", "keys", "gate", "apply_fallbacks",
                 "client", "n_read", "sending", "counted")

    def __init__(self, registry: Registry, store: OnlineStore, features: Iterable[str], entity_rows: list[dict],
                 full_feature_names: bool, now: datetime | None, gate: str, apply_fallbacks: bool,
                 client: str | None = None):
        if gate not in ("raise", "status"):
            raise ValueError(f"gate must be 'raise' or 'status', got {gate!r}")
        self.registry, self.store, self.entity_rows = registry, store, entity_rows
        self.gate, self.apply_fallbacks = gate, apply_fallbacks
        self.client = store.client_name if client is None else audit.check_client(client)
        self.plan = _plan(store, registry, features, full_feature_names)
        self.n = len(entity_rows)
        self.now_us = _now_us(now)
        self.keys = _keys(store, self.plan, entity_rows)
        self.n_read = (self.n + 1) * len(self.plan.views)  # the replies the read itself needs
        self.sending = 0
        self.counted = False

    def _queue(self, command: Callable[..., Any]) -> None:
        """Queue the read's commands on a pipeline: one HMGET per (view, entity), then each view's HGET;
        then the recording of earlier reads and this one: read counts when due (HINCRBY) and serving-log
        entries (XADD).

        One HMGET per (view, entity): on a cluster each is a single-slot command, and the
        pipeline sends each node its own in one round trip (a script over many entities
        could not). The recording rides in the same round trip, after the read's commands:
        its replies come after the read's, which :func:`_split_replies` never looks at.
        """
        keys, store = self.keys, self.store
        for vp in self.plan.views:
            for key in keys[vp.view.name]:
                command("HMGET", key, *vp.fields)
        for vp in self.plan.views:
            command("HGET", store.sync_key(vp.view.name), SYNCED_FIELD)
        if not store.record_reads:
            return
        if not self.counted:  # once, whatever the attempts
            self.counted = True
            store._count(self.now_us, self.plan.counter_fields(self.client), self.n)
        records = store._take_records()
        self.sending = len(records)  # a retried attempt sends none of them again: never twice
        for record in records:
            command(*record)

    def _checked(self, replies: list) -> list:
        """``replies`` if the read's own hold no error (else it is raised, as the pipeline would have);
        the recording's errors are only counted, so that they never fail the read."""
        n_read = self.n_read
        for reply in replies[:n_read] if len(replies) > n_read else replies:
            if isinstance(reply, Exception):
                raise reply
        if len(replies) > n_read:
            self.store._sent(replies[n_read:])
        return replies

    def _unsent(self) -> None:
        """The attempt failed as a whole: the entries it carried are lost (counted, not resent)."""
        if self.sending:
            self.store.log_errors += self.sending
            self.sending = 0

    def attempt_sync(self) -> list:
        pipe = self.store.client.pipeline(transaction=False)
        self._queue(pipe.execute_command)  # the hmget() wrapper only re-packs the same arguments
        try:
            replies = pipe.execute(raise_on_error=False)
        except BaseException:
            self._unsent()
            raise
        return self._checked(replies)

    async def attempt_async(self) -> list:
        from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

        client = self.store.async_client
        pack = _hiredis_packer()
        try:
            if pack is None or isinstance(client, AsyncRedisCluster):  # a cluster: redis-py sends each node its own
                pipe = client.pipeline(transaction=False)
                self._queue(pipe.execute_command)
                replies = await pipe.execute(raise_on_error=False)
            else:
                packed: list[bytes] = []
                self._queue(lambda *args: packed.append(pack(args)))
                replies = await _pipelined(client.connection_pool, b"".join(packed), len(packed), self.store.timeout)
        except BaseException:
            self._unsent()
            raise
        return self._checked(replies)

    def finish(self, replies: list) -> "OnlineResponse":
        """The response from the pipeline's replies: decoded, ttl checked, fallbacks applied; sampled
        into the serving log."""
        plan, entity_rows = self.plan, self.entity_rows
        rows, synced = _split_replies(plan, self.keys, replies) if self.n else ({}, {})
        values, statuses, event_ts = _decode(plan, rows, synced, self.n, self.now_us)
        imputed = _apply_fallbacks(self.registry, plan, entity_rows, values, statuses, event_ts, self.now_us,
                                   self.gate) if self.apply_fallbacks else {}
        if self.store.record_reads and self.n:
            self._sample(values, statuses, event_ts)
        entities = {k: [row.get(k) for row in entity_rows] for k in plan.entity_keys}
        return OnlineResponse(entities, plan.names, values, statuses, plan.features, event_ts, imputed)

    def _sample(self, values: list, statuses: list, event_ts: dict[str, list[int | None]]) -> None:
        """Buffer a serving-log entry for each sampled (view, entity row): what was served, as served."""
        entries = []
        served_at, client = str(self.now_us), self.client
        for vp in self.plan.views:
            name = vp.view.name
            stamps = event_ts[name]
            for r in _sampled(self.n, vp.sample_rate):
                row = self.entity_rows[r]
                ets = stamps[r]
                entries.append((
                    "served_at", served_at, "client", client, "view", name,
                    "entity", _json({k: row.get(k) for k in vp.join_keys}),
                    "event_ts", "" if ets is None else str(ets),
                    "features", vp.log_features,
                    "values", _json([servinglog.value_text(values[c][r]) for c in vp.columns]),
                    "statuses", _json([statuses[c][r].value for c in vp.columns]),
                ))
        if entries:
            self.store._buffer_log(entries)


def _sampled(n: int, rate: float) -> Iterable[int]:
    """The rows out of ``n`` that a sample at ``rate`` takes, each with probability ``rate`` on its own.

    Drawn as the gaps between taken rows (geometric), so a read of 100 rows at the default
    1% asks ``random.random()`` about once, not 100 times.
    """
    if rate >= 1:
        return range(n)
    if rate <= 0:
        return ()
    taken: list[int] = []
    log_miss = math.log1p(-rate)
    i = -1
    while True:
        i += 1 + int(math.log(1.0 - random.random()) / log_miss)
        if i >= n:
            return taken
        taken.append(i)


def _json(value: Any) -> str:
    """Compact JSON, keys sorted, values JSON cannot hold (dates, decimals) as the log's text."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=servinglog.value_text)


def _keys(store: OnlineStore, plan: _ReadPlan, entity_rows: list[dict]) -> dict[str, list[str]]:
    """Each view's Redis key per entity row; the join keys are checked and converted by their declared types."""
    tags: dict[tuple, list[str]] = {}  # views with the same join keys (names and kinds) share their tags
    keys = {}
    prefix = store.prefix + ":"
    for vp in plan.views:
        tag_id = (vp.join_keys, tuple(vp.kinds.values()))
        vt = tags.get(tag_id)
        if vt is None:
            try:
                # NULL keys never match (as offline): such a row reads a key no sync writes.
                vt = [NULL_KEY_TAG if any(row.get(k, 0) is None for k in vp.join_keys) else vp.tag(row)
                      for row in entity_rows]
            except KeyError as exc:
                raise EntityDataFrameError(
                    f"an entity row lacks join key {exc.args[0]!r}, which feature view {vp.view.name} needs "
                    f"(give every row {', '.join(vp.join_keys)})") from None
            except (TypeError, ValueError) as exc:
                raise EntityDataFrameError(f"bad join key value for feature view {vp.view.name}: {exc}") from None
            tags[tag_id] = vt
        keys[vp.view.name] = [prefix + t + vp.suffix for t in vt]
    return keys


_PACK: Any = False  # not looked up yet


def _hiredis_packer() -> Callable[[tuple], bytes] | None:
    """hiredis's command packer (C), or None without hiredis."""
    global _PACK
    if _PACK is False:
        try:
            import hiredis
        except ImportError:
            _PACK = None
        else:
            _PACK = hiredis.pack_command
    return _PACK


async def _pipelined(pool: Any, packed: bytes, count: int, timeout: float) -> list:
    """The replies to ``count`` commands sent packed, at once, on one connection of ``pool``: a pipeline.

    redis.asyncio's own pipeline packs each command in Python and wraps each reply's read
    in a timeout of its own, which costs more than the round trip for hundreds of HMGETs;
    this sends the commands hiredis packed in one write and reads the replies under one
    timeout for the whole answer. An error reply is returned in its place, as an exception
    (as ``pipeline.execute(raise_on_error=False)`` does). A connection left with unread replies (an error, a
    timeout, a cancelled request) is closed, never handed back to the pool half-read.
    """
    try:
        conn = await pool.get_connection()
    except TypeError:  # redis-py before 5 names a command
        conn = await pool.get_connection("HMGET")
    try:
        try:
            async with asyncio.timeout(timeout):
                await conn.send_packed_command(packed)
                read = conn.read_response
                # timeout=inf: no timeout per reply; the one above bounds them all.
                replies: list = []
                for _ in range(count):
                    try:
                        replies.append(await read(timeout=math.inf))
                    except ResponseError as exc:  # one command's error reply, read in full: keep reading
                        replies.append(exc)
                return replies
        except TimeoutError:
            raise redis.TimeoutError(f"no complete answer within {timeout}s") from None
    except BaseException:
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)


def _split_replies(plan: _ReadPlan, keys: dict[str, list[str]],
                   replies: list) -> tuple[dict[str, list], dict[str, bool]]:
    """The pipeline's replies as each view's rows, and whether each view has a finished sync."""
    rows, i = {}, 0
    for vp in plan.views:
        n = len(keys[vp.view.name])
        rows[vp.view.name] = replies[i:i + n]
        i += n
    synced = {vp.view.name: replies[i + j] is not None for j, vp in enumerate(plan.views)}
    return rows, synced


def _decode(plan: _ReadPlan, rows: dict[str, list], synced: dict[str, bool], n: int, now_us: int):
    """Values, statuses and event times from the replies, with the ttl checked at ``now_us``."""
    width = len(plan.names)
    values: list[list[Any]] = [[None] * n for _ in range(width)]
    statuses: list[list[FieldStatus]] = [[FieldStatus.PRESENT] * n for _ in range(width)]
    event_ts: dict[str, list[int | None]] = {}
    for vp in plan.views:
        ts_list: list[int | None] = [None] * n
        event_ts[vp.view.name] = ts_list
        if n and not synced[vp.view.name]:
            for c in vp.columns:
                statuses[c] = [FieldStatus.NOT_SYNCED] * n
            continue
        live = _live_rows(vp, rows.get(vp.view.name, []), ts_list, statuses, now_us)
        _decode_values(vp, rows.get(vp.view.name, []), live, values, statuses)
    return values, statuses, event_ts


def _live_rows(vp: _ViewPlan, replies: list, ts_list: list, statuses: list, now_us: int) -> list[int]:
    """The rows whose entity has a row within the ttl; the others get NOT_FOUND or OUTSIDE_MAX_AGE."""
    cutoff = now_us - vp.ttl_us if vp.ttl_us is not None else None
    live: list[int] = []
    for r, reply in enumerate(replies):
        raw_ts = reply[0]
        if raw_ts is None:
            for c in vp.columns:
                statuses[c][r] = FieldStatus.NOT_FOUND
            continue
        ets = ts_list[r] = int(raw_ts)
        if cutoff is not None and ets < cutoff:
            for c in vp.columns:
                statuses[c][r] = FieldStatus.OUTSIDE_MAX_AGE
        else:
            live.append(r)
    return live


def _decode_values(vp: _ViewPlan, replies: list, live: list[int], values: list, statuses: list) -> None:
    """Decode the live rows' values by each feature's type; absent fields are NULL_VALUE."""
    all_live = len(live) == len(replies)
    for j, (c, dec) in enumerate(zip(vp.columns, vp.decoders, strict=True), 1):
        raw = [reply[j] for reply in replies] if all_live else [replies[r][j] for r in live]
        if all_live and None not in raw:
            values[c] = list(map(dec, raw))  # the common case: every value present
            continue
        column, column_status = values[c], statuses[c]
        for r, item in zip(live, raw, strict=True):
            if item is None:
                column_status[r] = FieldStatus.NULL_VALUE
            else:
                column[r] = dec(item)


def _apply_fallbacks(registry: Registry, plan: _ReadPlan, entity_rows: list[dict], values: list, statuses: list,
                     event_ts: dict, now_us: int, gate: str) -> dict[str, int]:
    """Impute defaults or enforce gates where a value is missing; returns the imputed count per feature.

    A view that was never synced here is never imputed: a default from an empty store looks real.
    """
    imputed: dict[str, int] = {}
    for c, feature, fallback, fill in plan.fallbacks:
        col_status = statuses[c]
        if all(s is FieldStatus.PRESENT for s in col_status):
            continue
        for r, s in enumerate(col_status):
            if s is FieldStatus.PRESENT or (s is FieldStatus.NOT_SYNCED and fallback.kind == "impute"):
                continue
            if fallback.kind == "gate":
                if gate == "status":
                    continue
                view = registry.view(feature.view)
                raise FeatureMissing(feature.ref, {k: entity_rows[r].get(k) for k in view.join_keys},
                                     _reason(s, view, event_ts[feature.view][r], now_us))
            values[c][r] = fill
            col_status[r] = FieldStatus.IMPUTED
            imputed[plan.names[c]] = imputed.get(plan.names[c], 0) + 1
    return imputed


def _reason(status: FieldStatus, view: FeatureView, ets: int | None, now_us: int) -> str:
    if status is FieldStatus.NOT_SYNCED:
        return (f"{view.name} has no finished sync in this Redis (never synced, or Redis lost its data); "
                "run `fstore sync`")
    if status is FieldStatus.NOT_FOUND:
        return f"no row of {view.name} in the online store (never synced, or evicted after its ttl)"
    if status is FieldStatus.OUTSIDE_MAX_AGE:
        age = format_duration_us(now_us - (ets or 0))
        return f"the latest row is {age} old, older than the ttl {format_duration(view.ttl)} of {view.name}"
    return "the latest row holds NULL"


def format_duration_us(us: int) -> str:
    secs = us // 1_000_000
    days, rem = divmod(secs, 86400)
    hours, rem = divmod(rem, 3600)
    mins, secs = divmod(rem, 60)
    text = "".join(f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (mins, "m")) if v)
    return text + (f"{secs}s" if secs or not text else "")


class OnlineResponse:
    """Values for a list of entity rows, with a status per value.

    ``to_dict()`` is Feast's shape: entity keys and features as columns, e.g.
    ``{"user_id": [1, 2], "user_7d_orders": [5, 0]}``.
    """

    def __init__(self, entities: dict[str, list], names: list[str], values: list[list], statuses: list[list],
                 features: list[Feature], event_ts: dict[str, list[int | None]], imputed: dict[str, int]):
        self._entities = entities
        self.feature_names = names
        self._values = values
        self._statuses = statuses
        self.features = features
        self._event_ts = event_ts
        self.imputed = imputed
        """Count of imputed values per feature (only features with at least one)."""

    def __len__(self) -> int:
        return len(self._values[0]) if self._values else 0

    def __repr__(self) -> str:
        return f"OnlineResponse({len(self)} rows, features={self.feature_names})"

    @property
    def entity_columns(self) -> dict[str, list]:
        """The join key columns, as the entity rows gave them (not copied: do not change them)."""
        return self._entities

    def columns(self) -> list[tuple[str, Feature, list, list[FieldStatus], list[int | None]]]:
        """Per feature, in order: its output name, its definition, its values, their statuses and the
        event time of the row each came from (integer microseconds since the epoch, UTC; None where
        there was no row). Not copied, for serializers that are in a hurry: do not change them."""
        return [(name, f, values, statuses, self._event_ts[f.view])
                for name, f, values, statuses in zip(self.feature_names, self.features, self._values,
                                                     self._statuses, strict=True)]

    @property
    def statuses(self) -> dict[str, list[FieldStatus]]:
        """A :class:`FieldStatus` per value, by feature name."""
        return dict(zip(self.feature_names, self._statuses, strict=True))

    @property
    def event_timestamps(self) -> dict[str, list[datetime | None]]:
        """The event time (naive UTC) of the row each value came from, by feature name."""
        by_view = {v: [codec.from_micros(t) if t is not None else None for t in ts]
                   for v, ts in self._event_ts.items()}
        return {name: by_view[f.view] for name, f in zip(self.feature_names, self.features, strict=True)}

    def to_dict(self, include_status: bool = False, include_event_timestamps: bool = False) -> dict[str, list]:
        """Columns by name; ``<name>__status`` and ``<name>__ts`` columns on request."""
        out: dict[str, list] = {k: list(v) for k, v in self._entities.items()}
        stamps = self.event_timestamps if include_event_timestamps else None
        for name, values, statuses in zip(self.feature_names, self._values, self._statuses, strict=True):
            out[name] = list(values)
            if include_status:
                out[f"{name}__status"] = [s.value for s in statuses]
            if stamps is not None:
                out[f"{name}__ts"] = stamps[name]
        return out

    def to_df(self, include_status: bool = False, include_event_timestamps: bool = False) -> "pd.DataFrame":
        """The same columns as :meth:`to_dict`, as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.to_dict(include_status, include_event_timestamps))
