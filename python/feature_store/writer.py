"""Writing rows into the online store: values encoded column-wise with Arrow, sent in the background.

Every column is cast to the stored text column-wise (:func:`feature_store.codec.encode_column`),
then the rows' arguments are laid out flat for the write script and sent with
redis-py's public API only: a registered script (``EVALSHA``, loaded again after a
restart) called many rows at a time in a non-transactional pipeline. Every command is
one an SRE can read in ``MONITOR``: ``EVALSHA`` of the script below, whose text is in
this module.

The script (:func:`write_latest`) is the write rule, decided atomically in Redis for
many rows per call. A row's *version* is ``(event ts, created ts)``; every hash also
holds ``__definition``, the digest of its view's definition (:func:`definition_digest`).
For each key the script

* writes the row when it is newer than the stored one, or has the same version and
  other content: another value, a NULL where there was a value or back, or another
  definition (a logic fix rebuilt at the same timestamps, a changed ttl or type: the
  warehouse is the truth, so the same version with new content replaces);
* skips it as *older* when the stored version is newer: nothing ever goes back to an
  older version, whatever order syncs, backfills and pushes land in;
* skips it as *unchanged* when version and content are equal, so a re-run over
  unchanged data writes nothing. Content is compared field by field, in Redis, and only
  when the versions tie: no client-side hash to trust, and nothing extra on the wire.

A written row replaces the whole hash (``DEL``, ``HSET``) and gets ``PEXPIREAT`` at
event ts + ttl. When two syncs write the same version with different content, the
one that writes last wins; the sync lock (:mod:`feature_store.materialize`) makes
that the sync that read the warehouse last. A sync passes its lock token: a call
whose token is no longer the lock's value (Redis lost the lock in a flush, restart or
failover, or the lease ran out) fails instead of writing. (Feast decides "newer" by
read-then-write in the client, which races with a concurrent writer.)

:class:`BatchWriter` sends on a background thread with its own pipeline, so the next batch
is read and encoded while Redis runs the script on the previous one. Counts come back
per batch, in order, only once Redis has answered for every row of the batch, with the
positions in the batch of the rows written as a newer version than Redis held (what the
write lag of :mod:`feature_store.writelag` is measured on).
"""

from __future__ import annotations

import functools
import hashlib
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from redis.exceptions import AskError, ClusterDownError, MovedError, ResponseError, TryAgainError

from feature_store import codec
from feature_store.connection import is_cluster
from feature_store.errors import OnlineStoreError
from feature_store.registry import FeatureView, format_duration, type_kind

if TYPE_CHECKING:  # pragma: no cover
    from feature_store.online import OnlineStore

__all__ = ["BatchWriter", "EncodedWrite", "WriteResult", "definition_digest", "encode_write", "lock_lost",
           "write_fields", "write_latest", "write_rows"]

# The error a fenced call answers with when the caller's sync lock is gone.
FENCE_ERROR = "FSFENCE"
# Replies of a cluster node whose slot is moving: send the call again, to the new owner.
_SLOT_MOVING = (MovedError, AskError, TryAgainError, ClusterDownError)
_CLUSTER_ATTEMPTS = 30
# Up to this many fields the script spells HSET's arguments out (faster); Lua refuses one
# call with many hundreds of arguments ("expression too complex"), so wider views loop.
SPELLED_OUT_FIELDS = 100

