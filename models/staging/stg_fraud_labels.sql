{#- A training spine keyed by both entities: txn_id for txn_features, user_id for the
    user views, as of txn_ts. Use this, not the unshifted seed ref('fraud_labels'). -#}
select
    cast(txn_id as bigint) as txn_id,
    cast(user_id as bigint) as user_id,
    {{ feature_store.shift_to_now('txn_ts') }} as txn_ts,
    cast(is_fraud as boolean) as is_fraud
from {{ ref('fraud_labels') }}
