"""Test doubles for the online-store tests: a handwritten registry and an in-memory source.

``make_registry()`` builds a :class:`Registry` from a small manifest written here (no dbt),
and :class:`MemorySource` stands in for :func:`feature_store.offline.snapshot`: it returns
the latest row per entity as of a time, from Arrow tables held in memory. The real
snapshot (the dbt macro on DuckDB) is exercised in tests/test_consistency.py.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa

from feature_store.registry import Registry, Target

ENTITIES = {
    "user": {"join_keys": ["user_id"]},
    "merchant": {"join_keys": ["merchant"]},
}


def _column(name, data_type, fallback=None, deprecated=None):
    meta = {}
    if fallback is not None:
        meta["fallback"] = fallback
    if deprecated is not None:
        meta["deprecated"] = deprecated
    spec = {"name": name, "data_type": data_type}
    if meta:
        spec["config"] = {"meta": {"feature_store": meta}}
    return spec


def _node(name, entities, columns, *, ttl=None, created=None, online=True, tags=()):
    meta = {"entities": entities, "timestamp": "event_ts", "owner": "tests@example.com", "online": online,
            "tags": list(tags)}
    if ttl:
        meta["ttl"] = ttl
    if created:
        meta["created_timestamp"] = created
    return {
        "resource_type": "model",
        "name": name,
        "relation_name": f'"warehouse"."main"."{name}"',
        "config": {"meta": {"feature_store": meta}},
        "columns": {c["name"]: c for c in columns},
    }


VIEWS = {
    "user_order_features": _node(
        "user_order_features", ["user"],
        [_column("user_id", "bigint"), _column("event_ts", "timestamp"), _column("created_ts", "timestamp"),
         _column("user_7d_orders", "bigint", fallback={"impute": 0}),
         _column("user_avg_amount", "decimal(12,2)"),
         _column("user_last_order_ts", "timestamp")],
        ttl="2d", created="created_ts", tags=["finance-grade"]),
    "user_txn_features": _node(
        "user_txn_features", ["user"],
        [_column("user_id", "bigint"), _column("event_ts", "timestamp"),
         _column("txn_velocity_60s", "bigint", fallback="gate"),
         _column("txn_amount_10m", "double"),
         _column("txn_last_category", "varchar", deprecated="2026-01-01")],
        ttl="10m"),
    "all_types": _node(
        "all_types", ["user"],
        [_column("user_id", "bigint"), _column("event_ts", "timestamp"),
         _column("f_int", "bigint"), _column("f_float", "double"), _column("f_decimal", "decimal(18,4)"),
         _column("f_string", "varchar"), _column("f_bool", "boolean"), _column("f_ts", "timestamp"),
         _column("f_tstz", "timestamptz"), _column("f_date", "date")]),
    "merchant_pair": _node(
        "merchant_pair", ["user", "merchant"],
        [_column("user_id", "bigint"), _column("merchant", "varchar"), _column("event_ts", "timestamp"),
         _column("pair_orders", "bigint", fallback={"impute": -1})],
        ttl="1d"),
    "offline_only": _node(
        "offline_only", ["user"],
        [_column("user_id", "bigint"), _column("event_ts", "timestamp"), _column("f", "bigint")],
        online=False),
}


def make_registry(project="proj", target="dev", meta: dict[str, dict] | None = None) -> Registry:
    """The registry of VIEWS; ``meta`` adds view meta keys by view name, e.g. ``{"all_types": {"log_sample_rate": 1}}``."""
    nodes = copy.deepcopy(VIEWS) if meta else VIEWS
    for name, extra in (meta or {}).items():
        nodes[name]["config"]["meta"]["feature_store"].update(extra)
    manifest = {"nodes": {f"model.{project}.{name}": node for name, node in nodes.items()},
                "metadata": {"project_name": project, "adapter_type": "duckdb"}}
    return Registry.from_manifest(manifest, ENTITIES, project_name=project, project_dir=Path("."),
                                  manifest_path=Path("target/manifest.json"),
                                  target=Target(target, "duckdb", None))


def utc_now() -> datetime:
    """Now as naive UTC, to the microsecond."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class MemorySource:
    """Feature rows held in memory, served like ``offline.snapshot`` (latest row per entity as of a time).

    ``tables[view]`` holds the view's columns (join keys, event_ts, [created ts], features).
    Same rule as the point-in-time join: greatest event_ts <= as_of, ties broken by the
    created timestamp; an entity whose latest row is older than the ttl comes back with
    NULL features and a NULL ``__event_ts``. ``since`` keeps entities with a row whose
    created (else event) timestamp is later than it.
    """

    def __init__(self, registry: Registry, tables: dict[str, pa.Table]):
        self.registry = registry
        self.tables = tables
        self.calls: list[tuple] = []

    def __call__(self, registry, view_name, as_of, since=None, batch_rows=50_000, previous=None, **_):
        # No fingerprints: every sync reads every entity (since=None), as a full read does.
        self.calls.append((view_name, as_of, since))
        view = registry.view(view_name)
        table = self.tables[view_name]
        rows = [r for r in table.to_pylist() if r[view.timestamp] <= as_of]
        changed = view.created_timestamp or view.timestamp
        keys = lambda r: tuple(r[k] for k in view.join_keys)  # noqa: E731
        wanted = None
        if since is not None:
            wanted = {keys(r) for r in rows if r[changed] is not None and r[changed] > since}
        latest: dict = {}
        for r in rows:
            k = keys(r)
            if wanted is not None and k not in wanted:
                continue
            rank = (r[view.timestamp], r.get(view.created_timestamp) if view.created_timestamp else None)
            best = latest.get(k)
            if best is None or _later(rank, best[0]):
                latest[k] = (rank, r)
        out = []
        for k, (rank, r) in latest.items():
            row = {key: r[key] for key in view.join_keys}
            live = view.ttl is None or rank[0] >= as_of - view.ttl
            for f in view.features:
                row[f.name] = r[f.name] if live else None
            row["__event_ts"] = rank[0] if live else None
            row["__created_ts"] = rank[1] if live else None
            out.append(row)
        schema = pa.schema([table.schema.field(k) for k in view.join_keys]
                           + [table.schema.field(f.name) for f in view.features]
                           + [pa.field("__event_ts", pa.timestamp("us")), pa.field("__created_ts", pa.timestamp("us"))])
        return MemoryReader(pa.Table.from_pylist(out, schema), batch_rows)


