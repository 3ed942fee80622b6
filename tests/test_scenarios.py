"""The operations a team really runs, one after another, with online == offline after each.

One copy of the example project per module, built on DuckDB with ``shift_seeds_to``
pinned a little before the wall clock: timestamps stay put from build to build, yet
the 10-minute and 2-day ttls still decide what is live. The steps share that project
and the session redis-server, in order:

1. build, sync, check;
2. a feature's SQL changes its values but not its timestamps: build, incremental sync, check;
3. a late row (event time before the last sync) lands in a seed: rebuild, sync, check it is served;
4. a ttl goes from 10m to 1d: build, sync, check that the entities it revives are served;
5. Redis loses everything: every read says NOT_SYNCED (no imputing, gates raise), then sync, check;
6. syncs loop while a ``dbt build`` holds the warehouse, one more sync after it, check.

"Check" compares every entity of every online view at the sync's as-of time T
(tests/consistency_support.py). A failing step leaves Redis flushed and fully
re-synced, so the next step starts from a consistent store and fails only for its own
reason.
"""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import yaml
from conftest import BIN, copy_project, run_dbt
from consistency_support import check_all, latest_event_ts, online_views, utc_now

from feature_store.errors import FeatureMissing, WarehouseError
from feature_store.materialize import sync
from feature_store.online import FieldStatus, OnlineStore, get_online_features
from feature_store.registry import Registry
from feature_store.warehouse.duckdb import connect as connect_duckdb
from feature_store.writelag import read_write_lag

pytestmark = [pytest.mark.dbt, pytest.mark.redis,
              pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")]

# A status being added to the online store; the text compares equal to the member once it exists.
NOT_SYNCED = getattr(FieldStatus, "NOT_SYNCED", "NOT_SYNCED")

# How far before the wall clock the data ends: near enough that a 10-minute ttl keeps
# the last transactions live for the whole module, and that a row 10 minutes before a
# sync still fits under the data's last moment (which dbt's own tests check).
ANCHOR_LAG = timedelta(minutes=2)
LATE_ROW_AGE = timedelta(minutes=8)  # event time of step 3's late row, before that step's sync
BUILD_ATTEMPTS = 3  # step 6: builds that a concurrent sync may make fail to open the warehouse


class SyncFailed(AssertionError):
    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("sync failed for " + "; ".join(f"{v}: {e}" for v, e in errors.items()))


class Scenario:
    """The module's project, Redis and what the steps hand on to each other."""

    def __init__(self, project: Path, url: str, anchor: datetime):
        self.project, self.url, self.anchor = project, url, anchor
        self.broken: str | None = None  # why later steps cannot run
        self.baseline: dict[int, float | None] = {}  # step 1's online user_avg_basket_30d
        self.registry: Registry | None = None  # loaded by the first build
        self.store: OnlineStore | None = None

    def reload(self) -> None:
        """Read the manifest again: every build may change the definitions."""
        self.registry = Registry.load(self.project)
        if self.store is not None:
            self.store.close()
        self.store = OnlineStore.for_registry(self.registry, url=self.url)

    def dbt(self, *args: str) -> None:
        run_dbt(self.project, *args)
        self.reload()

    def sync(self, **kwargs):
        """An incremental sync as of the wall clock; returns (T, report).

        A view the sync could not finish is a failure here, although the sync goes on
        with the other views and only reports it.
        """
        now = utc_now()
        report = sync(self.registry, self.store, now=now, **kwargs)
        if report.failed:
            raise SyncFailed(report.failed)
        return now, report

    def check(self, synced_at: datetime) -> dict[str, int]:
        compared = check_all(self.registry, self.store, synced_at)
        assert all(compared.values()), compared
        return compared

    def view(self, name: str):
        return self.registry.view(name)

    def query(self, sql: str, params=()) -> list[tuple]:
        con = connect_duckdb(self.registry)
        try:
            return con.execute(sql, list(params)).fetchall()
        finally:
            con.close()

    def read(self, view_name: str, users: list[int], at: datetime, **kwargs):
        return get_online_features(self.registry, self.store, [view_name], [{"user_id": u} for u in users],
                                   now=at, **kwargs)

    def users(self, view_name: str) -> list[int]:
        return [r[0] for r in self.query(f"select distinct user_id from {self.view(view_name).relation} order by 1")]

    @contextmanager
    def step(self):
        if self.broken:
            pytest.skip(f"no project to run this step on: {self.broken}")
        try:
            yield
        except Exception:
            self.repair()
            raise

    def repair(self) -> None:
        """A clean store for the next step: flushed and fully re-synced."""
        if self.registry is None:
            return
        try:
            self.store.client.flushall()
            sync(self.registry, self.store, now=utc_now(), full_refresh=True)
        except Exception as exc:  # the step's own failure is the one to report
            print(f"repair after the failed step did not finish: {exc}")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, redis_server):
    project = copy_project(tmp_path_factory.mktemp("scenarios") / "project")
    anchor = (utc_now() - ANCHOR_LAG).replace(microsecond=0)
    pin_shift(project, anchor)
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    s = Scenario(project, redis_server, anchor)
    yield s
    if s.store is not None:
        s.store.close()


