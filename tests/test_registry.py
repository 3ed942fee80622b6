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

from feature_store import codec
from feature_store.errors import DefinitionError, ManifestMissing, UnknownFeature, UnknownFeatureView
from feature_store.registry import (
    RESERVED_PREFIX,
    SPINE_RELATION,
    SPINE_ROW,
    SPINE_TS,
    Fallback,
    Registry,
    format_duration,
    parse_duration,
    type_kind,
)

FIXTURE = Path(__file__).parent / "fixtures" / "registry"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return orjson.loads((FIXTURE / "manifest.json").read_bytes())


@pytest.fixture(scope="module")
def entity_vars() -> dict:
    project = yaml.safe_load((FIXTURE / "dbt_project.yml").read_text())
    return project["vars"]["feature_store:entities"]


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


def test_a_duration_beyond_timedelta_is_a_value_error():
    for text in ("99999999999999999999d", "9" * 5000 + "s"):
        with pytest.raises(ValueError, match="too long a duration"):
            parse_duration(text)


@pytest.mark.parametrize("dtype,kind", [
    ("bigint", "int"), ("INTEGER", "int"), ("double", "float"), ("decimal(12,2)", "decimal"),
    ("varchar", "string"), ("boolean", "bool"), ("timestamp", "timestamp"), ("date", "date"),
    ("timestamp with time zone", "timestamp"), ("struct(a int)", None), (None, None),
    # Wider than int64 but still ints to the read path, which decodes any size.
    ("HUGEINT", "int"), ("ubigint", "int"), ("uinteger", "int"), ("int64", "int"),
    ("timestamp_ns", "timestamp"), ("decimal(38, 0)", "decimal"), ("numeric", "decimal"),
    ("decimal(39,0)", None), ("decimal(2,3)", None), ("decimal(abc)", None), ("decimal(" + "9" * 5000 + ")", None),
    ("INTEGER[]", None), ("blob", None), ("interval", None), ("uuid", None),
    (5, None), (["bigint"], None), ({"a": 1}, None),
])
def test_type_kinds(dtype, kind):
    assert type_kind(dtype) == kind


def set_type(m: dict, view: str, column: str, dtype) -> None:
    node(m, view)["columns"][column]["data_type"] = dtype


UNSTORABLE = ["BLOB", "bytea", "VARBINARY", "INTEGER[]", "list<bigint>", "array<string>", "struct(a int)",
              "map(varchar, integer)", "union(a int, b varchar)", "interval", "json", "uuid", "bit",
              "decimal(40,2)", "decimal(abc)"]


@pytest.mark.parametrize("dtype", UNSTORABLE)
def test_an_online_feature_of_an_unstorable_type_is_an_error(manifest, entity_vars, dtype):
    reg = build(manifest, entity_vars, lambda m: set_type(m, "user_txn_features", "txn_amount_1h_sum", dtype))
    [p] = only(reg.problems)
    assert (p.model, p.where) == ("user_txn_features", "column txn_amount_1h_sum")
    assert repr(dtype) in p.message and "cast it in the model's SQL" in p.message


@pytest.mark.parametrize("dtype", ["struct(a int)", "decimal(40,2)"])
def test_an_offline_feature_of_an_unstorable_type_is_a_warning(manifest, entity_vars, dtype):
    reg = build(manifest, entity_vars, lambda m: set_type(m, "txn_features", "merchant_category", dtype))
    assert not reg.errors()
    [w] = only(reg.problems, "warning")
    assert (w.model, w.where) == ("txn_features", "column merchant_category")
    assert repr(dtype) in w.message and "before setting online: true" in w.message


@pytest.mark.parametrize("dtype", ["HUGEINT", "uhugeint", "UBIGINT", "int128"])
def test_integers_wider_than_int64_are_errors_online_only(manifest, entity_vars, dtype):
    reg = build(manifest, entity_vars, lambda m: set_type(m, "user_txn_features", "txn_velocity_60s", dtype))
    [p] = only(reg.problems)
    assert (p.model, p.where) == ("user_txn_features", "column txn_velocity_60s")
    assert repr(dtype) in p.message and "64-bit" in p.message and "bigint" in p.message
    assert reg.view("user_txn_features").feature("txn_velocity_60s").kind == "int"
    offline = build(manifest, entity_vars, lambda m: set_type(m, "txn_features", "txn_amount", dtype))
    assert not offline.problems


def set_user_id_type(dtype):
    def edit(m):
        for view in ("user_order_features", "user_txn_features"):
            set_type(m, view, "user_id", dtype)
    return edit


