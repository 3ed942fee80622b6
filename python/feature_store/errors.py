"""Every error feature_store raises on purpose.

::

    FeatureStoreError
    ├── ManifestError            target/manifest.json unreadable, or profiles.yml unusable
    │   └── ManifestMissing      no manifest yet: run `dbt parse`
    ├── DefinitionError          the project's feature definitions are invalid (carries every problem)
    ├── UnknownFeatureView       a view name that is not in the registry (with did-you-mean)
    ├── UnknownFeature           a feature name that is not in its view (with did-you-mean)
    ├── EntityDataFrameError     a spine / entity_df that cannot be joined (missing column, bad timestamps)
    ├── CompileError             dbt could not compile one of our macros
    ├── WarehouseError           the warehouse could not be opened or queried (e.g. locked by `dbt build`)
    ├── OnlineStoreError         Redis unreachable or answering unexpectedly
    ├── FeatureMissing           a gated feature has no live value for an entity
    └── PushRejected             pushed rows that do not fit their view (names the row and column); nothing written

Messages name what is wrong, where (model, column, meta key, value) and the next step.
"""

from __future__ import annotations


class FeatureStoreError(Exception):
    """Base class: catch this to handle any feature_store failure."""


class ManifestError(FeatureStoreError):
    """The dbt manifest or profile cannot be used as it is."""


class ManifestMissing(ManifestError):
    """There is no manifest yet; ``dbt parse`` creates it."""


class DefinitionError(FeatureStoreError):
    """The feature definitions in the dbt project are invalid.

    ``problems`` holds every problem found, not just the first.
    """

    def __init__(self, problems):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the feature definitions:\n{lines}")


class UnknownFeatureView(FeatureStoreError, KeyError):
    """A feature view name that the registry does not know."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class UnknownFeature(FeatureStoreError, KeyError):
    """A feature that its feature view does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


class EntityDataFrameError(FeatureStoreError, ValueError):
    """The entity dataframe (spine) cannot be joined as given."""


class CompileError(FeatureStoreError):
    """dbt failed to compile one of the feature_store macros."""


class WarehouseError(FeatureStoreError):
    """The offline store (warehouse) could not be opened or queried."""


class OnlineStoreError(FeatureStoreError):
    """The online store (Redis) is unreachable or returned something unexpected."""


class FeatureMissing(FeatureStoreError, LookupError):
    """A feature whose fallback is ``gate`` has no live value for an entity."""

    def __init__(self, feature: str, entity: dict, reason: str):
        self.feature = feature
        self.entity = entity
        self.reason = reason
        keys = ", ".join(f"{k}={v!r}" for k, v in entity.items())
        super().__init__(
            f"feature {feature} is gated and has no value for {keys} ({reason}); "
            "the caller must not score without it"
        )


class PushRejected(FeatureStoreError):
    """Pushed rows that do not fit their feature view; nothing of the request was written.

    ``row`` is the index of the offending row in the request (``None`` for a problem of the
    request as a whole, such as an unknown or offline view); ``field`` the offending column, if any.
    """

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None):
        self.row = row
        self.field = field
        super().__init__(message)