def pin_shift(project: Path, anchor: datetime) -> None:
    """Set var shift_seeds_to in the copy's dbt_project.yml, so every dbt call (ours and the library's) sees it."""
    path = project / "dbt_project.yml"
    text = path.read_text()
    line = "    shift_seeds_to_now: true\n"
    assert line in text, "dbt_project.yml no longer has vars.feature_store.shift_seeds_to_now"
    path.write_text(text.replace(line, line + f'    shift_seeds_to: "{anchor:%Y-%m-%d %H:%M:%S}"\n'))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name} no longer contains {old!r} exactly once; update this test"
    path.write_text(text.replace(old, new))


def test_1_build_then_sync(scenario):
    with scenario.step():
        try:
            scenario.dbt("build")
        except AssertionError as exc:
            scenario.broken = "the first dbt build failed"
            raise exc
        T, report = scenario.sync()
        assert report.keys_written > 0
        scenario.check(T)

        # The anchor makes both ttls matter: every user's daily row is live under 2d, and
        # under 10m only the last few minutes' card holders are.
        orders = latest_event_ts(scenario.registry, scenario.view("user_order_features"), T)
        txns = latest_event_ts(scenario.registry, scenario.view("user_txn_features"), T)
        assert orders and all(e is not None for e in orders.values())
        live = sum(e is not None for e in txns.values())
        assert 0 < live < len(txns), f"{live} of {len(txns)} user_txn_features entities live at {T}"

        users = scenario.users("user_order_features")
        got = scenario.read("user_order_features", users, T, apply_fallbacks=False).to_dict()
        scenario.baseline = dict(zip(users, got["user_avg_basket_30d"]))


def test_2_feature_sql_edit_reaches_redis_without_full_refresh(scenario):
    with scenario.step():
        view = scenario.view("user_order_features")
        stamps = f"select count(*), sum(hash(user_id, event_ts, computed_at)) from {view.relation}"
        before = scenario.query(stamps)
        # Rounding: a typical "fix the feature" edit that keeps every row and its timestamps.
        edit(scenario.project / "models/features/user_order_features.sql",
             "cast(amount_30d as {{ double }}) / nullif(orders_30d, 0) as user_avg_basket_30d,",
             "round(cast(amount_30d as {{ double }}) / nullif(orders_30d, 0), 1) as user_avg_basket_30d,")
        scenario.dbt("run", "--select", "user_order_features")
        assert scenario.query(stamps) == before, "the edit was meant to keep event_ts and computed_at"

        T, report = scenario.sync()
        scenario.check(T)
        # Rewritten at the same versions, hours after their event times: a fix, not lateness.
        assert report.views["user_order_features"].mode == "incremental"
        assert report.views["user_order_features"].keys_written > 0
        lag = next(w for w in read_write_lag(scenario.store, "user_order_features") if w.source == "sync")
        assert (lag.rows, lag.p95_s, lag.note) == (0, None, "the sync wrote no row as a newer version")

        users = list(scenario.baseline)
        now = scenario.read("user_order_features", users, T, apply_fallbacks=False).to_dict()["user_avg_basket_30d"]
        changed = sum(1 for u, v in zip(users, now)
                      if v is not None and scenario.baseline[u] is not None and v != scenario.baseline[u])
        assert changed > 0, "no user_avg_basket_30d changed online after the edit"


