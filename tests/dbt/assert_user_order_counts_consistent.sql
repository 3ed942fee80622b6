{#- Window bugs show up as broken invariants: a 7-day count above the lifetime count, or
    a lifetime count that goes down from one day to the next. -#}
with ordered as (
    select
        user_id,
        event_ts,
        user_7d_orders,
        user_lifetime_orders,
        lag(user_lifetime_orders) over (partition by user_id order by event_ts) as previous_lifetime
    from {{ ref('user_order_features') }}
)

select *
from ordered
where user_7d_orders > user_lifetime_orders
    or user_lifetime_orders < previous_lifetime
