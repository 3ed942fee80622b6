"""The HTTP feature server end to end: `fstore serve` in a subprocess on a loopback port, the example
project built by dbt, Redis filled by a real `fstore sync`.

Reads are checked against the in-process get_online_features, and parsed as Feast's own HTTP client
parses them; auth, scopes and every documented error; a schemathesis fuzz of the OpenAPI document;
Redis going away and coming back; a registry reload under load; and a bounded soak of mixed reads
and pushes with Redis restarted in the middle.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pyarrow.dataset as ds
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance
from server_support import (
    FEAST_STATUSES,
    RedisProcess,
    ServerProcess,
    feast_online_read,
    feast_read_response,
    fstore,
)

from feature_store.auth import AuthConfigError, load_auth
from feature_store.online import FieldStatus, OnlineStore, get_online_features
from feature_store.registry import Registry
from feature_store.server import ServerConfigError, check_bind

pytestmark = [pytest.mark.redis, pytest.mark.dbt,
              pytest.mark.filterwarnings("ignore:feature .* is deprecated:FutureWarning")]

ORDER = ["user_order_features:user_7d_orders", "user_order_features:user_lifetime_orders",
         "user_order_features:user_avg_basket_30d", "user_order_features:last_order_ts"]
FEAST_STATUS = {FieldStatus.PRESENT: "PRESENT", FieldStatus.IMPUTED: "PRESENT", FieldStatus.NULL_VALUE: "NULL_VALUE",
                FieldStatus.NOT_FOUND: "NOT_FOUND", FieldStatus.NOT_SYNCED: "NOT_FOUND",
                FieldStatus.OUTSIDE_MAX_AGE: "OUTSIDE_MAX_AGE"}
SECRETS = {"reader": "reader-token-0123456789abcdef", "fraud": "fraud-token-0123456789abcdef",
           "pusher": "pusher-token-0123456789abcdef", "env": "env-token-0123456789abcdef"}


def synced_redis(workdir: Path, project: Path, aof: bool = False) -> RedisProcess:
    redis = RedisProcess(workdir, aof=aof).start()
    proc = fstore(project, redis.url, "sync", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return redis


@pytest.fixture(scope="module")
def redis_main(built_project, tmp_path_factory):
    redis = synced_redis(tmp_path_factory.mktemp("redis-main"), built_project)
    yield redis
    redis.stop()


@pytest.fixture(scope="module")
def plain(built_project, redis_main, tmp_path_factory):
    """A server without tokens (loopback), two workers."""
    logs = tmp_path_factory.mktemp("plain")
    server = ServerProcess(built_project, redis_main.url, logs / "serve.log", "--max-entities", "50",
                           "--max-body-bytes", "4096", "--landing-dir", str(logs / "landing"), workers=2).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def authed(built_project, redis_main, tmp_path_factory):
    """A server with tokens: `fraud` is a restricted tag (user_txn_features carry it), as `pii` is by default."""
    logs = tmp_path_factory.mktemp("authed")
    tokens = logs / "tokens.yml"
    tokens.write_text(
        "restricted_tags: [pii, fraud]\n"
        "tokens:\n"
        f"  - {{name: reader, token: {SECRETS['reader']}, scopes: [read]}}\n"
        f"  - {{name: fraud-reader, token: {SECRETS['fraud']}, scopes: [read, fraud]}}\n"
        f"  - {{name: pusher, token: {SECRETS['pusher']}, scopes: [push]}}\n"
        "  - {name: from-env, token_env: SERVER_TEST_TOKEN, scopes: [read]}\n")
    server = ServerProcess(built_project, redis_main.url, logs / "serve.log", "--tokens-file", str(tokens),
                           "--landing-dir", str(logs / "landing"),
                           env={"SERVER_TEST_TOKEN": SECRETS["env"]}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reader(built_project, redis_main):
    """The in-process read path on the same Redis."""
    registry = Registry.load(built_project)
    store = OnlineStore.for_registry(registry, url=redis_main.url)
    yield registry, store
    store.close()


def users_with_orders(registry: Registry, store: OnlineStore, count: int = 30) -> list[int]:
    """Users whose user_order_features row is live, from Redis itself."""
    found = []
    for key in store.client.scan_iter(f"{store.prefix}:{{user_id=*}}:user_order_features", count=1000):
        found.append(int(key.decode().split("{user_id=")[1].split("}")[0]))
        if len(found) == count:
            break
    return sorted(found)


def post(server: ServerProcess, body, token: str | None = None, path: str = "/get-online-features",
         **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    content = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
    return httpx.post(server.url + path, content=content, headers=headers, timeout=10, **kwargs)


def expected(registry, store, refs, ids, full=False) -> dict:
    """What the server must answer, derived from the Python API's response (Feast's JSON by hand)."""
    response = get_online_features(registry, store, refs, [{"user_id": u} for u in ids], full_feature_names=full)
    data = response.to_dict(include_status=True, include_event_timestamps=True)
    out = {"user_id": (ids, ["PRESENT"] * len(ids), [None] * len(ids), ["PRESENT"] * len(ids))}
    for name in response.feature_names:
        values = []
        for v in data[name]:
            if isinstance(v, Decimal):
                v = str(v)  # exact text, as Feast's DECIMAL travels
            elif isinstance(v, datetime):
                v = int(v.replace(tzinfo=timezone.utc).timestamp())  # Feast's UNIX_TIMESTAMP: whole seconds
            values.append(v)
        statuses = data[f"{name}__status"]
        out[name] = (values, [FEAST_STATUS[FieldStatus(s)] for s in statuses], data[f"{name}__ts"], statuses)
    return out


def as_columns(body: dict) -> dict:
    """name -> (values, statuses, event times as naive UTC datetimes or None, detailed statuses)."""
    out = {}
    for name, result in zip(body["metadata"]["feature_names"], body["results"], strict=True):
        stamps = [None if t == "1970-01-01T00:00:00Z" else
                  datetime.fromisoformat(t.replace("Z", "+00:00")).replace(tzinfo=None)
                  for t in result["event_timestamps"]]
        out[name] = (result["values"], result["statuses"], stamps, result.get("detailed_statuses"))
    return out


def same_answer(server, registry, store, refs, ids, full=False) -> tuple[dict, dict]:
    """The server's answer and the Python API's, read around it until no ttl boundary fell in between."""
    for _ in range(5):
        before = expected(registry, store, refs, ids, full)
        got = post(server, {"features": refs, "entities": {"user_id": ids}, "full_feature_names": full,
                            "include_detailed_statuses": True})
        after = expected(registry, store, refs, ids, full)
        if before == after:
            return got, before
    pytest.fail("the Python API's answer kept changing")


# -- reads -----------------------------------------------------------------------------------------


def test_reads_equal_the_python_api(plain, reader):
    registry, store = reader
    users = users_with_orders(registry, store)
    assert len(users) >= 10
    cases = [
        (ORDER, users[:1]),
        (ORDER + ["user_txn_features:txn_amount_1h_sum"], users[:10] + [999_999_999]),  # one unknown user
        (["user_order_features"], users),  # a bare view: all its features, the tombstoned one too
        (["user_order_features:user_7d_orders", "user_txn_features:txn_amount_1h_sum"], [123456789, users[3]]),
    ]
    for refs, ids in cases:
        got, want = same_answer(plain, registry, store, refs, ids)
        assert got.status_code == 200, got.text
        body = got.json()
        columns = as_columns(body)
        assert list(columns) == list(want)  # entity key columns first, then the features in request order
        for name, (values, statuses, stamps, detailed) in columns.items():
            w_values, w_statuses, w_stamps, w_detailed = want[name]
            assert values == w_values, name
            assert statuses == w_statuses, name
            assert stamps == w_stamps, name
            assert detailed == w_detailed, name
    # imputed values (user_7d_orders: impute 0) are served as PRESENT, and marked IMPUTED on request
    unknown = as_columns(post(plain, {"features": ORDER[:1], "entities": {"user_id": [999_999_999]},
                                      "include_detailed_statuses": True}).json())
    assert unknown["user_7d_orders"][:2] == ([0], ["PRESENT"]) and unknown["user_7d_orders"][3] == ["IMPUTED"]


def test_feature_service_reads_what_the_python_api_reads(plain, reader):
    """The example's churn_model (a dbt exposure of type ml, no gated feature) names its features."""
    registry, store = reader
    users = users_with_orders(registry, store, 5) + [999_999_999]
    got, want = same_answer(plain, registry, store, registry.feature_service("churn_model"), users)
    by_service = post(plain, {"feature_service": "churn_model", "entities": {"user_id": users},
                              "include_detailed_statuses": True})
    assert by_service.status_code == 200, by_service.text
    assert as_columns(by_service.json()) == as_columns(got.json()) == want


