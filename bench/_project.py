"""The throwaway dbt project the benchmarks build: our macros, DuckDB, one `user` entity."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROJECT_YML = """\
name: feature_store
version: "0.2.0"
config-version: 2
profile: bench
model-paths: ["models"]
macro-paths: ["macros"]
target-path: "target"
vars:
  "feature_store:entities":
    user: {join_keys: [user_id]}
models:
  feature_store:
    +materialized: table
"""

PROFILES_YML = """\
bench:
  target: dev
  outputs:
    dev: {type: duckdb, path: bench.duckdb, threads: 2}
"""


def write_project(workdir: Path, models: dict[str, str]) -> None:
    """A fresh project in ``workdir``: config, this checkout's macros, and ``models`` (file name: text)."""
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "models").mkdir(parents=True)
    (workdir / "dbt_project.yml").write_text(PROJECT_YML)
    (workdir / "profiles.yml").write_text(PROFILES_YML)
    copy_macros(workdir)
    for name, text in models.items():
        (workdir / "models" / name).write_text(text)


def copy_macros(workdir: Path) -> None:
    """This checkout's macros into ``workdir`` (replacing older copies)."""
    shutil.rmtree(workdir / "macros", ignore_errors=True)
    shutil.copytree(REPO / "macros", workdir / "macros")


def run_dbt(workdir: Path, *args: str) -> None:
    """``dbt <args>`` in ``workdir``; exits with dbt's output if it fails."""
    proc = subprocess.run([str(Path(sys.executable).parent / "dbt"), *args, "--profiles-dir", str(workdir)],
                          cwd=workdir, capture_output=True, text=True,
                          env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"})
    if proc.returncode != 0:
        sys.exit(f"dbt {' '.join(args)} failed in {workdir}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
