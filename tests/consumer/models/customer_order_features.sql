-- Orders per customer per day; "order" is a reserved word on purpose: the package's macros quote it.
select
    customer_id,
    cast(date_trunc('day', order_ts) as timestamp) + interval 1 day as event_ts,
    count(*) as "order",
    sum(amount) as spend
from {{ ref('orders') }}
group by 1, 2
