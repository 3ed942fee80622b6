"""The HTTP feature server: ``fstore serve``, an ASGI app (Starlette on uvicorn).

Routes (the API and its errors are written down in docs/server.md; ``/openapi.json``
and ``/docs`` describe them too):

* ``POST /get-online-features``: Feast's request and response shapes, read through
  :func:`feature_store.online.get_online_features_async`, the same read as the Python API
  (keys, ttl, statuses, fallbacks); a gated feature without a value fails the request (422).
* ``POST /push``: rows for an online view, handed to :func:`feature_store.push.push_rows`.
* ``GET /features``: the catalogue; ``GET /health``; ``GET /metrics`` (Prometheus).

The registry is re-read when ``dbt build`` rewrites the manifest: a background task
stats the file every second and swaps in the new registry once it has loaded; a request
keeps the registry it started with, so nothing in flight is dropped.

Safe by default: without tokens (:mod:`feature_store.auth`) the server binds loopback
only. Bad requests answer 4xx with a message naming what to change, Redis trouble 503
(bounded by the online store's timeouts); a 500 is a bug.

Like the online path, this module never imports dbt, DuckDB or the offline store.
"""

from __future__ import annotations

import asyncio
import gc
import html
import ipaddress
import logging
import os
import time
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Iterable, Protocol

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from feature_store import codec
from feature_store.audit import check_client
from feature_store.auth import PUSH, READ, Auth, Token, load_auth
from feature_store.errors import (
    EntityDataFrameError,
    FeatureMissing,
    FeatureStoreError,
    ManifestMissing,
    OnlineStoreError,
    PushRejected,
    UnknownFeature,
    UnknownFeatureView,
    WarehouseError,
)
from feature_store.online import (
    DEFAULT_URL,
    URL_ENV,
    FieldStatus,
    OnlineStore,
    get_online_features_async,
    timeout_settings,
)
from feature_store.registry import Feature, FeatureView, Registry, format_duration

if TYPE_CHECKING:  # pragma: no cover
    import socket

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ServerConfig", "ServerConfigError", "check_bind", "create_app", "run"]

