{#- Fraud labels, one row per transaction, with what a fraud model may know while
    scoring it: the transaction's own attributes (transaction entity, txn_id), the
    user's card velocity up to and including it, and the user's order history
    (user entity, user_id). Views with different entities, one spine. -#}
{{ feature_store.point_in_time_join(
    spine=ref('stg_fraud_labels'),
    timestamp='txn_ts',
    features=[
        'txn_features',
        'user_txn_features:txn_velocity_60s',
        'user_txn_features:txn_amount_1h_sum',
        'user_order_features:user_7d_orders',
        'user_order_features:user_avg_basket_30d',
    ],
) }}
