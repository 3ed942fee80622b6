"""Redis clients from one URL: a single server, a Redis Cluster, or a master found through Sentinel.

Accepted URLs (``rediss`` instead of ``redis`` turns TLS on, for every connection)::

    redis://[[user]:password@]host:port/db
    redis+cluster://[[user]:password@]host:port[,host:port...]
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]

The password is the data nodes' (the cluster's nodes, Sentinel's master). Sentinels that
require a password of their own get it as ``?sentinel_password=...`` (and
``&sentinel_username=...``), percent-encoded like any query value. The hosts of a cluster
URL are only where the client starts: it learns the other nodes from them. A port left out
is 6379 for a cluster node and 26379 for a sentinel.

``redis://``, ``rediss://`` and ``unix://`` URLs are read by redis-py (``Redis.from_url``),
so every query argument it knows works there. The cluster and sentinel forms accept the ones that
matter for a production connection and reject any other, so that a misspelt option is an
error rather than silently ignored: ``socket_timeout``, ``socket_connect_timeout``,
``socket_keepalive``, ``health_check_interval``, ``client_name`` and the TLS settings
``ssl_cert_reqs``, ``ssl_ca_certs``, ``ssl_ca_path``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_password``, ``ssl_check_hostname``. In every form a query argument wins over the
function's arguments.

This module is on the serving path: it imports redis-py only (no dbt, duckdb or pyarrow).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from feature_store.errors import OnlineStoreError

__all__ = ["URL_FORMS", "is_cluster", "redact", "redis_client"]

URL_FORMS = (
    "redis://[[user]:password@]host:port/db, "
    "redis+cluster://[[user]:password@]host:port[,host:port...] or "
    "redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db] "
    "(rediss, rediss+cluster, rediss+sentinel for TLS; a sentinel's own password as ?sentinel_password=...)"
)

_PLAIN = ("redis", "rediss", "unix")
_MULTI = {
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
_DEFAULT_PORT = {"cluster": 6379, "sentinel": 26379}
_QUERY_ARGS = frozenset({
    "socket_timeout", "socket_connect_timeout", "socket_keepalive", "health_check_interval", "client_name",
    "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_password",
    "ssl_check_hostname",
})
_SENTINEL_QUERY_ARGS = frozenset({"sentinel_username", "sentinel_password"})
# What a sentinel connection shares with the data connections: where TLS and the
# timeouts are concerned, sentinels are reached like the servers they watch.
_SHARED_WITH_SENTINELS = ("socket_", "ssl")
# How often a Sentinel client asks a sentinel where the master is, besides when it connects.
SENTINEL_CHECK_SECONDS = 1.0


def redact(url: str) -> str:
    """``url`` with its passwords (the userinfo's, any ``*password`` query value) as ``***``, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # no scheme: still hide what looks like userinfo
        scheme, rest = "", url
    # The authority ends where redis-py's urlparse ends it: at the first '/', '?' or '#'.
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:***@{hosts}"
    before_query, q, query = tail.partition("?")
    query, hash_, fragment = query.partition("#")
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(k.lower().endswith("password") for k, _ in pairs):
        pairs = [(k, "***" if k.lower().endswith("password") else v) for k, v in pairs]
        tail = before_query + q + urlencode(pairs, safe="*/:") + hash_ + fragment
    return f"{scheme}{sep}{authority}{tail}"


def is_cluster(client: Any) -> bool:
    """Whether ``client`` talks to a Redis Cluster (keys of one command must then share a hash slot)."""
    return isinstance(client, RedisCluster)


def redis_client(url: str, *, timeout: float, connect_timeout: float) -> redis.Redis | RedisCluster:
    """A redis-py client for ``url`` (see the module's doc for the accepted forms).

    Each command waits at most ``connect_timeout`` to connect and ``timeout`` for an
    answer (``?socket_timeout=`` / ``?socket_connect_timeout=`` in the URL win), and is
    tried once: redis-py's own retries are off, the caller retries. A cluster client
    still refreshes its map of the slots after a failed command, so the caller's next
    attempt goes to the node that serves the key now; a Sentinel client asks the
    sentinels for the master whenever it opens a connection and at most every
    ``SENTINEL_CHECK_SECONDS`` besides, and moves its connections when the answer changes.

    ``redis://`` and Sentinel clients connect on first use; a cluster client connects
    here, to learn the slots, and :class:`OnlineStoreError` says so if no listed node
    answers. A URL that is not one of the accepted forms raises
    :class:`OnlineStoreError` naming it (password redacted) and the forms.
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in _PLAIN:
        try:
            # Retry(…, 0): nested in the caller's retries, redis-py's multiplied the wait on
            # a hung server (minutes).
            return redis.Redis.from_url(url, retry=_no_retry(), socket_connect_timeout=connect_timeout,
                                        socket_timeout=timeout)
        except (ValueError, TypeError) as exc:
            raise _bad_url(url, str(exc)) from None
    spec = _parse(url)
    options = {"socket_timeout": timeout, "socket_connect_timeout": connect_timeout, **spec.options}
    if spec.kind == "sentinel":
        return _sentinel_master(spec, options)
    return _cluster(url, spec, options)


@dataclass(frozen=True)
class _Spec:
    """A cluster or sentinel URL, taken apart (``options``: the data nodes' connection arguments)."""

    kind: str  # "cluster" | "sentinel"
    nodes: tuple[tuple[str, int], ...]
    options: dict[str, Any] = field(default_factory=dict)
    service: str | None = None  # sentinel: the monitored master's name
    sentinel_options: dict[str, Any] = field(default_factory=dict)  # sentinel: auth for the sentinels


def _parse(url: str) -> _Spec:
    """Take a ``redis+cluster://`` or ``redis+sentinel://`` URL (or their ``rediss`` forms) apart."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in _MULTI:
        shown = f"scheme {scheme}:// is not" if "://" in url else "no scheme; the scheme is"
        raise _bad_url(url, f"{shown} one of redis, rediss, unix, redis+cluster, rediss+cluster, "
                            "redis+sentinel, rediss+sentinel")
    kind, tls = _MULTI[scheme.lower()]
    rest, _, _fragment = rest.partition("#")
    end = min((i for i in (rest.find(c) for c in "/?") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    path, _, query = tail.partition("?")
    userinfo, at, hosts = authority.rpartition("@")

    options: dict[str, Any] = {}
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            options["username"] = unquote(user)
        if colon and password:
            options["password"] = unquote(password)
    if tls:
        options["ssl"] = True

    nodes = tuple(_node(url, h, _DEFAULT_PORT[kind]) for h in hosts.split(","))

    extra = _query(url, query, kind)
    sentinel_options = {k.removeprefix("sentinel_"): extra.pop(k) for k in _SENTINEL_QUERY_ARGS if k in extra}
    options.update(extra)

    parts = [unquote(p) for p in path.split("/") if p]
    if kind == "cluster":
        # A cluster has only database 0; /0 is tolerated for URLs copied from a single server.
        if parts not in ([], ["0"]):
            raise _bad_url(url, f"a cluster URL has no path (got {path!r}): Redis Cluster has only database 0")
        return _Spec(kind, nodes, options)
    if not parts or len(parts) > 2:
        raise _bad_url(url, f"a sentinel URL's path is /service_name or /service_name/db (got {path!r})")
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise _bad_url(url, f"database {parts[1]!r} is not a number")
        options["db"] = int(parts[1])
    return _Spec(kind, nodes, options, service=parts[0], sentinel_options=sentinel_options)


def _node(url: str, text: str, default_port: int) -> tuple[str, int]:
    """``(host, port)`` from ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise _bad_url(url, f"host {text!r} is not [ipv6]:port")
        port = port[1:]
    else:
        host, _, port = text.partition(":")
    if not host:
        raise _bad_url(url, "a host is missing" if text else "empty host in the host list")
    if not port:
        return unquote(host), default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad_url(url, f"port {port!r} of {text!r} is not a number from 1 to 65535")
    return unquote(host), int(port)


def _query(url: str, query: str, kind: str) -> dict[str, Any]:
    """The query arguments, typed as redis-py types them; unknown ones are an error."""
    if not query:
        return {}
    allowed = _QUERY_ARGS | (_SENTINEL_QUERY_ARGS if kind == "sentinel" else frozenset())
    names = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
    unknown = sorted(names - allowed)
    if unknown:
        raise _bad_url(url, f"unknown option(s) {', '.join(unknown)} for a {kind} URL; "
                            f"known: {', '.join(sorted(allowed))}")
    try:
        # redis-py's own parser gives the options the types Redis.from_url would.
        parsed = redis.connection.parse_url(f"redis://localhost?{query}")
    except ValueError as exc:
        raise _bad_url(url, str(exc)) from None
    parsed.pop("host", None)
    return parsed


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _cluster(url: str, spec: _Spec, options: dict[str, Any]) -> RedisCluster:
    extra: dict[str, Any] = {}
    if int(redis.__version__.split(".")[0]) < 6:
        # Before redis-py 6 `retry` only reached the node connections and this count drove
        # the cluster's retry loop; from 6 on `retry` drives that loop and the count is deprecated.
        extra["cluster_error_retry_attempts"] = 0
    try:
        # Retry(…, 0): one attempt per command. A failed command still refreshes the slot
        # map before it raises (connection errors, CLUSTERDOWN), so the caller's retry
        # reaches the promoted or restarted master; MOVED/ASK redirects (resharding) are
        # not failures and are still followed.
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in spec.nodes], retry=_no_retry(),
                            **extra, **options)
    except (RedisClusterException, RedisError) as exc:
        raise OnlineStoreError(f"cannot reach the Redis Cluster at {redact(url)}: {exc}") from None