log = logging.getLogger("feature_store.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6566  # Feast's feature server port: its clients' default
DEFAULT_MAX_ENTITIES = 1000
DEFAULT_MAX_BODY_BYTES = 1 << 20
CONFIG_ENV = "FEATURE_STORE_SERVER_CONFIG"  # how `fstore serve` hands its settings to uvicorn's workers
JSON = "application/json"

# Feast's field statuses, the names its clients know. IMPUTED carries a value the client must
# use, so Feast's client must see PRESENT; NOT_SYNCED is, to a client, a value not found.
_FEAST_STATUS = {
    FieldStatus.PRESENT: "PRESENT",
    FieldStatus.NULL_VALUE: "NULL_VALUE",
    FieldStatus.NOT_FOUND: "NOT_FOUND",
    FieldStatus.OUTSIDE_MAX_AGE: "OUTSIDE_MAX_AGE",
    FieldStatus.IMPUTED: "PRESENT",
    FieldStatus.NOT_SYNCED: "NOT_FOUND",
}
# What /metrics counts per feature.
_METRIC_STATUS = {
    FieldStatus.PRESENT: "present",
    FieldStatus.NULL_VALUE: "missing",
    FieldStatus.NOT_FOUND: "missing",
    FieldStatus.NOT_SYNCED: "missing",
    FieldStatus.OUTSIDE_MAX_AGE: "expired",
    FieldStatus.IMPUTED: "imputed",
}
_EPOCH = datetime(1970, 1, 1)
_NO_TIMESTAMP = "1970-01-01T00:00:00Z"  # what Feast sends for a value without a row
_REQUEST_KEYS = frozenset({"features", "feature_service", "entities", "full_feature_names",
                           "include_feature_view_version_metadata", "include_detailed_statuses"})


class ServerConfigError(FeatureStoreError):
    """The server cannot start as configured (address, tokens, registry); the message says what to change."""


@dataclass
class ServerConfig:
    """Everything a server process needs; JSON-able, so ``fstore serve`` can hand it to each worker."""

    project_dir: str = "."
    target: str | None = None
    profiles_dir: str | None = None
    redis_url: str | None = None
    redis_timeout: float | None = None
    redis_retries: int | None = None
    tokens_file: str | None = None
    landing_dir: str | None = None
    max_entities: int = DEFAULT_MAX_ENTITIES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    reload_interval: float = 1.0  # seconds between looks at the manifest
    packages: list[str] = field(default_factory=list)

    def to_env(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "ServerConfig":
        raw = (os.environ if environ is None else environ).get(CONFIG_ENV)
        if not raw:
            raise ServerConfigError(f"${CONFIG_ENV} is not set; start the server with `fstore serve`")
        data = orjson.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: Auth | None) -> None:
    """Refuse an address other machines can reach unless tokens are configured."""
    if auth is None and not is_loopback(host):
        raise ServerConfigError(
            f"refusing to serve on {host} without authentication: anyone who can reach it could read every "
            f"feature. Configure bearer tokens (--tokens-file, ${'FEATURE_STORE_TOKENS_FILE'} or "
            "$FEATURE_STORE_TOKENS; see docs/server.md), or bind to 127.0.0.1")


# -- errors ---------------------------------------------------------------------------------------


class _Problem(Exception):
    """A request the server answers with an error status; ``extra`` joins ``detail`` in the JSON body."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers, self.extra = status, code, detail, headers, extra

    def response(self) -> Response:
        body = {"detail": self.detail, "code": self.code, **self.extra}
        return Response(orjson.dumps(body, default=_json_default), self.status, headers=self.headers, media_type=JSON)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _bad(detail: str, code: str = "invalid_request", **extra: Any) -> _Problem:
    return _Problem(422, code, detail, **extra)


# -- the registry, reloaded -------------------------------------------------------------------------


@dataclass
class _Catalog:
    """One loaded registry with what the server derives from it; replaced whole on reload."""

    registry: Registry
    stamp: tuple[int, int]
    loaded_at: float
    reads: dict[tuple, "_ReadCheck"] = field(default_factory=dict)  # requested refs -> checked
    services: dict[str, tuple[str, ...]] = field(default_factory=dict)  # feature service -> its references


@dataclass(frozen=True)
class _ReadCheck:
    """What a list of feature references needs, worked out once per registry."""

    refs: tuple[str, ...]
    features: tuple[Feature, ...]
    join_keys: tuple[str, ...]  # every join key the request's entities must give, in response order
    scopes: tuple[tuple[str, frozenset[str]], ...]  # (feature ref, tags needing a scope)
    headers: dict[str, str] | None = None  # Deprecation and Sunset, when a feature is deprecated


def deprecation_headers(features: Iterable[Feature]) -> dict[str, str] | None:
    """The headers of a response serving ``features``: when any is deprecated, ``Deprecation`` (RFC 9745,
    a structured-field date: ``@`` and the Unix seconds) and ``Sunset`` (RFC 8594, an HTTP-date), both
    the earliest tombstone (the ``deprecated`` date of meta), at midnight UTC; None when none is."""
    from email.utils import format_datetime

    from feature_store.audit import tombstone

    dates = [d for d in map(tombstone, features) if d is not None]
    if not dates:
        return None
    at = datetime(*min(dates).timetuple()[:3], tzinfo=timezone.utc)
    return {"Deprecation": f"@{int(at.timestamp())}", "Sunset": format_datetime(at, usegmt=True)}


async def send_serving_log_forever(store: OnlineStore, every: float = 1.0) -> None:
    """Every ``every`` seconds, ``store.aflush_serving_log()``: a quiet server still delivers what reads sampled.

    Redis trouble is counted by the flush itself; anything else it raises is logged (once while
    it repeats) and the next round tries again: the task lives as long as the server.
    """
    failing: str | None = None
    while True:
        await asyncio.sleep(every)
        try:
            await store.aflush_serving_log()
        except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
            message = f"{type(exc).__name__}: {exc}"
            if message != failing:
                log.warning("sending the serving log failed, trying again every %gs: %s", every, message)
            failing = message
            continue
        if failing is not None:
            log.info("sending the serving log works again")
            failing = None


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


class _Server:
    """The app's state: config, tokens, the current catalogue, the online store, metrics."""

    def __init__(self, config: ServerConfig, auth: Auth | None):
        self.config = config
        self.auth = auth
        for token in auth.tokens if auth else ():
            try:  # a token's name is the client its reads are recorded under
                check_client(token.name)
            except ValueError as exc:
                raise ServerConfigError(f"{auth.source if auth else ''}: token {token.name!r}: {exc}") from None
        self.catalog = self._load()
        self.reload_error: str | None = None
        self.store = OnlineStore.for_registry(self.catalog.registry, url=config.redis_url,
                                              **timeout_settings(config.redis_timeout, config.redis_retries))
        self.metrics = _Metrics()
        self._watcher: asyncio.Task | None = None
        self._log_sender: asyncio.Task | None = None

    def _load(self, stamp: tuple[int, int] | None = None) -> _Catalog:
        """Load the registry; ``stamp`` is the manifest's as seen before reading it, so that a manifest
        rewritten while it was read differs from the recorded stamp and is read again at the next look."""
        c = self.config
        try:
            registry = Registry.load(c.project_dir, target=c.target, profiles_dir=c.profiles_dir, strict=True,
                                     packages=c.packages)
        except ManifestMissing as exc:
            raise ServerConfigError(f"{exc}; the server reads the manifest `dbt build` writes") from None
        return _Catalog(registry, stamp or _stamp(registry.manifest_path), time.time())

    async def watch(self) -> None:
        """Reload the registry whenever the manifest changes; a failed load keeps the previous one."""
        path = self.catalog.registry.manifest_path
        while True:
            await asyncio.sleep(self.config.reload_interval)
            try:
                stamp = _stamp(path)
                if stamp == self.catalog.stamp:
                    continue
                catalog = await asyncio.to_thread(self._load, stamp)
            except (OSError, FeatureStoreError) as exc:
                message = str(exc) if isinstance(exc, FeatureStoreError) else f"cannot read {path}: {exc}"
                if message != self.reload_error:
                    log.warning("keeping the registry loaded before: %s", message)
                self.reload_error = message
                self.metrics.reloads.labels("failed").inc()
                continue
            self.catalog, self.reload_error = catalog, None
            self.metrics.reloads.labels("ok").inc()
            log.info("registry reloaded from %s: %d feature views", path, len(catalog.registry.views))

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # What is loaded now (modules, the registry) lives as long as the process: keep it out of
        # the collector's way, so that its full collections stay short while requests wait.
        gc.collect()
        gc.freeze()
        self._watcher = asyncio.create_task(self.watch())
        # Every second: the serving-log entries and read counts no later read carried.
        self._log_sender = asyncio.create_task(send_serving_log_forever(self.store))
        try:
            yield
        finally:
            self._watcher.cancel()
            self._log_sender.cancel()
            await self.store.aclose()
            self.store.close()

    # -- auth -------------------------------------------------------------------------------------

    def _token(self, request: _Incoming, scope: str) -> Token | None:
        """The request's token if auth is on (401 without a valid one, 403 without ``scope``)."""
        if self.auth is None:
            return None
        token = self.auth.authenticate(request.headers.get("authorization"))
        if token is None:
            given = "an unknown or malformed" if request.headers.get("authorization") else "no"
            raise _Problem(401, "unauthenticated",
                           f"{given} bearer token; send `Authorization: Bearer <token>` with a token from the "
                           "server's tokens file", headers={"WWW-Authenticate": 'Bearer realm="fstore"'})
        if scope not in token.scopes:
            raise _Problem(403, "forbidden", f"token {token.name!r} lacks the {scope!r} scope this route needs; "
                                             f"its scopes: {', '.join(sorted(token.scopes))}", scope=scope)
        return token

    # -- reads ------------------------------------------------------------------------------------

    def _check_read(self, catalog: _Catalog, refs: tuple[str, ...]) -> _ReadCheck:
        hit = catalog.reads.get(refs)
        if hit is not None:
            return hit
        registry = catalog.registry
        try:
            features = registry.resolve(refs)
        except (UnknownFeatureView, UnknownFeature) as exc:
            raise _bad(str(exc), "unknown_feature") from None
        if not features:
            raise _bad("no features requested; list `features` as [\"view:feature\", ...] or name a view",
                       "no_features")
        join_keys: list[str] = []
        scopes = []
        for f in features:
            view = registry.views[f.view]
            if not view.online:
                raise _bad(f"feature view {view.name} is offline only (online: false), so the server has none of "
                           f"its values; set online: true in its meta and run `fstore sync`, or leave it out",
                           "offline_view")
            join_keys += [k for k in view.join_keys if k not in join_keys]
            needed = self.auth.needed_scopes((*view.tags, *f.tags)) if self.auth else frozenset()
            if needed:
                scopes.append((f.ref, needed))
        check = _ReadCheck(refs, tuple(features), tuple(join_keys), tuple(scopes), deprecation_headers(features))
        if len(catalog.reads) > 4096:
            catalog.reads.clear()
        catalog.reads[refs] = check
        return check

    def _refs(self, catalog: _Catalog, body: dict) -> tuple[str, ...]:
        features, service = body.get("features"), body.get("feature_service")
        if service is not None and features:
            raise _bad("give either `features` or `feature_service`, not both")
        if service is not None:
            if not isinstance(service, str):
                raise _bad(f"`feature_service` must be a name (text), got {type(service).__name__}")
            refs = catalog.services.get(service)
            if refs is None:
                try:  # the registry's feature services: dbt exposures of type ml
                    refs = catalog.services[service] = tuple(catalog.registry.feature_service(service))
                except (UnknownFeature, UnknownFeatureView) as exc:
                    raise _bad(str(exc), "unknown_feature_service") from None
            return refs
        if not isinstance(features, list) or not features:
            raise _bad("`features` must be a non-empty list of \"view:feature\" (or \"view\") references, "
                       "or give `feature_service`", "no_features")
        if not all(isinstance(r, str) and r for r in features):
            raise _bad("every entry of `features` must be a \"view:feature\" text")
        return tuple(features)

    def _entity_rows(self, check: _ReadCheck, entities: Any) -> tuple[list[dict], int]:
        if not isinstance(entities, dict) or not entities:
            raise _bad("`entities` must be an object of join key to a list of values, e.g. {\"user_id\": [1, 2]}")
        wanted = check.join_keys
        unknown = [k for k in entities if k not in wanted]
        if unknown:
            from feature_store.registry import _did_you_mean

            raise _bad(f"entity key {unknown[0]!r} is not a join key of the requested features"
                       f"{_did_you_mean(unknown[0], wanted)}; they need {', '.join(wanted)}", "unknown_entity_key")
        missing = [k for k in wanted if k not in entities]
        if missing:
            raise _bad(f"`entities` lacks {missing[0]!r}, a join key of the requested features (they need "
                       f"{', '.join(wanted)})", "missing_entity_key")
        columns = list(entities.values())
        if not all(isinstance(c, list) for c in columns):
            bad = next(k for k, c in entities.items() if not isinstance(c, list))
            raise _bad(f"entities[{bad!r}] must be a list of values, e.g. [1, 2]")
        n = len(columns[0])
        if any(len(c) != n for c in columns):
            lengths = ", ".join(f"{k}: {len(c)}" for k, c in entities.items())
            raise _bad(f"every entity key needs one value per entity; the lists differ in length ({lengths})")
        if n > self.config.max_entities:
            raise _bad(f"{n} entities in one request; the limit is {self.config.max_entities} "
                       "(fstore serve --max-entities): split the request", "too_many_entities")
        keys = list(entities)
        if len(keys) == 1:
            key = keys[0]
            return [{key: v} for v in columns[0]], n
        return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)], n

    async def get_online_features(self, request: _Incoming) -> Response:
        token = self._token(request, READ)
        body = await self._json_body(request)
        catalog = self.catalog  # this request's registry, whatever a reload does meanwhile
        unknown = [k for k in body if k not in _REQUEST_KEYS]
        if unknown:
            raise _bad(f"unknown field {unknown[0]!r} in the request; known: {', '.join(sorted(_REQUEST_KEYS))}")
        full_names = body.get("full_feature_names", False)
        detailed = body.get("include_detailed_statuses", False)
        for name, flag in (("full_feature_names", full_names), ("include_detailed_statuses", detailed),
                           ("include_feature_view_version_metadata",
                            body.get("include_feature_view_version_metadata", False))):
            if not isinstance(flag, bool):
                raise _bad(f"`{name}` must be true or false, got {flag!r}")
        check = self._check_read(catalog, self._refs(catalog, body))
        if token is not None and check.scopes:
            denied = [(ref, sorted(need - token.scopes)) for ref, need in check.scopes if not need <= token.scopes]
            if denied:
                names = "; ".join(f"{ref} (needs scope {', '.join(need)})" for ref, need in denied)
                raise _Problem(403, "forbidden", f"token {token.name!r} may not read {names}; ask for a token with "
                                                 "those scopes or leave the features out",
                               features=[ref for ref, _ in denied])
        rows, n = self._entity_rows(check, body.get("entities"))
        try:
            response = await get_online_features_async(catalog.registry, self.store, list(check.refs), rows,
                                                       full_feature_names=full_names,
                                                       client=token.name if token is not None else None)
        except FeatureMissing as exc:
            self.metrics.gated.labels(exc.feature).inc()
            raise _Problem(422, "feature_missing", str(exc), feature=exc.feature, entity=exc.entity,
                           reason=exc.reason) from None
        except EntityDataFrameError as exc:
            raise _bad(str(exc), "bad_entity") from None
        except OnlineStoreError as exc:
            raise self._unavailable(exc) from None
        return Response(orjson.dumps(self._feast_body(response, check, n, detailed)), media_type=JSON,
                        headers=check.headers)

    def _feast_body(self, response: Any, check: _ReadCheck, n: int, detailed: bool) -> dict:
        """Feast's JSON: entity key columns first, then each feature's values, statuses and event times."""
        names = list(check.join_keys)
        results: list[dict] = []
        present = ["PRESENT"] * n
        no_times = [_NO_TIMESTAMP] * n
        entity_columns = response.entity_columns
        for key in check.join_keys:
            column: dict = {"values": entity_columns[key], "statuses": present, "event_timestamps": no_times}
            if detailed:
                column["detailed_statuses"] = present
            results.append(column)
        stamps: dict[int, list[str]] = {}  # one view's event times serve all its features
        count = self.metrics.count_values
        for name, feature, values, statuses, times in response.columns():
            names.append(name)
            convert = _TO_JSON.get(feature.kind)
            formatted = stamps.get(id(times))
            if formatted is None:
                formatted = stamps[id(times)] = [_NO_TIMESTAMP if t is None else _rfc3339(t) for t in times]
            column = {
                "values": values if convert is None else [None if v is None else convert(v) for v in values],
                "statuses": [_FEAST_STATUS[s] for s in statuses],
                "event_timestamps": formatted,
            }
            if detailed:
                column["detailed_statuses"] = [s.value for s in statuses]
            results.append(column)
            count(feature.ref, statuses)
        return {"metadata": {"feature_names": names}, "results": results}

    def _unavailable(self, exc: OnlineStoreError) -> _Problem:
        self.metrics.redis_errors.inc()
        log.warning("online store unavailable: %s", exc)
        return _Problem(503, "online_store_unavailable", f"{exc}. The request was not served; retry shortly",
                        headers={"Retry-After": "1"})

    async def _json_body(self, request: _Incoming) -> dict:
        limit = self.config.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise self._too_large(int(length))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise self._too_large(size)
            chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            what = "an empty body" if not raw.strip() else f"malformed JSON ({exc})"
            example = '{"features": ["view:feature"], "entities": {"user_id": [1]}}'
            raise _Problem(400, "malformed_json", f"the request body is {what}; send a JSON object such as {example}") \
                from None
        if not isinstance(body, dict):
            raise _Problem(400, "malformed_json", f"the request body must be a JSON object, got {type(body).__name__}")
        return body

    def _too_large(self, size: int) -> _Problem:
        limit = self.config.max_body_bytes
        return _Problem(413, "body_too_large", f"the request body has {size:,} bytes or more; the limit is {limit:,} "
                                               "(fstore serve --max-body-bytes): send fewer entities per request")

    # -- push -------------------------------------------------------------------------------------

    async def push(self, request: Request) -> Response:
        self._token(request, PUSH)
        body = await self._json_body(request)
        catalog = self.catalog
        unknown = [k for k in body if k not in ("view", "rows")]
        if unknown:
            raise _bad(f"unknown field {unknown[0]!r} in the push; send {{\"view\": ..., \"rows\": [...]}}")
        view_name, rows = body.get("view"), body.get("rows")
        if not isinstance(view_name, str) or not view_name:
            raise _bad("`view` must name an online feature view, e.g. \"user_txn_features\"")
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise _bad("`rows` must be a non-empty list of objects, one per row: join keys, timestamp, features")
        if len(rows) > self.config.max_entities:
            raise _bad(f"{len(rows)} rows in one push; the limit is {self.config.max_entities} "
                       "(fstore serve --max-entities): split the push", "too_many_rows")
        # Imported here: push brings pyarrow, which a server that only reads never loads.
        from feature_store.push import default_landing_dir, push_rows

        landing_dir = Path(self.config.landing_dir) if self.config.landing_dir else \
            default_landing_dir(self.config.project_dir)
        try:
            result = await asyncio.to_thread(push_rows, catalog.registry, self.store, view_name, rows,
                                             landing_dir=landing_dir)
        except PushRejected as exc:
            raise _Problem(422, "push_rejected", str(exc), row=exc.row, field=exc.field) from None
        except (UnknownFeatureView, UnknownFeature, EntityDataFrameError) as exc:
            raise _bad(str(exc), "push_rejected") from None
        except OnlineStoreError as exc:
            raise self._unavailable(exc) from None
        except WarehouseError as exc:
            log.error("push to %s not landed: %s", view_name, exc)
            raise _Problem(503, "landing_failed", f"{exc}. Nothing was acknowledged; retry (a retry is safe)",
                           headers={"Retry-After": "1"}) from None
        self.metrics.pushed.labels(view_name).inc(len(rows))
        return Response(orjson.dumps({"view": view_name, "rows": len(rows), "result": _plain(result)},
                                     default=_json_default), media_type=JSON)

    # -- the rest ---------------------------------------------------------------------------------

    async def features(self, request: Request) -> Response:
        self._token(request, READ)
        return Response(orjson.dumps(catalogue(self.catalog.registry, self.auth),
                                     default=_json_default), media_type=JSON)

    async def health(self, request: Request) -> Response:
        catalog = self.catalog
        try:
            manifest_age = round(time.time() - catalog.registry.manifest_path.stat().st_mtime, 3)
        except OSError:
            manifest_age = None
        body: dict[str, Any] = {
            "status": "ok",
            "registry": {"feature_views": len(catalog.registry.views), "manifest": str(catalog.registry.manifest_path),
                         "manifest_age_seconds": manifest_age,
                         "loaded_at": datetime.fromtimestamp(catalog.loaded_at).astimezone().isoformat(),
                         "reload_error": self.reload_error},
            "redis": {"status": "ok"},
        }
        try:
            await self.store.call_async("checking the connection (PING)", lambda: self.store.async_client.ping())
        except OnlineStoreError as exc:
            self.metrics.redis_errors.inc()
            body["status"] = "unavailable"
            body["redis"] = {"status": "unreachable", "error": str(exc)}
            return Response(orjson.dumps(body), 503, headers={"Retry-After": "1"}, media_type=JSON)
        return Response(orjson.dumps(body), media_type=JSON)

    async def metrics_route(self, request: Request) -> Response:
        data, content_type = self.metrics.render()
        return Response(data, media_type=content_type)

    async def openapi(self, request: Request) -> Response:
        return Response(orjson.dumps(openapi_document(self.config)), media_type=JSON)

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(docs_page(openapi_document(self.config)))


