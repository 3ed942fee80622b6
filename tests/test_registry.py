"""Unit tests of the registry on a small checked-in manifest (no dbt run needed).

The fixture is the example project's manifest cut down to its feature views:
regenerate it with `python tests/fixtures/registry/make_fixture.py` after changing
the example views.
"""

from __future__ import annotations

import copy
import os
import time
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import yaml

from feature_store.errors import DefinitionError, ManifestMissing, UnknownFeature, UnknownFeatureView
from feature_store.registry import Fallback, Registry, format_duration, parse_duration, type_kind

FIXTURE = Path(__file__).parent / "fixtures" / "registry"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return orjson.loads((FIXTURE / "manifest.json").read_bytes())


@pytest.fixture(scope="module")
def entity_vars() -> dict:
    project = yaml.safe_load((FIXTURE / "dbt_project.yml").read_text())
    return project["vars"]["feature_store"]["entities"]


def build(manifest, entity_vars, edit=None) -> Registry:
    m = copy.deepcopy(manifest)
    if edit:
        edit(m)
    return Registry.from_manifest(m, copy.deepcopy(entity_vars), project_name="feature_store")


def node(m: dict, name: str) -> dict:
    return m["nodes"][f"model.feature_store.{name}"]


def view_meta(m: dict, name: str) -> dict:
    return node(m, name)["config"]["meta"]["feature_store"]


def only(problems, severity="error"):
    return [p for p in problems if p.severity == severity]


def test_loads_the_example_views(manifest, entity_vars):
    reg = build(manifest, entity_vars)
    assert not reg.errors(), reg.errors()
    assert set(reg.views) == {"user_order_features", "user_txn_features", "txn_features"}
    assert reg.entities["user"].join_keys == ("user_id",)
    assert reg.entities["user"].join_key_types == {"user_id": "bigint"}
    uof = reg.view("user_order_features")
    assert uof.entities == ("user",) and uof.join_keys == ("user_id",)
    assert uof.timestamp == "event_ts" and uof.created_timestamp == "computed_at"
    assert uof.ttl == timedelta(days=2) and uof.online is True
    assert uof.owner and uof.tags and uof.freshness_sla == timedelta(hours=26)
    assert uof.relation.endswith('"user_order_features"')
    assert uof.unique_id == "model.feature_store.user_order_features"
    names = uof.feature_names
    assert "user_id" not in names and "event_ts" not in names and "computed_at" not in names
    assert uof.feature("user_7d_orders").fallback == Fallback("impute", 0)
    assert uof.feature("user_7d_orders").kind == "int"
    assert uof.feature("user_avg_basket_30d").kind == "float"
    assert uof.feature("last_order_ts").kind == "timestamp"
    legacy = uof.feature("user_avg_basket_30d_legacy")
    assert legacy.deprecated == "2026-12-31" and legacy.replaced_by == "user_avg_basket_30d"
    assert any(u.startswith("model.feature_store.stg_") for u in uof.upstream)
    txn = reg.view("user_txn_features")
    assert txn.feature("txn_velocity_60s").fallback == Fallback("gate")
    assert txn.ttl == timedelta(minutes=10)


def test_config_meta_wins_over_top_level_meta(manifest, entity_vars):
    def edit(m):
        n = node(m, "user_order_features")
        n["meta"] = {"feature_store": {**view_meta(m, "user_order_features"), "ttl": "9d"}}
    assert build(manifest, entity_vars, edit).view("user_order_features").ttl == timedelta(days=2)

    def only_top_level(m):
        n = node(m, "user_order_features")
        n["meta"] = {"feature_store": {**view_meta(m, "user_order_features"), "ttl": "9d"}}
        n["config"]["meta"] = {}
    assert build(manifest, entity_vars, only_top_level).view("user_order_features").ttl == timedelta(days=9)


def test_unknown_entity_has_did_you_mean(manifest, entity_vars):
    reg = build(manifest, entity_vars, lambda m: view_meta(m, "user_txn_features").update(entities=["usr"]))
    [p] = only(reg.problems)
    assert p.model == "user_txn_features" and p.where == "meta.feature_store.entities"
    assert "'usr'" in p.message and "did you mean 'user'" in p.message


