"""The read audit: who reads which feature, counted per day in Redis.

Every online read counts, per feature read, the entity rows it read. The process adds the
counts up and sends them in a read's own round trip at most once a second
(:class:`~feature_store.online.OnlineStore` ``counts_every``): ``HINCRBY`` of field
``<client>\\t<view>:<feature>`` of the hash ``<prefix>:__reads:<YYYY-MM-DD>`` (the UTC day).
Day hashes expire after :data:`RETENTION_DAYS`. ``fstore audit`` and ``fstore deprecations``
read them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from feature_store.online import OnlineStore
    from feature_store.registry import Feature, Registry

# How long a day's counters are kept.
RETENTION_DAYS = 90


def reads_key(prefix: str, day: date) -> str:
    """The hash of ``day``'s read counters of the store with key ``prefix``."""
    return f"{prefix}:__reads:{day.isoformat()}"


def check_client(name: str) -> str:
    """``name`` if it can be a client's name in a counter field, else ValueError saying why.

    The field is ``<client>\\t<ref>``, read back by splitting at the last tab, and the
    serving log shows the name in plain text lines: no tab, no line break, not empty.
    """
    if not isinstance(name, str) or not name or any(c in name for c in "\t\n\r"):
        raise ValueError(
            f"client name {name!r} is not usable: give a non-empty name without tabs or line breaks, e.g. "
            "'churn-scorer' (FeatureStore(client=...), $FEATURE_STORE_CLIENT or the token's name)")
    return name


def reads_field(client: str, ref: str) -> str:
    """The counter field of ``client`` reading feature ``ref`` (``view:feature``)."""
    return f"{client}\t{ref}"


def split_field(field: str) -> tuple[str, str]:
    """``(client, ref)`` of a counter field."""
    client, _, ref = field.rpartition("\t")
    return client, ref


# -- reading the counters back ------------------------------------------------------------------

# The window `fstore deprecations` looks back over: a feature must go unread this long before it
# can be removed, so a weekly job is seen.
DEFAULT_DAYS = 7


@dataclass(frozen=True)
class ReadCount:
    """One counter: ``client`` read feature ``ref`` (``view:feature``) for ``reads`` entity rows on ``day``."""

    day: date
    client: str
    ref: str
    reads: int


@dataclass(frozen=True)
class Readers:
    """What the counters say about one feature over a window: each client's reads, the days read."""

    ref: str
    clients: dict[str, int]  # client -> reads, most reads first
    by_day: dict[date, int]  # day -> reads, oldest first
    reads: int
    last_day: date


def clients_text(clients: Mapping[str, int]) -> str:
    """Clients and their reads, as ``scoring (1,200), notebook (34)``."""
    return ", ".join(f"{c or '(unnamed)'} ({n:,})" for c, n in clients.items())


def utc_today() -> date:
    """Today's date in UTC: the counters' days are UTC days."""
    return datetime.now(timezone.utc).date()


def window(days: int, today: date | None = None) -> list[date]:
    """The ``days`` UTC days ending with ``today`` (default: today in UTC), oldest first."""
    if days < 1:
        raise ValueError(f"days must be 1 or more, got {days}")
    today = today or utc_today()
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


def matches(ref: str, feature: str | None) -> bool:
    """Whether counter ``ref`` is ``feature``: a ``view:feature``, or a view (all its features)."""
    if feature is None:
        return True
    feature = feature.strip()
    return ref == feature if ":" in feature else ref.partition(":")[0] == feature


def parse_counts(day: date, raw: Mapping[Any, Any], feature: str | None = None) -> list[ReadCount]:
    """A day hash's fields and values (bytes or text, as ``HGETALL`` gives them) as counts."""
    counts = []
    for field, value in raw.items():
        text = field.decode("utf-8", "replace") if isinstance(field, bytes) else str(field)
        client, ref = split_field(text)
        try:
            reads = int(value)
        except (TypeError, ValueError):
            continue  # not one of ours
        if reads > 0 and matches(ref, feature):
            counts.append(ReadCount(day, client, ref, reads))
    return counts