# KEYS   = the fence key (the sync's lock), then the hash keys, one per row.
# ARGV   = mode ("w" write, "d" dry run: count only), has_mask ("1" when rows carry a
#          null mask), ttl in microseconds ("" = none), fence token ("" = unfenced), the
#          view's definition digest, then per row: the null mask when has_mask ("" = no
#          NULLs, else one "0"/"1" per field) and one value per field (NULLs as ""), in
#          the order of @FIELDS@; field 1 is __event_ts.
# Returns {written, skipped_older, skipped_unchanged, newer}: the counts, then the rows
#          written as a newer version than Redis held (no key, or a greater (event ts,
#          created ts); not a same-version rewrite) as runs of row positions in this
#          call, 1-based, {first, last, first, last, ...}: {} none, {1, 500} all of 500
#          rows, {3, 3, 7, 9} rows 3, 7, 8 and 9. The write lag (feature_store.writelag)
#          is measured on these rows.
#
# Speed notes: the field names are constants in the script text, and the common case
# (no NULL in the row, up to SPELLED_OUT_FIELDS fields) calls HSET with its arguments
# spelled out, because building a table and unpacking it costs about a third of the
# per-row time; PEXPIREAT, unlike EXPIREAT, is not rewritten by Redis for propagation.
# Content is read (one HMGET of every field) only when the versions tie.
#
# A script (EVALSHA) rather than a Redis Function: Functions need Redis 7.0 and the
# FUNCTION LOAD permission, which managed services often deny, and are a library to
# deploy and version beside the data; redis-py's register_script loads a script on first
# use and again after a restart or SCRIPT FLUSH, with nothing to deploy.
_WRITE_LATEST = r"""
local dry = ARGV[1] == 'd'
local has_mask = ARGV[2] == '1'
local ttl = tonumber(ARGV[3])
if ARGV[4] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[4] then
  return redis.error_reply('@FENCE@ the sync lock ' .. KEYS[1] .. ' is no longer held by this sync')
end
local definition = ARGV[5]
local fields = {@FIELDS@}
local nf = #fields
local has_created = fields[2] == '__created_ts'

-- Same version: is the stored hash exactly this row (same fields, values, definition)?
local function same(key, v, mask)
  local cur = redis.call('HMGET', key, '__definition', unpack(fields))
  if cur[1] ~= definition then return false end
  for j = 1, nf do
    local new = ARGV[v + j]
    if mask ~= '' and string.byte(mask, j) == 49 then new = false end  -- "1": NULL, no field
    if cur[j + 1] ~= new then return false end
  end
  return true
end

-- 'newer' (no key, or a greater version) and 'rewrite' (the same version with other
-- content) are written; 'older' and 'unchanged' are not. At the same event time the
-- created timestamp decides; NULL ("") is older than any value.
local function verdict(key, v, mask)
  local old = redis.call('HMGET', key, '__event_ts', '__created_ts')
  if not old[1] then return 'newer' end
  local e, old_e = tonumber(ARGV[v + 1]), tonumber(old[1])
  if e ~= old_e then return e > old_e and 'newer' or 'older' end
  local c, old_c = has_created and tonumber(ARGV[v + 2]) or nil, tonumber(old[2] or '')
  if c ~= old_c then
    if c == nil then return 'older' end
    if old_c == nil then return 'newer' end
    return c > old_c and 'newer' or 'older'
  end
  return same(key, v, mask) and 'unchanged' or 'rewrite'
end

local stride = has_mask and nf + 1 or nf
local written, older, unchanged = 0, 0, 0
local newer = {}                           -- runs of 'newer' rows: first, last, first, last, ...
for i = 2, #KEYS do
  local key = KEYS[i]
  local b = 6 + (i - 2) * stride           -- the row's first argument
  local v = has_mask and b or b - 1        -- value j is ARGV[v + j]
  local mask = has_mask and ARGV[b] or ''
  local decided = verdict(key, v, mask)
  if decided == 'older' then
    older = older + 1
  elseif decided == 'unchanged' then
    unchanged = unchanged + 1
  else
    written = written + 1
    if decided == 'newer' then
      local row, n = i - 1, #newer
      if n > 0 and newer[n] == row - 1 then
        newer[n] = row                     -- extends the current run
      else
        newer[n + 1], newer[n + 2] = row, row
      end
    end
    if not dry then
      redis.call('DEL', key)                   -- the row replaces the whole hash
      if mask == '' and @SPELLED@ then
        @SPELLED_HSET@
      else
        local set = {key, '__definition', definition}
        for j = 1, nf do
          if mask == '' or string.byte(mask, j) ~= 49 then
            set[#set + 1] = fields[j]
            set[#set + 1] = ARGV[v + j]
          end
        end
        redis.call('HSET', unpack(set))
      end
      if ttl then
        -- Whole milliseconds, rounded up: Redis never drops a key the read-time check still serves.
        local x = tonumber(ARGV[v + 1]) + ttl
        local at = math.floor(x / 1000)
        if at * 1000 < x then at = at + 1 end
        redis.call('PEXPIREAT', key, at)
      end
    end
  end
end
return {written, older, unchanged, newer}
"""


