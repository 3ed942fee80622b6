"""A brute-force point-in-time join in plain Python: docs/point-in-time.md, read literally.

For a spine row with keys ``k`` and time ``t`` and a view with event time ``e``,
created time ``c`` and ttl ``L``: among the view's rows with keys ``k`` (no NULLs),
``e <= t`` and, with a ttl, ``e >= t - L``, take the greatest ``e`` and then the
greatest ``c`` (a NULL ``c`` loses). With ``as_of_created`` rows whose ``c`` is after
``t`` do not exist yet. No such row, a NULL key or a NULL ``t``: no match.

It scans every view row for every spine row on purpose: the point is to be obviously
right, not fast. tests/test_point_in_time.py checks the macro's SQL against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

__all__ = ["View", "Requested", "match", "point_in_time_join"]

_MIN = datetime.min


@dataclass
class View:
    """A feature view's shape and rows (each row a dict of column -> value)."""

    name: str
    keys: Sequence[str]
    features: Sequence[str]
    created: str | None = None  # created-timestamp column, if any
    ttl: timedelta | None = None
    timestamp: str = "e"
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Requested:
    """One output feature column: ``view.feature`` named ``name``."""

    view: str
    feature: str
    name: str


def match(view: View, keys: Sequence[Any], t: datetime | None, ttl: timedelta | None,
          as_of_created: bool = False) -> dict[str, Any] | None:
    """The row of ``view`` the join picks for spine keys ``keys`` at ``t``, or None."""
    if t is None or any(k is None for k in keys):
        return None
    best, best_rank = None, None
    for row in view.rows:
        if any(row[col] is None or row[col] != k for col, k in zip(view.keys, keys)):
            continue
        e = row[view.timestamp]
        if e is None or e > t:
            continue
        if ttl is not None and e < t - ttl:
            continue
        c = row[view.created] if view.created else None
        if as_of_created and c is not None and c > t:
            continue
        rank = (e, c if c is not None else _MIN, c is not None)
        if best_rank is None or rank > best_rank:
            best, best_rank = row, rank
    return best


def point_in_time_join(spine: Sequence[dict[str, Any]], timestamp: str, views: dict[str, View],
                       requested: Sequence[Requested], ttl: dict[str, timedelta | None] | None = None,
                       as_of_created: bool = False, include_timestamps: bool = False) -> list[dict[str, Any]]:
    """Every spine row (in order, duplicates kept) with the requested features appended.

    ``ttl`` maps view name to the ttl in force (default: each view's own). With
    ``include_timestamps`` each used view adds ``<view>__event_timestamp`` and
    ``<view>__created_timestamp`` (the matched row's).
    """
    ttl = ttl or {}
    used = list(dict.fromkeys(r.view for r in requested))
    out = []
    for srow in spine:
        row = dict(srow)
        matched = {}
        for name in used:
            view = views[name]
            matched[name] = match(view, [srow[k] for k in view.keys], srow[timestamp],
                                  ttl.get(name, view.ttl), as_of_created)
        for r in requested:
            m = matched[r.view]
            row[r.name] = None if m is None else m[r.feature]
        if include_timestamps:
            for name in used:
                m, view = matched[name], views[name]
                row[f"{name}__event_timestamp"] = None if m is None else m[view.timestamp]
                row[f"{name}__created_timestamp"] = None if m is None or not view.created else m[view.created]
        out.append(row)
    return out
