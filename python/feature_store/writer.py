"""Writing rows into the online store: commands built column-wise with Arrow, sent in the background.

The sync writes over a hundred thousand rows per second by never touching a row in
Python: every column is cast to text (:func:`feature_store.codec.encode_column`), the
arguments are framed as RESP bulk strings (``$<len>\\r\\n<bytes>\\r\\n``) and joined
row-wise with ``pyarrow.compute``; a binary array without NULLs stores its values back
to back, so the bytes of rows ``a..b`` are one slice of its data buffer. Each
``EVALSHA`` of the write script (below) is then a short header plus two such slices
(the keys, then the per-row arguments), handed to the socket as they are.

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

:class:`BatchWriter` sends on a background thread over its own connection, so the
next batch is read and encoded while Redis runs the script on the previous one (Arrow
and socket I/O release the GIL). Counts come back per batch, in order, only once Redis
has answered for every row of the batch.
"""

from __future__ import annotations

import hashlib
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from redis.exceptions import NoScriptError, ResponseError

from feature_store import codec
from feature_store.errors import OnlineStoreError
from feature_store.registry import FeatureView, format_duration, type_kind

if TYPE_CHECKING:  # pragma: no cover
    from feature_store.online import OnlineStore, WriteResult

__all__ = ["BatchWriter", "EncodedWrite", "definition_digest", "encode_write", "lock_lost", "write_fields",
           "write_latest"]

CRLF = "\r\n"
# The error a fenced call answers with when the caller's sync lock is gone.
FENCE_ERROR = "FSFENCE"

# KEYS   = the fence key (the sync's lock), then the hash keys, one per row.
# ARGV   = mode ("w" write, "d" dry run: count only), has_mask ("1" when rows carry a
#          null mask), ttl in microseconds ("" = none), fence token ("" = unfenced), the
#          view's definition digest, then per row: the null mask when has_mask ("" = no
#          NULLs, else one "0"/"1" per field) and one value per field (NULLs as ""), in
#          the order of @FIELDS@; field 1 is __event_ts.
# Returns {written, skipped_older, skipped_unchanged}.
#
# Speed notes: the field names are constants in the script text, and the common case
# (no NULL in the row) calls HSET with its arguments spelled out, because building a
# table and unpacking it costs about a third of the per-row time; PEXPIREAT, unlike
# EXPIREAT, is not rewritten by Redis for propagation. Content is read (one HMGET of
# every field) only when the versions tie.
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

-- 1: write (newer, or the same version with other content), 0: older, 2: unchanged.
-- At the same event time the created timestamp decides; NULL ("") is older than any value.
local function verdict(key, v, mask)
  local old = redis.call('HMGET', key, '__event_ts', '__created_ts')
  if not old[1] then return 1 end
  local e, old_e = tonumber(ARGV[v + 1]), tonumber(old[1])
  if e ~= old_e then return e > old_e and 1 or 0 end
  local c, old_c = has_created and tonumber(ARGV[v + 2]) or nil, tonumber(old[2] or '')
  if c ~= old_c then
    if c == nil then return 0 end
    if old_c == nil then return 1 end
    return c > old_c and 1 or 0
  end
  return same(key, v, mask) and 2 or 1
end

local stride = has_mask and nf + 1 or nf
local written, older, unchanged = 0, 0, 0
for i = 2, #KEYS do
  local key = KEYS[i]
  local b = 6 + (i - 2) * stride           -- the row's first argument
  local v = has_mask and b or b - 1        -- value j is ARGV[v + j]
  local mask = has_mask and ARGV[b] or ''
  local decided = verdict(key, v, mask)
  if decided == 0 then
    older = older + 1
  elseif decided == 2 then
    unchanged = unchanged + 1
  else
    written = written + 1
    if not dry then
      redis.call('DEL', key)                   -- the row replaces the whole hash
      if mask == '' then
        redis.call('HSET', key, '__definition', definition, @HSET_ARGS@)
      else
        local set = {key, '__definition', definition}
        for j = 1, nf do
          if string.byte(mask, j) ~= 49 then
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
return {written, older, unchanged}
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
    args = ", ".join(f"{_lua_string(f)}, ARGV[v + {j}]" for j, f in enumerate(fields, 1))
    return (_WRITE_LATEST.replace("@FIELDS@", ", ".join(_lua_string(f) for f in fields))
            .replace("@HSET_ARGS@", args).replace("@FENCE@", FENCE_ERROR))


def _bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _bulk_pieces(column: pa.Array) -> list:
    """``$<len>\\r\\n<value>\\r\\n`` as pieces for binary_join_element_wise."""
    return ["$", pc.cast(pc.binary_length(column), pa.string()), CRLF, column, CRLF]


