{{ feature_store.point_in_time_join(spine=ref('labels'), timestamp='label_ts', features=['customer_order_features']) }}
