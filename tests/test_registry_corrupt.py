"""Property tests: a corrupt manifest or entities var never makes the registry crash.

The valid fixture (tests/fixtures/registry) is mutated at random JSON paths: a value is
replaced by one of another type (None, ints small and huge, floats, bools, text, lists,
mappings) or deleted. Loading must then either succeed or raise a FeatureStoreError
naming the file or model and the key, never a TypeError, AttributeError, OverflowError,
KeyError or ValueError from deep inside the parser.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feature_store import registry as registry_module
from feature_store.errors import DefinitionError, FeatureStoreError, ManifestError
from feature_store.registry import Entity, Feature, FeatureView, Registry

FIXTURE = Path(__file__).parent / "fixtures" / "registry"
MANIFEST = orjson.loads((FIXTURE / "manifest.json").read_bytes())
PROJECT = yaml.safe_load((FIXTURE / "dbt_project.yml").read_text())
ENTITY_VARS = PROJECT["vars"]["feature_store:entities"]


def json_paths(value, prefix=()):
    """Every path into ``value`` (the root included), as tuples of keys and list indexes."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from json_paths(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from json_paths(child, prefix + (i,))


MANIFEST_PATHS = list(json_paths(MANIFEST))
ENTITY_PATHS = list(json_paths(ENTITY_VARS))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([10**30, -(2**70)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    # Values that are well-typed but wrong where they land, and ones the parser treats specially.
    st.sampled_from(["", "99999999999999999999d", "2d", "gate", "bigint", "hugeint", "struct(a int)",
                     "decimal(99,2)", "__event_ts", "__fs_row", "user", "event_ts", "model", "test.x"]),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["a", "impute", "join_keys", "feature_store", "meta", "nodes"]), scalars,
                    max_size=3),
)
DELETE = object()


def mutations(paths):
    return st.lists(st.tuples(st.sampled_from(paths), st.one_of(st.just(DELETE), values)), min_size=1, max_size=3)


def holds(parent, step) -> bool:
    """Whether ``parent[step]`` exists (an earlier change may have removed or replaced it)."""
    if isinstance(parent, dict):
        return step in parent
    return isinstance(parent, list) and isinstance(step, int) and step < len(parent)


def mutate(document, changes):
    """A copy of ``document`` with each (path, value) applied: replaced, or deleted for DELETE."""
    document = copy.deepcopy(document)
    for path, value in changes:
        if not path:
            document = {} if value is DELETE else copy.deepcopy(value)
            continue
        parent = document
        for step in path[:-1]:
            parent = parent[step] if holds(parent, step) else None
        if holds(parent, path[-1]):
            if value is DELETE:
                del parent[path[-1]]
            else:
                parent[path[-1]] = copy.deepcopy(value)
    return document


def assert_well_typed(reg: Registry) -> None:
    """What the rest of the package relies on: every loaded name is text, every duration a timedelta."""
    for p in reg.problems:
        assert p.severity in ("error", "warning", "note")
        assert isinstance(p.model, str) and isinstance(p.where, str) and isinstance(p.message, str)
        str(p)
    for entity in reg.entities.values():
        assert isinstance(entity, Entity) and entity.join_keys
        assert all(isinstance(k, str) and k for k in entity.join_keys)
        assert isinstance(entity.description, str)
    for name, view in reg.views.items():
        assert isinstance(view, FeatureView) and isinstance(name, str) and name == view.name
        for names in (view.entities, view.join_keys, view.tags, view.upstream, view.downstream):
            assert isinstance(names, tuple) and all(isinstance(n, str) for n in names)
        assert isinstance(view.timestamp, str) and isinstance(view.relation, str)
        assert view.created_timestamp is None or isinstance(view.created_timestamp, str)
        assert view.owner is None or isinstance(view.owner, str)
        assert isinstance(view.description, str) and isinstance(view.online, bool)
        for duration in (view.ttl, view.freshness_sla):
            assert duration is None or isinstance(duration, timedelta)
        for f in view.features:
            assert isinstance(f, Feature) and isinstance(f.name, str)
            assert f.data_type is None or isinstance(f.data_type, str)
            assert isinstance(f.description, str) and all(isinstance(t, str) for t in f.tags)
            assert f.replaced_by is None or isinstance(f.replaced_by, str)
            f.kind  # noqa: B018 - computing it must not raise
    reg.resolve(list(reg.views))