def test_full_feature_names(plain, reader):
    registry, store = reader
    users = users_with_orders(registry, store, 3)
    got, want = same_answer(plain, registry, store, ORDER[:2], users, full=True)
    assert got.json()["metadata"]["feature_names"] == ["user_id", "user_order_features__user_7d_orders",
                                                       "user_order_features__user_lifetime_orders"]
    assert [r["values"] for r in got.json()["results"]] == [w[0] for w in want.values()]


def test_feast_client_reads_the_responses_unchanged(plain, reader):
    registry, store = reader
    users = users_with_orders(registry, store, 5)
    refs = ORDER + ["user_order_features:user_avg_basket_30d_legacy", "user_txn_features:txn_amount_1h_sum"]
    body = post(plain, {"features": refs, "entities": {"user_id": users + [999_999_999]}}).json()
    # whole responses: every value has a type Feast infers, every status a name it knows
    read = feast_read_response(body)
    assert list(read)[0] == "user_id"
    for name, cells in read.items():
        assert all(status in FEAST_STATUSES for _, _, status in cells), name
        assert all(kind != "EMPTY" or status != "PRESENT" for kind, _, status in cells), name
    assert {kind for kind, _, _ in read["user_7d_orders"]} == {"INT64"}
    assert {kind for kind, _, s in read["user_avg_basket_30d"] if s == "PRESENT"} == {"DOUBLE"}
    # per view, as its online_read asks: "view:feature" refs, one join key, typed values
    view_refs = ["user_order_features:user_7d_orders", "user_order_features:last_order_ts"]
    per_view = post(plain, {"features": view_refs, "entities": {"user_id": users}}).json()
    rows = feast_online_read(per_view, ["user_7d_orders", "last_order_ts"],
                             {"user_7d_orders": "INT64", "last_order_ts": "UNIX_TIMESTAMP"}, len(users))
    api = get_online_features(registry, store, view_refs, [{"user_id": u} for u in users])
    for (_, values), want_orders in zip(rows, api.to_dict()["user_7d_orders"], strict=True):
        assert values["user_7d_orders"] == want_orders
        assert isinstance(values["last_order_ts"], (int, type(None)))
    first_ts = api.event_timestamps["user_7d_orders"][0]
    assert rows[0][0] == first_ts.replace(tzinfo=timezone.utc)  # Feast reads results[1].event_timestamps[0]