def test_3_late_row_is_served(scenario):
    with scenario.step():
        view = scenario.view("user_txn_features")
        # Its event time is before the previous sync's as-of time, yet it was not in the warehouse then.
        event_ts = min(utc_now() - LATE_ROW_AGE, scenario.anchor).replace(microsecond=0)
        # A user with no other transaction in the hour before it, so its features are known exactly.
        user = scenario.query(
            "select user_id from (select user_id, max(txn_ts) as last from stg_transactions group by user_id) "
            "where last < ? and user_id <> 42 order by user_id limit 1", [event_ts - timedelta(hours=1)])[0][0]

        seeds = scenario.project / "seeds" / "transactions.csv"
        with seeds.open() as f:
            last_id = max(int(line.split(",", 1)[0]) for line in list(f)[1:])
        seed_max = datetime.strptime(
            yaml.safe_load((scenario.project / "dbt_project.yml").read_text())["vars"]["feature_store"]["seed_max_ts"],
            "%Y-%m-%d %H:%M:%S")
        seed_ts = event_ts - (scenario.anchor - seed_max)
        text = seeds.read_text()
        seeds.write_text(text + ("" if text.endswith("\n") else "\n")
                         + f"{last_id + 1},{user},{seed_ts:%Y-%m-%d %H:%M:%S},12.34,grocery,true\n")
        scenario.dbt("build", "--select", "transactions", "user_txn_features")

        T, report = scenario.sync()
        assert T - event_ts < view.ttl, "the late row must still be live at the sync"
        scenario.check(T)
        # The late row is the write lag's one row: written at T, minutes after it happened (a
        # measure of rows timed after the last sync would never see it).
        assert report.views[view.name].mode == "incremental"
        lag = next(w for w in read_write_lag(scenario.store, view.name) if w.source == "sync")
        late_by = (T - event_ts).total_seconds()
        assert lag.rows == 1 and late_by <= lag.p95_s == lag.max_s < late_by + 120, lag

        got = scenario.read(view.name, [user], T, apply_fallbacks=False)
        values, statuses = got.to_dict(), got.statuses
        assert got.event_timestamps["txn_velocity_60s"] == [event_ts], f"user {user}'s late row is not served"
        assert (values["txn_velocity_60s"], values["txn_amount_1h_sum"]) == ([1], [Decimal("12.34")])
        assert statuses["txn_velocity_60s"] == [FieldStatus.PRESENT]


def test_4_longer_ttl_revives_expired_entities(scenario):
    with scenario.step():
        edit(scenario.project / "models/features/_features.yml", "ttl: 10m", "ttl: 1d")
        scenario.dbt("run", "--select", "user_txn_features")
        view = scenario.view("user_txn_features")
        assert view.ttl == timedelta(days=1)

        T, _ = scenario.sync()
        # Live under 1d, dead under the old 10m: nothing has changed in their rows.
        revived = sorted(k[0] for k, e in latest_event_ts(scenario.registry, view, T).items()
                         if e is not None and e < T - timedelta(minutes=10))
        assert revived, "no entity is between 10 minutes and 1 day old; the anchor is off"
        scenario.check(T)

        statuses = scenario.read(view.name, revived, T, apply_fallbacks=False).statuses["txn_velocity_60s"]
        missing = [u for u, s in zip(revived, statuses) if s is not FieldStatus.PRESENT]
        assert not missing, f"{len(missing)} of {len(revived)} revived users are not served, e.g. {missing[:5]}"