def _binary(piece):
    """A join piece as binary (the payloads are not text)."""
    return piece.encode() if isinstance(piece, str) else piece if isinstance(piece, bytes) else piece.cast(pa.binary())


def _offsets(array: pa.StringArray) -> np.ndarray:
    """The value offsets of a string array (honouring a slice offset)."""
    raw = np.frombuffer(array.buffers()[1], dtype=np.int32)
    return raw[array.offset : array.offset + len(array) + 1]


def write_fields(view: FeatureView) -> list[str]:
    """The hash fields a row of ``view`` is written with, in the order the script receives them."""
    fields = [codec.EVENT_TS]
    if view.created_timestamp:
        fields.append(codec.CREATED_TS)
    return fields + [f.name for f in view.features]


@dataclass
class EncodedWrite:
    """A batch of rows, encoded: RESP-framed keys and per-row script arguments."""

    n: int  # rows to send
    expired: int  # rows dropped as expired on arrival
    head: tuple[str, ...]  # the script's leading arguments after the mode: has_mask, ttl, definition
    stride: int  # arguments per row
    keys: pa.BinaryArray | None  # one RESP bulk string per row
    args: pa.BinaryArray | None  # per row: its ``stride`` arguments, RESP-framed

    def commands(self, sha: str, mode: str, fence: tuple[str, str], rows_per_call: int) -> Iterator[list]:
        """``EVALSHA`` commands of up to ``rows_per_call`` rows each, as lists of byte buffers.

        ``fence`` is (lock key, token); an empty token writes unfenced.
        """
        has_mask, ttl, definition = self.head
        head_args = b"".join(_bulk(t) for t in (mode, has_mask, ttl, fence[1], definition))
        fence_key = _bulk(fence[0])
        key_off = _offsets(self.keys)
        arg_off = _offsets(self.args)
        key_data = self.keys.buffers()[2]
        arg_data = self.args.buffers()[2]
        for a in range(0, self.n, rows_per_call):
            b = min(a + rows_per_call, self.n)
            count = b - a
            total = 3 + 1 + count + 2 + len(self.head) + count * self.stride
            command = b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n%s%s" % (
                total, sha.encode(), _bulk(str(count + 1)), fence_key)
            yield [
                command,
                key_data.slice(int(key_off[a]), int(key_off[b] - key_off[a])),
                head_args,
                arg_data.slice(int(arg_off[a]), int(arg_off[b] - arg_off[a])),
            ]


def encode_write(prefix: str, view: FeatureView, rows: pa.RecordBatch | pa.Table, wall_now: float,
                 definition: str) -> EncodedWrite:
    """Encode ``rows`` (join keys, features, ``__event_ts``, ``__created_ts``) of ``view``.

    ``definition`` is the view's definition digest, stored with every row.
    Rows with a NULL ``__event_ts`` (expired as of the snapshot) or whose ``event ts +
    ttl`` is already past ``wall_now`` (unix seconds) are dropped and counted: Redis
    would delete such a key the moment it got its expiry.
    """
    if isinstance(rows, pa.Table):
        rows = rows.combine_chunks().to_batches()[0] if rows.num_rows else pa.RecordBatch.from_pylist([], rows.schema)
    total = rows.num_rows
    has_created = bool(view.created_timestamp)
    ttl_us = int(view.ttl.total_seconds() * 1_000_000) if view.ttl is not None else None
    head = ("0", "" if ttl_us is None else str(ttl_us), definition)  # has_mask (set below), ttl, definition
    stride = len(write_fields(view))
    if total == 0:
        return EncodedWrite(0, 0, head, stride, None, None)

    ets = codec.micros_column(rows.column("__event_ts"))
    keep = pc.is_valid(ets)
    if ttl_us is not None:
        # PEXPIREAT in whole milliseconds, rounded up (Redis never drops a key the read-time
        # check still serves); already past: skip the row.
        expire_at = pc.divide(pc.add(ets, ttl_us + 999), 1_000)
        keep = pc.and_(keep, pc.greater(expire_at, math.floor(wall_now * 1000)))
    kept = pc.sum(keep).as_py() or 0
    if kept < total:
        rows, ets = rows.filter(keep), ets.filter(keep)
    if kept == 0:
        return EncodedWrite(0, total, head, stride, None, None)

    kinds = {k: type_kind(view.column_types.get(k)) for k in view.join_keys}
    tags = codec.entity_tag_column(view.join_keys, kinds, {k: rows.column(k) for k in view.join_keys})
    keys = pc.binary_join_element_wise(f"{prefix}:", tags, f":{view.name}", "")

    values: list[pa.Array] = [pc.cast(ets, pa.string())]
    if has_created:
        values.append(pc.cast(codec.micros_column(rows.column("__created_ts")), pa.string()))
    values += [codec.encode_column(f.kind, rows.column(f.name)) for f in view.features]
    pieces: list = []
    if any(v.null_count for v in values):
        mask = pc.binary_join_element_wise(
            *[pc.if_else(pc.is_null(v), "1", "0") if v.null_count else "0" for v in values], "")
        head, stride = ("1", *head[1:]), stride + 1
        pieces += _bulk_pieces(mask)
        pieces += [p for v in values for p in _bulk_pieces(pc.fill_null(v, "") if v.null_count else v)]
    else:
        pieces += [p for v in values for p in _bulk_pieces(v)]
    args = pc.binary_join_element_wise(*[_binary(p) for p in pieces], b"")
    keys = pc.binary_join_element_wise(*_bulk_pieces(keys), "")
    return EncodedWrite(kept, total - kept, head, stride, keys, args)