@pytest.mark.parametrize("dtype,says", [
    ("blob", "cannot be stored online"), ("hugeint", "64-bit"), ("double", "text of its value"),
    ("decimal(18,0)", "27.40"),
])
def test_an_online_join_key_must_be_exact_and_storable(manifest, entity_vars, dtype, says):
    reg = build(manifest, entity_vars, set_user_id_type(dtype))
    errors = only(reg.problems)
    assert {(p.model, p.where) for p in errors} == {
        ("user_order_features", "column user_id"), ("user_txn_features", "column user_id")}
    assert all(repr(dtype) in p.message and says in p.message and "cast it" in p.message for p in errors)
    for ok in ("varchar", "timestamp", "boolean"):
        assert not build(manifest, entity_vars, set_user_id_type(ok)).errors()


def test_an_offline_join_key_only_warns_when_it_could_never_go_online(manifest, entity_vars):
    reg = build(manifest, entity_vars, lambda m: set_type(m, "txn_features", "txn_id", "blob"))
    assert not reg.errors()
    [w] = only(reg.problems, "warning")
    assert (w.model, w.where) == ("txn_features", "column txn_id") and "before setting online: true" in w.message
    assert not build(manifest, entity_vars, lambda m: set_type(m, "txn_features", "txn_id", "double")).problems


def rename_column(m: dict, view: str, old: str, new: str) -> None:
    columns = node(m, view)["columns"]
    columns[new] = {**columns.pop(old), "name": new}


RESERVED = [*codec.RESERVED_FIELDS, SPINE_ROW, SPINE_TS, SPINE_RELATION, "__FS_ROW", "__Event_TS", "__fs_rn"]


@pytest.mark.parametrize("name", RESERVED)
@pytest.mark.parametrize("role", ["feature", "join key", "timestamp"])
def test_reserved_column_names_are_errors_on_any_view(manifest, entity_vars, name, role):
    vars_ = copy.deepcopy(entity_vars)

    def edit(m):
        if role == "feature":
            rename_column(m, "txn_features", "merchant_category", name)
        elif role == "timestamp":
            rename_column(m, "txn_features", "event_ts", name)
            view_meta(m, "txn_features")["timestamp"] = name
        else:
            rename_column(m, "txn_features", "txn_id", name)
            vars_["transaction"]["join_keys"] = [name]

    m = copy.deepcopy(manifest)
    edit(m)
    reg = Registry.from_manifest(m, vars_, project_name="feature_store")
    [p] = only(reg.problems)
    assert (p.model, p.where) == ("txn_features", f"column {name}")
    assert "reserved" in p.message and "rename the column" in p.message


def test_spine_names_fall_under_the_reserved_prefix():
    assert all(n.startswith(RESERVED_PREFIX) for n in (SPINE_RELATION, SPINE_ROW, SPINE_TS))


