"""fstore monitor: drift, fill rate and freshness on real data, with and without faults injected.

One copy of the example project is built for the module with its data pinned two days
ahead of the clock at noon (var shift_seeds_to), so the data is the same every run and
Redis keeps what the sync writes (keys expire by the real clock). In the copy,
txn_features is made online (no ttl), so string and bool features are served and checked
too. The serving log is made of real online reads (get_online_features against the
session's redis-server after a real sync), landed in the serving log's Parquet format;
faults are injected on purpose into what was served (values scaled, a category swapped,
reads of entities the store does not know) or into the clock (a run days after the data).
A clean run must not alert, and every injected fault must.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import struct
import subprocess
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import copy_project, run_dbt
from test_scenarios import edit, pin_shift

from feature_store import servinglog
from feature_store.cli import main
from feature_store.materialize import sync
from feature_store.monitor import (
    DEFAULT_THRESHOLDS,
    MIN_SAMPLES,
    MonitorRun,
    ViewResult,
    history_dir,
    ks_statistic,
    psi_categorical,
    psi_numeric,
    read_history,
    run_monitors,
    write_history,
)
from feature_store.online import OnlineStore, get_online_features
from feature_store.registry import Registry
from feature_store.writelag import read_write_lag

pytestmark = [pytest.mark.dbt, pytest.mark.redis,
              pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")]

# Noon two days ahead: the keys the sync writes expire by the real clock, so the data's time
# must not be behind it; noon puts the daily view's latest row 12 h back, inside its 26h SLA.
ANCHOR = (datetime.now(timezone.utc) + timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0,
                                                                   tzinfo=None)
NOW = ANCHOR + timedelta(minutes=10)  # the monitors' time in the clean runs
READ_AT = ANCHOR + timedelta(minutes=5)  # when the logged reads were served
TARGET = "dev"  # the example profile's target: whose serving log and history the runs read and write


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The example, pinned, with txn_features online (no ttl: every transaction stays served), built."""
    project = copy_project(tmp_path_factory.mktemp("monitor") / "project")
    pin_shift(project, ANCHOR)
    edit(project / "models/features/_features.yml",
         "          online: false\n          tags: [fraud]\n", "          online: true\n          tags: [fraud]\n")
    run_dbt(project, "build")
    return project


@pytest.fixture(scope="module")
def registry(project) -> Registry:
    return Registry.load(project)


@pytest.fixture
def landing(project) -> Path:
    """The project's landing folder, emptied: each test lands its own serving log and history."""
    folder = project / "push"
    shutil.rmtree(folder, ignore_errors=True)
    return folder


@pytest.fixture
def store(registry, redis_url):
    """The online store after two real syncs: one an hour before the data's end, one at it.

    The second is incremental, so the write lag it records is that of the rows new since the
    first (as a sync scheduled every hour would see), not the history the first one loaded.
    """
    s = OnlineStore.for_registry(registry, url=redis_url)
    for as_of in (ANCHOR - timedelta(hours=1), ANCHOR):
        report = sync(registry, s, now=as_of)
        assert report.ok, report.failed
    yield s
    s.close()


def offline_rows(registry: Registry, sql: str) -> list[dict]:
    from feature_store.warehouse import open_warehouse

    with open_warehouse(registry) as wh:
        return wh.fetch(sql).to_pylist()


def serve(registry: Registry, store: OnlineStore, reads: dict[str, list[dict]], at: datetime) -> pa.Table:
    """Real online reads of ``reads`` (view -> entity rows) at ``at``, as the serving log lands them.

    One log row per (read, feature), served at ``at`` (inside the monitors' last hour), with
    what get_online_features served and its status.
    """
    rows = []
    for view_name, entities in reads.items():
        view = registry.view(view_name)
        got = get_online_features(registry, store, [view.name], entities, now=at, apply_fallbacks=False)
        data, statuses = got.to_dict(), got.statuses
        for i, entity in enumerate(entities):
            for f in view.features:
                rows.append({
                    "id": f"{int(at.timestamp() * 1000)}-{i}", "served_at": at, "client": "tests",
                    "view": view.name, "entity": json.dumps(entity, sort_keys=True), "event_ts": None,
                    "feature": f.name, "value": servinglog.value_text(data[f.name][i]),
                    "status": str(statuses[f.name][i]),
                })
    return pa.Table.from_pylist(rows, schema=servinglog.log_schema())


