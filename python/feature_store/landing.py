"""Files landed for dbt to read: written all or nothing, and on disk before anyone is told.

The push (:mod:`feature_store.push`) and the serving log's drain (:mod:`feature_store.servinglog`)
both land Parquet files under the landing folder that dbt models read with a ``*.parquet``
glob. A reader must never see part of a file, and a file reported written must survive a
crash or a power loss: :func:`write_parquet_durably` gives both.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = ["write_parquet_durably"]


def write_parquet_durably(table: "pa.Table", final: Path, *, before_replace: Callable[[], None] | None = None) -> Path:
    """``table`` as the Parquet file ``final``, all or nothing, on disk when this returns.

    Written under a temporary name that a ``*.parquet`` glob does not match (a leading dot,
    a ``.tmp`` suffix), fsynced, renamed over ``final`` (atomic: a reader sees the old file,
    the new one or none, never part of one), then the folder is fsynced so the rename itself
    survives a power loss, and so is each folder this call created, in its parent. Raises
    :class:`OSError` (the temporary file removed); callers say what it means for them.

    ``before_replace()`` is called once the temporary file is on disk, just before the rename:
    whatever it raises stops the write, the temporary file removed and ``final`` untouched
    (the serving log's drain checks there that it still holds its lease).
    """
    import pyarrow.parquet as pq

    folder = final.parent
    temp = folder / f".{final.stem}.{uuid.uuid4().hex}.tmp"
    try:
        created = _make_dirs(folder)
        with open(temp, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(temp, final)
        for directory in [folder, *(d.parent for d in created)]:
            _fsync_dir(directory)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return final


def _make_dirs(folder: Path) -> list[Path]:
    """``mkdir -p folder``; the folders it created, outermost first."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
