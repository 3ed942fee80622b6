{#- A row whose event_ts is after the build would be served before it is true. For
    user_order_features this is the "only days that have ended" rule. -#}
{%- set views = ['user_order_features', 'user_txn_features', 'txn_features'] -%}
{% for view in views %}
select '{{ view }}' as view_name, event_ts
from {{ ref(view) }}
where event_ts > {{ feature_store.data_now() }}
{% if not loop.last %}union all{% endif %}
{% endfor %}
