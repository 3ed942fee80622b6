"""Write the demo seeds (users, orders, card transactions, churn and fraud labels) into seeds/.

Deterministic: one fixed random seed and the standard library only, so the same CSVs
come out byte for byte on every machine and the files can be committed.

All timestamps are UTC, written timezone-naive ("YYYY-MM-DD HH:MM:SS", whole seconds),
inside a fixed 90-day window ending END. The staging models move the whole timeline so
that its last moment is the dbt build time; they need that last moment as a constant,
so this script writes it into dbt_project.yml as the var ``seed_max_ts``.

    python scripts/generate_seeds.py            # writes seeds/*.csv, updates seed_max_ts
    python scripts/generate_seeds.py --check    # exits 1 if the committed files differ
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

SEED = 20260131
END = datetime(2026, 1, 31, 23, 59, 59)
START = datetime(2025, 11, 3, 0, 0, 0)  # 90 days before END, to the second
N_USERS = 600
DEMO_USER = 42  # gets a live card-testing burst at the very end of the data

# Churn labels look this far ahead: a user churned if they completed no order in it.
CHURN_HORIZON = timedelta(days=28)

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
PROJECT_FILE = ROOT / "dbt_project.yml"

COUNTRIES = [("US", 35), ("GB", 12), ("DE", 12), ("FR", 10), ("BR", 8), ("IN", 8), ("CA", 7), ("NL", 4), ("ES", 4)]
ORDER_STATUSES = [("completed", 86), ("cancelled", 9), ("refunded", 5)]
# category -> (weight, share card-present, lognormal mu, sigma of the amount)
MERCHANTS = {
    "grocery": (24, 0.85, 3.3, 0.6),
    "restaurants": (18, 0.75, 3.2, 0.5),
    "fuel": (10, 0.95, 3.7, 0.3),
    "apparel": (8, 0.55, 4.0, 0.6),
    "pharmacy": (7, 0.80, 3.0, 0.6),
    "entertainment": (8, 0.40, 3.1, 0.7),
    "utilities": (5, 0.00, 4.3, 0.4),
    "electronics": (6, 0.35, 5.0, 0.8),
    "travel": (6, 0.10, 5.5, 0.7),
    "digital_goods": (8, 0.00, 2.5, 0.9),
}


def fmt(ts: datetime | None) -> str:
    return "" if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S")


def weighted(rng: random.Random, pairs):
    values, weights = zip(*pairs)
    return rng.choices(values, weights=weights, k=1)[0]


def uniform_ts(rng: random.Random, lo: datetime, hi: datetime) -> datetime:
    """A whole-second instant in [lo, hi]."""
    span = int((hi - lo).total_seconds())
    return lo + timedelta(seconds=rng.randint(0, max(span, 0)))


def poisson_times(rng: random.Random, lo: datetime, hi: datetime, per_day: float) -> list[datetime]:
    out, t = [], lo
    while per_day > 0:
        t += timedelta(days=rng.expovariate(per_day))
        if t > hi:
            break
        out.append(t.replace(microsecond=0))
    return out


def gen_users(rng: random.Random) -> list[dict]:
    users = []
    for user_id in range(1, N_USERS + 1):
        # Most accounts predate the window; some sign up during it.
        if rng.random() < 0.7:
            signup = uniform_ts(rng, datetime(2025, 3, 1), START)
        else:
            signup = uniform_ts(rng, START, END - timedelta(days=3))
        users.append({"user_id": user_id, "signup_ts": signup, "country": weighted(rng, COUNTRIES)})
    return users


def gen_orders(rng: random.Random, users: list[dict]) -> list[dict]:
    rows = []
    for u in users:
        if rng.random() < 0.12:  # registered, never ordered
            continue
        begin = max(u["signup_ts"], START)
        stop = END
        if rng.random() < 0.3:  # churns at some point inside the window
            stop = uniform_ts(rng, begin, END)
        rate = 0.107 * rng.lognormvariate(0.0, 0.8)
        for ts in poisson_times(rng, begin, stop, rate):
            status = weighted(rng, ORDER_STATUSES)
            deleted_at = None
            if rng.random() < 0.02:  # soft-deleted later (duplicates, test orders)
                cand = ts + timedelta(seconds=rng.randint(3600, 10 * 86400))
                deleted_at = cand if cand <= END else None
            rows.append({
                "user_id": u["user_id"],
                "order_ts": ts,
                "amount": round(rng.lognormvariate(3.6, 0.6), 2),
                "status": status,
                "deleted_at": deleted_at,
            })
    rows.sort(key=lambda r: (r["order_ts"], r["user_id"]))
    for i, r in enumerate(rows, start=1):
        r["order_id"] = i
    return rows


def _free_second(taken: set, user_id: int, ts: datetime) -> datetime:
    # One user never has two transactions in the same second: the per-user timestamp
    # is a unique key of user_txn_features.
    while (user_id, ts) in taken:
        ts += timedelta(seconds=1)
    taken.add((user_id, ts))
    return ts


def gen_transactions(rng: random.Random, users: list[dict]) -> list[dict]:
    rows, taken = [], set()
    cats = [(c, spec[0]) for c, spec in MERCHANTS.items()]

    def add(user_id, ts, category, present, amount, burst):
        if ts > END:
            return
        ts = _free_second(taken, user_id, ts)
        if ts > END:
            return
        rows.append({"user_id": user_id, "txn_ts": ts, "amount": amount, "merchant_category": category,
                     "is_card_present": present, "_burst": burst})

    for u in users:
        begin = max(u["signup_ts"], START)
        rate = 0.13 * rng.lognormvariate(0.0, 0.7)
        for ts in poisson_times(rng, begin, END, rate):
            cat = weighted(rng, cats)
            _, p_present, mu, sigma = MERCHANTS[cat]
            add(u["user_id"], ts, cat, rng.random() < p_present, round(rng.lognormvariate(mu, sigma), 2), False)
        # Card testing and shopping sprees: several transactions a minute apart or less,
        # so a 60-second velocity is more than 1 for a real share of rows.
        if rng.random() < 0.12:
            for _ in range(rng.randint(1, 4)):
                t = uniform_ts(rng, begin, END)
                card_testing = rng.random() < 0.5
                cat = "digital_goods" if card_testing else weighted(rng, cats)
                for _ in range(rng.randint(3, 9)):
                    amount = round(rng.uniform(0.5, 5.0), 2) if card_testing else round(rng.lognormvariate(3.3, 0.7), 2)
                    present = False if card_testing else rng.random() < MERCHANTS[cat][1]
                    add(u["user_id"], t, cat, present, amount, card_testing)
                    t += timedelta(seconds=rng.randint(2, 25))
    # A card-testing burst in the last minute and a half, so right after a build (the
    # data's end is "now") one user has a live 60-second velocity above 1 inside the
    # 10-minute ttl. It also pins the data's last moment to END.
    for k in range(6, -1, -1):
        ts = END - timedelta(seconds=15 * k)
        if (DEMO_USER, ts) not in taken:
            add(DEMO_USER, ts, "digital_goods", False, round(rng.uniform(0.5, 5.0), 2), True)
    rows.sort(key=lambda r: (r["txn_ts"], r["user_id"]))
    for i, r in enumerate(rows, start=1):
        r["txn_id"] = i
    return rows


def gen_fraud_labels(rng: random.Random, txns: list[dict]) -> list[dict]:
    out = []
    for t in txns:
        if t["_burst"]:
            p = 0.6
        elif not t["is_card_present"] and t["amount"] > 300:
            p = 0.08
        elif not t["is_card_present"]:
            p = 0.01
        else:
            p = 0.002
        out.append({"txn_id": t["txn_id"], "user_id": t["user_id"], "txn_ts": t["txn_ts"],
                    "is_fraud": rng.random() < p})
    return out


def gen_churn_labels(rng: random.Random, orders: list[dict]) -> list[dict]:
    # Same cleaning as stg_orders.is_completed: a cancelled or soft-deleted order never happened.
    completed: dict[int, list[datetime]] = {}
    for o in orders:
        if o["status"] != "cancelled" and o["deleted_at"] is None:
            completed.setdefault(o["user_id"], []).append(o["order_ts"])
    last_label = END - CHURN_HORIZON
    out = []
    for user_id in sorted(completed):
        times = completed[user_id]
        lo = max(times[0] + timedelta(days=1), START + timedelta(days=14))
        if lo >= last_label:
            continue
        for label_ts in sorted(uniform_ts(rng, lo, last_label) for _ in range(rng.randint(1, 3))):
            horizon = label_ts + CHURN_HORIZON
            churned = not any(label_ts < t <= horizon for t in times)
            out.append({"user_id": user_id, "label_ts": label_ts, "churned": churned})
    # (user_id, label_ts) identifies a label; duplicates from the random draw are dropped.
    seen, unique = set(), []
    for r in out:
        if (r["user_id"], r["label_ts"]) not in seen:
            seen.add((r["user_id"], r["label_ts"]))
            unique.append(r)
    return unique


def to_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r[c]) for c in columns])
    return buf.getvalue()


def _cell(v) -> str:
    if v is None:
        return ""  # NULL in the seed
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return fmt(v)
    if isinstance(v, float):
        return f"{v:.2f}"  # money: always two decimals, never 1e-05
    return str(v)


def build() -> tuple[dict[str, str], datetime]:
    rng = random.Random(SEED)
    users = gen_users(rng)
    orders = gen_orders(rng, users)
    txns = gen_transactions(rng, users)
    fraud = gen_fraud_labels(rng, txns)
    churn = gen_churn_labels(rng, orders)
    files = {
        "users": to_csv(users, ["user_id", "signup_ts", "country"]),
        "orders": to_csv(orders, ["order_id", "user_id", "order_ts", "amount", "status", "deleted_at"]),
        "transactions": to_csv(txns, ["txn_id", "user_id", "txn_ts", "amount", "merchant_category", "is_card_present"]),
        "churn_labels": to_csv(churn, ["user_id", "label_ts", "churned"]),
        "fraud_labels": to_csv(fraud, ["txn_id", "user_id", "txn_ts", "is_fraud"]),
    }
    stamps = [u["signup_ts"] for u in users] + [o["order_ts"] for o in orders] \
        + [o["deleted_at"] for o in orders if o["deleted_at"]] + [t["txn_ts"] for t in txns] \
        + [c["label_ts"] for c in churn]
    return files, max(stamps)


_SEED_MAX_LINE = re.compile(r'^(\s*seed_max_ts:\s*)"[^"]*"(.*)$', re.MULTILINE)


def project_with_seed_max(text: str, seed_max: datetime) -> str:
    if not _SEED_MAX_LINE.search(text):
        sys.exit(f"{PROJECT_FILE}: no `seed_max_ts: \"...\"` line under vars.feature_store; "
                 "add one (any value) and run this script again")
    return _SEED_MAX_LINE.sub(lambda m: f'{m.group(1)}"{fmt(seed_max)}"{m.group(2)}', text, count=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if seeds/ or seed_max_ts are stale")
    args = ap.parse_args(argv)

    files, seed_max = build()
    project = PROJECT_FILE.read_text()
    wanted = {SEEDS / f"{name}.csv": text for name, text in files.items()}
    wanted[PROJECT_FILE] = project_with_seed_max(project, seed_max)

    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"stale: {p.relative_to(ROOT)} (run python scripts/generate_seeds.py)", file=sys.stderr)
        return 1 if stale else 0
    SEEDS.mkdir(exist_ok=True)
    for p in stale:
        p.write_text(wanted[p])
    for name, text in files.items():
        print(f"seeds/{name}.csv: {text.count(chr(10)) - 1} rows, {len(text.encode()) // 1024} KiB")
    print(f"seed_max_ts: {fmt(seed_max)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