def _plain(result: Any) -> Any:
    """A push result as JSON-able data, whatever shape push_rows gives it."""
    if result is None:
        return None
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if is_dataclass(result) and not isinstance(result, type):
        return asdict(result)
    return result


def _rfc3339(us: int) -> str:
    """Feast's timestamp text: UTC with ``Z``, fractions only as fine as needed (ms or µs)."""
    stamp = _EPOCH + timedelta(microseconds=us)
    frac = us % 1_000_000
    if frac == 0:
        return stamp.isoformat(timespec="seconds") + "Z"
    if frac % 1000 == 0:
        return stamp.isoformat(timespec="milliseconds") + "Z"
    return stamp.isoformat(timespec="microseconds") + "Z"


def _epoch_seconds(value: datetime | date) -> int:
    # Feast serves UNIX_TIMESTAMP features as whole seconds since the epoch, and its client
    # turns a typed timestamp back with int(); a date is its midnight UTC.
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return codec.micros(value) // 1_000_000


# Per feature kind, how a value becomes JSON (absent: as it is). Decimals are exact text,
# as Feast's DECIMAL values travel.
_TO_JSON: dict[str | None, Callable[[Any], Any]] = {"decimal": str, "timestamp": _epoch_seconds,
                                                     "date": _epoch_seconds}