def test_missing_entities(manifest, entity_vars):
    reg = build(manifest, entity_vars, lambda m: view_meta(m, "txn_features").pop("entities"))
    [p] = only(reg.problems)
    assert (p.model, p.where) == ("txn_features", "meta.feature_store.entities") and "missing" in p.message


def test_join_key_column_missing(manifest, entity_vars):
    reg = build(manifest, entity_vars, lambda m: node(m, "txn_features")["columns"].pop("txn_id"))
    [p] = only(reg.problems)
    assert (p.model, p.where) == ("txn_features", "column txn_id") and "join key" in p.message


def test_join_key_types_differ_between_views(manifest, entity_vars):
    reg = build(manifest, entity_vars,
                lambda m: node(m, "user_txn_features")["columns"]["user_id"].update(data_type="varchar"))
    [p] = only(reg.problems)
    assert p.where == "column user_id" and "varchar" in p.message and "bigint" in p.message
    assert {p.model} | {w for w in ("user_order_features", "user_txn_features") if w in p.message} == {
        "user_order_features", "user_txn_features"}


def test_missing_timestamp(manifest, entity_vars):
    reg = build(manifest, entity_vars, lambda m: view_meta(m, "user_txn_features").pop("timestamp"))
    [p] = only(reg.problems)
    assert (p.model, p.where) == ("user_txn_features", "meta.feature_store.timestamp") and "missing" in p.message


def test_timestamp_column_not_declared(manifest, entity_vars):
    reg = build(manifest, entity_vars, lambda m: view_meta(m, "user_txn_features").update(timestamp="event_time"))
    [p] = only(reg.problems)
    assert "'event_time'" in p.message and "did you mean 'event_ts'" in p.message


@pytest.mark.parametrize("value,hint", [("2 days", "2d"), ("10 minutes", "10m"), ("forever", "<int><unit>")])
def test_unparseable_ttl_says_how_to_write_it(manifest, entity_vars, value, hint):
    reg = build(manifest, entity_vars, lambda m: view_meta(m, "user_order_features").update(ttl=value))
    [p] = only(reg.problems)
    assert (p.model, p.where) == ("user_order_features", "meta.feature_store.ttl")
    assert repr(value) in p.message and hint in p.message


def test_unparseable_freshness_sla(manifest, entity_vars):
    reg = build(manifest, entity_vars, lambda m: view_meta(m, "user_order_features").update(freshness_sla="1 day"))
    [p] = only(reg.problems)
    assert p.where == "meta.feature_store.freshness_sla" and "1d" in p.message


def test_missing_owner(manifest, entity_vars):
    reg = build(manifest, entity_vars, lambda m: view_meta(m, "txn_features").pop("owner"))
    [p] = only(reg.problems)
    assert (p.model, p.where) == ("txn_features", "meta.feature_store.owner")


def test_data_type_missing(manifest, entity_vars):
    reg = build(manifest, entity_vars,
                lambda m: node(m, "user_order_features")["columns"]["user_lifetime_orders"].pop("data_type"))
    [p] = only(reg.problems)
    assert (p.model, p.where) == ("user_order_features", "column user_lifetime_orders")
    assert "data_type" in p.message


def test_impute_value_of_the_wrong_type(manifest, entity_vars):
    def edit(m):
        col = node(m, "user_order_features")["columns"]["user_7d_orders"]
        col["config"]["meta"]["feature_store"]["fallback"] = {"impute": "zero"}
    [p] = only(build(manifest, entity_vars, edit).problems)
    assert p.model == "user_order_features"
    assert p.where == "column user_7d_orders: meta.feature_store.fallback.impute"
    assert "'zero'" in p.message and "bigint" in p.message


def test_bad_fallback_spelling(manifest, entity_vars):
    def edit(m):
        col = node(m, "user_txn_features")["columns"]["txn_velocity_60s"]
        col["config"]["meta"]["feature_store"]["fallback"] = "required"
    [p] = only(build(manifest, entity_vars, edit).problems)
    assert "'required'" in p.message and "fallback: gate" in p.message


def test_unknown_meta_key_has_did_you_mean(manifest, entity_vars):
    def edit(m):
        meta = view_meta(m, "user_order_features")
        meta["tll"] = meta.pop("ttl")
    [p] = only(build(manifest, entity_vars, edit).problems)
    assert (p.model, p.where) == ("user_order_features", "meta.feature_store.tll")
    assert "did you mean 'ttl'" in p.message


