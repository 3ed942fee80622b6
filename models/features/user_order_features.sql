{#-
  One row per user per UTC day, from the user's first order day to the last day that
  has ended by the build (data_now). event_ts is the midnight that closes the day: a
  row's values use only orders placed strictly before event_ts, so a point-in-time join
  can never see an order from the future.

  Days without orders get a row too (the grid is dense): a 7-day count decays to 0
  instead of going stale, and with ttl 2d an active user never looks missing. Dense
  days also let "trailing N days" be a plain ROWS frame, which every engine has.
-#}
{#- On Postgres point_in_time_join probes the view by (keys, event time) with LATERAL, which
    only an index on those columns makes cheap (macros/point_in_time_join.sql). -#}
{{ config(indexes=[{'columns': ['user_id', 'event_ts']}] if target.type == 'postgres' else []) }}
{%- set per_user = "partition by user_id order by date_day" -%}

with orders as (

    select
        user_id,
        order_ts,
        amount,
        is_completed,
        cast({{ dbt.date_trunc('day', 'order_ts') }} as {{ dbt.type_timestamp() }}) as order_day
    from {{ ref('stg_orders') }}

),

first_days as (

    select user_id, min(order_day) as first_day
    from orders
    group by user_id

),

days as (

    {#- date_spine runs its bounds as a query of their own before this model, so the
        start reads the relation, not a CTE. The end, today's midnight, is exclusive:
        the current day is still running and gets its row at the next midnight. -#}
    {%- set today = "cast(" ~ dbt.date_trunc('day', feature_store.data_now()) ~ " as " ~ dbt.type_timestamp() ~ ")" -%}
    {%- set first_day = "(select cast(" ~ dbt.date_trunc('day', 'min(order_ts)') ~ " as " ~ dbt.type_timestamp()
        ~ ") from " ~ ref('stg_orders') ~ ")" -%}
    {%- set yesterday = dbt.dateadd('day', -1, today) -%}
    {#- No orders, or none before today: a one-day spine that joins to nobody, rather
        than an empty series, which date_spine cannot generate. -#}
    {{ dbt.date_spine('day', "coalesce(least(" ~ first_day ~ ", " ~ yesterday ~ "), " ~ yesterday ~ ")", today) }}

),

daily as (

    select
        user_id,
        order_day as date_day,
        sum(case when is_completed then 1 else 0 end) as completed_orders,
        sum(case when is_completed then amount end) as completed_amount,
        max(case when is_completed then order_ts end) as last_completed_ts,
        count(*) as raw_orders,
        sum(amount) as raw_amount
    from orders
    group by user_id, order_day

),

grid as (

    select
        f.user_id,
        cast(d.date_day as {{ dbt.type_timestamp() }}) as date_day,
        coalesce(o.completed_orders, 0) as completed_orders,
        coalesce(o.completed_amount, 0) as completed_amount,
        o.last_completed_ts,
        coalesce(o.raw_orders, 0) as raw_orders,
        coalesce(o.raw_amount, 0) as raw_amount
    from first_days as f
    inner join days as d
        on d.date_day >= f.first_day
    left join daily as o
        on o.user_id = f.user_id
        and o.date_day = d.date_day

),

windowed as (

    select
        user_id,
        date_day,
        sum(completed_orders) over ({{ per_user }} rows between 6 preceding and current row) as orders_7d,
        sum(completed_orders) over ({{ per_user }} rows between unbounded preceding and current row) as orders_lifetime,
        sum(completed_orders) over ({{ per_user }} rows between 29 preceding and current row) as orders_30d,
        sum(completed_amount) over ({{ per_user }} rows between 29 preceding and current row) as amount_30d,
        sum(raw_orders) over ({{ per_user }} rows between 29 preceding and current row) as raw_orders_30d,
        sum(raw_amount) over ({{ per_user }} rows between 29 preceding and current row) as raw_amount_30d,
        max(last_completed_ts) over ({{ per_user }} rows between unbounded preceding and current row) as last_order_ts
    from grid

)

{#- An 8-byte float. `double precision`, the SQL standard's name, is DOUBLE on DuckDB and float8 on
    Postgres, which has no type `double` (https://www.postgresql.org/docs/current/datatype-numeric.html#DATATYPE-FLOAT);
    Spark SQL does not parse it and calls the type DOUBLE
    (https://spark.apache.org/docs/latest/sql-ref-datatypes.html). `float`, and so dbt.type_float(),
    would be 4 bytes on DuckDB (https://duckdb.org/docs/stable/sql/data_types/numeric) and on Spark.
    _features.yml declares the same type. -#}
{%- set double = 'double' if target.type == 'spark' else 'double precision' %}
select
    cast(user_id as bigint) as user_id,
    cast({{ dbt.dateadd('day', 1, 'date_day') }} as {{ dbt.type_timestamp() }}) as event_ts,
    cast(orders_7d as bigint) as user_7d_orders,
    cast(orders_lifetime as bigint) as user_lifetime_orders,
    cast(amount_30d as {{ double }}) / nullif(orders_30d, 0) as user_avg_basket_30d,
    cast(raw_amount_30d as {{ double }}) / nullif(raw_orders_30d, 0) as user_avg_basket_30d_legacy,
    cast(last_order_ts as {{ dbt.type_timestamp() }}) as last_order_ts,
    {{ feature_store.data_now() }} as computed_at
from windowed
