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

import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.retry import Retry

from feature_store import codec
from feature_store.errors import EntityDataFrameError, FeatureMissing, OnlineStoreError
from feature_store.registry import Fallback, Feature, FeatureView, Registry, format_duration, output_names, type_kind

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

    from feature_store.writer import BatchWriter

__all__ = ["FieldStatus", "OnlineResponse", "OnlineStore", "WriteResult", "get_online_features"]

DEFAULT_URL = "redis://localhost:6379/0"
URL_ENV = "FEATURE_STORE_REDIS_URL"


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


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


@dataclass
class WriteResult:
    """What one write of rows did: counts, as the sync summary reports them."""

    rows: int = 0  # rows handed in
    written: int = 0  # keys written (or that would be, in a dry run)
    skipped_older: int = 0  # not written: Redis holds a newer version
    unchanged: int = 0  # not written: Redis holds this version with this content already
    expired_on_arrival: int = 0  # not written: already older than the ttl

    def __iadd__(self, other: "WriteResult") -> "WriteResult":
        self.rows += other.rows
        self.written += other.written
        self.skipped_older += other.skipped_older
        self.unchanged += other.unchanged
        self.expired_on_arrival += other.expired_on_arrival
        return self


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
    ):
        self.url = url or os.environ.get(URL_ENV) or DEFAULT_URL
        self.prefix = prefix
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self.client = self._client(timeout)
        self._write_client: redis.Redis | None = None
        self._shas: dict[str, str] = {}
        self._plans: dict[tuple, tuple[Registry, _ReadPlan]] = {}

    def _client(self, timeout: float) -> redis.Redis:
        try:
            # redis-py's own retries are off: nested in ours they multiplied the wait on a
            # hung server (minutes); _retrying bounds the attempts and skips auth errors.
            return redis.Redis.from_url(self.url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=self.connect_timeout,
                                        socket_timeout=timeout)
        except (ValueError, TypeError) as exc:
            raise OnlineStoreError(
                f"{redact(self.url)} is not a Redis URL ({exc}); write redis://[:password@]host:port/db "
                f"or rediss:// for TLS (--redis-url or ${URL_ENV})") from None

    @property
    def write_client(self) -> redis.Redis:
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
        self.client.close()
        if self._write_client is not None:
            self._write_client.close()

    # -- errors ------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn redis-py exceptions into :class:`OnlineStoreError` naming the URL and what to check."""
        try:
            yield
        except AuthenticationError as exc:
            raise OnlineStoreError(
                f"Redis at {redact(self.url)} refused the credentials while {doing} ({exc}); "
                f"check the password in --redis-url / ${URL_ENV}") from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise OnlineStoreError(
                f"cannot reach Redis at {redact(self.url)} while {doing} (gave up after {self.retries} "
                f"retries: {exc}); check that redis-server is running and reachable, and the URL in "
                f"--redis-url / ${URL_ENV}") from None
        except RedisError as exc:
            raise OnlineStoreError(f"Redis at {redact(self.url)} answered an error while {doing}: {exc}") from None

    def _retrying(self, attempt: Callable[[], Any], on_error: Callable[[], Any] | None = None) -> Any:
        """``attempt()``, retried ``retries`` times with backoff on connection errors and timeouts.

        Refused credentials and error replies are not retried: trying again cannot help.
        """
        for n in range(self.retries + 1):
            try:
                return attempt()
            except AuthenticationError:
                raise
            except (redis.ConnectionError, redis.TimeoutError):
                if on_error is not None:
                    on_error()
                if n == self.retries:
                    raise
                time.sleep(min(self.backoff * 2**n, 1.0))
        raise AssertionError("unreachable")

    def _call(self, doing: str, fn: Callable[[], Any]) -> Any:
        """One redis-py call, retried and with our errors."""
        with self._errors(doing):
            return self._retrying(fn)

    def ping(self) -> None:
        """Check the connection now (:class:`OnlineStoreError` if Redis cannot be reached)."""
        self._call("connecting", self.client.ping)

    def server_facts(self) -> ServerFacts | None:
        """The server's run id, evictions and memory policy (``INFO``); None if this user may not ask."""
        try:
            info = self._call("asking the server about itself (INFO)", self.client.info)
        except OnlineStoreError as exc:
            if "NOPERM" in str(exc) or "unknown command" in str(exc):
                return None
            raise
        return ServerFacts(run_id=str(info.get("run_id", "")), evicted_keys=int(info.get("evicted_keys", 0)),
                           maxmemory=int(info.get("maxmemory", 0)), policy=str(info.get("maxmemory_policy", "")))

    # -- keys --------------------------------------------------------------------------------

    def key(self, view: FeatureView, entity: Mapping[str, Any]) -> str:
        """The Redis key of ``entity``'s row of ``view`` (see :mod:`feature_store.codec`)."""
        return codec.view_key(self.prefix, view.name, codec.entity_tag(view.join_keys, _key_kinds(view), entity))

    def sync_key(self, view_name: str) -> str:
        """The hash holding ``view_name``'s sync state: the last finished sync, backfill checkpoints."""
        return f"{self.prefix}:_sync:{view_name}"

    def lock_key(self, view_name: str) -> str:
        """The string a running sync of ``view_name`` holds (its token), with a lease."""
        return f"{self.prefix}:_sync:{view_name}:lock"

    # -- scripts -----------------------------------------------------------------------------

    def _sha(self, name: str, source: Callable[[], str]) -> str:
        """The SHA of the script called ``name`` (text from ``source()``), loaded on first use."""
        sha = self._shas.get(name)
        if sha is None:
            sha = self._call("loading the online-store scripts", lambda: self.write_client.script_load(source()))
            self._shas[name] = sha
        return sha

    def _script(self, name: str, source: str, keys: list[str], args: list[Any], doing: str) -> Any:
        """Run one of the small state scripts (loaded once, reloaded after a restart)."""
        def run():
            try:
                return self.client.evalsha(self._sha(name, lambda: source), len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                self._shas.pop(name, None)
                return self.client.evalsha(self._sha(name, lambda: source), len(keys), *keys, *args)

        return self._call(doing, run)

    def _pipeline(self, packed: bytes, replies: int, doing: str) -> list:
        """Send pre-encoded commands in one write and read their ``replies``: one round trip."""
        pool = self.client.connection_pool

        def attempt() -> list:
            conn = pool.get_connection()
            try:
                conn.send_packed_command([packed], check_health=False)
                return [conn.read_response() for _ in range(replies)]
            except BaseException:
                conn.disconnect()  # unread replies must not reach the next user of this connection
                raise
            finally:
                pool.release(conn)

        return self._call(doing, attempt)

    # -- sync state ----------------------------------------------------------------------------

    def sync_state(self, view_name: str) -> dict[str, str]:
        """The sync state of ``view_name`` (empty: never synced here, or Redis lost it)."""
        raw = self._call(f"reading the sync state of {view_name}", lambda: self.client.hgetall(self.sync_key(view_name)))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def save_sync_state(self, view_name: str, token: str, fields: Mapping[str, Any]) -> bool:
        """Record ``fields`` in the view's sync state if ``token`` still holds its lock (else False)."""
        args = [x for k, v in fields.items() for x in (k, str(v))]
        return bool(self._script("save_state", _SAVE_STATE, [self.sync_key(view_name), self.lock_key(view_name)],
                                 [token, *args], f"saving the sync state of {view_name}"))

    def try_lock(self, view_name: str, token: str, lease_ms: int) -> str | None:
        """Take the view's sync lock for ``lease_ms``; None if taken, else the holder's token."""
        key = self.lock_key(view_name)
        if self._call(f"locking {view_name}", lambda: self.client.set(key, token, nx=True, px=lease_ms)):
            return None
        holder = self._call(f"locking {view_name}", lambda: self.client.get(key))
        return holder.decode() if holder else ""

    def renew_lock(self, view_name: str, token: str, lease_ms: int) -> bool:
        """Extend the lease of a lock this token holds (False: it is gone)."""
        return bool(self._script("renew_lock", _RENEW_LOCK, [self.lock_key(view_name)], [token, lease_ms],
                                 f"renewing the sync lock of {view_name}"))

    def unlock(self, view_name: str, token: str) -> None:
        """Release the lock if this token still holds it."""
        self._script("release_lock", _RELEASE_LOCK, [self.lock_key(view_name)], [token],
                     f"releasing the sync lock of {view_name}")

    def count_keys(self, view_name: str) -> int:
        """How many keys ``view_name`` has here: a SCAN over the prefix, O(keys), for a person looking."""
        pattern = f"{self.prefix}:{{*}}:{view_name}"
        return self._call(f"counting the keys of {view_name}",
                          lambda: sum(1 for _ in self.client.scan_iter(match=pattern, count=10_000)))

    def get_checkpoint(self, view_name: str, label: str) -> datetime | None:
        """The end of the last finished chunk of backfill ``label``, or None."""
        raw = self.sync_state(view_name).get(f"backfill {label}")
        return datetime.fromisoformat(raw) if raw else None

    # -- writing -----------------------------------------------------------------------------

    def writer(self, view: FeatureView, *, definition: str | None = None, fence: tuple[str, str] | None = None,
               dry_run: bool = False, rows_per_call: int = 500) -> "BatchWriter":
        """A :class:`~feature_store.writer.BatchWriter` for ``view``: submit Arrow batches, read the counts."""
        from feature_store.writer import BatchWriter, definition_digest  # pyarrow: only when writing

        return BatchWriter(self, view, definition=definition or definition_digest(view), fence=fence,
                           dry_run=dry_run, rows_per_call=rows_per_call)

    def write(self, view: FeatureView, rows: "pa.RecordBatch | pa.Table", *, dry_run: bool = False,
              wall_now: float | None = None) -> WriteResult:
        """Write the latest rows of ``view`` now, under the write rule (see :mod:`feature_store.writer`).

        ``rows`` holds the join keys, the features, ``__event_ts`` and ``__created_ts``
        (what :func:`feature_store.snapshot.snapshot` streams); see
        :class:`~feature_store.writer.BatchWriter` for what is counted. This alone does
        not make the view synced: reads answer ``NOT_SYNCED`` until a sync has finished.
        """
        total = WriteResult()
        with self.writer(view, dry_run=dry_run) as w:
            w.submit(rows, wall_now=wall_now)
        for result in w.acknowledged():
            total += result
        return total


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
                  f"{instead}", FutureWarning, stacklevel=5)