def test_unknown_column_meta_key(manifest, entity_vars):
    def edit(m):
        col = node(m, "user_order_features")["columns"]["user_7d_orders"]
        col["config"]["meta"]["feature_store"]["falback"] = "gate"
    [p] = only(build(manifest, entity_vars, edit).problems)
    assert "falback" in p.where and "did you mean 'fallback'" in p.message


def test_online_view_without_ttl_is_a_warning(manifest, entity_vars):
    reg = build(manifest, entity_vars, lambda m: view_meta(m, "user_order_features").pop("ttl"))
    assert not reg.errors()
    [w] = only(reg.problems, "warning")
    assert (w.model, w.where) == ("user_order_features", "meta.feature_store.ttl") and "online" in w.message


def test_duplicate_feature_names_are_a_note(manifest, entity_vars):
    def edit(m):
        cols = node(m, "txn_features")["columns"]
        cols["user_7d_orders"] = {**cols["txn_amount"], "name": "user_7d_orders"}
    reg = build(manifest, entity_vars, edit)
    assert not reg.errors()
    [n] = only(reg.problems, "note")
    assert n.where == "feature user_7d_orders" and "full_feature_names" in n.message


def test_every_problem_is_reported_at_once(manifest, entity_vars):
    def edit(m):
        view_meta(m, "user_order_features").update(ttl="2 days")
        view_meta(m, "txn_features").pop("owner")
        view_meta(m, "user_txn_features").update(entities=["usr"])
    reg = build(manifest, entity_vars, edit)
    assert {p.model for p in reg.errors()} == {"user_order_features", "txn_features", "user_txn_features"}
    with pytest.raises(DefinitionError) as info:
        raise DefinitionError(reg.errors())
    assert str(info.value).count("\n  - ") == 3


def test_resolve_references(manifest, entity_vars):
    reg = build(manifest, entity_vars)
    feats = reg.resolve(["user_txn_features", "user_order_features:user_7d_orders", "user_txn_features"])
    assert [f.ref for f in feats] == [
        *(f"user_txn_features:{n}" for n in reg.view("user_txn_features").feature_names),
        "user_order_features:user_7d_orders",
    ]
    with pytest.raises(UnknownFeatureView, match="did you mean 'user_order_features'"):
        reg.resolve(["user_ordr_features"])
    with pytest.raises(UnknownFeature, match="did you mean 'user_7d_orders'"):
        reg.resolve(["user_order_features:user_7d_order"])


def test_missing_manifest_says_run_dbt_parse(tmp_path):
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: p\n")
    with pytest.raises(ManifestMissing, match="dbt parse"):
        Registry.load(tmp_path)


def test_stale_manifest_is_detected(tmp_path):
    (tmp_path / "dbt_project.yml").write_text((FIXTURE / "dbt_project.yml").read_text())
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "manifest.json").write_bytes((FIXTURE / "manifest.json").read_bytes())
    (tmp_path / "models").mkdir()
    model = tmp_path / "models" / "new_view.sql"
    model.write_text("select 1")
    old = time.time() - 60
    os.utime(tmp_path / "target" / "manifest.json", (old, old))
    os.utime(tmp_path / "dbt_project.yml", (old - 10, old - 10))
    reg = Registry.load(tmp_path)
    assert reg.stale_files() == [model]


def test_durations_round_trip():
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("10m") == timedelta(minutes=10)
    assert parse_duration("3w") == timedelta(weeks=3)
    for text in ("2d", "10m", "26h", "45s", "3w"):
        assert format_duration(parse_duration(text)) == text
    for bad in ("2", "d", "-1d", "1.5h", "2y", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize("dtype,kind", [
    ("bigint", "int"), ("INTEGER", "int"), ("double", "float"), ("decimal(12,2)", "decimal"),
    ("varchar", "string"), ("boolean", "bool"), ("timestamp", "timestamp"), ("date", "date"),
    ("timestamp with time zone", "timestamp"), ("struct(a int)", None), (None, None),
])
def test_type_kinds(dtype, kind):
    assert type_kind(dtype) == kind


def test_public_api_is_complete():
    import feature_store

    public = {n for n in dir(feature_store) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(feature_store.__all__)
    for name in feature_store.__all__:
        assert hasattr(feature_store, name)