def _later(a, b) -> bool:
    if a[0] != b[0]:
        return a[0] > b[0]
    if a[1] is None:
        return False
    return b[1] is None or a[1] > b[1]


class MemoryReader:
    """The rows of one MemorySource read, shaped like ``snapshot.SnapshotReader`` (no fingerprints)."""

    fingerprints = None
    plan = "every entity (in memory)"

    def __init__(self, table: pa.Table, batch_rows: int):
        self.table, self.batch_rows = table, batch_rows
        self.total_rows = None  # like a source that cannot count ahead

    def __iter__(self):
        return iter(self.table.to_batches(max_chunksize=self.batch_rows))

    def read_all(self) -> pa.Table:
        return self.table

    def close(self):
        pass


def make_tables(now: datetime, users: int = 200, seed: int = 7) -> dict[str, pa.Table]:
    """Deterministic feature rows for the online views of :func:`make_registry`, relative to ``now``.

    Every user has a few rows per view; some users' latest row is already past the
    ttl at ``now`` (expired on arrival), some values are NULL, merchant names need
    escaping, and a few rows carry event times after ``now`` (not visible yet). No row
    is within 30 s of its ttl at ``now``, so a test's few seconds never change the answer.
    """
    import random
    from decimal import Decimal

    rnd = random.Random(seed)
    order, txn, pair, types = [], [], [], []
    for u in range(1, users + 1):
        for hours in sorted(rnd.sample([1, 3, 20, 30, 49, 60, 80], 3), reverse=True):
            if u % 9 == 0:
                hours += 50  # every row of this user is older than the 2d ttl
            e = now - timedelta(hours=hours, seconds=rnd.randint(60, 3540))  # never within a minute of the ttl
            order.append({"user_id": u, "event_ts": e, "created_ts": e + timedelta(minutes=5),
                          "user_7d_orders": None if u % 11 == 0 else rnd.randint(0, 20),
                          "user_avg_amount": Decimal(rnd.randint(0, 99999)) / 100,
                          "user_last_order_ts": e - timedelta(minutes=rnd.randint(0, 600))})
        for minutes in rnd.sample(range(1, 30), 3):
            e = now - timedelta(minutes=minutes, seconds=30, microseconds=rnd.randint(0, 999_999))
            txn.append({"user_id": u, "event_ts": e, "txn_velocity_60s": rnd.randint(1, 5),
                        "txn_amount_10m": rnd.random() * 100, "txn_last_category": rnd.choice(["grocery", "fuel", "a}b"])})
        if u % 3 == 0:
            e = now + timedelta(hours=1)  # in the future: not visible as of now
            txn.append({"user_id": u, "event_ts": e, "txn_velocity_60s": 99, "txn_amount_10m": 0.0,
                        "txn_last_category": "future"})
        merchant = rnd.choice(["acme", "x{y}", "a,b=c", "100%"])
        pair.append({"user_id": u, "merchant": merchant, "event_ts": now - timedelta(hours=rnd.randint(1, 30), minutes=30),
                     "pair_orders": rnd.randint(0, 5)})
        types.append({"user_id": u, "event_ts": now - timedelta(days=rnd.randint(0, 400)),
                      "f_int": rnd.randint(-(2**63), 2**63 - 1), "f_float": rnd.random(),
                      "f_decimal": Decimal(rnd.randint(-10**8, 10**8)) / 10**4,
                      "f_string": rnd.choice(["", "plain", "ünïcode", None]), "f_bool": rnd.choice([True, False, None]),
                      "f_ts": now - timedelta(seconds=rnd.randint(0, 10**7)),
                      "f_tstz": (now - timedelta(seconds=rnd.randint(0, 10**7))).replace(tzinfo=timezone.utc),
                      "f_date": (now - timedelta(days=rnd.randint(0, 1000))).date()})
    ts = pa.timestamp("us")
    return {
        "user_order_features": pa.Table.from_pylist(order, pa.schema([
            ("user_id", pa.int64()), ("event_ts", ts), ("created_ts", ts), ("user_7d_orders", pa.int64()),
            ("user_avg_amount", pa.decimal128(12, 2)), ("user_last_order_ts", ts)])),
        "user_txn_features": pa.Table.from_pylist(txn, pa.schema([
            ("user_id", pa.int64()), ("event_ts", ts), ("txn_velocity_60s", pa.int64()),
            ("txn_amount_10m", pa.float64()), ("txn_last_category", pa.string())])),
        "merchant_pair": pa.Table.from_pylist(pair, pa.schema([
            ("user_id", pa.int64()), ("merchant", pa.string()), ("event_ts", ts), ("pair_orders", pa.int64())])),
        "all_types": pa.Table.from_pylist(types, pa.schema([
            ("user_id", pa.int64()), ("event_ts", ts), ("f_int", pa.int64()), ("f_float", pa.float64()),
            ("f_decimal", pa.decimal128(18, 4)), ("f_string", pa.string()), ("f_bool", pa.bool_()),
            ("f_ts", ts), ("f_tstz", pa.timestamp("us", "UTC")), ("f_date", pa.date32())])),
        "offline_only": pa.Table.from_pylist([{"user_id": 1, "event_ts": now - timedelta(hours=1), "f": 1}],
                                             pa.schema([("user_id", pa.int64()), ("event_ts", ts), ("f", pa.int64())])),
    }


def redis_state(url: str) -> dict:
    """Every key with its hash (or string) content and absolute expiry, for comparing two stores."""
    import redis

    client = redis.Redis.from_url(url)
    state = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        content = client.hgetall(key) if kind == b"hash" else client.get(key)
        state[key] = (content, client.expiretime(key))
    client.close()
    return state