def _lua_string(text: str) -> str:
    """``text`` as a Lua long-bracket literal, whatever it contains."""
    level = 0
    while f"]{'=' * level}]" in text + "]":
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def write_latest(fields: list[str]) -> str:
    """The write script for rows of these hash ``fields`` (``__event_ts`` first)."""
    if not fields or fields[0] != codec.EVENT_TS:
        raise ValueError(f"the first field must be {codec.EVENT_TS}, got {fields[:1]}")
    spelled = len(fields) <= SPELLED_OUT_FIELDS
    args = ", ".join(f"{_lua_string(f)}, ARGV[v + {j}]" for j, f in enumerate(fields, 1))
    return (_WRITE_LATEST.replace("@FIELDS@", ", ".join(_lua_string(f) for f in fields))
            .replace("@SPELLED@", "true" if spelled else "false")
            .replace("@SPELLED_HSET@", f"redis.call('HSET', key, '__definition', definition, {args})" if spelled else "")
            .replace("@FENCE@", FENCE_ERROR))


def write_fields(view: FeatureView) -> list[str]:
    """The hash fields a row of ``view`` is written with, in the order the script receives them."""
    fields = [codec.EVENT_TS]
    if view.created_timestamp:
        fields.append(codec.CREATED_TS)
    return fields + [f.name for f in view.features]


def _no_rows() -> np.ndarray:
    return np.empty(0, np.int64)


@dataclass
class WriteResult:
    """What one write of rows did: counts, as the sync summary reports them, and which rows were newer.

    ``newer``: the positions (0-based, ascending) in the rows handed in of those written as a
    newer version than Redis held: no key, or a greater (event ts, created ts). Not the
    same-version rewrites (a logic fix), which ``written`` also counts; in a dry run, those
    that would be. A batch resent after a dropped connection reports the rows that had
    already landed as unchanged, so they are missing here. ``answered``: the
    ``time.perf_counter()`` at which Redis had answered for every row (0.0: nothing sent).
    Adding results lays their rows end to end: ``a += b`` shifts ``b.newer`` by ``a.rows``.
    """

    rows: int = 0  # rows handed in
    written: int = 0  # keys written (or that would be, in a dry run)
    skipped_older: int = 0  # not written: Redis holds a newer version
    unchanged: int = 0  # not written: Redis holds this version with this content already
    expired_on_arrival: int = 0  # not written: already older than the ttl
    newer: np.ndarray = field(default_factory=_no_rows)  # of the written: positions of the newer versions
    answered: float = 0.0  # time.perf_counter() when Redis had answered for every row

    def __iadd__(self, other: "WriteResult") -> "WriteResult":
        if other.newer.size:
            self.newer = np.concatenate([self.newer, other.newer + self.rows])
        self.answered = max(self.answered, other.answered)
        self.rows += other.rows
        self.written += other.written
        self.skipped_older += other.skipped_older
        self.unchanged += other.unchanged
        self.expired_on_arrival += other.expired_on_arrival
        return self


@dataclass
class EncodedWrite:
    """A batch of rows, encoded: the keys, and every row's script arguments laid end to end."""

    n: int  # rows to send
    expired: int  # rows dropped as expired on arrival
    head: tuple[str, ...]  # the script's arguments after the mode and fence token: has_mask, ttl, definition
    stride: int  # arguments per row
    keys: list[str]
    args: list[str]  # n * stride values
    index: np.ndarray | None = None  # the rows' positions in the batch handed in; None: all of them, in order

    def calls(self, rows_per_call: int) -> Iterator[tuple[range, list[str], list[str]]]:
        """(the rows, their keys, their arguments) of up to ``rows_per_call`` rows each."""
        for a in range(0, self.n, rows_per_call):
            b = min(a + rows_per_call, self.n)
            yield range(a, b), self.keys[a:b], self.args[a * self.stride:b * self.stride]


