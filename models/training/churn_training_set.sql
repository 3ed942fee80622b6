{#- Churn labels with the user's order features as they were at label_ts: one row per
    label, in the labels' order (spine_row_number). The deprecated
    user_avg_basket_30d_legacy is left out on purpose. -#}
{{ feature_store.point_in_time_join(
    spine=ref('stg_churn_labels'),
    timestamp='label_ts',
    features=[
        'user_order_features:user_7d_orders',
        'user_order_features:user_lifetime_orders',
        'user_order_features:user_avg_basket_30d',
        'user_order_features:last_order_ts',
    ],
) }}