def read_counts(store: OnlineStore, days: int = DEFAULT_DAYS, today: date | None = None,
                feature: str | None = None) -> list[ReadCount]:
    """The counters of the ``days`` UTC days ending ``today`` (default: today), in one round trip.

    One ``HGETALL`` per day hash, pipelined: the keys are known, so nothing is scanned.
    ``feature`` keeps one feature (``view:feature``) or a view's features (``view``).
    Sorted by feature, client and day. Raises :class:`~feature_store.errors.OnlineStoreError`
    when Redis cannot be read.
    """
    span = window(days, today)
    keys = [reads_key(store.prefix, day) for day in span]

    def attempt() -> list:
        pipe = store.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return pipe.execute()

    replies = store.call("reading the read counters", attempt)
    counts = [c for day, raw in zip(span, replies, strict=True) for c in parse_counts(day, raw or {}, feature)]
    return sorted(counts, key=lambda c: (c.ref, c.client, c.day))


def readers(counts: Iterable[ReadCount]) -> dict[str, Readers]:
    """The counts per feature (sorted by ``ref``): who read it, how much, on which days."""
    grouped: dict[str, list[ReadCount]] = {}
    for c in counts:
        grouped.setdefault(c.ref, []).append(c)
    out = {}
    for ref in sorted(grouped):
        clients: dict[str, int] = {}
        by_day: dict[date, int] = {}
        for c in grouped[ref]:
            clients[c.client] = clients.get(c.client, 0) + c.reads
            by_day[c.day] = by_day.get(c.day, 0) + c.reads
        ordered = dict(sorted(clients.items(), key=lambda kv: (-kv[1], kv[0])))
        out[ref] = Readers(ref, ordered, dict(sorted(by_day.items())), sum(clients.values()), max(by_day))
    return out


def by_client(counts: Iterable[ReadCount]) -> list[dict[str, Any]]:
    """One row per (feature, client): reads per day, total and last day read, sorted by feature, then
    most reads first: what ``fstore audit`` prints."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for c in counts:
        row = rows.setdefault((c.ref, c.client), {"feature": c.ref, "client": c.client, "by_day": {}, "reads": 0})
        row["by_day"][c.day] = row["by_day"].get(c.day, 0) + c.reads
        row["reads"] += c.reads
    for row in rows.values():
        row["by_day"] = dict(sorted(row["by_day"].items()))
        row["last_day"] = max(row["by_day"])
    return sorted(rows.values(), key=lambda r: (r["feature"], -r["reads"], r["client"]))


# -- deprecations ----------------------------------------------------------------------------------

PAST_TOMBSTONE = "past_tombstone"  # fails: past its tombstone, still read
REMOVED = "removed"  # fails: gone from the project, still read
DEPRECATED = "deprecated"  # a notice: tombstone ahead, still read
REMOVABLE = "removable"  # a notice: past its tombstone, no reads in the window

FAILING = frozenset({PAST_TOMBSTONE, REMOVED})
TITLES = {
    PAST_TOMBSTONE: "past tombstone, still read",
    REMOVED: "removed from the project, still read",
    DEPRECATED: "deprecated, still read",
    REMOVABLE: "past tombstone, not read: ready to remove",
}


def tombstone(feature: Feature) -> date | None:
    """The date of ``feature``'s ``deprecated`` meta (its column's or its view's, the earlier), or None."""
    if not feature.deprecated:
        return None
    try:
        return datetime.fromisoformat(feature.deprecated).date()
    except ValueError:  # `fstore validate` reports it
        return None