def encode_write(prefix: str, view: FeatureView, rows: pa.RecordBatch | pa.Table, wall_now: float,
                 definition: str) -> EncodedWrite:
    """Encode ``rows`` (join keys, features, ``__event_ts``, ``__created_ts``) of ``view``.

    ``definition`` is the view's definition digest, stored with every row.
    Rows with a NULL ``__event_ts`` (expired as of the snapshot) or whose ``event ts +
    ttl`` is already past ``wall_now`` (unix seconds) are dropped and counted: Redis
    would delete such a key the moment it got its expiry. Memory is the batch's bytes
    (its encoded text, once as Arrow and once as Python strings), whatever the widest value.
    """
    if isinstance(rows, pa.Table):
        rows = rows.combine_chunks().to_batches()[0] if rows.num_rows else pa.RecordBatch.from_pylist([], rows.schema)
    total = rows.num_rows
    has_created = bool(view.created_timestamp)
    ttl_us = int(view.ttl.total_seconds() * 1_000_000) if view.ttl is not None else None
    head = ("0", "" if ttl_us is None else str(ttl_us), definition)  # has_mask (set below), ttl, definition
    stride = len(write_fields(view))
    if total == 0:
        return EncodedWrite(0, 0, head, stride, [], [])

    ets = codec.micros_column(rows.column("__event_ts"))
    keep = pc.is_valid(ets)
    if ttl_us is not None:
        # PEXPIREAT in whole milliseconds, rounded up (Redis never drops a key the read-time
        # check still serves); already past: skip the row.
        expire_at = pc.divide(pc.add(ets, ttl_us + 999), 1_000)
        keep = pc.and_(keep, pc.greater(expire_at, math.floor(wall_now * 1000)))
    kept = pc.sum(keep).as_py() or 0
    index = None
    if kept < total:
        index = np.flatnonzero(pc.fill_null(keep, False).to_numpy(zero_copy_only=False))
        rows, ets = rows.filter(keep), ets.filter(keep)
    if kept == 0:
        return EncodedWrite(0, total, head, stride, [], [], _no_rows())

    kinds = {k: type_kind(view.column_types.get(k)) for k in view.join_keys}
    tags = codec.entity_tag_column(view.join_keys, kinds, {k: rows.column(k) for k in view.join_keys})
    keys = pc.binary_join_element_wise(f"{prefix}:", tags, f":{view.name}", "").to_pylist()

    values: list[pa.Array] = [pc.cast(ets, pa.string())]
    if has_created:
        values.append(pc.cast(codec.micros_column(rows.column("__created_ts")), pa.string()))
    values += [codec.encode_column(f.kind, rows.column(f.name)) for f in view.features]
    columns = [pc.fill_null(v, "") if v.null_count else v for v in values]
    if any(v.null_count for v in values):
        mask = pc.binary_join_element_wise(
            *[pc.if_else(pc.is_null(v), "1", "0") if v.null_count else "0" for v in values], "")
        head, stride = ("1", *head[1:]), stride + 1
        columns.insert(0, mask)
    # Row-major, flat: row i's arguments are args[i * stride:(i + 1) * stride].
    args = list(chain.from_iterable(zip(*(c.to_pylist() for c in columns), strict=True)))
    return EncodedWrite(kept, total - kept, head, stride, keys, args, index)


# Bump when what a row stores for the same definition changes (the codec, the hash fields):
# every view then reads in full once, and rewrites what differs.
STORAGE_VERSION = "2"


def definition_digest(view: FeatureView) -> str:
    """16 hex digits identifying what a view's stored rows depend on.

    The keys, time columns, ttl and every feature's name and type, plus the storage
    format: a change to any of them rewrites the view's rows at the next sync (a
    changed ttl must move every key's expiry; a changed type re-encodes every value).
    Descriptions, owners, tags and fallbacks are read-time or documentation only.
    """
    spec = {
        "storage": STORAGE_VERSION,
        "keys": [[k, view.column_types.get(k)] for k in view.join_keys],
        "timestamp": [view.timestamp, view.column_types.get(view.timestamp)],
        "created": view.created_timestamp,
        "ttl": format_duration(view.ttl),
        "features": [[f.name, f.data_type] for f in view.features],
    }
    return hashlib.md5(orjson.dumps(spec)).hexdigest()[:16]


def lock_lost(view_name: str) -> OnlineStoreError:
    """The error of a sync whose lock is gone: it may no longer write or record anything."""
    return OnlineStoreError(
        f"the sync lock of {view_name} is gone: Redis lost data during the sync (FLUSHALL, a restart, a "
        "failover or eviction), or the lease ran out and another sync took over; nothing of this run is "
        "trusted, and the next `fstore sync` reads the view in full")