# Bump when what a row stores for the same definition changes (the codec, the digest):
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
    and queues it; :meth:`acknowledged` returns the :class:`~feature_store.online.WriteResult`
    of every batch Redis has fully answered since the last call, in submission order.
    Leaving the block waits for the rest and raises the first error
    (:class:`~feature_store.errors.OnlineStoreError`) if the sender failed.

    ``definition`` is the view's definition digest; ``fence`` the sync's (lock key,
    token), checked by every call ("" token: unfenced, for writes outside a sync).
    A row is counted as expired on arrival, and not sent, when its ``__event_ts`` is
    NULL (older than the ttl as of the snapshot) or ``event ts + ttl`` is already past
    on the wall clock (Redis would drop the key the moment it got its expiry).
    With ``dry_run`` the script only counts what it would write.
    """

    def __init__(self, store: "OnlineStore", view: FeatureView, *, definition: str, fence: tuple[str, str] | None = None,
                 dry_run: bool = False, rows_per_call: int = 500, depth: int = 2):
        self.store = store
        self.view = view
        self.definition = definition
        self.fence = fence or (store.sync_key(view.name) + ":lock", "")
        self.mode = "d" if dry_run else "w"
        # Each call holds the server for rows_per_call rows (~5 us each): 500 keeps
        # concurrent online reads within a few ms while amortising the call overhead.
        self.rows_per_call = rows_per_call
        self.fields = write_fields(view)
        self.script = "write_latest:" + ",".join(self.fields)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._done: deque = deque()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "BatchWriter":
        self._sha()  # a bad URL fails here, before any warehouse work
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

    def acknowledged(self) -> list["WriteResult"]:
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
                    raise self._error or RuntimeError("the writer thread stopped")

    def _run(self) -> None:
        from feature_store.online import WriteResult

        pool = self.store.write_client.connection_pool
        conn = None
        try:
            with self.store._errors(f"writing {self.view.name}"):
                conn = pool.get_connection()
                while True:
                    item = self._queue.get()
                    if item is _DONE:
                        break
                    n_rows, encoded = item
                    result = WriteResult(rows=n_rows, expired_on_arrival=encoded.expired)
                    if encoded.n:
                        # A dropped connection resends the whole batch: rows that already
                        # landed are then skipped as unchanged.
                        replies = self.store._retrying(lambda: self._send(conn, encoded), on_error=conn.disconnect)
                        for reply in replies:
                            result.written += int(reply[0])
                            result.skipped_older += int(reply[1])
                            result.unchanged += int(reply[2])
                    self._done.append(result)
        except BaseException as exc:  # handed to the caller's thread
            self._error = exc
            if conn is not None:
                conn.disconnect()  # unread replies must not reach the next user of this connection
            while True:  # unblock a producer waiting on a full queue
                try:
                    if self._queue.get(timeout=0.5) is _DONE:
                        break
                except queue.Empty:
                    break
        finally:
            if conn is not None:
                pool.release(conn)

    def _sha(self) -> str:
        return self.store._sha(self.script, lambda: write_latest(self.fields))

    def _send(self, conn, encoded: EncodedWrite) -> list:
        for attempt in (1, 2):
            sha = self._sha()
            commands = list(encoded.commands(sha, self.mode, self.fence, self.rows_per_call))
            for parts in commands:
                conn.send_packed_command(parts, check_health=False)
            replies = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in replies):
                # The server restarted or ran SCRIPT FLUSH: load it again and redo the batch
                # (safe: the rows already written are now skipped as unchanged).
                self.store._shas.pop(self.script, None)
                continue
            for reply in replies:
                if isinstance(reply, ResponseError) and str(reply).startswith(FENCE_ERROR):
                    raise lock_lost(self.view.name)
                if isinstance(reply, Exception):
                    raise reply
            return replies
        raise AssertionError("unreachable")
