"""Redis ``DUMP`` payloads of hashes, built column-wise: a whole row in one ``RESTORE``.

``RESTORE key <expire-at ms> <payload> ABSTTL REPLACE`` creates a hash and its expiry in
one command, and redis-server copies the payload's listpack as it is; ``HSET`` builds
the listpack field by field (a reallocation each) and ``PEXPIREAT`` is a second
command. Inside the sync's compare-and-set script that halves the server's work per
key (callgrind on redis-server 7.0: about 18k instructions a key against 39k), and the
server is what limits a sync. The hash that lands is the same one ``HSET`` would make.

The format (RDB version 10, Redis 7.0; newer servers load every older RDB version, so
payloads stamped 10 stay valid)::

    payload = 0x10 (RDB_TYPE_HASH_LISTPACK)  rdb-length(len(lp))  lp  0x0A 0x00 (version 10, LE)  crc64
    lp      = total bytes (u32 LE)  element count (u16 LE)  entry(field) entry(value) ...  0xFF
    entry   = header  bytes  backlen
    header  = 0x80|len (len < 64);  0xE0|len>>8, len&0xFF (len < 4096);  0xF0, len (u32 LE)
    backlen = len(header) + len(bytes), 7 bits a byte, most significant first, the high
              bit set on every byte but the first
    rdb-length = len (< 64);  0x40|len>>8, len&0xFF (< 16384);  0x80, len (u32 BE)
    crc64   = CRC-64/Jones over everything before it, as Redis computes it (reflected
              polynomial 0x95AC9329AC4BC9B5, init 0, no final xor), u64 LE

Every value is a string entry (Redis itself stores integer-looking text as integer
entries; both read back as the same bytes). The tests restore payloads into a server
run with ``sanitize-dump-payload yes``, which checks every entry, and compare them
byte for byte with the server's own ``DUMP``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["MIN_SERVER_VERSION", "hash_payloads"]

MIN_SERVER_VERSION = (7, 0)  # the first with listpack hashes in RDB (version 10)
_TYPE_HASH_LISTPACK = b"\x10"
_RDB_VERSION = b"\x0a\x00"
_EOF = b"\xff"
_POLY = np.uint64(0x95AC9329AC4BC9B5)


def _crc_table() -> np.ndarray:
    """The CRC step for two input bytes at a time, indexed by (register ^ bytes) & 0xFFFF."""
    one = np.arange(256, dtype=np.uint64)  # first the usual table for one byte
    for _ in range(8):
        one = np.where(one & np.uint64(1), (one >> np.uint64(1)) ^ _POLY, one >> np.uint64(1))
    x = np.arange(65536, dtype=np.uint64)
    low = one[x & np.uint64(0xFF)]
    return one[(low ^ (x >> np.uint64(8))) & np.uint64(0xFF)] ^ (low >> np.uint64(8))


_CRC16 = _crc_table()


def _crc64_column(column: pa.BinaryArray, block: int = 8192) -> np.ndarray:
    """Redis's CRC-64 of every value of ``column``, two bytes a step for a block of rows at once.

    With a zero initial register, leading zero bytes leave the CRC at zero, so every value
    is left-padded with zeros to one even width and the rows become a matrix, whose
    columns are copied block by block into one small buffer the caches keep.
    """
    n = len(column)
    lengths = pc.binary_length(column).to_numpy()
    width = int(lengths.max())
    width += width & 1
    padding = _packed(bytes(int(n * width - lengths.sum())), width - lengths)
    padded = pc.binary_join_element_wise(padding, column, b"")
    words = np.frombuffer(padded.buffers()[2], dtype="<u2", count=n * width // 2).reshape(n, width // 2)
    crcs = np.zeros(n, dtype=np.uint64)
    buffer = np.empty((width // 2, min(block, n)), dtype=np.uint16)
    index = np.empty(min(block, n), dtype=np.uint16)
    step = np.empty(min(block, n), dtype=np.uint64)
    for a in range(0, n, block):
        m = min(block, n - a)
        columns, crc, idx, st = buffer[:, :m], crcs[a : a + m], index[:m], step[:m]
        columns[...] = words[a : a + m].T
        low = crc.view(np.uint16)[::4]  # the low 16 bits of each register (little-endian)
        for word in columns:
            np.bitwise_xor(low, word, out=idx)
            np.take(_CRC16, idx, out=st, mode="wrap")  # every index is in range: skip the check
            np.right_shift(crc, np.uint64(16), out=crc)
            np.bitwise_xor(crc, st, out=crc)
    return crcs


# A part of a row's bytes, for _glue: (codes, sizes), row i taking codes[i, :sizes[i]].
_Part = tuple[np.ndarray, np.ndarray]


def _glue(parts: list[_Part]) -> pa.BinaryArray:
    """Row ``i`` of every part, concatenated: the short bytes between two values of a payload."""
    codes = np.concatenate([c for c, _ in parts], axis=1)
    mask = np.concatenate([np.arange(c.shape[1]) < s[:, None] for c, s in parts], axis=1)
    if mask.all():
        return _packed(codes.tobytes(), np.full(len(codes), codes.shape[1]))
    return _packed(codes[mask].tobytes(), mask.sum(axis=1))


def _packed(data: bytes, lengths: np.ndarray) -> pa.BinaryArray:
    """A binary array of values stored back to back in ``data``."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(pa.binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _const(data: bytes, present: np.ndarray) -> _Part:
    """The same bytes on every row where ``present`` (none elsewhere)."""
    codes = np.broadcast_to(np.frombuffer(data, dtype=np.uint8), (len(present), len(data)))
    return codes, np.where(present, len(data), 0)