def catalogue(registry: Registry, auth: Auth | None = None) -> dict:
    """The registry as JSON-able data: views (``fstore describe --json``'s fields), each feature with its
    type, fallback, tags and tombstone, the feature services (ML model exposures) with their features,
    and which tags need a scope."""
    from feature_store.cli import _describe_data

    views = []
    for view in sorted(registry.views.values(), key=lambda v: v.name):
        data = _describe_data(view)
        data["features"] = [_feature_entry(view, f) for f in view.features]
        views.append(data)
    services = {}
    for name, service in sorted(registry.feature_services.items()):
        try:
            refs: list[str] | None = registry.feature_service(name)
        except (UnknownFeature, UnknownFeatureView):
            refs = None  # names a feature that is gone: `fstore validate` says which
        services[name] = {"features": refs, "owner": service.owner, "description": service.description,
                          "path": service.path}
    return {
        "project": registry.project_name,
        "target": registry.target.name,
        "entities": {e.name: {"join_keys": list(e.join_keys), "description": e.description}
                     for e in registry.entities.values()},
        "feature_views": views,
        "feature_services": services,
        "restricted_tags": sorted(auth.restricted_tags) if auth else [],
    }


def _feature_entry(view: FeatureView, f: Feature) -> dict:
    return {
        "name": f.name,
        "ref": f.ref,
        "type": f.data_type,
        "kind": f.kind,
        "description": f.description,
        "fallback": None if f.fallback is None else {"kind": f.fallback.kind, "value": f.fallback.value},
        "tags": sorted({*view.tags, *f.tags}),
        "tombstone": None if not f.deprecated else {"date": f.deprecated, "replaced_by": f.replaced_by},
        "ttl": format_duration(view.ttl),
    }


