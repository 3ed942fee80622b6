{#- A training spine: join features as of label_ts with feature_store.point_in_time_join.
    Shifted like the features; the raw seed (ref('churn_labels')) is not, and would
    line up with nothing. -#}
select
    cast(user_id as bigint) as user_id,
    {{ feature_store.shift_to_now('label_ts') }} as label_ts,
    cast(churned as boolean) as churned
from {{ ref('churn_labels') }}