def land(landing: Path, log: pa.Table, name: str = "test") -> None:
    """``log`` where the drain lands the serving log, for read_log and the dbt source."""
    folder = servinglog.log_dir(landing, TARGET) / f"date={READ_AT:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(log, folder / f"{name}.parquet")


def clean_reads(registry: Registry) -> dict[str, list[dict]]:
    """What services read in the last hour, from the same population the offline sample comes from."""
    def relation(view: str) -> str:
        return registry.view(view).relation

    users = offline_rows(registry, f"select distinct user_id from {relation('user_order_features')} order by 1")
    day = ANCHOR.replace(hour=0)
    txns = offline_rows(registry, f"select txn_id from {relation('txn_features')} where event_ts >= timestamp "
                                  f"'{day - timedelta(days=7)}' and event_ts < timestamp '{day}' order by 1")
    live = offline_rows(registry, f"select distinct user_id from {relation('user_txn_features')} where event_ts > "
                                  f"timestamp '{READ_AT - timedelta(minutes=10)}' order by 1")
    return {"user_order_features": users, "txn_features": random.Random(3).sample(txns, 400),
            "user_txn_features": live}


def scaled(log: pa.Table, feature: str, factor: float) -> pa.Table:
    """The log with ``feature``'s served values multiplied by ``factor``: a unit change upstream."""
    values = [str(float(v) * factor) if f == feature and v is not None else v
              for f, v in zip(log.column("feature").to_pylist(), log.column("value").to_pylist(), strict=True)]
    return log.set_column(log.schema.get_field_index("value"), "value", pa.array(values, pa.string()))


def swapped(log: pa.Table, feature: str, old: str, new: str) -> pa.Table:
    """The log with category ``old`` of ``feature`` served as ``new``: a renamed code upstream."""
    values = [new if f == feature and v == old else v
              for f, v in zip(log.column("feature").to_pylist(), log.column("value").to_pylist(), strict=True)]
    return log.set_column(log.schema.get_field_index("value"), "value", pa.array(values, pa.string()))


def by_ref(run) -> dict:
    return {f.ref: f for f in run.features}


# -- the statistics, on data whose answer is known ---------------------------------------------


def test_statistics_see_shifts_and_not_noise():
    rng = np.random.default_rng(1)
    base = rng.normal(50, 10, 5000)
    same = rng.normal(50, 10, 800)
    shifted = rng.normal(60, 10, 800)
    assert ks_statistic(base, same) < DEFAULT_THRESHOLDS["ks_warn"]
    assert ks_statistic(base, shifted) > DEFAULT_THRESHOLDS["ks_alert"]
    assert psi_numeric(base, same) < DEFAULT_THRESHOLDS["psi_warn"]
    assert psi_numeric(base, shifted) >= DEFAULT_THRESHOLDS["psi_alert"]
    # A count feature: repeated quantile edges collapse, each common value gets its bin.
    counts = rng.poisson(1.0, 5000).astype(float)
    assert psi_numeric(counts, rng.poisson(1.0, 800).astype(float)) < DEFAULT_THRESHOLDS["psi_warn"]
    assert psi_numeric(counts, rng.poisson(2.5, 800).astype(float)) >= DEFAULT_THRESHOLDS["psi_alert"]
    # A binary feature at a 5% base rate, and a constant: the majority value is a bin of its own,
    # so its share moving (or the constant changing) shows.
    rare = (rng.random(5000) < 0.05).astype(float)
    assert psi_numeric(rare, (rng.random(800) < 0.05).astype(float)) < DEFAULT_THRESHOLDS["psi_warn"]
    assert psi_numeric(rare, (rng.random(800) < 0.5).astype(float)) >= DEFAULT_THRESHOLDS["psi_alert"]
    assert psi_numeric(np.full(1000, 5.0), np.full(300, 5.0)) == 0
    assert psi_numeric(np.full(1000, 5.0), np.full(300, 7.0)) >= DEFAULT_THRESHOLDS["psi_alert"]
    cats = rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2])
    assert psi_categorical(cats, rng.choice(["a", "b", "c"], 800, p=[0.5, 0.3, 0.2])) < DEFAULT_THRESHOLDS["psi_warn"]
    # A category that never occurred offline is an empty offline bin, not a crash or an infinity.
    new = psi_categorical(cats, rng.choice(["a", "b", "d"], 800, p=[0.5, 0.3, 0.2]))
    assert DEFAULT_THRESHOLDS["psi_alert"] <= new < 100


