"""Lineage and feature services: ML models as dbt exposures, checked, described, traced and served.

The registry half runs on the checked-in manifest (tests/fixtures/registry) with exposures,
sources and macros added the way dbt writes them; the rest runs on the example project as
dbt built it (its models/exposures.yml declares ``churn_model``), through ``fstore`` as a
user runs it, and through ``FeatureStore`` against a real sync into the session's Redis.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import re
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import orjson
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_dbt
from feature_store import FeatureStore
from feature_store.errors import (
    DefinitionError,
    EntityDataFrameError,
    FeatureStoreError,
    ManifestError,
    UnknownFeature,
    UnknownFeatureView,
)
from feature_store.online import get_online_features, get_online_features_async
from feature_store.registry import Consumer, DbtNode, FeatureService, Problem, Registry
from test_registry_corrupt import DELETE, json_paths, mutate, values

FIXTURE = Path(__file__).parent / "fixtures" / "registry"
BASE = orjson.loads((FIXTURE / "manifest.json").read_bytes())
PROJECT = yaml.safe_load((FIXTURE / "dbt_project.yml").read_text())
ENTITY_VARS = PROJECT["vars"]["feature_store:entities"]
FSTORE = str(Path(sys.executable).parent / "fstore")

UOF = "model.feature_store.user_order_features"
UTF = "model.feature_store.user_txn_features"
CHURN = "exposure.feature_store.churn_model"
CHURN_FEATURES = ["user_order_features:user_7d_orders", "user_order_features:user_lifetime_orders",
                  "user_order_features:user_avg_basket_30d", "user_txn_features:txn_amount_1h_sum"]
PIT = "macro.feature_store.point_in_time_join"


def exposure(name: str, features=None, depends_on=(UOF, UTF), type_: str = "ml", **extra) -> dict:
    """An exposure node as dbt 1.11 writes it into the manifest (meta mirrored from config.meta)."""
    meta = {} if features is None else {"feature_store": {"features": features}}
    return {
        "name": name, "resource_type": "exposure", "package_name": "feature_store", "path": "exposures.yml",
        "original_file_path": "models/exposures.yml", "unique_id": f"exposure.feature_store.{name}",
        "fqn": ["feature_store", name], "type": type_, "owner": {"name": "Growth ML", "email": "ml@example.com"},
        "description": f"The {name}.", "meta": meta, "tags": [], "config": {"enabled": True, "tags": [], "meta": meta},
        "depends_on": {"macros": [], "nodes": list(depends_on)}, **extra,
    }


def with_graph(manifest: dict) -> dict:
    """The fixture with what lineage reads besides the views: seeds, staging, a source, training sets, macros."""
    m = copy.deepcopy(manifest)

    def model(name, parents, macros=(), path="models/staging"):
        return {"name": name, "resource_type": "model", "package_name": "feature_store",
                "unique_id": f"model.feature_store.{name}", "original_file_path": f"{path}/{name}.sql",
                "config": {"meta": {}}, "depends_on": {"nodes": list(parents), "macros": list(macros)}}

    m["nodes"].update({
        "seed.feature_store.orders": {"name": "orders", "resource_type": "seed", "package_name": "feature_store",
                                      "unique_id": "seed.feature_store.orders", "original_file_path": "seeds/orders.csv",
                                      "depends_on": {"nodes": [], "macros": []}},
        "model.feature_store.stg_users": model("stg_users", ["source.feature_store.crm.users"]),
        "model.feature_store.stg_orders": model("stg_orders", ["seed.feature_store.orders",
                                                                "model.feature_store.stg_users"]),
        "model.feature_store.stg_transactions": model("stg_transactions", []),
        "model.feature_store.churn_training_set": model("churn_training_set", [UOF], [PIT], "models/training"),
        # Through a macro of the project's own that calls the join: still a training set.
        "model.feature_store.fraud_training_set": model("fraud_training_set", [UOF, UTF],
                                                        ["macro.feature_store.my_join"], "models/training"),
        "model.feature_store.order_report": model("order_report", [UOF], ["macro.dbt.run_query"], "models/marts"),
    })
    m["sources"] = {"source.feature_store.crm.users": {
        "name": "users", "source_name": "crm", "resource_type": "source", "package_name": "feature_store",
        "unique_id": "source.feature_store.crm.users", "original_file_path": "models/staging/_sources.yml"}}
    m["macros"] = {
        PIT: {"depends_on": {"macros": ["macro.feature_store.pit_sql"]}},
        "macro.feature_store.my_join": {"depends_on": {"macros": [PIT]}},
        "macro.dbt.run_query": {"depends_on": {"macros": []}},
    }
    m["exposures"] = {
        CHURN: exposure("churn_model", CHURN_FEATURES),
        "exposure.feature_store.orders_dashboard": exposure("orders_dashboard", depends_on=[UOF], type_="dashboard"),
    }
    return m


MANIFEST = with_graph(BASE)


def build(edit=None, manifest=MANIFEST) -> Registry:
    m = copy.deepcopy(manifest)
    if edit:
        edit(m)
    return Registry.from_manifest(m, copy.deepcopy(ENTITY_VARS), project_name="feature_store")


def exposures(m: dict) -> dict:
    return m["exposures"]


def add(m: dict, node: dict) -> None:
    m["exposures"][node["unique_id"]] = node


def problems_of(reg: Registry, name: str, problems: list[Problem] | None = None) -> list[Problem]:
    return [p for p in (reg.problems if problems is None else problems) if p.model == name]


# -- parsing ---------------------------------------------------------------------------------------


def test_an_ml_exposure_is_a_feature_service_keyed_by_name():
    reg = build()
    assert not reg.problems
    assert reg.feature_services == {"churn_model": FeatureService(
        name="churn_model", unique_id=CHURN, features=tuple(CHURN_FEATURES), depends_on=(UOF, UTF),
        owner="ml@example.com", description="The churn_model.", path="models/exposures.yml", type="ml",
        listed=True)}
    assert reg.feature_service("churn_model") == CHURN_FEATURES
    # A dashboard depending on a view is lineage, not a service.
    assert reg.graph["exposure.feature_store.orders_dashboard"].type == "dashboard"


def test_a_view_reference_means_all_its_features_as_they_are_now():
    reg = build(lambda m: add(m, exposure("fraud_model", ["user_txn_features", "user_order_features:user_7d_orders",
                                                          "user_txn_features:txn_velocity_60s"])))
    every = [f.ref for f in reg.view("user_txn_features").features]
    assert len(every) == 2 and reg.feature_service("fraud_model") == [*every, "user_order_features:user_7d_orders"]


def test_an_ml_exposure_listing_no_features_reads_its_views_and_is_told_to_list_them():
    reg = build(lambda m: add(m, exposure("fraud_model", depends_on=[UTF, "model.feature_store.stg_orders"])))
    service = reg.feature_services["fraud_model"]
    assert service.features == ("user_txn_features",) and not service.listed
    assert reg.feature_service("fraud_model") == [f.ref for f in reg.view("user_txn_features").features]
    [note] = problems_of(reg, "fraud_model")
    assert note.severity == "note" and note.where == "models/exposures.yml: meta.feature_store.features"
    assert "lists no features" in note.message and "user_txn_features:<feature>" in note.message
    # One depending on no feature view is no service at all.
    reg = build(lambda m: add(m, exposure("other_model", depends_on=["model.feature_store.stg_orders"])))
    assert "other_model" not in reg.feature_services and not problems_of(reg, "other_model")


def test_an_unknown_feature_service_has_a_did_you_mean():
    reg = build()
    with pytest.raises(UnknownFeature, match=r"no feature service 'churn_modle'; did you mean 'churn_model'\?; .*"
                                              r"known: churn_model"):
        reg.feature_service("churn_modle")


def test_a_service_naming_a_missing_feature_fails_when_resolved_naming_its_file():
    reg = build(lambda m: exposures(m)[CHURN]["config"]["meta"]["feature_store"].update(
        features=["user_order_features:nope"]))
    with pytest.raises(UnknownFeature, match=r"feature service churn_model \(models/exposures.yml\): .*'nope'"):
        reg.feature_service("churn_model")


def test_features_and_feature_service_are_exclusive():
    reg = build()
    with pytest.raises(EntityDataFrameError, match="not both"):
        reg.requested_features(["user_order_features"], "churn_model")
    with pytest.raises(EntityDataFrameError, match="no features requested; .*feature_service="):
        reg.requested_features(None, None)
    assert reg.requested_features("user_txn_features", None) == ["user_txn_features"]
    assert reg.requested_features(None, "churn_model") == CHURN_FEATURES


def meta(m: dict) -> dict:
    return exposures(m)[CHURN]["config"]


@pytest.mark.parametrize("edit,where,says", [
    (lambda m: meta(m)["meta"]["feature_store"].update(features=5), "meta.feature_store.features",
     "must be a list of feature references"),
    (lambda m: meta(m)["meta"]["feature_store"].update(features=[["user_txn_features"]]),
     "meta.feature_store.features", "must be a list of feature references"),
    (lambda m: meta(m)["meta"]["feature_store"].update(features=[]), "meta.feature_store.features", "missing"),
    (lambda m: meta(m)["meta"].update(feature_store="user_txn_features"), "meta.feature_store",
     "must be a mapping such as {features: [view:feature, ...]}"),
    (lambda m: meta(m)["meta"]["feature_store"].update(featrues=[]), "meta.feature_store.featrues",
     "unknown key; did you mean 'features'?"),
    (lambda m: meta(m).update(meta=["x"]), "config.meta", "must be a mapping"),
    (lambda m: exposures(m)[CHURN].update(owner="ml@example.com"), "owner", "must be a mapping"),
    (lambda m: exposures(m)[CHURN].update(owner={"email": 5}), "owner.email", "must be text"),
    (lambda m: exposures(m)[CHURN].update(depends_on=[UOF]), "depends_on", "must be a mapping"),
    (lambda m: exposures(m)[CHURN].update(description=["x"]), "description", "must be text"),
    (lambda m: meta(m)["meta"]["feature_store"].update(features=["user_order_features:user_7d_order"]),
     "meta.feature_store.features", "has no feature 'user_7d_order'; did you mean 'user_7d_orders'?"),
    (lambda m: meta(m)["meta"]["feature_store"].update(features=["user_ordr_features"]),
     "meta.feature_store.features", "no feature view 'user_ordr_features'; did you mean 'user_order_features'?"),
    (lambda m: meta(m)["meta"]["feature_store"].update(features=["user_order_features:"]),
     "meta.feature_store.features", "names no feature; write user_order_features:<feature>"),
])
def test_a_corrupt_or_mistyped_exposure_is_a_definition_error_naming_file_and_key(tmp_path, edit, where, says):
    m = copy.deepcopy(MANIFEST)
    edit(m)
    write_project(tmp_path, m)
    with pytest.raises(DefinitionError) as info:
        Registry.load(tmp_path, strict=True)
    [p] = info.value.problems
    assert (p.model, p.where) == ("churn_model", f"models/exposures.yml: {where}")
    assert says in p.message
    assert f"churn_model: models/exposures.yml: {where}: " in str(info.value)
    # The views still load, and so does every other service.
    assert set(Registry.load(tmp_path).views) == {"txn_features", "user_order_features", "user_txn_features"}


@pytest.mark.parametrize("edit,key", [
    (lambda m: m.update(exposures=[]), "exposures must be a mapping"),
    (lambda m: m.update(sources="x"), "sources must be a mapping"),
    (lambda m: m.update(macros=5), "macros must be a mapping"),
])
def test_a_corrupt_section_is_a_manifest_error_naming_file_and_key(tmp_path, edit, key):
    m = copy.deepcopy(MANIFEST)
    edit(m)
    write_project(tmp_path, m)
    with pytest.raises(ManifestError) as info:
        Registry.load(tmp_path)
    assert str(tmp_path / "target" / "manifest.json") in str(info.value) and key in str(info.value)


def test_an_exposure_that_is_not_a_mapping_names_the_manifest_and_key():
    reg = build(lambda m: exposures(m).update({CHURN: "oops"}))
    [p] = reg.errors()
    assert p.model.endswith("manifest.json") and p.where == f"exposures.{CHURN}"


def write_project(root: Path, manifest: dict) -> None:
    (root / "target").mkdir(exist_ok=True)
    (root / "dbt_project.yml").write_text(yaml.safe_dump(PROJECT))
    (root / "target" / "manifest.json").write_bytes(orjson.dumps(manifest))


# -- validation ------------------------------------------------------------------------------------


LEGACY = "user_order_features:user_avg_basket_30d_legacy"  # tombstone 2026-12-31 in the fixture


def test_a_service_using_a_view_it_does_not_depend_on_is_a_warning():
    reg = build(lambda m: exposures(m)[CHURN]["depends_on"].update(nodes=[UOF]))
    [p] = problems_of(reg, "churn_model")
    assert p.severity == "warning" and p.where == "models/exposures.yml: meta.feature_store.features"
    assert "uses user_txn_features but does not depend_on it; add ref('user_txn_features')" in p.message


def test_a_service_whose_features_share_a_name_is_warned_about_full_feature_names():
    reg = build(lambda m: add(m, exposure("twins", ["user_order_features:user_7d_orders"])))
    assert not problems_of(reg, "twins")
    m = copy.deepcopy(MANIFEST)
    m["nodes"][UTF]["columns"]["user_7d_orders"] = {"name": "user_7d_orders", "data_type": "bigint"}
    add(m, exposure("twins", ["user_order_features:user_7d_orders", "user_txn_features:user_7d_orders"]))
    reg = build(manifest=m)
    [p] = problems_of(reg, "twins")
    assert p.severity == "warning" and "full_feature_names=True" in p.message


def test_a_feature_past_its_tombstone_fails_validate_but_not_loading():
    reg = build(lambda m: add(m, exposure("old_model", [LEGACY, "user_order_features:user_7d_orders"])))
    assert not reg.errors() and not problems_of(reg, "old_model")  # strict loading and serving go on
    [p] = problems_of(reg, "old_model", reg.validate(today=date(2026, 12, 31)))
    assert p.severity == "error" and p.where == "models/exposures.yml: meta.feature_store.features"
    assert p.message == (f"uses {LEGACY}, which reached its tombstone on 2026-12-31 and is due for removal; move "
                         "the model off it: remove it from meta.feature_store.features and use user_avg_basket_30d")
    [p] = problems_of(reg, "old_model", reg.validate(today=date(2026, 12, 1)))
    assert p.severity == "warning" and "deprecated with tombstone 2026-12-31 (30 days left)" in p.message
    assert reg.validate(today=date(2026, 12, 1))[:len(reg.problems)] == reg.problems


def test_a_whole_view_holding_a_tombstoned_feature_is_told_to_list_its_features():
    reg = build(lambda m: add(m, exposure("all_orders", ["user_order_features"], depends_on=[UOF])))
    [p] = problems_of(reg, "all_orders", reg.validate(today=date(2027, 1, 1)))
    assert p.severity == "error" and "list the features the model uses instead of all of user_order_features" in p.message


def test_validate_defaults_to_today(monkeypatch):
    reg = build(lambda m: add(m, exposure("old_model", [LEGACY])))
    tombstone = date.fromisoformat(reg.view("user_order_features").feature("user_avg_basket_30d_legacy").deprecated)
    severity = "error" if datetime.now(timezone.utc).date() >= tombstone else "warning"
    assert [p.severity for p in problems_of(reg, "old_model", reg.validate())] == [severity]


# -- describe and lineage in the registry ----------------------------------------------------------


def test_consumers_of_a_view_and_of_one_feature():
    reg = build()
    churn = Consumer("churn_model", CHURN, "ml", "ml@example.com", "models/exposures.yml",
                     ("user_7d_orders", "user_lifetime_orders", "user_avg_basket_30d"), True)
    dashboard = Consumer("orders_dashboard", "exposure.feature_store.orders_dashboard", "dashboard",
                         "ml@example.com", "models/exposures.yml", (), False)
    assert reg.consumers("user_order_features") == [churn, dashboard]
    assert reg.consumers("user_order_features", "user_7d_orders") == [
        dataclasses.replace(churn, features=("user_7d_orders",)), dashboard]
    # churn_model lists other features of the view: it does not use this one; the dashboard reads the table.
    assert reg.consumers("user_order_features", "last_order_ts") == [dashboard]
    assert reg.consumers("txn_features") == []
    with pytest.raises(UnknownFeature, match="did you mean 'user_7d_orders'"):
        reg.consumers("user_order_features", "user_7d_order")


def test_lineage_walks_from_the_sources_to_the_models_using_the_feature():
    reg = build()
    lin = reg.lineage("user_order_features:user_7d_orders")
    assert [f.ref for f in lin.features] == ["user_order_features:user_7d_orders"]
    assert [(n.resource_type, n.name) for n in lin.sources] == [("source", "crm.users"), ("seed", "orders")]
    # each model after what it reads, the view last
    assert [n.name for n in lin.models] == ["stg_users", "stg_orders", "user_order_features"]
    assert [n.name for n in lin.training_sets] == ["churn_training_set", "fraud_training_set"]
    assert [c.name for c in lin.exposures] == ["churn_model", "orders_dashboard"]
    data = lin.to_dict()
    assert data["models"][-1] == {"name": "user_order_features", "resource_type": "model", "unique_id": UOF,
                                  "path": "", "feature_view": True}
    assert data["features"][0]["data_type"] == "bigint"
    orjson.dumps(data)


def test_lineage_of_a_view_and_of_unknown_names():
    reg = build()
    lin = reg.lineage("user_txn_features")
    assert sorted(f.name for f in lin.features) == ["txn_amount_1h_sum", "txn_velocity_60s"]
    assert [n.name for n in lin.training_sets] == ["fraud_training_set"]
    assert [(c.name, c.features) for c in lin.exposures] == [("churn_model", ("txn_amount_1h_sum",))]
    with pytest.raises(UnknownFeatureView, match="did you mean 'user_txn_features'"):
        reg.lineage("user_txn_feature:txn_velocity_60s")
    with pytest.raises(UnknownFeature, match="did you mean 'txn_velocity_60s'"):
        reg.lineage("user_txn_features:txn_velocity_60")


# A corrupt manifest around exposures never crashes the registry, validate, describe or lineage.
GRAPH_PATHS = [p for p in json_paths(MANIFEST) if p[:1] in (("exposures",), ("sources",), ("macros",))
               or p[:2] in (("nodes", "model.feature_store.fraud_training_set"),
                            ("nodes", "model.feature_store.stg_orders"))]


@settings(max_examples=200, deadline=None)
@given(changes=st.lists(st.tuples(st.sampled_from(GRAPH_PATHS), st.one_of(st.just(DELETE), values)),
                        min_size=1, max_size=3))
def test_a_corrupt_exposure_or_graph_raises_only_our_errors(changes):
    try:
        reg = Registry.from_manifest(mutate(MANIFEST, changes), copy.deepcopy(ENTITY_VARS),
                                     project_name="feature_store")
    except FeatureStoreError as exc:
        assert isinstance(exc, ManifestError) and "manifest.json" in str(exc)
        return
    for p in reg.validate(today=date(2027, 1, 1)):
        assert isinstance(p.model, str) and isinstance(p.where, str) and isinstance(p.message, str)
    for name, service in reg.feature_services.items():
        assert isinstance(service, FeatureService) and name == service.name
        assert all(isinstance(r, str) for r in (*service.features, *service.depends_on))
        assert service.owner is None or isinstance(service.owner, str)
        try:
            assert all(isinstance(r, str) for r in reg.feature_service(name))
        except (UnknownFeature, UnknownFeatureView):
            assert reg.errors()
    assert all(isinstance(n, DbtNode) for n in reg.graph.values())
    for view in reg.views:
        orjson.dumps(reg.lineage(view).to_dict())
        orjson.dumps([c.to_dict() for c in reg.consumers(view)])


# -- through fstore, on the example as dbt built it ------------------------------------------------


def fstore(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FSTORE, *args, "--project-dir", str(project)], capture_output=True, text=True)


def test_the_example_declares_churn_model_and_validates_clean(built_project):
    proc = fstore(built_project, "validate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(0 errors, 0 warnings/notes)" in proc.stdout
    reg = Registry.load(built_project)
    assert reg.feature_service("churn_model") == CHURN_FEATURES
    assert reg.feature_services["churn_model"].owner == "growth-ml@example.com"


def test_describe_shows_the_models_using_the_view(built_project):
    proc = fstore(built_project, "describe", "user_order_features")
    assert proc.returncode == 0, proc.stderr
    assert ("used by:    churn_model (ml exposure, growth-ml@example.com): uses user_7d_orders, "
            "user_lifetime_orders, user_avg_basket_30d") in proc.stdout
    data = json.loads(fstore(built_project, "describe", "user_txn_features", "--json").stdout)
    assert data["used_by"] == [{"name": "churn_model", "unique_id": CHURN, "type": "ml",
                                "owner": "growth-ml@example.com", "path": "models/exposures.yml",
                                "features": ["txn_amount_1h_sum"], "listed": True}]
    assert data["view"] == "user_txn_features"  # the rest of describe --json is unchanged
    assert "used by:    -" in fstore(built_project, "describe", "txn_features").stdout


def test_lineage_prints_the_chain_from_sources_to_models(built_project):
    proc = fstore(built_project, "lineage", "user_order_features:user_7d_orders")
    assert proc.returncode == 0, proc.stderr
    lines = [" ".join(line.split()) for line in proc.stdout.splitlines()]
    assert lines == [
        "Lineage of user_order_features:user_7d_orders",
        "1. sources",
        "seed orders seeds/orders.csv",
        "2. models, from the sources to the view",
        "model stg_orders models/staging/stg_orders.sql",
        "feature view user_order_features models/features/user_order_features.sql",
        "3. feature",
        "user_order_features:user_7d_orders bigint Completed orders in the 7 days before event_ts (UTC days).",
        "4. used by",
        "training set churn_training_set models/training/churn_training_set.sql joins the view",
        "training set fraud_training_set models/training/fraud_training_set.sql joins the view",
        "ml exposure churn_model models/exposures.yml uses user_7d_orders; owner growth-ml@example.com",
    ]


def test_lineage_json_gives_the_same_chain(built_project):
    proc = fstore(built_project, "lineage", "user_txn_features:txn_amount_1h_sum", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["view"] == "user_txn_features"
    assert [(n["resource_type"], n["name"], n["path"]) for n in data["sources"]] == [
        ("seed", "transactions", "seeds/transactions.csv")]
    assert [(n["name"], n["feature_view"]) for n in data["models"]] == [
        ("stg_transactions", False), ("user_txn_features", True)]
    assert data["features"] == [{
        "feature": "user_txn_features:txn_amount_1h_sum", "data_type": "decimal(18,2)",
        "description": "Total amount of the user's transactions in [event_ts - 1 h, event_ts], this one included.",
        "deprecated": None, "replaced_by": None}]
    assert [n["name"] for n in data["training_sets"]] == ["fraud_training_set"]
    assert [(c["name"], c["features"]) for c in data["exposures"]] == [("churn_model", ["txn_amount_1h_sum"])]
    # A whole view: every feature of it, and the text form shows the same nodes.
    text = fstore(built_project, "lineage", "user_txn_features").stdout
    assert "3. features" in text and "txn_velocity_60s" in text and "[event_ts - 60 s, event_ts]" in text


def test_lineage_of_an_unknown_feature_is_one_line_with_a_did_you_mean(built_project):
    proc = fstore(built_project, "lineage", "user_order_features:user_7d_order")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "has no feature 'user_7d_order'; did you mean 'user_7d_orders'?" in proc.stderr


BROKEN_EXPOSURES = """
version: 2
exposures:
  - name: retired_model
    type: ml
    owner: {email: old@example.com}
    depends_on: [ref('user_order_features')]
    config:
      meta:
        feature_store:
          features: [user_order_features:user_avg_basket_30d_legacy, user_order_features:user_7d_order]
  - name: sloppy_model
    type: ml
    owner: {email: sloppy@example.com}
    depends_on: [ref('user_order_features')]
    config:
      meta:
        feature_store:
          features: [user_order_features:user_7d_orders, txn_features:txn_amount]