@dataclass(frozen=True)
class DeprecationProblem:
    """A feature on its way out that is still read, or one that can go.

    ``kind`` is :data:`PAST_TOMBSTONE` or :data:`REMOVED` (:attr:`failing`: shipping would
    break its readers), or :data:`DEPRECATED` / :data:`REMOVABLE` (notices).
    """

    kind: str
    ref: str
    clients: dict[str, int]  # client -> reads in the window, most first (empty for REMOVABLE)
    reads: int
    last_day: date | None  # the last day read in the window
    tombstone: date | None = None
    replaced_by: str | None = None
    days_left: int | None = None  # DEPRECATED: days until the tombstone
    window_days: int = DEFAULT_DAYS

    @property
    def failing(self) -> bool:
        """Whether shipping would break its readers (``fstore deprecations`` exits 1)."""
        return self.kind in FAILING

    @property
    def message(self) -> str:
        """One line for people: the feature, its readers and reads, and what to do."""
        read = (f"{self.reads:,} reads in the last {self.window_days} days (last on {self.last_day}) by "
                f"{clients_text(self.clients)}")
        instead = f"; move them to {self.replaced_by}" if self.replaced_by else "; move them off it"
        if self.kind == PAST_TOMBSTONE:
            return (f"{self.ref} reached its tombstone on {self.tombstone} and is still read: {read}{instead} "
                    f"before removing it")
        if self.kind == REMOVED:
            return (f"{self.ref} is no longer in the project but is still read: {read}; they fail once this "
                    f"ships: put it back until they have moved off it")
        if self.kind == DEPRECATED:
            return (f"{self.ref} is deprecated (tombstone {self.tombstone}, {self.days_left} days left) and "
                    f"still read: {read}{instead}")
        return (f"{self.ref} reached its tombstone on {self.tombstone} and had no reads in the last "
                f"{self.window_days} days: it can be removed")

    def to_dict(self) -> dict[str, Any]:
        """The problem as JSON-ready data (``fstore deprecations --json``)."""
        return {
            "kind": self.kind,
            "failing": self.failing,
            "feature": self.ref,
            "clients": dict(self.clients),
            "reads": self.reads,
            "last_day": self.last_day.isoformat() if self.last_day else None,
            "tombstone": self.tombstone.isoformat() if self.tombstone else None,
            "replaced_by": self.replaced_by,
            "days_left": self.days_left,
            "message": self.message,
        }


def feature_status(registry: Registry, ref: str, today: date) -> tuple[str | None, Feature | None, date | None]:
    """Counted feature ``ref`` against ``registry`` on ``today``: its kind (:data:`REMOVED`,
    :data:`PAST_TOMBSTONE`, :data:`DEPRECATED`, or None: current), the feature, its tombstone."""
    view_name, _, name = ref.partition(":")
    view = registry.views.get(view_name)
    feature = next((f for f in view.features if f.name == name), None) if view is not None else None
    if feature is None:
        return REMOVED, None, None
    date_ = tombstone(feature)
    if date_ is None:
        return None, feature, None
    return (PAST_TOMBSTONE if date_ <= today else DEPRECATED), feature, date_


def deprecation_problems(registry: Registry, counts: Iterable[ReadCount], today: date | None = None,
                         days: int = DEFAULT_DAYS) -> list[DeprecationProblem]:
    """What ``fstore deprecations`` reports, from the ``registry`` about to ship and the ``counts`` of
    the ``days`` days ending ``today`` (:func:`read_counts`); failing problems first.

    A feature read in the window whose tombstone is ``today`` or earlier fails
    (:data:`PAST_TOMBSTONE`), and so does a feature read in the window that the registry no
    longer has (:data:`REMOVED`): shipping either would break its readers. A deprecated
    feature still read with its tombstone ahead is a notice (:data:`DEPRECATED`, with the
    days left); one past its tombstone and unread is a notice that it can go (:data:`REMOVABLE`).
    """
    today = today or utc_today()
    used = readers(counts)
    problems: list[DeprecationProblem] = []
    for ref, r in used.items():
        kind, feature, date_ = feature_status(registry, ref, today)
        if kind == REMOVED:
            problems.append(DeprecationProblem(REMOVED, ref, r.clients, r.reads, r.last_day, window_days=days))
        elif kind == PAST_TOMBSTONE:
            problems.append(DeprecationProblem(PAST_TOMBSTONE, ref, r.clients, r.reads, r.last_day, date_,
                                               feature.replaced_by if feature else None, window_days=days))
        elif kind == DEPRECATED and date_ is not None:
            problems.append(DeprecationProblem(DEPRECATED, ref, r.clients, r.reads, r.last_day, date_,
                                               feature.replaced_by if feature else None, (date_ - today).days,
                                               window_days=days))
    for view in sorted(registry.views.values(), key=lambda v: v.name):
        for f in view.features:
            date_ = tombstone(f)
            if date_ is not None and date_ <= today and f.ref not in used:
                problems.append(DeprecationProblem(REMOVABLE, f.ref, {}, 0, None, date_, f.replaced_by,
                                                   window_days=days))
    order = [PAST_TOMBSTONE, REMOVED, DEPRECATED, REMOVABLE]
    return sorted(problems, key=lambda p: (order.index(p.kind), p.ref))
