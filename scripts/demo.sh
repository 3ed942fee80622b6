#!/usr/bin/env bash
# `make demo`: build the example project, show the registry, build a training set,
# sync the online views to Redis and read live features back. Run from the repo root
# with the venv's bin on PATH (the Makefile does both).
set -euo pipefail
cd "$(dirname "$0")/.."
export DBT_SEND_ANONYMOUS_USAGE_STATS=false
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "dbt build: seeds, staging, feature views, training sets and their tests on DuckDB"
dbt build --profiles-dir . 2>&1 | { grep -E "Finished running|Completed successfully|Done\. PASS|ERROR|FAIL|WARN" || true; }

step "fstore list: the registry, read from target/manifest.json"
fstore list

step "fstore validate"
fstore validate

step "fstore historical: a point-in-time-correct churn training set"
mkdir -p target/demo
fstore historical --spine "select user_id, label_ts, churned from stg_churn_labels" \
  --timestamp-column label_ts \
  --features user_order_features:user_7d_orders,user_order_features:user_lifetime_orders,user_order_features:user_avg_basket_30d \
  --out target/demo/churn_training.parquet
python - <<'PY'
import pandas as pd
df = pd.read_parquet("target/demo/churn_training.parquet")
print(df.sort_values("label_ts").tail(5).to_string(index=False))
PY

# A private redis-server for the demo, unless the caller points us at one.
if [ -z "${FEATURE_STORE_REDIS_URL:-}" ]; then
  port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null &
  redis_pid=$!
  trap 'kill $redis_pid 2>/dev/null || true' EXIT
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  export FEATURE_STORE_REDIS_URL="redis://127.0.0.1:$port/0"
fi

step "fstore sync: latest value per entity of the online views into Redis ($FEATURE_STORE_REDIS_URL)"
fstore sync

step "fstore sync again: incremental, the fingerprints prove nothing changed"
fstore sync

step "fstore status: each view's last sync, and what Redis holds against the warehouse"
fstore status

user_id=$(python - <<'PY'
import duckdb
con = duckdb.connect("feature_store.duckdb", read_only=True)
print(con.execute("select user_id from user_txn_features order by event_ts desc limit 1").fetchone()[0])
PY
)

step "fstore get: one user's live features"
fstore get user_order_features --entity "user_id=$user_id"
fstore get user_txn_features --entity "user_id=$user_id"

step "The Python API: FeatureStore.get_online_features (Feast's response shape)"
python - "$user_id" <<'PY'
import sys
from feature_store import FeatureStore
store = FeatureStore(project_dir=".", client="churn-notebook")  # who reads, for `fstore audit`
resp = store.get_online_features(
    features=["user_order_features:user_7d_orders", "user_order_features:user_avg_basket_30d",
              "user_txn_features:txn_amount_1h_sum"],
    entity_rows=[{"user_id": int(sys.argv[1])}, {"user_id": 999999}],
)
print(resp.to_dict())
PY
step "fstore audit: who read which feature today (every online read is counted per client)"
fstore audit --days 1

printf '\nDone. Try: fstore describe user_order_features\n'
