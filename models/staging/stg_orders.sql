{#- Cleaning happens here, once: every feature downstream reads is_completed instead of
    re-deciding what counts as an order. A soft-deleted order (a duplicate, a test order)
    is treated as never having existed, from its order_ts on, not only after deleted_at. -#}
with orders as (
    select
        cast(order_id as bigint) as order_id,
        cast(user_id as bigint) as user_id,
        {{ feature_store.shift_to_now('order_ts') }} as order_ts,
        cast(amount as decimal(12, 2)) as amount,
        lower(trim(status)) as status,
        {{ feature_store.shift_to_now('deleted_at') }} as deleted_at
    from {{ ref('orders') }}
)

select
    order_id,
    user_id,
    order_ts,
    amount,
    status,
    deleted_at,
    deleted_at is not null as is_deleted,
    status <> 'cancelled' and deleted_at is null as is_completed
from orders