_DONE = object()


class BatchWriter:
    """Writes batches of one view with the write script, on a background thread.

    Use as a context manager: :meth:`submit` encodes a batch (on the caller's thread)
    and queues it; :meth:`acknowledged` returns the :class:`WriteResult` of every batch
    Redis has fully answered since the last call, in submission order: one per
    :meth:`submit`, its ``newer`` positions into the rows that call handed in. Leaving the
    block waits for the rest and raises the first error
    (:class:`~feature_store.errors.OnlineStoreError`) if the sender failed.

    ``definition`` is the view's definition digest (default: computed); ``fence`` the
    sync's (lock key, token), checked by every call ("" token: unfenced, for writes
    outside a sync). A row is counted as expired on arrival, and not sent, when its
    ``__event_ts`` is NULL (older than the ttl as of the snapshot) or ``event ts + ttl``
    is already past on the wall clock (Redis would drop the key the moment it got its
    expiry). With ``dry_run`` the script only counts what it would write.
    """

    def __init__(self, store: "OnlineStore", view: FeatureView, *, definition: str | None = None,
                 fence: tuple[str, str] | None = None, dry_run: bool = False, rows_per_call: int = 500,
                 depth: int = 2):
        self.store = store
        self.view = view
        self.definition = definition or definition_digest(view)
        self.fence = fence or (store.lock_key(view.name), "")
        self.mode = "d" if dry_run else "w"
        # Each call holds the server for rows_per_call rows (~5 us each): 500 keeps
        # concurrent online reads within a few ms while amortising the call overhead.
        self.rows_per_call = rows_per_call
        self.script = store.script(write_latest(write_fields(view)), write=True)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._done: deque = deque()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "BatchWriter":
        self._thread = threading.Thread(target=self._run, name=f"fs-writer-{self.view.name}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._put(_DONE)
        assert self._thread is not None
        self._thread.join()
        if self._error is not None and exc is None:
            raise self._error

    def submit(self, rows: pa.RecordBatch | pa.Table, wall_now: float | None = None) -> None:
        """Encode ``rows`` and queue them for sending (blocks while ``depth`` batches are in flight)."""
        if self._error is not None:
            raise self._error
        encoded = encode_write(self.store.prefix, self.view, rows, time.time() if wall_now is None else wall_now,
                               self.definition)
        self._put((rows.num_rows, encoded))

    def acknowledged(self) -> list[WriteResult]:
        """Results of the batches Redis has answered since the last call, oldest first."""
        out = []
        while self._done:
            out.append(self._done.popleft())
        return out

    def _put(self, item) -> None:
        while True:
            if self._error is not None and item is not _DONE:
                raise self._error
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._thread is None or not self._thread.is_alive():
                    if item is _DONE:
                        return
                    raise (self._error or RuntimeError("the writer thread stopped")) from None

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    break
                n_rows, encoded = item
                result = WriteResult(rows=n_rows, expired_on_arrival=encoded.expired)
                if encoded.n:
                    # A dropped connection resends the whole batch: rows that already landed
                    # are then skipped as unchanged.
                    send = functools.partial(self._send, encoded)
                    newer: list[int] = []
                    for rows, reply in self.store.call(f"writing {self.view.name}", send):
                        result.written += int(reply[0])
                        result.skipped_older += int(reply[1])
                        result.unchanged += int(reply[2])
                        runs = reply[3]  # 1-based {first, last, ...} of the call's rows
                        for first, last in zip(runs[0::2], runs[1::2], strict=True):
                            newer.extend(rows[int(first) - 1:int(last)])
                    result.answered = time.perf_counter()
                    if newer:
                        # Back to positions in the batch handed in (the cluster's calls go by slot).
                        at = np.sort(np.asarray(newer, np.int64))
                        result.newer = at if encoded.index is None else encoded.index[at]
                self._done.append(result)
        except BaseException as exc:  # handed to the caller's thread
            self._error = exc
            while True:  # unblock a producer waiting on a full queue
                try:
                    if self._queue.get(timeout=0.5) is _DONE:
                        break
                except queue.Empty:
                    break

    def _send(self, encoded: EncodedWrite) -> list[tuple[Sequence[int], list]]:
        """The batch's script calls, one pipeline per node; per call, its rows (positions in
        ``encoded``) and the script's reply."""
        client = self.store.write_client
        if is_cluster(client):
            return self._send_to_cluster(client, encoded)
        pipe = client.pipeline(transaction=False)
        fence_key, token = self.fence
        head = [self.mode, encoded.head[0], encoded.head[1], token, encoded.head[2]]
        calls = []
        for rows, keys, args in encoded.calls(self.rows_per_call):
            self.script(keys=[fence_key, *keys], args=[*head, *args], client=pipe)
            calls.append(rows)
        return list(zip(calls, self._checked(pipe.execute(raise_on_error=False)), strict=True))

    def _send_to_cluster(self, client, encoded: EncodedWrite) -> list[tuple[Sequence[int], list]]:
        """On a cluster every script call keeps to one slot (the entity's hash tag puts all of
        an entity's views there), and each node gets its calls in one pipeline.

        The lock lives on another slot, so a call cannot check it: the fence is checked
        once per batch here instead, which narrows the window to one batch. A call that
        meets a moving slot (MOVED, ASK, TRYAGAIN during a reshard or failover) is sent
        again to the slot's new owner once the client has learnt it.
        """
        fence_key, token = self.fence
        if token and client.get(fence_key) != token.encode():
            raise lock_lost(self.view.name)
        head = [self.mode, encoded.head[0], encoded.head[1], "", encoded.head[2]]
        by_slot: dict[int, list[int]] = {}
        for i, key in enumerate(encoded.keys):
            by_slot.setdefault(client.keyslot(key), []).append(i)
        calls = []
        chunks: list[list[int]] = []  # per call, its rows (positions in encoded)
        for rows in by_slot.values():
            for a in range(0, len(rows), self.rows_per_call):
                chunk = rows[a:a + self.rows_per_call]
                keys = [encoded.keys[i] for i in chunk]
                args = [x for i in chunk for x in encoded.args[i * encoded.stride:(i + 1) * encoded.stride]]
                calls.append((keys, [*head, *args]))
                chunks.append(chunk)
        replies: list = [None] * len(calls)
        pending = list(range(len(calls)))
        for attempt in range(_CLUSTER_ATTEMPTS):
            by_node: dict[str, tuple] = {}
            for c in pending:
                node = client.get_node_from_key(calls[c][0][0])
                pipe, sent = by_node.setdefault(node.name, (client.get_redis_connection(node).pipeline(transaction=False), []))
                keys, args = calls[c]
                self.script(keys=[keys[0], *keys], args=args, client=pipe)  # KEYS[1]: unfenced, any key of the slot
                sent.append(c)
            moved = []
            for pipe, sent in by_node.values():
                for c, reply in zip(sent, pipe.execute(raise_on_error=False), strict=True):
                    if isinstance(reply, _SLOT_MOVING):
                        moved.append(c)
                    replies[c] = reply
            if not moved:
                return list(zip(chunks, self._checked(replies), strict=True))
            # A plain command on the key follows the redirect and updates the client's slot map.
            for c in moved:
                client.exists(calls[c][0][0])
            pending = moved
            time.sleep(min(0.01 * 2 ** attempt, 0.2))
        return list(zip(chunks, self._checked(replies), strict=True))

    def _checked(self, replies: list) -> list:
        for reply in replies:
            if isinstance(reply, ResponseError) and str(reply).startswith(FENCE_ERROR):
                raise lock_lost(self.view.name)
            if isinstance(reply, Exception):
                raise reply
        return replies


def write_rows(store: "OnlineStore", view: FeatureView, rows: pa.RecordBatch | pa.Table, *, dry_run: bool = False,
               wall_now: float | None = None) -> WriteResult:
    """Write the latest rows of ``view`` now, under the write rule, unfenced.

    ``rows`` holds the join keys, the features, ``__event_ts`` and ``__created_ts``
    (what :func:`feature_store.snapshot.snapshot` streams). This alone does not make the
    view synced: reads answer ``NOT_SYNCED`` until a sync has finished.
    """
    total = WriteResult()
    with BatchWriter(store, view, dry_run=dry_run) as w:
        w.submit(rows, wall_now=wall_now)
    for result in w.acknowledged():
        total += result
    return total