def test_each_dbt_target_keeps_its_own_history(tmp_path):
    """Runs against dev and prod appended to one landing folder are read back apart."""
    def run(view: str, lag_s: float) -> MonitorRun:
        result = ViewResult(view=view, online=False, freshness_sla=timedelta(hours=1),
                            offline_lag=timedelta(seconds=lag_s), offline_level="ok")
        return MonitorRun(run_at=NOW, now=NOW, offline_window=(ANCHOR, NOW), online_window=(ANCHOR, NOW),
                          views=[result], features=[])

    dev = write_history(run("dev_view", 60), tmp_path, target="dev")
    prod = write_history(run("prod_view", 120), tmp_path, target="prod")
    assert dev.parent.parent == history_dir(tmp_path, "dev") and dev.parent.parent.name == "target=dev"
    assert prod.parent.parent == tmp_path / "_fstore" / "monitor_history" / "target=prod"
    assert read_history(tmp_path, target="dev").column("view").to_pylist() == ["dev_view"]
    assert read_history(tmp_path, target="prod").column("value").to_pylist() == [120.0]
    assert read_history(tmp_path, target="ci").num_rows == 0


# -- end to end ---------------------------------------------------------------------------------


def test_clean_data_does_not_alert(registry, store, landing):
    land(landing, serve(registry, store, clean_reads(registry), READ_AT))
    run = run_monitors(registry, landing, now=NOW, store=store)
    assert run.ok, run.alerts
    got = by_ref(run)
    # Every online numeric and categorical feature with enough reads was compared, not skipped.
    for ref in ("user_order_features:user_7d_orders", "user_order_features:user_avg_basket_30d",
                "txn_features:txn_amount", "txn_features:merchant_category", "txn_features:is_card_present"):
        assert got[ref].drift_level in ("ok", "warn"), (ref, got[ref].to_dict())
        assert got[ref].n_offline >= MIN_SAMPLES and got[ref].n_online >= MIN_SAMPLES
    assert got["txn_features:merchant_category"].method == "psi"
    assert got["user_order_features:user_7d_orders"].ks is not None
    # Only a handful of users transacted in the last ten minutes: too few to judge, and said so.
    velocity = got["user_txn_features:txn_velocity_60s"]
    assert velocity.drift_level == "insufficient data" and velocity.n_online < MIN_SAMPLES
    assert any("fewer than 30" in n for n in velocity.notes)
    # Timestamps are not checked for drift; their fill rate is.
    assert got["user_order_features:last_order_ts"].drift_level == "not checked"
    assert got["user_order_features:last_order_ts"].fill_offline > 0.99
    # The served values were the training set's: the skew audit agrees.
    assert run.skew and not any(s.alert for s in run.skew)
    views = {v.view: v for v in run.views}
    assert views["user_order_features"].offline_level == "ok"
    assert timedelta(hours=12) <= views["user_order_features"].offline_lag <= timedelta(hours=12, minutes=10)
    # The incremental sync recorded the lag of the rows new in its hour: within the 1h SLA.
    sync_lag = next(w for w in views["txn_features"].write_lag if w.source == "sync")
    assert sync_lag.rows > 0 and 0 < sync_lag.p95_s <= 3600 and views["txn_features"].write_level == "ok"


def test_injected_drift_alerts_naming_the_feature(registry, store, landing):
    log = serve(registry, store, clean_reads(registry), READ_AT)
    log = scaled(log, "user_avg_basket_30d", 1.8)
    log = swapped(log, "merchant_category", "grocery", "groceries")
    land(landing, log)
    run = run_monitors(registry, landing, now=NOW, store=store, skew=False)
    got = by_ref(run)
    basket = got["user_order_features:user_avg_basket_30d"]
    assert basket.drift_level == "alert" and basket.ks > DEFAULT_THRESHOLDS["ks_alert"], basket.to_dict()
    category = got["txn_features:merchant_category"]
    assert category.drift_level == "alert" and category.psi >= DEFAULT_THRESHOLDS["psi_alert"], category.to_dict()
    assert not run.ok
    assert any(a.startswith("user_order_features:user_avg_basket_30d: drift") for a in run.alerts), run.alerts
    assert any(a.startswith("txn_features:merchant_category: drift") for a in run.alerts), run.alerts
    # The features left alone stay quiet: the alert is the feature's, not the run's.
    assert got["user_order_features:user_7d_orders"].drift_level != "alert"