@settings(max_examples=200, deadline=None)
@given(manifest_changes=mutations(MANIFEST_PATHS), entity_changes=st.one_of(st.just([]), mutations(ENTITY_PATHS)))
def test_a_corrupt_manifest_raises_only_our_errors(manifest_changes, entity_changes):
    manifest = mutate(MANIFEST, manifest_changes)
    entity_vars = mutate(ENTITY_VARS, entity_changes)
    try:
        reg = Registry.from_manifest(manifest, entity_vars, project_name="feature_store")
    except FeatureStoreError as exc:
        assert isinstance(exc, ManifestError) and "manifest.json" in str(exc)
        return
    assert_well_typed(reg)


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corrupt")
    (root / "target").mkdir()
    return root


def write_project(root: Path, manifest_bytes: bytes, project: dict = PROJECT) -> None:
    (root / "dbt_project.yml").write_text(yaml.safe_dump(project))
    (root / "target" / "manifest.json").write_bytes(manifest_bytes)


@pytest.fixture
def no_read_pause(monkeypatch):
    """Invalid JSON (NaN) is retried as a manifest caught mid-write; no need to wait here."""
    monkeypatch.setattr(registry_module, "MANIFEST_READ_PAUSE", 0.0)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(manifest_changes=mutations(MANIFEST_PATHS), entity_changes=st.one_of(st.just([]), mutations(ENTITY_PATHS)))
def test_loading_a_corrupt_file_strictly_raises_manifest_or_definition_error(project_dir, no_read_pause,
                                                                             manifest_changes, entity_changes):
    project = copy.deepcopy(PROJECT)
    project["vars"]["feature_store:entities"] = mutate(ENTITY_VARS, entity_changes)
    # json, not orjson: it writes huge ints and NaN, as a hand-edited or foreign file might hold.
    write_project(project_dir, json.dumps(mutate(MANIFEST, manifest_changes)).encode(), project)
    try:
        reg = Registry.load(project_dir, strict=True)
    except DefinitionError as exc:
        assert exc.problems and all(p.severity == "error" for p in exc.problems)
        for p in exc.problems:
            assert f"{p.model}: {p.where}: " in str(exc)
        return
    except ManifestError as exc:
        assert "manifest.json" in str(exc)
        return
    assert not reg.errors()
    assert_well_typed(reg)


def node(manifest: dict, name: str) -> dict:
    return manifest["nodes"][f"model.feature_store.{name}"]


TXN = "model.feature_store.txn_features"


def view_meta(m: dict) -> dict:
    return m["nodes"][TXN]["config"]["meta"]["feature_store"]


def column(m: dict) -> dict:
    return m["nodes"][TXN]["columns"]["merchant_category"]