def test_gated_feature_without_value_fails_the_request(plain, reader):
    registry, store = reader
    users = users_with_orders(registry, store, 2)
    got = post(plain, {"features": ["user_order_features:user_7d_orders", "user_txn_features:txn_velocity_60s"],
                       "entities": {"user_id": [users[0], 888_888_888]}})
    assert got.status_code == 422
    body = got.json()
    assert body["code"] == "feature_missing"
    assert body["feature"] == "user_txn_features:txn_velocity_60s"
    assert body["entity"] in ({"user_id": users[0]}, {"user_id": 888_888_888})
    assert "gated" in body["detail"] and "txn_velocity_60s" in body["detail"]


# -- bad requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, status, code, says", [
    (b"{not json", 400, "malformed_json", "malformed JSON"),
    (b"", 400, "malformed_json", "empty body"),
    (b"[1, 2]", 400, "malformed_json", "JSON object"),
    ({"features": ["user_order_features:user_7d_order"], "entities": {"user_id": [1]}}, 422, "unknown_feature",
     "did you mean 'user_7d_orders'"),
    ({"features": ["user_order_feature:user_7d_orders"], "entities": {"user_id": [1]}}, 422, "unknown_feature",
     "did you mean 'user_order_features'"),
    ({"features": [], "entities": {"user_id": [1]}}, 422, "no_features", "non-empty list"),
    ({"features": ["txn_features:txn_amount"], "entities": {"txn_id": [1]}}, 422, "offline_view", "offline only"),
    ({"features": ORDER, "entities": {"user_id": ["4_2"]}}, 422, "bad_entity", "'4_2'"),
    ({"features": ORDER, "entities": {"user_id": [42.0]}}, 422, "bad_entity", "declared int"),
    ({"features": ORDER, "entities": {"user_id": [True]}}, 422, "bad_entity", "declared int"),
    ({"features": ORDER, "entities": {"user_id": [[1]]}}, 422, "bad_entity", "declared int"),
    ({"features": ORDER, "entities": {"userid": [1]}}, 422, "unknown_entity_key", "did you mean 'user_id'"),
    ({"features": ORDER, "entities": {}}, 422, "invalid_request", "`entities`"),
    ({"features": ORDER, "entities": {"user_id": 1}}, 422, "invalid_request", "list of values"),
    ({"features": ORDER, "entities": {"user_id": list(range(51))}}, 422, "too_many_entities", "limit is 50"),
    ({"features": ORDER, "entities": {"user_id": [1]}, "full_feature_name": True}, 422, "invalid_request",
     "unknown field 'full_feature_name'"),
    ({"features": ORDER, "entities": {"user_id": [1]}, "full_feature_names": "yes"}, 422, "invalid_request",
     "true or false"),
    ({"features": ORDER, "feature_service": "x", "entities": {"user_id": [1]}}, 422, "invalid_request", "not both"),
    ({"feature_service": "churn", "entities": {"user_id": [1]}}, 422, "unknown_feature_service", "dbt exposure"),
    ({"features": ORDER, "entities": {"user_id": [123456789] * 500}}, 413, "body_too_large", "limit is 4,096"),
])
def test_bad_requests_answer_4xx_with_a_reason(plain, body, status, code, says):
    got = post(plain, body)
    assert got.status_code == status, got.text
    assert got.json()["code"] == code
    assert says in got.json()["detail"], got.json()["detail"]


