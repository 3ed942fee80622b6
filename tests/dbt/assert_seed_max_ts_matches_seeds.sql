{#- The time shift maps var seed_max_ts onto the build time. If the seeds change and the
    var does not (rerun scripts/generate_seeds.py), the data would end before or after
    "now" and live values would be stale or from the future. -#}
with stamps as (
    select max(signup_ts) as ts from {{ ref('stg_users') }}
    union all select max(order_ts) from {{ ref('stg_orders') }}
    union all select max(deleted_at) from {{ ref('stg_orders') }}
    union all select max(txn_ts) from {{ ref('stg_transactions') }}
    union all select max(label_ts) from {{ ref('stg_churn_labels') }}
    union all select max(txn_ts) from {{ ref('stg_fraud_labels') }}
)

select max(ts) as data_max, {{ feature_store.data_now() }} as expected
from stamps
having max(ts) <> {{ feature_store.data_now() }}
