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

with computed as (

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

),

{# Rows pushed from a stream (docs/push.md). A pushed row replaces the computed row with the
   same user and time, as it does online, where the last write of an equal version wins. #}
pushed as (
    {{ feature_store.pushed_rows('user_txn_features') }}
)

select user_id, event_ts, txn_velocity_60s, txn_amount_1h_sum
from computed as c
where not exists (select 1 from pushed as p where p.user_id = c.user_id and p.event_ts = c.event_ts)
union all
select user_id, event_ts, txn_velocity_60s, txn_amount_1h_sum from pushed