def test_routes_and_methods(plain):
    assert httpx.get(plain.url + "/nowhere").status_code == 404
    wrong = httpx.get(plain.url + "/get-online-features")
    assert wrong.status_code == 405 and wrong.json()["code"] == "bad_method"
    # a body larger than the limit is refused while streaming, without a Content-Length too
    chunks = (b"x" * 1024 for _ in range(10))
    assert httpx.post(plain.url + "/get-online-features", content=chunks).status_code == 413


# -- auth --------------------------------------------------------------------------------------------


def test_auth_tokens_and_scopes(authed):
    order = {"features": ORDER[:1], "entities": {"user_id": [1]}}
    fraud = {"features": ["user_order_features:user_7d_orders", "user_txn_features:txn_amount_1h_sum"],
             "entities": {"user_id": [1]}}
    none = post(authed, order)
    assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
    wrong = post(authed, order, token="reader-token-0123456789abcdeX")
    assert wrong.status_code == 401
    assert "reader-token" not in wrong.text
    assert post(authed, order, token=SECRETS["reader"]).status_code == 200
    assert post(authed, order, token=SECRETS["env"]).status_code == 200  # a token read from the environment
    denied = post(authed, fraud, token=SECRETS["reader"])
    assert denied.status_code == 403
    assert denied.json()["features"] == ["user_txn_features:txn_amount_1h_sum"]
    assert "needs scope fraud" in denied.json()["detail"] and "'reader'" in denied.json()["detail"]
    assert post(authed, fraud, token=SECRETS["fraud"]).status_code == 200
    assert post(authed, order, token=SECRETS["pusher"]).status_code == 403  # no read scope
    push = {"view": "user_txn_features", "rows": [{"user_id": 1}]}
    assert post(authed, push, token=SECRETS["reader"], path="/push").status_code == 403
    assert post(authed, push, token=SECRETS["pusher"], path="/push").status_code == 422  # allowed; a bad row
    assert httpx.get(authed.url + "/features").status_code == 401
    catalogue = httpx.get(authed.url + "/features", headers={"Authorization": f"Bearer {SECRETS['reader']}"})
    assert catalogue.json()["restricted_tags"] == ["fraud", "pii"]
    assert httpx.get(authed.url + "/health").status_code == 200  # open: for load balancers and probes
    log = authed.log_path.read_text()
    assert not any(secret in log for secret in SECRETS.values())


def test_refuses_other_addresses_without_tokens(built_project, redis_main, tmp_path):
    proc = fstore(built_project, redis_main.url, "serve", "--host", "0.0.0.0", "--port", "1")
    assert proc.returncode == 1
    assert "refusing to serve on 0.0.0.0 without authentication" in proc.stderr
    with pytest.raises(ServerConfigError):
        check_bind("10.1.2.3", None)
    check_bind("127.0.0.2", None)
    check_bind("::1", None)
    tokens = tmp_path / "t.yml"
    tokens.write_text("tokens: [{name: a, sha256: " + "ab" * 32 + ", scopes: [read]}]")
    check_bind("0.0.0.0", load_auth(tokens))


def test_bad_tokens_file_is_reported_without_the_secret(built_project, redis_main, tmp_path):
    tokens = tmp_path / "tokens.yml"
    tokens.write_text("tokens:\n  - {name: a, token: short-secret, scopes: [read]}\n")
    proc = fstore(built_project, redis_main.url, "serve", "--tokens-file", str(tokens), "--port", "1")
    assert proc.returncode == 1 and "shorter than 16" in proc.stderr and "short-secret" not in proc.stderr


# -- catalogue, health, metrics, docs ---------------------------------------------------------------


