{#-
  One row per user per transaction, at the transaction's own timestamp: the values are
  what a fraud model may know while scoring that transaction, itself included.
  Windows are RANGE frames on time, closed at both ends: [txn_ts - 60 s, txn_ts] and
  [txn_ts - 1 h, txn_ts], the same inclusive convention as the join's TTL bound.
-#}
{#- On Postgres point_in_time_join probes the view by (keys, event time) with LATERAL, which
    only an index on those columns makes cheap (macros/point_in_time_join.sql). -#}
{{ config(indexes=[{'columns': ['user_id', 'event_ts']}] if target.type == 'postgres' else []) }}
{%- set per_user = "partition by user_id order by txn_ts" -%}

select
    cast(user_id as bigint) as user_id,
    cast(txn_ts as {{ dbt.type_timestamp() }}) as event_ts,
    cast(count(*) over (
        {{ per_user }} range between interval '60 seconds' preceding and current row
    ) as bigint) as txn_velocity_60s,
    cast(sum(amount) over (
        {{ per_user }} range between interval '1 hour' preceding and current row
    ) as decimal(18, 2)) as txn_amount_1h_sum
from {{ ref('stg_transactions') }}
