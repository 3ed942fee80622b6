"""`fstore init` inside an existing dbt project: what it adds, that it is idempotent, and that the result builds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from feature_store.errors import ManifestError
from feature_store.registry import ENTITIES_VAR
from feature_store.scaffold import init_project

BIN = Path(sys.executable).parent
PROJECT = """\
# acme's own project: comments and layout must survive fstore init
name: acme
version: "1.0.0"
config-version: 2
profile: acme

vars:
  acme_setting: 1   # an existing var
"""


def make_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dbt_project.yml").write_text(PROJECT)
    (root / "models").mkdir(exist_ok=True)
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_init_adds_the_package_the_entity_and_a_starter_view_once(tmp_path):
    project = make_project(tmp_path / "acme")
    report = init_project(project, entity="account", join_key="account_id")
    assert len(report.changed) == 4 and report.kept == []
    packages = yaml.safe_load((project / "packages.yml").read_text())["packages"]
    assert packages == [{"local": str(REPO)}]
    text = (project / "dbt_project.yml").read_text()
    assert text.startswith("# acme's own project") and "acme_setting: 1   # an existing var" in text
    parsed = yaml.safe_load(text)
    assert parsed["vars"][ENTITIES_VAR]["account"]["join_keys"] == ["account_id"]
    assert parsed["vars"]["acme_setting"] == 1
    assert (project / "models/features/account_features.sql").is_file()
    meta = yaml.safe_load((project / "models/features/_account_features.yml").read_text())
    assert meta["models"][0]["config"]["meta"]["feature_store"]["entities"] == ["account"]

    before = snapshot(project)
    again = init_project(project, entity="account", join_key="account_id")
    assert again.changed == [] and len(again.kept) == 4
    assert snapshot(project) == before


def test_init_never_overwrites_and_keeps_existing_packages(tmp_path):
    project = make_project(tmp_path / "acme")
    (project / "packages.yml").write_text("packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n")
    mine = project / "models/features/customer_features.sql"
    mine.parent.mkdir(parents=True)
    mine.write_text("select 'mine' as x\n")
    report = init_project(project)
    assert mine.read_text() == "select 'mine' as x\n"
    assert any("customer_features.sql: exists" in k for k in report.kept)
    packages = yaml.safe_load((project / "packages.yml").read_text())["packages"]
    assert packages == [{"local": str(REPO)}, {"package": "dbt-labs/dbt_utils", "version": "1.3.0"}]


def test_init_refuses_a_folder_without_a_dbt_project_and_bad_names(tmp_path):
    with pytest.raises(ManifestError, match="no dbt_project.yml"):
        init_project(tmp_path)
    project = make_project(tmp_path / "acme")
    with pytest.raises(ManifestError, match="not a plain name"):
        init_project(project, entity="my entity")
    assert not (project / "packages.yml").exists()  # nothing half-written


@pytest.mark.dbt
def test_a_project_after_init_builds_and_validates(tmp_path):
    project = make_project(tmp_path / "acme")
    (project / "profiles.yml").write_text(
        f"acme:\n  target: dev\n  outputs:\n    dev: {{type: duckdb, path: '{project / 'acme.duckdb'}', threads: 1}}\n")
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    proc = subprocess.run([str(BIN / "fstore"), "init", "--project-dir", str(project)], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0 and "Next: dbt deps" in proc.stdout, proc.stderr
    for args in (["deps"], ["build"]):
        proc = subprocess.run([str(BIN / "dbt"), *args, "--profiles-dir", str(project)], cwd=project,
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stdout[-3000:]
    proc = subprocess.run([str(BIN / "fstore"), "validate", "--project-dir", str(project), "--profiles-dir",
                           str(project)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 feature views, 1 features, 1 entities: ok" in proc.stdout