def test_public_api_is_complete():
    import feature_store

    public = {n for n in dir(feature_store) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(feature_store.__all__)
    for name in feature_store.__all__:
        assert hasattr(feature_store, name)


def test_views_are_the_root_projects_plus_the_packages_named(manifest, entity_vars):
    m = copy.deepcopy(manifest)
    shared = copy.deepcopy(node(m, "txn_features"))
    shared.update(package_name="shared_features", name="shared_txn_features",
                  unique_id="model.shared_features.shared_txn_features")
    m["nodes"][shared["unique_id"]] = shared
    twin = copy.deepcopy(node(m, "user_txn_features"))
    twin.update(package_name="other_examples", unique_id="model.other_examples.user_txn_features")
    m["nodes"][twin["unique_id"]] = twin
    for n in m["nodes"].values():
        n.setdefault("package_name", "feature_store")

    root = Registry.from_manifest(copy.deepcopy(m), entity_vars, project_name="feature_store", packages=())
    assert "shared_txn_features" not in root.views and not root.errors()
    assert root.views["user_txn_features"].unique_id == "model.feature_store.user_txn_features"
    with_shared = Registry.from_manifest(copy.deepcopy(m), entity_vars, project_name="feature_store",
                                         packages=["shared_features"])
    assert "shared_txn_features" in with_shared.views and not with_shared.errors()
    clash = Registry.from_manifest(copy.deepcopy(m), entity_vars, project_name="feature_store",
                                   packages=["other_examples"])
    assert any("two feature views are named 'user_txn_features'" in p.message for p in clash.errors())


def test_entities_in_the_old_scoped_var_are_a_clear_error(tmp_path):
    from feature_store.errors import ManifestError

    (tmp_path / "dbt_project.yml").write_text(
        "name: acme\nprofile: acme\nvars:\n  feature_store:\n    entities:\n      user: {join_keys: [user_id]}\n")
    with pytest.raises(ManifestError, match=r'move the block to the global var "feature_store:entities"'):
        Registry.load(tmp_path)


def test_a_view_tombstone_applies_to_each_feature_and_the_earlier_date_wins(manifest, entity_vars):
    def edit(m):
        meta = view_meta(m, "user_order_features")
        meta["deprecated"] = "2027-06-30"
        meta["replaced_by"] = "user_order_features_v2"
    reg = build(manifest, entity_vars, edit)
    assert not only(reg.problems)
    view = reg.view("user_order_features")
    assert (view.deprecated, view.replaced_by) == ("2027-06-30", "user_order_features_v2")
    # A column without a date takes the view's; the legacy column's own, earlier date stays,
    # with its own replacement.
    plain = view.feature("user_7d_orders")
    assert (plain.deprecated, plain.replaced_by) == ("2027-06-30", "user_order_features_v2")
    legacy = view.feature("user_avg_basket_30d_legacy")
    assert (legacy.deprecated, legacy.replaced_by) == ("2026-12-31", "user_avg_basket_30d")


def test_a_column_tombstone_earlier_than_a_later_view_one_is_kept_and_a_later_one_is_not(manifest, entity_vars):
    def edit(m):
        view_meta(m, "user_order_features")["deprecated"] = "2026-06-01"
    legacy = build(manifest, entity_vars, edit).view("user_order_features").feature("user_avg_basket_30d_legacy")
    assert legacy.deprecated == "2026-06-01"


def test_a_view_tombstone_that_is_not_a_date(manifest, entity_vars):
    [p] = only(build(manifest, entity_vars,
                     lambda m: view_meta(m, "user_order_features").update(deprecated="next spring")).problems)
    assert p.where == "meta.feature_store.deprecated" and "YYYY-MM-DD" in p.message


@pytest.mark.parametrize("value", [-0.1, 1.5, "1%", True])
def test_log_sample_rate_must_be_a_share(manifest, entity_vars, value):
    [p] = only(build(manifest, entity_vars,
                     lambda m: view_meta(m, "user_order_features").update(log_sample_rate=value)).problems)
    assert p.where == "meta.feature_store.log_sample_rate" and "0 to 1" in p.message


def test_log_sample_rate(manifest, entity_vars):
    reg = build(manifest, entity_vars, lambda m: view_meta(m, "user_order_features").update(log_sample_rate=0.5))
    assert reg.view("user_order_features").log_sample_rate == 0.5
    assert reg.view("user_txn_features").log_sample_rate is None


def test_column_monitors_override_the_view_ones(manifest, entity_vars):
    def edit(m):
        view_meta(m, "user_order_features")["monitors"] = {"ks_alert": 0.3, "fill_rate_min": 0.9}
        col = node(m, "user_order_features")["columns"]["user_7d_orders"]
        col.setdefault("config", {}).setdefault("meta", {})["feature_store"] = {"monitors": {"ks_alert": 0.5}}
    view = build(manifest, entity_vars, edit).view("user_order_features")
    assert view.feature("user_7d_orders").monitors == {"ks_alert": 0.5, "fill_rate_min": 0.9}
    assert view.feature("user_lifetime_orders").monitors == {"ks_alert": 0.3, "fill_rate_min": 0.9}


@pytest.mark.parametrize(("monitors", "where", "says"), [
    ({"ks_alrt": 0.2}, "meta.feature_store.monitors.ks_alrt", "did you mean 'ks_alert'"),
    ({"ks_alert": 2}, "meta.feature_store.monitors.ks_alert", "0 to 1"),
    ({"psi_bins": 1}, "meta.feature_store.monitors.psi_bins", "2 or more"),
    ({"lag_factor": 0}, "meta.feature_store.monitors.lag_factor", "positive"),
    ({"psi_warn": 0.3, "psi_alert": 0.2}, "meta.feature_store.monitors", "psi_warn (0.3) is above psi_alert"),
    ([0.2], "meta.feature_store.monitors", "must be a mapping"),
])
def test_bad_monitors(manifest, entity_vars, monitors, where, says):
    [p] = only(build(manifest, entity_vars,
                     lambda m: view_meta(m, "user_order_features").update(monitors=monitors)).problems)
    assert p.where == where and says in p.message, p