@pytest.mark.parametrize("edit,model,where", [
    (lambda m: m["nodes"].update({TXN: "oops"}), "manifest.json", f"nodes.{TXN}"),
    (lambda m: m["nodes"][TXN].update(config="oops"), "txn_features", "config"),
    (lambda m: m["nodes"][TXN].update(columns=["txn_id", "event_ts"]), "txn_features", "columns"),
    (lambda m: m["nodes"][TXN].update(depends_on=["model.x"]), "txn_features", "depends_on"),
    (lambda m: m["nodes"][TXN].update(depends_on={"nodes": 5}), "txn_features", "depends_on.nodes"),
    (lambda m: m["nodes"][TXN].update(description=5), "txn_features", "description"),
    (lambda m: m["child_map"].update({TXN: 5}), "txn_features", f"child_map.{TXN}"),
    (lambda m: m["child_map"].update({TXN: [1]}), "txn_features", f"child_map.{TXN}"),
    (lambda m: view_meta(m).update(ttl="99999999999999999999d"), "txn_features", "meta.feature_store.ttl"),
    (lambda m: view_meta(m).update(entities={"transaction": 1}), "txn_features", "meta.feature_store.entities"),
    (lambda m: view_meta(m).update(tags={"a": 1}), "txn_features", "meta.feature_store.tags"),
    (lambda m: view_meta(m).update(owner=["a", "b"]), "txn_features", "meta.feature_store.owner"),
    (lambda m: view_meta(m).update(timestamp=["event_ts"]), "txn_features", "meta.feature_store.timestamp"),
    (lambda m: m["nodes"][TXN]["columns"].update(merchant_category=5), "txn_features", "column merchant_category"),
    (lambda m: column(m).update(data_type=5), "txn_features", "column merchant_category: data_type"),
    (lambda m: column(m).update(config={"tags": 5}), "txn_features", "column merchant_category: config.tags"),
    (lambda m: column(m).update(config={"meta": {"feature_store": {"replaced_by": 5}}}), "txn_features",
     "column merchant_category: meta.feature_store.replaced_by"),
])
def test_a_bad_node_is_a_definition_error_naming_the_model_and_key(project_dir, edit, model, where):
    manifest = copy.deepcopy(MANIFEST)
    edit(manifest)
    write_project(project_dir, orjson.dumps(manifest))
    with pytest.raises(DefinitionError) as info:
        Registry.load(project_dir, strict=True)
    [p] = info.value.problems
    assert p.model.endswith(model) and p.where == where
    assert f"{model}: {where}: " in str(info.value)
    # The other views still load: one bad view does not stop them.
    assert {"user_order_features", "user_txn_features"} <= set(Registry.load(project_dir).views)


@pytest.mark.parametrize("content,key", [
    (b"[]", "the top level must be a mapping"),
    (b'{"nodes": []}', "nodes must be a mapping"),
    (b'{"nodes": {}, "child_map": "x"}', "child_map must be a mapping"),
    (b'{"nodes": {}, "metadata": {"adapter_type": 5}}', "metadata.adapter_type must be text"),
])
def test_a_structurally_corrupt_manifest_is_a_manifest_error_naming_file_and_key(project_dir, content, key):
    write_project(project_dir, content)
    with pytest.raises(ManifestError) as info:
        Registry.load(project_dir, strict=True)
    assert str(project_dir / "target" / "manifest.json") in str(info.value) and key in str(info.value)


@pytest.mark.parametrize("project,key", [
    ("- a list\n", "the top level must be a mapping"),
    ("name: [1]\n", "name must be text"),
    ("name: feature_store\nvars: [1]\n", "vars must be a mapping"),
    ("name: feature_store\nvars: {feature_store: 3}\n", "vars.feature_store must be a mapping"),
    ("name: feature_store\ntarget-path: {a: 1}\n", "target-path must be text"),
    ("name: [unclosed\n", "cannot read"),
])
def test_a_corrupt_dbt_project_yml_is_a_manifest_error_naming_file_and_key(project_dir, project, key):
    write_project(project_dir, orjson.dumps(MANIFEST))
    (project_dir / "dbt_project.yml").write_text(project)
    with pytest.raises(ManifestError) as info:
        Registry.load(project_dir)
    assert "dbt_project.yml" in str(info.value) and key in str(info.value)


@pytest.mark.parametrize("entities,where", [
    ({"user": ["user_id"], "transaction": {"join_keys": ["txn_id"]}}, 'vars."feature_store:entities".user'),
    ({"user": {"join_keys": 5}, "transaction": {"join_keys": ["txn_id"]}},
     'vars."feature_store:entities".user.join_keys'),
    ({"user": {"join_keys": [["user_id"]]}, "transaction": {"join_keys": ["txn_id"]}},
     'vars."feature_store:entities".user.join_keys'),
    ({1: {"join_keys": ["x"]}, "user": {"join_keys": ["user_id"]}, "transaction": {"join_keys": ["txn_id"]}},
     'vars."feature_store:entities".1'),
])
def test_a_bad_entity_is_a_problem_naming_the_key(entities, where):
    reg = Registry.from_manifest(copy.deepcopy(MANIFEST), entities, project_name="feature_store")
    assert any(p.severity == "error" and p.model == "dbt_project.yml" and p.where == where for p in reg.errors())