# -- metrics --------------------------------------------------------------------------------------


class _Metrics:
    """The server's Prometheus metrics, in a registry of their own (several apps may share a process).

    With several workers each process writes its samples to ``$PROMETHEUS_MULTIPROC_DIR``
    (``fstore serve`` sets it) and ``/metrics`` adds up all of them.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram("fstore_request_seconds", "Time to answer a request, by route.", ["route"],
                                 registry=r, buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                      0.5, 1.0, 2.5))
        self.responses = Counter("fstore_responses", "Responses by route and HTTP status.", ["route", "code"],
                                 registry=r)
        self.values = Counter("fstore_feature_values", "Feature values served, by feature and status "
                              "(present, missing, expired, imputed).", ["feature", "status"], registry=r)
        self.gated = Counter("fstore_gated_refusals", "Reads refused (422) because a gated feature had no value.",
                             ["feature"], registry=r)
        self.pushed = Counter("fstore_pushed_rows", "Rows accepted by /push, by view.", ["view"], registry=r)
        self.redis_errors = Counter("fstore_redis_errors", "Requests that failed because Redis could not be "
                                    "reached or answered an error.", registry=r)
        self.reloads = Counter("fstore_registry_reloads", "Registry reloads after the manifest changed, by result.",
                               ["result"], registry=r)
        self._children: dict[tuple[str, str], Any] = {}

    def count_values(self, feature: str, statuses: list[FieldStatus]) -> None:
        children = self._children
        if all(s is FieldStatus.PRESENT for s in statuses):
            counts: Any = {"present": len(statuses)}
        else:
            counts = Counter(_METRIC_STATUS[s] for s in statuses)
        for status, n in counts.items():
            child = children.get((feature, status))
            if child is None:
                if len(children) > 100_000:  # features come from the registry, but be bounded anyway
                    children.clear()
                child = children[(feature, status)] = self.values.labels(feature, status)
            child.inc(n)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# -- the app --------------------------------------------------------------------------------------


class _Incoming(Protocol):
    """What the handlers read of a request: its headers and its body (a Starlette Request, or _LeanRequest)."""

    @property
    def headers(self) -> Any: ...

    def stream(self) -> AsyncIterator[bytes]: ...


class _LeanHeaders:
    """Header lookup on the ASGI scope's list (names arrive lower-cased), without building a mapping."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]):
        self.raw = raw

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.encode("latin-1")
        for k, v in self.raw:
            if k == key:
                return v.decode("latin-1")
        return default


