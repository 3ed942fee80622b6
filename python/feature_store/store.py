"""``FeatureStore``: the one object an ML engineer needs, wiring registry, offline and online.

Offline and sync code is imported on first use, so a service that only serves online
features loads the manifest and redis-py, never dbt.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from feature_store.registry import FeatureView, Registry

if TYPE_CHECKING:  # pragma: no cover
    from feature_store.materialize import SyncReport
    from feature_store.offline import RetrievalJob
    from feature_store.online import OnlineResponse, OnlineStore


class FeatureStore:
    """A dbt project's features, offline (training sets) and online (Redis).

    ``project_dir`` is the dbt project; ``target`` the dbt target (default: the
    profile's); ``redis_url`` defaults to ``$FEATURE_STORE_REDIS_URL``.
    ``redis_timeout`` (connect and read, per attempt) and ``redis_retries`` bound
    how long an online read can take on a bad network (defaults: 0.25 s and 2, so
    about a second at most; see :class:`~feature_store.online.OnlineStore`).
    ``wait`` is how long offline reads and syncs wait for a ``dbt build`` that holds
    the DuckDB file (default: fail at once). ``packages`` names installed dbt packages
    whose feature views count too (by default only the project's own models are views).
    ``client`` names who reads, in the read counters and the serving log (default
    ``$FEATURE_STORE_CLIENT``, else ``default``; docs/serving-log.md).
    """

    def __init__(
        self,
        project_dir: str | os.PathLike = ".",
        *,
        target: str | None = None,
        profiles_dir: str | os.PathLike | None = None,
        redis_url: str | None = None,
        redis_timeout: float | None = None,
        redis_retries: int | None = None,
        duckdb_config: dict | None = None,
        wait: float = 0.0,
        packages: Iterable[str] = (),
        client: str | None = None,
    ):
        self.project_dir = Path(project_dir).resolve()
        self.target = target
        self.profiles_dir = profiles_dir
        self.redis_url = redis_url
        self.redis_timeout = redis_timeout
        self.redis_retries = redis_retries
        self.duckdb_config = duckdb_config
        self.wait = wait
        self.packages = tuple(packages)
        self.client = client
        self._registry: Registry | None = None
        self._registry_stamp: tuple | None = None
        self._online: OnlineStore | None = None

    @property
    def registry(self) -> Registry:
        """The registry, re-read whenever ``dbt parse``/``build`` rewrote the manifest."""
        stamp = None
        if self._registry is not None:
            try:
                st = self._registry.manifest_path.stat()
                stamp = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
        if self._registry is None or stamp != self._registry_stamp:
            self._registry = Registry.load(self.project_dir, target=self.target, profiles_dir=self.profiles_dir,
                                           strict=True, packages=self.packages)
            st = self._registry.manifest_path.stat()
            self._registry_stamp = (st.st_mtime_ns, st.st_size)
        return self._registry

    def list_feature_views(self) -> list[FeatureView]:
        """Every feature view, sorted by name."""
        return sorted(self.registry.views.values(), key=lambda v: v.name)

    def get_feature_view(self, name: str) -> FeatureView:
        """One feature view; :class:`~feature_store.errors.UnknownFeatureView` with a did-you-mean otherwise."""
        return self.registry.view(name)

    def get_historical_features(
        self,
        entity_df: Any,
        features: Iterable[str] | None = None,
        timestamp_column: str = "event_timestamp",
        full_feature_names: bool = False,
        ttl_override: Any = None,
        as_of_created: bool = False,
        *,
        feature_service: str | None = None,
    ) -> "RetrievalJob":
        """A point-in-time-correct training set: see :func:`feature_store.offline.get_historical_features`.

        Give ``features`` (``view:feature`` references) or ``feature_service``, the name of
        an ML model (a dbt exposure of type ml) whose features to take, not both.
        """
        from feature_store.offline import get_historical_features

        return get_historical_features(
            self.registry, entity_df, features, timestamp_column=timestamp_column,
            full_feature_names=full_feature_names, ttl_override=ttl_override, as_of_created=as_of_created,
            duckdb_config=self.duckdb_config, wait=self.wait, feature_service=feature_service,
        )

    @property
    def online_store(self) -> "OnlineStore":
        """The Redis online store for this project and target."""
        if self._online is None:
            from feature_store.online import OnlineStore, timeout_settings

            self._online = OnlineStore.for_registry(self.registry, url=self.redis_url, client=self.client,
                                                    **timeout_settings(self.redis_timeout, self.redis_retries))
        return self._online

    def materialize(self, views: Iterable[str] | None = None, **kwargs: Any) -> "SyncReport":
        """Sync the latest value per entity of the online views into Redis (``fstore sync``)."""
        from feature_store.materialize import sync

        kwargs.setdefault("wait", self.wait)
        return sync(self.registry, self.online_store, views=list(views) if views else None, **kwargs)

    def get_online_features(
        self,
        features: Iterable[str] | None = None,
        entity_rows: list[dict] | None = None,
        full_feature_names: bool = False,
        *,
        feature_service: str | None = None,
    ) -> "OnlineResponse":
        """The latest live values for ``entity_rows``, with TTLs and fallbacks applied.

        Give ``features`` (``view:feature`` references) or ``feature_service``, the name of
        an ML model (a dbt exposure of type ml) whose features to read, not both:
        ``store.get_online_features(feature_service="churn_model", entity_rows=[{"user_id": 42}])``.
        """
        from feature_store.online import get_online_features

        refs = None if features is None else [features] if isinstance(features, str) else list(features)
        return get_online_features(self.registry, self.online_store, refs, entity_rows,
                                   full_feature_names=full_feature_names, feature_service=feature_service)

    def get_feature_service(self, name: str) -> list[str]:
        """The ``view:feature`` references of the feature service (ML model exposure) ``name``."""
        return self.registry.feature_service(name)