def test_catalogue_health_metrics_docs(plain):
    catalogue = httpx.get(plain.url + "/features").json()
    views = {v["view"]: v for v in catalogue["feature_views"]}
    assert set(views) == {"user_order_features", "user_txn_features", "txn_features"}
    orders = views["user_order_features"]
    assert orders["owner"] == "growth-analytics@example.com" and orders["tags"] == ["orders", "churn"]
    legacy = {f["name"]: f for f in orders["features"]}["user_avg_basket_30d_legacy"]
    assert legacy["tombstone"] == {"date": "2026-12-31", "replaced_by": "user_avg_basket_30d"}
    assert legacy["type"] == "double precision" and legacy["kind"] == "float"
    assert {f["name"]: f for f in orders["features"]}["user_7d_orders"]["fallback"] == {"kind": "impute", "value": 0}

    health = httpx.get(plain.url + "/health").json()
    assert health["status"] == "ok" and health["redis"]["status"] == "ok"
    assert health["registry"]["feature_views"] == 3 and health["registry"]["manifest_age_seconds"] >= 0

    for _ in range(6):  # requests land on both workers; /metrics adds their counts up
        post(plain, {"features": ORDER[:1], "entities": {"user_id": [999_999_999]}})
    metrics = httpx.get(plain.url + "/metrics").text
    assert 'fstore_request_seconds_bucket{le="0.005",route="/get-online-features"}' in metrics
    imputed = [line for line in metrics.splitlines()
               if line.startswith('fstore_feature_values_total{feature="user_order_features:user_7d_orders"')
               and 'status="imputed"' in line]
    assert imputed and float(imputed[0].rsplit(" ", 1)[1]) >= 6
    assert "fstore_redis_errors_total" in metrics

    spec = httpx.get(plain.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/get-online-features" in spec["paths"]
    docs = httpx.get(plain.url + "/docs")
    assert docs.status_code == 200 and "POST /get-online-features" in docs.text and "<script" not in docs.text


# -- fuzz ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzz_no_server_errors(plain, mode):
    """What the OpenAPI document allows (positive) and what it forbids (negative), per operation: never
    a 5xx but the documented 503, and every answer as documented (status, content type, schema)."""
    schema = schemathesis.openapi.from_url(plain.url + "/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()
        if mode == "negative" and operation.method.upper() == "GET":
            continue  # no parameters, no body: nothing to get wrong

        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(timeout=10)
            assert response.status_code < 500 or response.status_code == 503, (case.body, response.text)
            case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                                     response_schema_conformance])

        check()


# -- Redis away and back; reload --------------------------------------------------------------------


@pytest.fixture(scope="module")
def restartable(built_project, tmp_path_factory):
    """Its own Redis (appendonly, fsync always: an acknowledged write survives a restart) and server."""
    work = tmp_path_factory.mktemp("restartable")
    redis = synced_redis(work / "redis", built_project, aof=True)
    server = ServerProcess(built_project, redis.url, work / "serve.log", "--landing-dir", str(work / "landing"),
                           workers=2).start()
    yield redis, server, work
    server.stop()
    redis.stop()


def test_redis_down_answers_503_quickly_and_recovers(restartable):
    redis, server, _ = restartable
    body = {"features": ORDER[:1], "entities": {"user_id": [1]}}
    assert post(server, body).status_code == 200
    redis.stop()
    try:
        for _ in range(3):
            started = time.monotonic()
            down = post(server, body)
            assert down.status_code == 503 and time.monotonic() - started < 2.0
            assert down.json()["code"] == "online_store_unavailable" and down.headers["retry-after"] == "1"
            assert "redis-server is running" in down.json()["detail"]
        assert httpx.get(server.url + "/health").status_code == 503
    finally:
        redis.start()
    deadline = time.monotonic() + 5
    while post(server, body).status_code != 200:
        assert time.monotonic() < deadline, "the server did not recover after Redis came back"
        time.sleep(0.05)
    assert httpx.get(server.url + "/health").status_code == 200


def test_hung_redis_answers_503_within_the_timeouts(restartable):
    """A Redis that accepts connections and never answers (stopped with SIGSTOP) costs at most the
    online store's timeouts: 0.25 s per attempt, two retries with backoff."""
    redis, server, _ = restartable
    body = {"features": ORDER[:1], "entities": {"user_id": [1]}}
    assert post(server, body).status_code == 200
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        hung = post(server, body)
        assert hung.status_code == 503 and time.monotonic() - started < 2.0, hung.text
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 5
    while post(server, body).status_code != 200:
        assert time.monotonic() < deadline, "the server did not recover after Redis answered again"
        time.sleep(0.05)


def test_a_dead_worker_is_replaced(restartable):
    _, server, _ = restartable
    body = {"features": ORDER[:1], "entities": {"user_id": [1]}}
    before = server.worker_pids()
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)  # a worker of the server this test started
    deadline = time.monotonic() + 15
    while len(after := server.worker_pids()) < 2 or before[0] in after:
        assert time.monotonic() < deadline, "no worker replaced the dead one"
        assert post(server, body).status_code == 200  # the other worker serves meanwhile
        time.sleep(0.2)
    with httpx.Client(base_url=server.url, timeout=10) as http:  # new connections reach both workers
        assert all(http.post("/get-online-features", content=orjson.dumps(body)).status_code == 200
                   for _ in range(20))


