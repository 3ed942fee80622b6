"""The compile cache: keyed by what the compiled SQL depends on, not by the manifest's mtime."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from feature_store import compiler
from feature_store.registry import Target


class _Registry:
    def __init__(self, project: Path):
        self.project_dir = project
        self.manifest_path = project / "target" / "manifest.json"
        self.target = Target("dev", "duckdb", None)
        self.profiles_dir = None


def write_manifest(registry, *, macro_sql="select 1", model_sql="select 1", data_type="bigint") -> None:
    registry.manifest_path.parent.mkdir(parents=True, exist_ok=True)
    registry.manifest_path.write_bytes(orjson.dumps({
        "metadata": {"dbt_version": "1.11.0", "adapter_type": "duckdb"},
        "macros": {"macro.feature_store.point_in_time_join": {"macro_sql": macro_sql}},
        "nodes": {"model.p.v": {"resource_type": "model", "relation_name": '"db"."main"."v"', "raw_code": model_sql,
                                "compiled_code": model_sql, "columns": {"x": {"name": "x", "data_type": data_type}}}},
    }))


def test_a_rebuild_that_changes_only_sql_or_data_needs_no_recompile(tmp_path, monkeypatch):
    registry = _Registry(tmp_path)
    (tmp_path / "dbt_project.yml").write_text("name: p\n")
    compiled = []
    monkeypatch.setattr(compiler, "_compile_with_dbt", lambda reg, call: compiled.append(call) or f"-- {len(compiled)}")
    monkeypatch.setattr(compiler, "_memo", {})
    write_manifest(registry)
    assert compiler.compile_call(registry, "{{ x() }}") == "-- 1"
    write_manifest(registry, model_sql="select 2 -- a logic fix")  # what `dbt build` rewrites after a fix
    assert compiler.compile_call(registry, "{{ x() }}") == "-- 1" and len(compiled) == 1
    monkeypatch.setattr(compiler, "_memo", {})  # a fresh process reads the cache on disk
    assert compiler.compile_call(registry, "{{ x() }}") == "-- 1" and len(compiled) == 1
    for change in ({"macro_sql": "select 3"}, {"data_type": "varchar"}):
        write_manifest(registry, **change)
        compiler.compile_call(registry, "{{ x() }}")
    (tmp_path / "dbt_project.yml").write_text("name: p\nvars: {a: 1}\n")
    compiler.compile_call(registry, "{{ x() }}")
    assert len(compiled) == 4  # a macro, a declared type, the project's vars: each recompiles


def test_a_corrupt_manifest_is_a_manifest_error(tmp_path, monkeypatch):
    from feature_store import registry as registry_module
    from feature_store.errors import ManifestError

    monkeypatch.setattr(registry_module, "MANIFEST_READ_PAUSE", 0.0)
    registry = _Registry(tmp_path)
    registry.manifest_path.parent.mkdir(parents=True)
    registry.manifest_path.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        compiler.compile_call(registry, "{{ x() }}")


def test_the_dbt_package_version_must_match_the_python_package(tmp_path):
    from feature_store import __version__
    from feature_store.errors import CompileError

    consumer = tmp_path / "acme"
    installed = consumer / "dbt_packages" / "feature_store"
    consumer.mkdir()
    (consumer / "dbt_project.yml").write_text("name: acme\nversion: '1.0'\n")
    with pytest.raises(CompileError, match="not installed in .*packages.yml.*dbt deps"):
        compiler.check_package_version(consumer)
    installed.mkdir(parents=True)
    (installed / "dbt_project.yml").write_text("name: feature_store\nversion: '0.0.9'\n")
    with pytest.raises(CompileError, match=rf"version 0.0.9 .* fstore Python package is {__version__}"):
        compiler.check_package_version(consumer)
    (installed / "dbt_project.yml").write_text(f"name: feature_store\nversion: '{__version__}'\n")
    assert compiler.check_package_version(consumer) == __version__
    custom = consumer / "libs" / "feature_store"  # packages-install-path is honoured
    custom.mkdir(parents=True)
    (custom / "dbt_project.yml").write_text(f"name: feature_store\nversion: '{__version__}'\n")
    (consumer / "dbt_project.yml").write_text("name: acme\npackages-install-path: libs\n")
    assert compiler.check_package_version(consumer) == __version__