def test_fill_rate_alerts_when_served_values_are_mostly_missing(registry, store, landing):
    reads = clean_reads(registry)
    # Most reads are for users the store has never seen (a new population, a key format change):
    # real reads, served NOT_FOUND.
    known = reads["user_order_features"][:20]
    reads = {"user_order_features": known + [{"user_id": 900_000 + i} for i in range(200)]}
    land(landing, serve(registry, store, reads, READ_AT))
    run = run_monitors(registry, landing, now=NOW, store=store, skew=False)
    lifetime = by_ref(run)["user_order_features:user_lifetime_orders"]
    assert lifetime.fill_level == "alert" and lifetime.fill_online < 0.2 and lifetime.fill_offline == 1.0
    assert any("user_lifetime_orders: online fill rate" in a for a in run.alerts), run.alerts


def test_stale_data_and_late_writes_alert(registry, redis_url, landing):
    later = ANCHOR + timedelta(days=3)
    s = OnlineStore.for_registry(registry, url=redis_url)
    try:
        # A first deploy writes history: old by nature, not measured, so it does not alert.
        report = sync(registry, s, now=ANCHOR - timedelta(days=2))
        assert report.ok, report.failed
        first = run_monitors(registry, landing, now=ANCHOR - timedelta(days=2), store=s, skew=False)
        txns = next(v for v in first.views if v.view == "txn_features")
        assert txns.write_level == "not checked" and txns.write_lag[0].rows == 0
        assert any("the sync read the view in full" in n for n in txns.notes), txns.notes
        # Then syncs stopped for days: the next one writes rows days after they happened.
        report = sync(registry, s, now=later)
        assert report.ok, report.failed
        assert report.views["txn_features"].mode == "incremental"
        run = run_monitors(registry, landing, now=later, store=s, skew=False)
    finally:
        s.close()
    views = {v.view: v for v in run.views}
    for name in ("user_order_features", "user_txn_features", "txn_features"):
        assert views[name].offline_level == "alert", views[name].to_dict()
        assert any(a.startswith(f"{name}: offline lag") for a in run.alerts)
    # txn_features has no ttl, so its old rows were written: p95 of days against a 1h SLA.
    late = views["txn_features"]
    assert late.write_level == "alert" and late.write_p95 > 2 * 3600
    assert any(a.startswith("txn_features: online write lag p95") for a in run.alerts)
    # Rows past their ttl were not written, so they have no lag to judge.
    assert views["user_order_features"].write_level == "not checked"


def test_push_records_its_write_lag(registry, store):
    from feature_store.push import push_rows

    at = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    # Three new card holders (no key online: newer versions), and an older row of one of them,
    # which is not written, so not measured.
    rows = [{"user_id": 900_000 + i, "event_ts": (at - timedelta(seconds=s)).isoformat(), "txn_velocity_60s": 1,
             "txn_amount_1h_sum": "3.50"} for i, s in enumerate((30, 60, 90, 300), start=1)]
    rows[3]["user_id"] = 900_001
    push_rows(registry, store, "user_txn_features", rows, landing_dir=registry.project_dir / "push-lag")
    pushed = next(w for w in read_write_lag(store, "user_txn_features") if w.source == "push")
    assert pushed.rows == 3 and 85 <= pushed.max_s <= 120 and 55 <= pushed.p95_s <= pushed.max_s


# -- the command ----------------------------------------------------------------------------------