def _string_headers(lengths: np.ndarray) -> _Part:
    """Listpack string-entry headers for values of these byte ``lengths``."""
    if (lengths < 64).all():  # the usual case: one byte
        return (0x80 | lengths).astype(np.uint8)[:, None], np.ones(len(lengths), dtype=np.int64)
    small, mid = lengths < 64, (lengths >= 64) & (lengths < 4096)
    codes = np.zeros((len(lengths), 5), dtype=np.uint8)
    codes[:, 0] = np.where(small, 0x80 | lengths, np.where(mid, 0xE0 | (lengths >> 8), 0xF0))
    codes[:, 1] = np.where(small, 0, lengths & 0xFF)
    for j in (2, 3, 4):
        codes[:, j] = (lengths >> (8 * (j - 1))) & 0xFF
    return codes, np.where(small, 1, np.where(mid, 2, 5))


def _backlens(sizes: np.ndarray) -> _Part:
    """Listpack backlen fields for entries of these ``sizes`` (header + bytes)."""
    if (sizes <= 127).all():
        return sizes.astype(np.uint8)[:, None], np.ones(len(sizes), dtype=np.int64)
    k = np.select([sizes <= 127, sizes < 16383, sizes < 2097151, sizes < 268435455], [1, 2, 3, 4], 5)
    codes = np.zeros((len(sizes), 5), dtype=np.uint8)
    for j in range(5):
        septet = (sizes >> np.maximum(7 * (k - 1 - j), 0)) & 127
        codes[:, j] = np.where(j < k, septet if j == 0 else septet | 128, 0)
    return codes, k


def _rdb_lengths(total: np.ndarray) -> _Part:
    """RDB length prefixes for strings of these lengths."""
    small, mid = total < 64, total < 16384
    codes = np.zeros((len(total), 5), dtype=np.uint8)
    codes[:, 0] = np.where(small, total, np.where(mid, 0x40 | (total >> 8), 0x80))
    codes[:, 1] = np.where(small, 0, np.where(mid, total & 0xFF, total >> 24))
    for j in (2, 3, 4):
        codes[:, j] = (total >> (8 * (4 - j))) & 0xFF
    return codes, np.where(small, 1, np.where(mid, 2, 5))


def _le(values: np.ndarray, width: int) -> _Part:
    """``values`` as ``width``-byte little-endian integers."""
    return values.astype(f"<u{width}").view(np.uint8).reshape(-1, width), np.full(len(values), width)


def _masked(part: _Part, present: np.ndarray) -> _Part:
    return part[0], np.where(present, part[1], 0)


def hash_payloads(fields: list[str], values: list[pa.Array]) -> tuple[pa.BinaryArray, pa.BinaryArray]:
    """One ``DUMP`` payload per row, of a hash of ``fields`` to the row's ``values``.

    ``values`` are string or binary arrays of equal length, one per field; a NULL leaves
    its field out of that row's hash (Redis refuses an empty hash: keep one field set).
    Returns each payload in two pieces, the body and its checksum, to be joined row-wise
    (:func:`pyarrow.compute.binary_join_element_wise`) where the caller frames them anyway.
    """
    n = len(values[0])
    columns = [v.cast(pa.binary()) for v in values]
    everywhere = np.ones(n, dtype=bool)
    present = [c.is_valid().to_numpy(zero_copy_only=False) if c.null_count else everywhere for c in columns]
    lengths = [pc.binary_length(c).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64) for c in columns]
    names = [_entry(f.encode()) for f in fields]
    headers = [_string_headers(size) for size in lengths]
    backlens = [_backlens(h[1] + size) for h, size in zip(headers, lengths)]
    total = np.full(n, 4 + 2 + 1, dtype=np.int64)  # the listpack's header and end byte
    count = np.zeros(n, dtype=np.int64)
    for name, size, (_, head), (_, back), ok in zip(names, lengths, headers, backlens, present):
        total += np.where(ok, len(name) + head + size + back, 0)
        count += 2 * ok
    # Row-wise: glue, value, glue, value, ..., glue; a glue holds the previous value's
    # backlen and the next field's name entry and value header (where those are present).
    glues: list[list[_Part]] = [[_const(_TYPE_HASH_LISTPACK, everywhere), _rdb_lengths(total), _le(total, 4),
                                 _le(np.minimum(count, 65535), 2)]]
    for name, header, backlen, ok in zip(names, headers, backlens, present):
        glues[-1] += [_const(name, ok), _masked(header, ok)]
        glues.append([_masked(backlen, ok)])
    glues[-1].append(_const(_EOF + _RDB_VERSION, everywhere))
    pieces: list = [_glue(glues[0])]
    for column, glue in zip(columns, glues[1:]):
        pieces += [column, _glue(glue)]
    body = pc.binary_join_element_wise(*pieces, b"", null_handling="replace", null_replacement=b"")
    return body, _packed(_crc64_column(body).astype("<u8").tobytes(), np.full(n, 8))


def _entry(data: bytes) -> bytes:
    """One listpack string entry (for the constant field names)."""
    size = np.array([len(data)])
    head, head_size = _string_headers(size)
    back, back_size = _backlens(head_size + size)
    return head[0, : head_size[0]].tobytes() + data + back[0, : back_size[0]].tobytes()