"""


def test_validate_fails_on_a_missing_or_tombstoned_feature_and_warns_on_an_undeclared_view(project_copy):
    # The legacy feature's tombstone moved into the past, so the result does not depend on the clock.
    features = project_copy / "models" / "features" / "_features.yml"
    text = features.read_text()
    assert 'deprecated: "2026-12-31"' in text
    features.write_text(text.replace('deprecated: "2026-12-31"', 'deprecated: "2001-01-01"'))
    (project_copy / "models" / "more_exposures.yml").write_text(BROKEN_EXPOSURES)
    run_dbt(project_copy, "parse")
    proc = fstore(project_copy, "validate")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = {line for line in proc.stdout.splitlines() if "_model:" in line}
    where = "models/more_exposures.yml: meta.feature_store.features"
    assert lines == {
        f"error: retired_model: {where}: 'user_order_features:user_7d_order': feature view user_order_features has "
        "no feature 'user_7d_order'; did you mean 'user_7d_orders'? (its features: user_7d_orders, "
        "user_lifetime_orders, user_avg_basket_30d, user_avg_basket_30d_legacy, last_order_ts)",
        f"warning: sloppy_model: {where}: uses txn_features but does not depend_on it; add ref('txn_features') to "
        "the exposure's depends_on so dbt's lineage (and `fstore describe`) show the model reading it",
        f"error: retired_model: {where}: uses user_order_features:user_avg_basket_30d_legacy, which reached its "
        "tombstone on 2001-01-01 and is due for removal; move the model off it: remove it from "
        "meta.feature_store.features and use user_avg_basket_30d",
    }
    assert "invalid (2 errors, 1 warnings/notes)" in proc.stdout
    problems = json.loads(fstore(project_copy, "validate", "--json").stdout)
    assert sorted((p["severity"], p["model"]) for p in problems if p["model"].endswith("_model")) == [
        ("error", "retired_model"), ("error", "retired_model"), ("warning", "sloppy_model")]


# -- feature services served, offline and online --------------------------------------------------


@pytest.fixture(scope="module")
def live_user(built_project) -> tuple[int, object, int]:
    """A user whose user_order_features row is the latest one: the user, its event time and lifetime orders."""
    con = duckdb.connect(str(built_project / "feature_store.duckdb"), read_only=True)
    try:
        return con.execute("select user_id, event_ts, user_lifetime_orders from user_order_features "
                           "order by event_ts desc, user_id limit 1").fetchone()
    finally:
        con.close()


def test_get_historical_features_takes_a_feature_service(built_project, live_user):
    store = FeatureStore(project_dir=built_project)
    uid, ts, lifetime = live_user
    spine = pd.DataFrame({"user_id": [uid, 999_999_999], "label_ts": [ts, ts]})
    by_service = store.get_historical_features(spine, feature_service="churn_model",
                                               timestamp_column="label_ts").to_df()
    by_refs = store.get_historical_features(spine, CHURN_FEATURES, timestamp_column="label_ts").to_df()
    assert list(by_service.columns) == ["user_id", "label_ts", "user_7d_orders", "user_lifetime_orders",
                                        "user_avg_basket_30d", "txn_amount_1h_sum"]
    pd.testing.assert_frame_equal(by_service, by_refs)
    assert by_service["user_lifetime_orders"][0] == lifetime
    with pytest.raises(EntityDataFrameError, match="not both"):
        store.get_historical_features(spine, CHURN_FEATURES, timestamp_column="label_ts",
                                      feature_service="churn_model")
    with pytest.raises(UnknownFeature, match="did you mean 'churn_model'"):
        store.get_historical_features(spine, feature_service="churn", timestamp_column="label_ts")


def test_get_online_features_takes_a_feature_service_after_a_real_sync(built_project, live_user, redis_url):
    store = FeatureStore(project_dir=built_project, redis_url=redis_url)
    report = store.materialize()
    assert report.ok and set(report.views) >= {"user_order_features", "user_txn_features"}
    uid, _, lifetime = live_user
    rows = [{"user_id": uid}, {"user_id": 999_999_999}]
    by_service = store.get_online_features(feature_service="churn_model", entity_rows=rows)
    by_refs = store.get_online_features(CHURN_FEATURES, rows)
    assert by_service.to_dict(include_status=True) == by_refs.to_dict(include_status=True)
    got = by_service.to_dict()
    assert list(got) == ["user_id", "user_7d_orders", "user_lifetime_orders", "user_avg_basket_30d",
                         "txn_amount_1h_sum"]
    assert got["user_lifetime_orders"] == [lifetime, 0]  # the unknown user's missing value imputes 0
    # The module-level reads, sync and async, take it too.
    reg, online = store.registry, store.online_store
    assert get_online_features(reg, online, entity_rows=rows, feature_service="churn_model").to_dict() == got
    assert asyncio.run(get_online_features_async(reg, online, entity_rows=rows,
                                                 feature_service="churn_model")).to_dict() == got
    with pytest.raises(EntityDataFrameError, match="not both"):
        store.get_online_features(CHURN_FEATURES, rows, feature_service="churn_model")
    with pytest.raises(EntityDataFrameError, match="no features requested"):
        store.get_online_features(entity_rows=rows)
    with pytest.raises(EntityDataFrameError, match="no entity_rows"):
        store.get_online_features(feature_service="churn_model")
    with pytest.raises(UnknownFeature, match=re.escape("no feature service 'churn_modl'; did you mean 'churn_model'?")):
        store.get_online_features(feature_service="churn_modl", entity_rows=rows)
    assert store.get_feature_service("churn_model") == CHURN_FEATURES