def fstore(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_exit_status_json_and_history(registry, store, project, landing, redis_url):
    clean = serve(registry, store, clean_reads(registry), READ_AT)
    land(landing, clean)
    common = ["--project-dir", str(project), "--redis-url", redis_url, "--now", NOW.isoformat()]
    res = fstore("monitor", *common)
    assert res.exit_code == 0, res.output
    assert re.search(r"user_avg_basket_30d\s", res.stdout) and "ok" in res.stdout

    land(landing, scaled(clean, "user_avg_basket_30d", 1.8))  # replaces the clean file: drift now
    res = fstore("monitor", *common, "--json")
    assert res.exit_code == 1, res.output
    data = json.loads(res.stdout)
    assert set(data) >= {"run_at", "now", "ok", "views", "features", "skew", "alerts", "offline_window",
                         "online_window"}
    assert data["ok"] is False and data["now"] == NOW.isoformat(sep=" ")
    feature = next(f for f in data["features"] if f["feature"] == "user_avg_basket_30d")
    assert feature["level"] == "alert" and feature["drift"]["method"] == "ks+psi"
    assert set(feature["drift"]) == {"method", "ks", "psi", "level", "n_offline", "n_online"}
    assert set(feature["fill"]) == {"offline", "online", "n_offline", "n_online", "level"}
    assert any("user_avg_basket_30d" in a for a in data["alerts"])
    view = next(v for v in data["views"] if v["view"] == "user_order_features")
    assert view["freshness_sla"] == "26h" and view["offline_lag_s"] == pytest.approx(12 * 3600 + 600)

    # Two runs, two files in the history; dbt's model reads both.
    files = sorted(history_dir(landing, TARGET).glob("date=*/*.parquet"))
    assert len(files) == 2
    history = read_history(landing, target=TARGET)
    assert set(history.column("level").to_pylist()) >= {"ok", "alert"}
    basket = history.filter(pc.and_(pc.equal(history["feature"], "user_avg_basket_30d"),
                                            pc.equal(history["metric"], "ks")))
    assert basket.num_rows == 2 and basket["level"].to_pylist() == ["ok", "alert"]
    run_dbt(project, "build", "--select", "monitor_history")
    from feature_store.warehouse import open_warehouse

    with open_warehouse(registry) as wh:
        built = wh.fetch("select count(distinct run_at) as runs, count(*) as n from main.monitor_history "
                         "where metric = 'ks' and feature = 'user_avg_basket_30d'").to_pylist()
    assert built == [{"runs": 2, "n": 2}]


# -- the report in a real browser ---------------------------------------------------------------


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG (Chromium's: 8-bit RGB or RGBA)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    idat, pos = b"", 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def chromium(page: Path, shot: Path) -> str:
    """Open ``page`` in headless Chromium, screenshot it; its console messages (stderr's CONSOLE lines)."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed; `make install` installs it (apt-get install -y chromium)")
    proc = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         f"--screenshot={shot}", "--window-size=1200,2000", "--hide-scrollbars", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=90)
    assert shot.exists(), f"no screenshot: {proc.stderr[-2000:]}"
    return "\n".join(line for line in proc.stderr.splitlines() if ":CONSOLE" in line)


def test_report_renders_offline_in_chromium_without_console_errors(registry, store, project, landing, redis_url,
                                                                    tmp_path):
    # The probe can see an error: a page with a deliberate one shows in the console lines.
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><title>x</title><script>console.error('deliberate'); nope();</script>")
    console = chromium(broken, tmp_path / "broken.png")
    assert "deliberate" in console and "nope is not defined" in console

    log = serve(registry, store, clean_reads(registry), READ_AT)
    land(landing, log)
    common = ["--project-dir", str(project), "--redis-url", redis_url, "--no-drain"]
    # Two earlier runs give the freshness plots a line over time.
    for minutes in (-50, -25):
        fstore("monitor", *common, "--now", (NOW + timedelta(minutes=minutes)).isoformat())
    land(landing, scaled(log, "user_avg_basket_30d", 1.8))
    report = tmp_path / "monitor.html"
    res = fstore("monitor", *common, "--now", NOW.isoformat(), "--report", str(report))
    assert res.exit_code == 1, res.output
    html = report.read_text()
    # Self-contained: nothing to fetch, so it works offline and behind any proxy.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html.lower() and "@import" not in html
    assert html.count("<svg") >= 8 and "user_avg_basket_30d" in html and "alert" in html

    shot = tmp_path / "monitor.png"
    console = chromium(report, shot)
    assert console == "", console
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (1200, 2000)
    # Not a blank page: many distinct byte values, and rows that differ.
    assert len(set(pixels)) > 50
    row = len(pixels) // height
    assert len({pixels[i * row:(i + 1) * row] for i in range(0, height, 10)}) > 50