def test_5_redis_data_loss_reads_not_synced_until_resync(scenario):
    with scenario.step():
        scenario.store.client.flushall()
        at = utc_now()
        problems = []
        for view in online_views(scenario.registry):
            users = scenario.users(view.name)
            raw = scenario.read(view.name, users, at, apply_fallbacks=False).statuses
            for name, statuses in raw.items():
                wrong = {str(s) for s in statuses if s != NOT_SYNCED}
                if wrong:
                    problems.append(f"{view.name}:{name} read {', '.join(sorted(wrong))}, not NOT_SYNCED")
            # A default is a claim about a synced entity; after data loss it must not be served.
            plain = [f"{view.name}:{f.name}" for f in view.features if f.fallback is None or f.fallback.kind != "gate"]
            got = get_online_features(scenario.registry, scenario.store, plain, [{"user_id": u} for u in users],
                                      now=at, gate="status")
            imputed = {name: n for name, n in got.imputed.items() if n}
            if imputed:
                problems.append(f"{view.name}: imputed defaults served after data loss: {imputed}")
            for f in view.features:
                if f.fallback is not None and f.fallback.kind == "gate":
                    try:
                        scenario.read(view.name, users[:1], at)
                        problems.append(f"{view.name}:{f.name} is gated but served without data")
                    except FeatureMissing:
                        pass

        T, _ = scenario.sync()
        scenario.check(T)
        assert not problems, "reads between the data loss and the resync:\n  " + "\n  ".join(problems)


def test_6_sync_while_dbt_build_runs(scenario):
    with scenario.step():
        synced = locked = refused = 0
        # The build running under the syncs changes values (the step-2 rounding, one digit
        # finer) at the same timestamps, so the last sync has something to carry.
        edit(scenario.project / "models/features/user_order_features.sql",
             "round(cast(amount_30d as {{ double }}) / nullif(orders_30d, 0), 1) as user_avg_basket_30d,",
             "round(cast(amount_30d as {{ double }}) / nullif(orders_30d, 0), 2) as user_avg_basket_30d,")
        for attempt in range(1, BUILD_ATTEMPTS + 1):
            build = subprocess.Popen(
                [str(BIN / "dbt"), "build", "--profiles-dir", str(scenario.project)],
                cwd=scenario.project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
            )
            try:
                while build.poll() is None:
                    try:
                        scenario.sync(wait=30)
                        synced += 1
                    except (WarehouseError, SyncFailed) as exc:
                        if "locked" not in str(exc):
                            raise
                        locked += 1  # the build kept the warehouse longer than the sync waits for it
                    time.sleep(0.1)
            finally:
                out, _ = build.communicate(timeout=300)
            # dbt-duckdb reopens the file for each node, and DuckDB refuses a writer while a
            # reader holds it: a sync at that instant fails the build, not itself. What a
            # scheduler does then is run the build again.
            if build.returncode != 0 and "Could not set lock on file" in out and attempt < BUILD_ATTEMPTS:
                refused += 1
                continue
            assert build.returncode == 0, f"dbt build failed while syncs ran:\n{out[-3000:]}"
            break
        assert synced + locked > 0, "the build finished before any sync started"
        print(f"while dbt build ran: {synced} sync(s) finished, {locked} found the warehouse locked, "
              f"{refused} build(s) failed to open the warehouse a sync was reading")

        scenario.reload()
        T, _ = scenario.sync()
        scenario.check(T)


def test_fixed_shift_rebuilds_identically(scenario):
    """Part of what makes the steps above repeatable: a second build lands every timestamp and value again."""
    if scenario.broken:
        pytest.skip(scenario.broken)
    tables = ["stg_transactions", "stg_orders", "user_order_features", "user_txn_features", "txn_features"]

    def contents():
        return {t: scenario.query(f"select * from {t} order by all") for t in tables}

    before = contents()
    run_dbt(scenario.project, "run", "--exclude", "path:models/training")
    after = contents()
    assert after == before
    data_max = scenario.query("select max(txn_ts) from stg_transactions")[0][0]
    computed = scenario.query("select min(computed_at), max(computed_at) from user_order_features")[0]
    assert data_max == scenario.anchor and computed == (scenario.anchor, scenario.anchor)


def test_shift_seeds_to_rejects_a_malformed_time(project_copy):
    proc = run_dbt(project_copy, "parse", "--vars", '{shift_seeds_to: "2026-12-01T25:00:00"}', check=False)
    assert proc.returncode != 0
    assert ("var shift_seeds_to '2026-12-01T25:00:00' is not a valid date and time; "
            'write it as a UTC time "YYYY-MM-DD HH:MM:SS"') in proc.stdout
