select
    cast(user_id as bigint) as user_id,
    {{ feature_store.shift_to_now('signup_ts') }} as signup_ts,
    upper(trim(country)) as country
from {{ ref('users') }}
