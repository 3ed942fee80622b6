"""End-to-end tests of the registry commands, through the `fstore` CLI as a user runs it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from conftest import BIN, run_dbt
from feature_store.cli import main

FSTORE = str(Path(sys.executable).parent / "fstore")


def fstore(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FSTORE, *args, "--project-dir", str(project)], capture_output=True, text=True)


def test_list_shows_every_view(built_project):
    proc = fstore(built_project, "list")
    assert proc.returncode == 0, proc.stderr
    for view in ("user_order_features", "user_txn_features", "txn_features"):
        assert view in proc.stdout
    assert "2d" in proc.stdout and "10m" in proc.stdout
    assert "user_avg_basket_30d_legacy (2026-12-31)" in proc.stdout


def test_list_filters_and_json(built_project):
    runner = CliRunner()
    res = runner.invoke(main, ["list", "--json", "--project-dir", str(built_project)])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {r["view"] for r in rows} == {"user_order_features", "user_txn_features", "txn_features"}
    uof = next(r for r in rows if r["view"] == "user_order_features")
    assert uof["entities"] == ["user"] and uof["ttl"] == "2d" and uof["online"] is True
    # The example deprecates user_avg_basket_30d_legacy (a tombstone in its column meta).
    assert uof["deprecated"] == {"user_avg_basket_30d_legacy": "2026-12-31"}
    assert all(r["deprecated"] == {} for r in rows if r["view"] != "user_order_features")

    res = runner.invoke(main, ["list", "--json", "--tag", "fraud", "--project-dir", str(built_project)])
    assert {r["view"] for r in json.loads(res.stdout)} == {
        r["view"] for r in rows if "fraud" in r["tags"]} != set()
    owner = uof["owner"]
    res = runner.invoke(main, ["list", "--json", "--owner", owner, "--project-dir", str(built_project)])
    assert {r["view"] for r in json.loads(res.stdout)} == {r["view"] for r in rows if r["owner"] == owner}
    res = runner.invoke(main, ["list", "--json", "--online", "--project-dir", str(built_project)])
    assert {r["view"] for r in json.loads(res.stdout)} == {r["view"] for r in rows if r["online"]}


def test_describe_shows_columns_fallbacks_tombstones_lineage(built_project):
    proc = fstore(built_project, "describe", "user_order_features")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "join key" in text and "event timestamp" in text and "created timestamp" in text
    assert re.search(r"user_7d_orders\s+bigint\s+feature\s+impute 0", text)
    assert "2026-12-31 -> user_avg_basket_30d" in text
    assert "model.feature_store.stg_orders" in text  # upstream
    data = json.loads(fstore(built_project, "describe", "user_order_features", "--json").stdout)
    assert data["ttl"] == "2d" and data["created_timestamp"] == "computed_at"
    assert any(d.startswith("model.feature_store.") for d in data["downstream"])


def test_describe_unknown_view_suggests(built_project):
    proc = fstore(built_project, "describe", "user_ordr_features")
    assert proc.returncode == 1
    assert "did you mean 'user_order_features'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_passes_on_the_example_project(built_project):
    proc = fstore(built_project, "validate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok" in proc.stdout and "0 errors" in proc.stdout


def _break(project: Path) -> None:
    yml = project / "models" / "features" / "_features.yml"
    text = yml.read_text()
    text = text.replace("ttl: 2d", "ttl: 2 days", 1)
    text = text.replace("owner: risk-ml@example.com", "", 1)
    text = text.replace("fallback: {impute: 0}", "fallback: {impute: none_such}", 1)
    text = text.replace("entities: [transaction]", "entities: [transactoin]", 1)
    yml.write_text(text)


def test_validate_lists_every_problem_on_a_broken_copy(project_copy):
    _break(project_copy)
    run_dbt(project_copy, "parse")
    proc = fstore(project_copy, "validate")
    assert proc.returncode == 1, proc.stdout
    lines = proc.stdout.splitlines()

    def line(*parts):
        return [ln for ln in lines if all(p in ln for p in parts)]

    assert line("error", "user_order_features", "meta.feature_store.ttl", "'2 days'", "2d")
    assert line("error", "user_txn_features", "meta.feature_store.owner")
    assert line("error", "user_order_features", "fallback.impute", "'none_such'")
    assert line("error", "txn_features", "meta.feature_store.entities", "'transactoin'", "did you mean 'transaction'")


def test_missing_manifest_runs_dbt_parse_and_says_so(project_copy):
    proc = fstore(project_copy, "list")
    assert proc.returncode == 0, proc.stderr
    assert "running `dbt parse`" in proc.stderr
    assert "user_order_features" in proc.stdout
    assert (project_copy / "target" / "manifest.json").exists()


def test_stale_manifest_warns(project_copy):
    run_dbt(project_copy, "parse")
    model = project_copy / "models" / "features" / "user_txn_features.sql"
    model.write_text(model.read_text() + "\n")
    proc = fstore(project_copy, "list")
    assert proc.returncode == 0
    assert "older than models/features/user_txn_features.sql" in proc.stderr


def test_every_command_has_help_with_an_example():
    runner = CliRunner()
    for name, command in main.commands.items():
        res = runner.invoke(main, [name, "--help"])
        assert res.exit_code == 0, name
        assert f"fstore {name}" in res.output, f"`fstore {name} --help` shows no example"
        assert "--project-dir" in res.output


def test_console_script_is_installed():
    assert shutil.which("fstore", path=str(BIN))
