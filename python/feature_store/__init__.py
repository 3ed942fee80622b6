"""feature_store: one feature definition (a dbt model), served offline for training and online from Redis.

>>> from feature_store import FeatureStore
>>> store = FeatureStore(project_dir=".")
>>> store.get_historical_features(entity_df, features=["user_order_features:user_7d_orders"],
...                               timestamp_column="event_timestamp").to_df()
>>> store.get_online_features(features=[...], entity_rows=[{"user_id": 1}]).to_dict()
"""

from feature_store.errors import (
    CompileError,
    DefinitionError,
    EntityDataFrameError,
    FeatureMissing,
    FeatureStoreError,
    ManifestError,
    ManifestMissing,
    OnlineStoreError,
    UnknownFeature,
    UnknownFeatureView,
    WarehouseError,
)
from feature_store.registry import Entity, Fallback, Feature, FeatureView, Problem, Registry
from feature_store.store import FeatureStore

__all__ = [
    "CompileError",
    "DefinitionError",
    "Entity",
    "EntityDataFrameError",
    "Fallback",
    "Feature",
    "FeatureMissing",
    "FeatureStore",
    "FeatureStoreError",
    "FeatureView",
    "ManifestError",
    "ManifestMissing",
    "OnlineStoreError",
    "Problem",
    "Registry",
    "UnknownFeature",
    "UnknownFeatureView",
    "WarehouseError",
]

__version__ = "0.2.0"