def test_tokens_document_forms(tmp_path):
    digest = hashlib.sha256(b"sha-token-0123456789abcdef").hexdigest()
    auth = load_auth(environ={"FEATURE_STORE_TOKENS": orjson.dumps(
        {"tokens": [{"name": "a", "sha256": digest, "scopes": ["read"]},
                    {"name": "b", "token_env": "B_TOKEN", "scopes": ["push"]}]}).decode(),
        "B_TOKEN": "b-token-0123456789abcdef"})
    assert auth is not None and auth.restricted_tags == {"pii"}  # the default
    assert auth.authenticate("Bearer sha-token-0123456789abcdef").name == "a"
    assert auth.authenticate("bearer b-token-0123456789abcdef").name == "b"
    assert auth.authenticate("Bearer sha-token-0123456789abcdeX") is None
    assert auth.authenticate("Basic sha-token-0123456789abcdef") is None
    assert auth.needed_scopes(["pii", "orders"]) == {"pii"}
    assert load_auth(environ={}) is None
    for doc, says in [("tokens: [{name: a, token_env: NOPE, scopes: [read]}]", "NOPE is not set"),
                      ("tokens: [{name: a, token: 0123456789abcdefXYZ}]", "`scopes` must be"),
                      ("tokens: [{name: a, sha256: abc, scopes: [read]}]", "64 hex digits"),
                      ("tokens: [{name: a, token: 0123456789abcdefXYZ, sha256: " + digest + ", scopes: [read]}]",
                       "exactly one of"),
                      ("tokens: [{name: a, token: 0123456789abcdefXYZ, scopes: [read], scope: [pii]}]",
                       "unknown key(s) scope"),
                      ("tokens: {name: a}", "non-empty list"),
                      ("tokens: [\"unterminated", "not valid YAML")]:
        path = tmp_path / "t.yml"
        path.write_text(doc)
        with pytest.raises(AuthConfigError, match=re.escape(says)):
            load_auth(path, environ={})


