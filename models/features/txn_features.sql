{#- Static attributes of a transaction, true from the moment it happened. -#}
{#- On Postgres point_in_time_join probes the view by (keys, event time) with LATERAL, which
    only an index on those columns makes cheap (macros/point_in_time_join.sql). -#}
{{ config(indexes=[{'columns': ['txn_id', 'event_ts']}] if target.type == 'postgres' else []) }}
select
    cast(txn_id as bigint) as txn_id,
    cast(txn_ts as {{ dbt.type_timestamp() }}) as event_ts,
    cast(amount as decimal(12, 2)) as txn_amount,
    cast(merchant_category as {{ dbt.type_string() }}) as merchant_category,
    cast(is_card_present as boolean) as is_card_present
from {{ ref('stg_transactions') }}
