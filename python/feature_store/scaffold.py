"""``fstore init``: add feature_store to an existing dbt project, without touching what is there.

Three additions, each made only when missing, so running it twice changes nothing and no
existing file is overwritten:

* ``packages.yml`` gains the feature_store package (the file is created if absent);
* ``dbt_project.yml`` gains the global var ``feature_store:entities`` with one entity,
  inserted as text under ``vars:`` so the file's comments and layout survive;
* ``models/features/`` gains a starter feature view: its SQL and its YAML.

The library never prints: :func:`init_project` returns what it did, and the CLI says it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from feature_store.errors import ManifestError
from feature_store.registry import ENTITIES_VAR

__all__ = ["InitReport", "init_project", "package_source"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class InitReport:
    """What :func:`init_project` changed (``changed``) and left alone as already there (``kept``)."""

    changed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def package_source() -> str:
    """The ``packages.yml`` entry text for this installation: a local path when fstore runs from a checkout."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "dbt_project.yml").is_file() and (checkout / "macros").is_dir():
        return f"local: {checkout}"
    raise ManifestError(
        "cannot tell where the feature_store dbt package lives (fstore is not running from a checkout); "
        "pass --package 'git: <repository url>' (with revision: <tag>) or --package 'local: <path>'")


def init_project(project_dir: str | Path, *, entity: str = "customer", join_key: str = "customer_id",
                 package: str | None = None) -> InitReport:
    """Add the package, the entities var and a starter view to the dbt project at ``project_dir``."""
    project = Path(project_dir).resolve()
    project_file = project / "dbt_project.yml"
    if not project_file.is_file():
        raise ManifestError(f"no dbt_project.yml in {project}; run fstore init inside your dbt project "
                            "(or pass --project-dir)")
    for what, value in (("entity", entity), ("join key", join_key)):
        if not _NAME.match(value):
            raise ManifestError(f"{what} {value!r} is not a plain name (letters, digits, _)")
    report = InitReport()
    _add_package(project / "packages.yml", package or package_source(), report)
    _add_entities_var(project_file, entity, join_key, report)
    _add_starter_view(project, entity, join_key, report)
    return report


def _add_package(path: Path, source: str, report: InitReport) -> None:
    text = path.read_text() if path.exists() else ""
    entries = (yaml.safe_load(text) or {}).get("packages") or [] if text else []
    if any(_is_feature_store(e, path.parent) for e in entries):
        report.kept.append(f"{path.name}: already has the feature_store package")
        return
    entry = f"  - {source}\n"
    if not text.strip():
        path.write_text("packages:\n" + entry)
    elif re.search(r"(?m)^packages:\s*$", text):
        path.write_text(re.sub(r"(?m)^packages:\s*\n", lambda m: m.group(0) + entry, text, count=1))
    else:
        raise ManifestError(f"{path}: cannot find a `packages:` list to add to; add `{entry.strip()}` by hand")
    report.changed.append(f"{path.name}: added the feature_store package ({source})")


def _is_feature_store(entry, project: Path) -> bool:
    """Whether a packages.yml entry installs this package (by name, URL or a local path's project name)."""
    if not isinstance(entry, dict):
        return False
    if entry.get("local"):
        local = (project / str(entry["local"])).resolve() / "dbt_project.yml"
        try:
            return (yaml.safe_load(local.read_text()) or {}).get("name") == "feature_store"
        except (OSError, yaml.YAMLError):
            return False
    return "feature_store" in str(entry.get("git") or entry.get("package") or "")


def _add_entities_var(path: Path, entity: str, join_key: str, report: InitReport) -> None:
    text = path.read_text()
    parsed = yaml.safe_load(text) or {}
    if ENTITIES_VAR in (parsed.get("vars") or {}):
        report.kept.append(f'{path.name}: already declares vars."{ENTITIES_VAR}"')
        return
    block = (f'  "{ENTITIES_VAR}":\n    {entity}:\n      join_keys: [{join_key}]\n'
             f"      description: One {entity} (rename it, add yours).\n")
    if re.search(r"(?m)^vars:\s*$", text):
        text = re.sub(r"(?m)^vars:\s*\n", lambda m: m.group(0) + block, text, count=1)
    elif re.search(r"(?m)^vars:", text):
        raise ManifestError(f"{path}: `vars:` is written inline; add {ENTITIES_VAR!r} to it by hand")
    else:
        text = text.rstrip("\n") + "\n\nvars:\n" + block
    path.write_text(text)
    report.changed.append(f'{path.name}: declared entity {entity!r} (join key {join_key}) in vars."{ENTITIES_VAR}"')


def _add_starter_view(project: Path, entity: str, join_key: str, report: InitReport) -> None:
    folder = project / "models" / "features"
    name = f"{entity}_features"
    files = {
        folder / f"{name}.sql": (
            f"-- A starter feature view: one row per {join_key} per event time. Replace the select\n"
            f"-- with your own SQL over your models; keep a {join_key} and an event_ts column.\n"
            f"select * from (values ('00001', cast('2026-01-01 00:00:00' as timestamp), 0))\n"
            f"    as starter({join_key}, event_ts, example_feature)\n"),
        folder / f"_{name}.yml": (
            "version: 2\n\nmodels:\n"
            f"  - name: {name}\n"
            f"    description: Features of one {entity}, one row per {join_key} per event time.\n"
            "    config:\n      meta:\n        feature_store:\n"
            f"          entities: [{entity}]\n          timestamp: event_ts\n          ttl: 30d\n"
            "          owner: you@example.com\n          online: true\n"
            f"    columns:\n      - name: {join_key}\n        data_type: varchar\n"
            "      - name: event_ts\n        data_type: timestamp\n"
            "      - name: example_feature\n        data_type: bigint\n"
            "        description: Replace with your first feature.\n"),
    }
    for path, text in files.items():
        rel = path.relative_to(project)
        if path.exists():
            report.kept.append(f"{rel}: exists, left as it is")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        report.changed.append(f"{rel}: written")