class _LeanRequest:
    """The ASGI request as the read handler needs it: headers and body chunks, nothing parsed ahead."""

    __slots__ = ("headers", "_receive")

    def __init__(self, scope: Scope, receive: Receive):
        self.headers = _LeanHeaders(scope["headers"])
        self._receive = receive

    async def stream(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._receive()
            if message["type"] != "http.request":  # the client went away: nothing more will come
                return
            if message.get("body"):
                yield message["body"]
            if not message.get("more_body", False):
                return


class _App:
    """The Starlette app, with reads taken straight to their handler.

    Reads are nearly all the traffic; routing them past Starlette's router, middleware and
    Request object saves a sizeable share of the CPU a small read costs. They get the same
    handler, error mapping and metrics as through Starlette.
    """

    def __init__(self, app: Starlette, read: Callable[[Any], Awaitable[Response]]):
        self.app, self.read = app, read
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/get-online-features" and scope["method"] == "POST":
            response = await self.read(_LeanRequest(scope, receive))
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _route(server: _Server, name: str, handler: Callable[[Any], Awaitable[Response]]):
    """``handler`` with the error mapping and the latency and response metrics of route ``name``."""
    latency = server.metrics.latency.labels(name)
    responses = server.metrics.responses
    codes: dict[int, Any] = {}

    async def endpoint(request: _Incoming) -> Response:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except _Problem as problem:
            response = problem.response()
        except Exception:  # a bug: say so without internals, keep serving
            log.exception("unexpected error on %s", name)
            response = Response(orjson.dumps({"detail": "internal error; the server log has the details",
                                              "code": "internal_error"}), 500, media_type=JSON)
        latency.observe(time.perf_counter() - started)
        child = codes.get(response.status_code)
        if child is None:
            child = codes[response.status_code] = responses.labels(name, str(response.status_code))
        child.inc()
        return response

    return endpoint


def create_app(config: ServerConfig, auth: Auth | None = None, *, load_tokens: bool = True) -> ASGIApp:
    """The ASGI app for ``config``. Tokens come from ``auth``, else (``load_tokens``) from the config's
    tokens file or the environment (:func:`feature_store.auth.load_auth`)."""
    if auth is None and load_tokens:
        auth = load_auth(config.tokens_file)
    server = _Server(config, auth)
    read = _route(server, "/get-online-features", server.get_online_features)
    routes = [
        Route("/get-online-features", read, methods=["POST"]),
        Route("/push", _route(server, "/push", server.push), methods=["POST"]),
        Route("/features", _route(server, "/features", server.features), methods=["GET"]),
        Route("/health", _route(server, "/health", server.health), methods=["GET"]),
        Route("/metrics", _route(server, "/metrics", server.metrics_route), methods=["GET"]),
        Route("/openapi.json", _route(server, "/openapi.json", server.openapi), methods=["GET"]),
        Route("/docs", _route(server, "/docs", server.docs), methods=["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        detail = ("no such route; see /docs for the API" if status == 404
                  else f"method {request.method} is not allowed here; see /docs")
        return Response(orjson.dumps({"detail": detail, "code": "not_found" if status == 404 else "bad_method"}),
                        status, media_type=JSON)

    app = Starlette(routes=routes, lifespan=server.lifespan, exception_handlers={404: not_found, 405: not_found})
    app.state.server = server
    return _App(app, read)


def app_from_env() -> ASGIApp:
    """uvicorn's app factory for ``fstore serve``: the config its parent put in ``$FEATURE_STORE_SERVER_CONFIG``."""
    return create_app(ServerConfig.from_env())


def default_workers(redis_url: str | None = None) -> int:
    """One worker per core this process may run on, less one for Redis when it runs on this machine.

    Redis runs its commands on one thread; workers that take every core preempt it, and
    every request waits for it (on 2 cores, one worker beside a local Redis serves more
    requests, with a shorter tail, than two).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1) if _redis_is_local(redis_url or os.environ.get(URL_ENV) or DEFAULT_URL) else cores


def _redis_is_local(url: str) -> bool:
    scheme, _, rest = url.partition("://")
    if scheme.lower() == "unix":
        return True
    authority = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    hosts = [h.rsplit(":", 1)[0] if not h.startswith("[") else h[1:].split("]")[0] for h in authority.split(",")]
    return bool(hosts) and all(is_loopback(h) for h in hosts if h)


def run(config: ServerConfig, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, workers: int | None = None,
        access_log: bool = False, log_level: str = "info") -> None:
    """Serve until SIGINT/SIGTERM: checks the address against the tokens, loads the registry once to fail
    early, then runs ``workers`` uvicorn processes (default: one per core) on the port.

    Each worker listens on a socket of its own with ``SO_REUSEPORT``, so the kernel spreads
    connections evenly over them (on one shared socket the first worker to wake accepts
    nearly all of them, and keep-alive clients then stay on one core). The parent holds
    the address bound (not listening) so a port in use fails here, restarts a worker that
    dies, and stops them all on SIGTERM (each finishes the requests it has in flight).
    """
    import multiprocessing
    import signal
    import tempfile

    auth = load_auth(config.tokens_file)
    check_bind(host, auth)
    _Server(config, auth).store.close()  # a bad project or Redis URL fails here, once, with our message
    workers = workers or default_workers(config.redis_url)
    reserved = _bind(host, port)
    port = reserved.getsockname()[1]
    os.environ[CONFIG_ENV] = config.to_env()
    options = {"host": host, "port": port, "access_log": access_log, "log_level": log_level}
    with tempfile.TemporaryDirectory(prefix="fstore-metrics-") as metrics_dir:
        if workers > 1:
            # Each worker counts in files here, and /metrics (in any worker) adds them up.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        log.info("serving on http://%s:%d with %d worker(s)", host, port, workers)
        if workers == 1:
            reserved.close()
            _worker(options)
            return
        context = multiprocessing.get_context("spawn")
        procs = [context.Process(target=_worker, args=(options,), name=f"fstore-worker-{i}") for i in range(workers)]
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        started = [time.monotonic()] * workers
        try:
            for proc in procs:
                proc.start()
            while not stopping:
                time.sleep(0.2)
                for i, proc in enumerate(procs):
                    # A worker that dies at once (say its app cannot start) is restarted at most every 5 s.
                    if not proc.is_alive() and not stopping and time.monotonic() - started[i] >= 5:
                        log.error("worker %s exited with %s; starting another", proc.name, proc.exitcode)
                        procs[i] = context.Process(target=_worker, args=(options,), name=proc.name)
                        procs[i].start()
                        started[i] = time.monotonic()
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()  # SIGTERM to a worker we started: it finishes its requests in flight
            for proc in procs:
                proc.join(timeout=15)
                if proc.is_alive():
                    proc.kill()
            reserved.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _bind(host: str, port: int, listen: bool = False) -> "socket.socket":
    """A socket bound to ``host:port`` with ``SO_REUSEPORT`` (listening if ``listen``)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ServerConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port "
                                "or stop what holds it") from None
    if listen:
        sock.listen(2048)
    return sock


def _worker(options: dict) -> None:
    """One server process: its own listening socket on the shared port, uvicorn serving the app."""
    import uvicorn

    sock = _bind(options["host"], options["port"], listen=True)
    config = uvicorn.Config("feature_store.server:app_from_env", factory=True, host=options["host"],
                            port=options["port"], loop=_loop(), http=_http(), lifespan="on",
                            access_log=options["access_log"], log_level=options["log_level"],
                            timeout_graceful_shutdown=10, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every platform
        return "asyncio"
    return "uvloop"


def _http() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover
        return "h11"
    return "httptools"


# -- OpenAPI --------------------------------------------------------------------------------------


def _error(description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_document(config: ServerConfig) -> dict:
    """The API as OpenAPI 3.0: what /openapi.json serves and /docs shows."""
    entity_value = {"nullable": True, "oneOf": [{"type": "integer"}, {"type": "string"}, {"type": "number"},
                                                 {"type": "boolean"}]}
    auth_errors = {"401": _error("No or an unknown bearer token (when the server has tokens)."),
                   "403": _error("The token lacks a scope: `read`, `push`, or a restricted tag such as `pii`; "
                                 "the body names the features.")}
    body_errors = {"400": _error("The body is not a JSON object (malformed JSON)."),
                   "413": _error(f"The body is larger than the limit ({config.max_body_bytes:,} bytes).")}
    unavailable = {"503": _error("Redis could not be reached or answered an error within the online store's "
                                 "timeouts; nothing was served or written. Retry (see Retry-After).")}
    return {
        "openapi": "3.0.3",
        "info": {"title": "feature_store feature server", "version": "1",
                 "description": "Feast-compatible online reads from the dbt feature store, pushes, the catalogue. "
                                "See docs/server.md in the repository."},
        "paths": {
            "/get-online-features": {"post": {
                "summary": "Latest feature values for entities (Feast's request and response)",
                "description": "Values, statuses and event times per feature, entity key columns first. TTLs and "
                               "fallbacks as in the Python API; a gated feature without a value fails the whole "
                               "request with 422 naming the feature and the entity.",
                "requestBody": {"required": True, "content": {JSON: {"schema": {
                    "$ref": "#/components/schemas/GetOnlineFeaturesRequest"}}}},
                "responses": {
                    "200": {"description": "The values.", "content": {JSON: {"schema": {
                        "$ref": "#/components/schemas/GetOnlineFeaturesResponse"}}},
                        "headers": {
                            "Deprecation": {"description": "When a feature served is deprecated: its tombstone "
                                                           "(the earliest), `@<unix seconds>` (RFC 9745).",
                                            "schema": {"type": "string"}},
                            "Sunset": {"description": "The same tombstone as an HTTP-date (RFC 8594).",
                                       "schema": {"type": "string"}}}},
                    **body_errors, **auth_errors,
                    "422": _error("Unknown feature or feature service (with a did-you-mean), offline-only view, "
                                  "wrong or missing entity keys, too many entities, or a gated feature without a "
                                  "value (code feature_missing; `feature` and `entity` name it)."),
                    **unavailable,
                },
            }},
            "/push": {"post": {
                "summary": "Push rows into an online view (online now, the warehouse at the next dbt build)",
                "requestBody": {"required": True, "content": {JSON: {"schema": {
                    "$ref": "#/components/schemas/PushRequest"}}}},
                "responses": {
                    "200": {"description": "Both writes are durable.", "content": {JSON: {"schema": {
                        "type": "object"}}}},
                    **body_errors, **auth_errors,
                    "422": _error("A row was rejected (`row` and `field` name it): offline view, unknown column, "
                                  "wrong type, missing timestamp. Nothing of the request was written."),
                    "503": _error("Redis could not be reached, or the rows could not be landed durably (code "
                                  "landing_failed); the push was not acknowledged and retrying it is safe."),
                },
            }},
            "/features": {"get": {
                "summary": "The catalogue: views, features, types, owners, tags, tombstones, feature services",
                "responses": {"200": {"description": "The catalogue.", "content": {JSON: {"schema": {
                    "type": "object"}}}}, **auth_errors},
            }},
            "/health": {"get": {
                "summary": "Redis reachable, registry loaded, manifest age",
                "responses": {"200": {"description": "Healthy.", "content": {JSON: {"schema": {"type": "object"}}}},
                              "503": _error("Redis is unreachable (the body says why).")},
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "Prometheus text format.",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "GetOnlineFeaturesRequest": {
                    "type": "object",
                    "required": ["entities"],
                    "additionalProperties": False,
                    "properties": {
                        "features": {"type": "array", "items": {"type": "string"},
                                     "example": ["user_order_features:user_7d_orders"]},
                        "feature_service": {"type": "string",
                                            "description": "An ML model: a dbt exposure of type ml; its features."},
                        "entities": {"type": "object", "additionalProperties": {"type": "array",
                                                                                "items": entity_value},
                                     "example": {"user_id": [42, 7]}},
                        "full_feature_names": {"type": "boolean", "default": False},
                        "include_feature_view_version_metadata": {"type": "boolean", "default": False,
                                                                  "description": "Accepted for Feast; ignored."},
                        "include_detailed_statuses": {"type": "boolean", "default": False,
                                                      "description": "Add our own statuses (IMPUTED, NOT_SYNCED)."},
                    },
                },
                "GetOnlineFeaturesResponse": {
                    "type": "object",
                    "required": ["metadata", "results"],
                    "properties": {
                        "metadata": {"type": "object", "required": ["feature_names"], "properties": {
                            "feature_names": {"type": "array", "items": {"type": "string"}}}},
                        "results": {"type": "array", "items": {
                            "type": "object", "required": ["values", "statuses", "event_timestamps"],
                            "properties": {
                                "values": {"type": "array", "items": {}},
                                "statuses": {"type": "array", "items": {"type": "string", "enum": [
                                    "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"]}},
                                "event_timestamps": {"type": "array", "items": {"type": "string"}},
                                "detailed_statuses": {"type": "array", "items": {
                                    "type": "string", "enum": [s.value for s in FieldStatus]}},
                            }}},
                    },
                },
                "PushRequest": {
                    "type": "object",
                    "required": ["view", "rows"],
                    "additionalProperties": False,
                    "properties": {"view": {"type": "string", "example": "user_txn_features"},
                                   "rows": {"type": "array", "items": {"type": "object"}}},
                },
                "Error": {
                    "type": "object",
                    "required": ["detail", "code"],
                    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
                },
            },
        },
        "security": [{"bearer": []}, {}],
    }


def docs_page(spec: dict) -> str:
    """A self-contained HTML page describing ``spec`` (no scripts, nothing fetched from elsewhere)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(spec['info']['title'])}</title>"
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "code,pre{background:#f4f4f4}h2{border-top:1px solid #ccc;padding-top:1em}</style></head><body>",
             f"<h1>{html.escape(spec['info']['title'])}</h1><p>{html.escape(spec['info']['description'])}</p>",
             "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>.</p>"]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts.append(f"<h2><code>{method.upper()} {html.escape(path)}</code></h2>"
                         f"<p>{html.escape(op.get('summary', ''))}</p>")
            if op.get("description"):
                parts.append(f"<p>{html.escape(op['description'])}</p>")
            ref = op.get("requestBody", {}).get("content", {}).get(JSON, {}).get("schema", {}).get("$ref")
            if ref:
                schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
                parts.append("<p>Request body:</p><pre>"
                             f"{html.escape(orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode())}</pre>")
            parts.append("<ul>" + "".join(f"<li><b>{code}</b>: {html.escape(r['description'])}</li>"
                                          for code, r in op["responses"].items()) + "</ul>")
    parts.append("</body></html>")
    return "".join(parts)
