select
    cast(txn_id as bigint) as txn_id,
    cast(user_id as bigint) as user_id,
    {{ feature_store.shift_to_now('txn_ts') }} as txn_ts,
    cast(amount as decimal(12, 2)) as amount,
    lower(trim(merchant_category)) as merchant_category,
    cast(is_card_present as boolean) as is_card_present
from {{ ref('transactions') }}