def _sentinel_master(spec: _Spec, options: dict[str, Any]) -> redis.Redis:
    sentinel_options = {k: v for k, v in options.items() if k.startswith(_SHARED_WITH_SENTINELS)}
    sentinel_options.update(spec.sentinel_options, retry=_no_retry())
    # Each sentinel is asked once per lookup, in turn, so one that is down costs at most
    # connect_timeout before the next one answers.
    sentinel = Sentinel(list(spec.nodes), sentinel_kwargs=sentinel_options, retry=_no_retry(), **options)
    return sentinel.master_for(spec.service, connection_pool_class=_CheckedSentinelPool)


class _CheckedSentinelPool(SentinelConnectionPool):
    """A Sentinel master pool that also asks where the master is every ``SENTINEL_CHECK_SECONDS``.

    redis-py's pool asks only when it opens a connection, and drops one only on an error
    or a READONLY reply. After ``SENTINEL FAILOVER`` the old master keeps taking writes
    until the sentinel demotes it (about ten seconds later), so open connections would
    go on writing to it, and those writes are lost when it resyncs as a replica. On a
    check that finds a new master the idle connections are closed (the next command
    opens one to the new master) and busy ones are dropped when handed back.
    """

    _next_check = 0.0

    def get_connection(self, *args: Any, **kwargs: Any):
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + SENTINEL_CHECK_SECONDS
            try:
                self.get_master_address()
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # no sentinel answers: keep the connections there are; a new one fails on its own
        return super().get_connection(*args, **kwargs)


def _bad_url(url: str, reason: str) -> OnlineStoreError:
    return OnlineStoreError(f"{redact(url)} is not a Redis URL ({reason}); write {URL_FORMS}")