def _fallback_value(feature: Feature, fallback: Fallback) -> Any:
    """The impute value as the feature's Python type (ISO text becomes a datetime / date)."""
    value = fallback.value
    if value is None:
        return None
    kind = feature.kind
    if kind in ("timestamp", "date"):
        return codec.decoder(kind)(codec.encode_value(kind, value).encode())
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
    head: bytes  # RESP header of this view's HMGET: "*<n>\r\n$5\r\nHMGET\r\n"
    fields: bytes  # RESP of the requested fields, __event_ts first
    decoders: tuple[Callable[[bytes], Any], ...]
    columns: tuple[int, ...]  # output column of each requested feature
    ttl_us: int | None


@dataclass
class _ReadPlan:
    views: list[_ViewPlan]
    features: list[Feature]
    names: list[str]
    entity_keys: list[str]
    # (column, feature, fallback, impute value) for features with a fallback
    fallbacks: list[tuple[int, Feature, Fallback, Any]]


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
        fields = [codec.EVENT_TS] + [features[i].name for i in cols]
        views.append(_ViewPlan(
            view=view,
            suffix=f":{view.name}",
            join_keys=view.join_keys,
            kinds=_key_kinds(view),
            tag=codec.tagger(view.join_keys, _key_kinds(view)),
            head=b"*%d\r\n$5\r\nHMGET\r\n" % (len(fields) + 2),
            fields=b"".join(b"$%d\r\n%s\r\n" % (len(f.encode()), f.encode()) for f in fields),
            decoders=tuple(codec.decoder(features[i].kind) for i in cols),
            columns=tuple(cols),
            ttl_us=int(view.ttl.total_seconds() * 1_000_000) if view.ttl is not None else None,
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
    features: list[str],
    entity_rows: list[dict],
    full_feature_names: bool = False,
    now: datetime | None = None,
    gate: str = "raise",
    apply_fallbacks: bool = True,
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
    values: no default is imputed, and gated features raise.
    """
    if gate not in ("raise", "status"):
        raise ValueError(f"gate must be 'raise' or 'status', got {gate!r}")
    plan = _plan(store, registry, features, full_feature_names)
    n = len(entity_rows)
    now_us = _now_us(now)
    commands: list[bytes] = []
    tags: dict[tuple, list[str]] = {}  # views with the same join keys (names and kinds) share their tags
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
        head, fields = vp.head, vp.fields
        for key in [(prefix + t + vp.suffix).encode() for t in vt]:
            commands.append(b"%s$%d\r\n%s\r\n%s" % (head, len(key), key, fields))
    # One pipelined HMGET per (view, entity): one round trip, and on a cluster each key
    # stays a single-slot command (a Lua script over many entities could not). The same
    # round trip asks whether each view has a finished sync here at all.
    synced_fields = b"".join(_hget(store.sync_key(vp.view.name), SYNCED_FIELD) for vp in plan.views)
    replies = store._pipeline(b"".join(commands) + synced_fields, len(commands) + len(plan.views),
                              "reading features") if n else []
    synced = {vp.view.name: not n or replies[len(commands) + i] is not None for i, vp in enumerate(plan.views)}

    width = len(plan.names)
    values: list[list[Any]] = [[None] * n for _ in range(width)]
    statuses: list[list[FieldStatus]] = [[FieldStatus.PRESENT] * n for _ in range(width)]
    event_ts: dict[str, list[int | None]] = {}
    present, null, not_found, expired = (FieldStatus.PRESENT, FieldStatus.NULL_VALUE, FieldStatus.NOT_FOUND,
                                         FieldStatus.OUTSIDE_MAX_AGE)
    i = 0
    for vp in plan.views:
        view_replies = replies[i:i + n]
        i += n
        ts_list: list[int | None] = [None] * n
        event_ts[vp.view.name] = ts_list
        if not synced[vp.view.name]:
            for c in vp.columns:
                statuses[c] = [FieldStatus.NOT_SYNCED] * n
            continue
        cutoff = now_us - vp.ttl_us if vp.ttl_us is not None else None
        cols = vp.columns
        live: list[int] = []
        for r, reply in enumerate(view_replies):
            raw_ts = reply[0]
            if raw_ts is None:
                for c in cols:
                    statuses[c][r] = not_found
                continue
            ets = ts_list[r] = int(raw_ts)
            if cutoff is not None and ets < cutoff:
                for c in cols:
                    statuses[c][r] = expired
            else:
                live.append(r)
        all_live = len(live) == n
        for j, (c, dec) in enumerate(zip(cols, vp.decoders), 1):
            raw = [view_replies[r][j] for r in live] if not all_live else [reply[j] for reply in view_replies]
            if None not in raw and all_live:
                values[c] = list(map(dec, raw))  # the common case: every value present
                continue
            column, column_status = values[c], statuses[c]
            for r, item in zip(live, raw):
                if item is None:
                    column_status[r] = null
                else:
                    column[r] = dec(item)

    imputed: dict[str, int] = {}
    if apply_fallbacks:
        for c, feature, fallback, fill in plan.fallbacks:
            col_status = statuses[c]
            if all(s is present for s in col_status):
                continue
            for r, s in enumerate(col_status):
                if s is present or (s is FieldStatus.NOT_SYNCED and fallback.kind == "impute"):
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

    entities = {k: [row.get(k) for row in entity_rows] for k in plan.entity_keys}
    return OnlineResponse(entities, plan.names, values, statuses, plan.features, event_ts, imputed)


def _hget(key: str, field: str) -> bytes:
    k, f = key.encode(), field.encode()
    return b"*3\r\n$4\r\nHGET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(f), f)


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
    def statuses(self) -> dict[str, list[FieldStatus]]:
        """A :class:`FieldStatus` per value, by feature name."""
        return dict(zip(self.feature_names, self._statuses))

    @property
    def event_timestamps(self) -> dict[str, list[datetime | None]]:
        """The event time (naive UTC) of the row each value came from, by feature name."""
        by_view = {v: [codec.from_micros(t) if t is not None else None for t in ts]
                   for v, ts in self._event_ts.items()}
        return {name: by_view[f.view] for name, f in zip(self.feature_names, self.features)}

    def to_dict(self, include_status: bool = False, include_event_timestamps: bool = False) -> dict[str, list]:
        """Columns by name; ``<name>__status`` and ``<name>__ts`` columns on request."""
        out: dict[str, list] = {k: list(v) for k, v in self._entities.items()}
        stamps = self.event_timestamps if include_event_timestamps else None
        for name, values, statuses in zip(self.feature_names, self._values, self._statuses):
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