def test_the_serving_log_flush_outlives_any_failure(caplog):
    """The server's periodic flush logs an unexpected error (once while it repeats) and keeps going."""
    import asyncio

    from feature_store.server import send_serving_log_forever

    class Flaky:
        calls = 0

        async def aflush_serving_log(self) -> int:
            self.calls += 1
            if self.calls <= 3:
                raise ValueError("not a Redis error")
            return 0

    store = Flaky()

    async def go() -> None:
        task = asyncio.create_task(send_serving_log_forever(store, every=0.001))  # type: ignore[arg-type]
        while store.calls < 6 and not task.done():
            await asyncio.sleep(0.001)
        assert not task.done(), "the flush task died"
        task.cancel()

    with caplog.at_level("INFO", logger="feature_store.server"):
        asyncio.run(asyncio.wait_for(go(), 10))
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "ValueError: not a Redis error" in warnings[0].getMessage()
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_feature_service_and_reload_keep_requests_in_flight(built_project, redis_main, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(built_project, project, ignore=shutil.ignore_patterns("*.duckdb*", "logs"))
    server = ServerProcess(project, redis_main.url, tmp_path / "serve.log").start()
    try:
        request = {"feature_service": "server_test_model", "entities": {"user_id": [999_999_999]}}
        assert post(server, request).status_code == 422
        statuses: list[int] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                while not stop.is_set():
                    statuses.append(client.post("/get-online-features", content=orjson.dumps(
                        {"features": ORDER[:2], "entities": {"user_id": [1, 2]}})).status_code)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        manifest_path = project / "target" / "manifest.json"
        manifest = orjson.loads(manifest_path.read_bytes())
        manifest["exposures"]["exposure.feature_store.server_test_model"] = {
            "name": "server_test_model", "resource_type": "exposure", "type": "ml", "package_name": "feature_store",
            "unique_id": "exposure.feature_store.server_test_model", "owner": {"email": "ml@example.com"},
            "depends_on": {"nodes": ["model.feature_store.user_order_features"], "macros": []},
            "config": {"meta": {"feature_store": {"features": ORDER[:2]}}}}
        for _ in range(3):  # rewrite it a few times, as dbt does: each rewrite is a reload
            time.sleep(0.4)
            tmp = manifest_path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(manifest))
            tmp.replace(manifest_path)
        deadline = time.monotonic() + 10
        while (got := post(server, request)).status_code != 200:
            assert time.monotonic() < deadline, got.text
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join()
        assert got.json()["metadata"]["feature_names"] == ["user_id", "user_7d_orders", "user_lifetime_orders"]
        assert statuses and set(statuses) == {200}, f"requests failed during the reload: {set(statuses)}"
        catalogue = httpx.get(server.url + "/features").json()
        assert catalogue["feature_services"]["server_test_model"]["features"] == ORDER[:2]
        # a broken manifest keeps the registry there is, and says so
        manifest_path.write_text("{broken")
        deadline = time.monotonic() + 10
        while httpx.get(server.url + "/health").json()["registry"]["reload_error"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert post(server, request).status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
def test_cluster_and_sentinel_urls(topology, built_project, tmp_path, request):
    """The server reads through the same URL forms as the rest: a Redis Cluster, a master named by Sentinel."""
    if topology == "cluster":
        local = request.getfixturevalue("redis_cluster")
        local.flush()
    else:
        local = request.getfixturevalue("redis_sentinel")
    synced = fstore(built_project, local.url, "sync", "--quiet")
    assert synced.returncode == 0, synced.stderr
    registry = Registry.load(built_project)
    store = OnlineStore.for_registry(registry, url=local.url)
    server = ServerProcess(built_project, local.url, tmp_path / "serve.log").start()
    try:
        users = users_with_orders(registry, store, 10)
        refs = ORDER + ["user_txn_features:txn_amount_1h_sum"]
        got, want = same_answer(server, registry, store, refs, users + [999_999_999])
        assert got.status_code == 200, got.text
        assert as_columns(got.json()) == want
        assert httpx.get(server.url + "/health").json()["redis"]["status"] == "ok"
    finally:
        server.stop()
        store.close()


# -- push ---------------------------------------------------------------------------------------------


def txn_row(user: int, ts: datetime, velocity: int) -> dict:
    return {"user_id": user, "event_ts": ts.isoformat(), "txn_velocity_60s": velocity, "txn_amount_1h_sum": "12.50"}


def test_push_then_read(plain):
    user = 777_000_001
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    got = post(plain, {"view": "user_txn_features", "rows": [txn_row(user, now, 3)]}, path="/push")
    assert got.status_code == 200, got.text
    assert got.json()["rows"] == 1 and got.json()["result"]["written"] == 1
    read = as_columns(post(plain, {"features": ["user_txn_features"], "entities": {"user_id": [user]}}).json())
    assert read["txn_velocity_60s"][0] == [3] and read["txn_amount_1h_sum"][0] == ["12.50"]
    bad = post(plain, {"view": "user_txn_features", "rows": [txn_row(user, now, 4),
                                                              {**txn_row(user, now, 5), "txn_velocity_60s": "x"}]},
               path="/push")
    assert bad.status_code == 422 and bad.json()["row"] == 1 and bad.json()["field"] == "txn_velocity_60s"
    read = as_columns(post(plain, {"features": ["user_txn_features"], "entities": {"user_id": [user]}}).json())
    assert read["txn_velocity_60s"][0] == [3]  # nothing of the rejected push was written
    assert post(plain, {"view": "txn_features", "rows": [{"txn_id": 1}]}, path="/push").status_code == 422
    assert post(plain, {"view": "user_txn_features", "rows": []}, path="/push").status_code == 422


# -- soak ---------------------------------------------------------------------------------------------

SOAK_SECONDS = 60
RESTART_AT = 25
WARMUP = 8


def test_soak_mixed_reads_and_pushes_with_a_redis_restart(restartable, reader):
    """Concurrency 8 for SOAK_SECONDS: pushes of each client's own users and reads of them and of synced
    users; Redis restarted once. Every answer is right or a documented 503; nothing acknowledged is lost;
    the workers' memory stays flat."""
    redis, server, work = restartable
    registry, _ = reader
    store = OnlineStore.for_registry(registry, url=redis.url)
    synced = users_with_orders(registry, store, 40)
    snapshot = {u: expected(registry, store, ORDER, [u]) for u in synced}
    store.close()
    start = time.monotonic()
    deadline = start + SOAK_SECONDS
    restart_window: list[float] = []
    errors: list[str] = []
    counts = {"read": 0, "push": 0, "own": 0, "503": 0}
    acked: dict[int, tuple[datetime, int]] = {}  # user -> last acknowledged (event time, velocity)
    acked_all: set[tuple[int, int]] = set()
    attempted: dict[int, set[int]] = {}  # user -> every velocity pushed, acknowledged or not
    lock = threading.Lock()

    unavailable_at: list[float] = []

    def documented_503(response: httpx.Response) -> bool:
        if response.status_code != 503 or response.json()["code"] != "online_store_unavailable":
            return False
        with lock:
            counts["503"] += 1
            unavailable_at.append(time.monotonic())
        return True

    def client(w: int) -> None:
        rnd = random.Random(w)
        users = [980_000_000 + w * 100 + j for j in range(8)]
        velocity = w * 10_000_000
        last_ts: dict[int, datetime] = {}
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while time.monotonic() < deadline and not errors:
                op = rnd.random()
                try:
                    if op < 0.3:
                        user = rnd.choice(users)
                        velocity += 1
                        ts = max(datetime.now(timezone.utc).replace(tzinfo=None),
                                 last_ts.get(user, datetime.min) + timedelta(microseconds=1))
                        last_ts[user] = ts
                        with lock:
                            attempted.setdefault(user, set()).add(velocity)
                        r = http.post("/push", content=orjson.dumps(
                            {"view": "user_txn_features", "rows": [txn_row(user, ts, velocity)]}))
                        if r.status_code == 200:
                            with lock:
                                acked[user] = (ts, velocity)
                                acked_all.add((user, velocity))
                                counts["push"] += 1
                        elif not documented_503(r):
                            errors.append(f"push: {r.status_code} {r.text}")
                    elif op < 0.6:
                        user = rnd.choice(users)
                        with lock:
                            floor = acked.get(user)
                            tried = set(attempted.get(user, ()))
                        if floor is None:
                            continue
                        r = http.post("/get-online-features", content=orjson.dumps(
                            {"features": ["user_txn_features"], "entities": {"user_id": [user]}}))
                        if r.status_code == 200:
                            got = as_columns(r.json())["txn_velocity_60s"][0][0]
                            if got not in tried or got < floor[1]:
                                errors.append(f"user {user}: read velocity {got}, acknowledged {floor[1]}")
                            with lock:
                                counts["own"] += 1
                        elif not documented_503(r):
                            errors.append(f"read own: {r.status_code} {r.text}")
                    else:
                        ids = rnd.sample(synced, 3)
                        r = http.post("/get-online-features", content=orjson.dumps(
                            {"features": ORDER, "entities": {"user_id": ids}}))
                        if r.status_code == 200:
                            columns = as_columns(r.json())
                            for i, u in enumerate(ids):
                                want = snapshot[u]
                                if any(columns[n][0][i] != want[n][0][0] for n in want if n != "user_id"):
                                    errors.append(f"user {u}: {r.text} != {want}")
                            with lock:
                                counts["read"] += 1
                        elif not documented_503(r):
                            errors.append(f"read: {r.status_code} {r.text}")
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    time.sleep(WARMUP)
    rss_warm = server.workers_rss()
    time.sleep(max(0.0, start + RESTART_AT - time.monotonic()))
    restart_window.append(time.monotonic())
    redis.stop()
    time.sleep(0.5)
    redis.start()
    restart_window.append(time.monotonic())
    for t in threads:
        t.join(timeout=SOAK_SECONDS + 30)
    rss_end = server.workers_rss()
    print(f"soak: {counts}, 503s between {min(unavailable_at, default=0) - start:.1f}s and "
          f"{max(unavailable_at, default=0) - start:.1f}s (restart at {RESTART_AT}s), RSS {rss_warm / 2**20:.1f} MiB "
          f"after warm-up, {rss_end / 2**20:.1f} MiB at the end")
    assert not errors, errors[:5]
    assert counts["push"] > 100 and counts["read"] > 200 and counts["own"] > 100, counts
    assert rss_end <= 1.2 * rss_warm, f"RSS grew from {rss_warm:,} to {rss_end:,} bytes"
    # 503s only while Redis was away (and the moment it took the clients' connections to notice)
    assert all(restart_window[0] - 1 <= t <= restart_window[1] + 5 for t in unavailable_at)

    # nothing acknowledged was lost: online, each user holds its last acknowledged push or a later one...
    with httpx.Client(base_url=server.url, timeout=10) as http:
        users = sorted(acked)
        final = as_columns(http.post("/get-online-features", content=orjson.dumps(
            {"features": ["user_txn_features"], "entities": {"user_id": users}})).json())
    for i, user in enumerate(users):
        assert final["txn_velocity_60s"][0][i] >= acked[user][1]
    # ...and offline, every acknowledged row is in the landing files dbt reads
    landed = ds.dataset(work / "landing" / "user_txn_features", format="parquet", partitioning="hive").to_table(
        columns=["user_id", "txn_velocity_60s"]).to_pylist()
    have = {(r["user_id"], r["txn_velocity_60s"]) for r in landed}
    assert acked_all <= have
