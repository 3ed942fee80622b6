"""Runs dbt for the Python layer: ``dbt parse``, and compiling our macros into SQL.

The point-in-time join and the online snapshot exist once, as dbt macros. Python
never writes that SQL itself: it asks dbt to compile a macro call (``dbt compile
--inline``) and runs the result. Compiling costs dbt's start-up (seconds), so results
are cached on disk per macro call and manifest, and in memory per process.

dbt is imported lazily here and nowhere on the serving path.
"""

from __future__ import annotations

import hashlib
import io
import os
from contextlib import chdir, redirect_stdout
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from feature_store.errors import CompileError, ManifestError
from feature_store.registry import format_duration, read_manifest

__all__ = ["check_package_version", "compile_call", "macro_call", "parse_project"]

_memo: dict[str, str] = {}


def _invoke(project_dir: Path, args: list[str], target: str | None, profiles_dir: Path | None):
    from dbt.cli.main import dbtRunner  # heavy: only when something must be (re)compiled

    cli = [*args, "--project-dir", str(project_dir), "--profiles-dir", str(profiles_dir or _profiles_dir(project_dir))]
    if target:
        cli += ["--target", target]
    out = io.StringIO()
    # dbt-duckdb resolves a relative database path against the working directory.
    with chdir(project_dir), redirect_stdout(out):
        result = dbtRunner().invoke(cli)
    return result, out.getvalue()


def _profiles_dir(project_dir: Path) -> Path:
    if os.environ.get("DBT_PROFILES_DIR"):
        return Path(os.environ["DBT_PROFILES_DIR"])
    return project_dir if (project_dir / "profiles.yml").exists() else Path.home() / ".dbt"


def parse_project(project_dir: str | os.PathLike, target: str | None = None,
                  profiles_dir: str | os.PathLike | None = None) -> None:
    """Run ``dbt parse`` so that ``target/manifest.json`` exists and is current."""
    result, output = _invoke(Path(project_dir).resolve(), ["parse", "--log-level", "none"], target,
                             Path(profiles_dir) if profiles_dir else None)
    if not result.success:
        raise ManifestError(f"`dbt parse` failed in {project_dir}: {result.exception or output.strip()}")


def compile_call(registry, call: str) -> str:
    """Compile one Jinja macro call (e.g. ``{{ feature_store.point_in_time_join(...) }}``) to SQL.

    Cached by what the compiled SQL depends on (:func:`_inputs_digest`), the target and
    the call, so the rebuild of a model's data does not cost another dbt start-up.
    """
    key_src = b"\0".join([_inputs_digest(registry), registry.target.name.encode(), call.encode()])
    key = hashlib.sha256(key_src).hexdigest()[:32]
    if key in _memo:
        return _memo[key]
    cache_dir = registry.manifest_path.parent / "feature_store" / "compiled"
    cache_file = cache_dir / f"{key}.sql"
    if cache_file.exists():
        sql = cache_file.read_text()
    else:
        sql = _compile_with_dbt(registry, call)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(sql)
        tmp.replace(cache_file)  # atomic: a concurrent reader sees all of it or nothing
    _memo[key] = sql
    return sql


_digests: dict[tuple, bytes] = {}
# What our macros read of a model: where it is and how it is declared, never its SQL or data.
_NODE_FIELDS = ("relation_name", "columns", "config", "meta", "database", "schema", "alias")


def _inputs_digest(registry) -> bytes:
    """A digest of everything our macros' compiled SQL depends on, read from the manifest.

    dbt's and the adapter's versions, every macro's text (ours, the project's, dbt's), the
    declarations of every model (relation, columns, config, meta), and ``dbt_project.yml``
    (its vars). Not the models' SQL or data: a `dbt build` that only changes rows, or fixes a
    feature's SQL, rewrites the manifest but needs no recompile.
    """
    path = registry.manifest_path
    project_file = registry.project_dir / "dbt_project.yml"
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in (path, project_file) if p.exists())
    if stamp in _digests:
        return _digests[stamp]
    manifest = read_manifest(path, registry.project_dir)
    meta = manifest.get("metadata") or {}
    macros = {uid: (m or {}).get("macro_sql") for uid, m in (manifest.get("macros") or {}).items()}
    models = {uid: {f: node.get(f) for f in _NODE_FIELDS} for uid, node in (manifest.get("nodes") or {}).items()
              if isinstance(node, dict) and node.get("resource_type") == "model"}
    project = project_file.read_bytes() if project_file.exists() else b""
    inputs = [meta.get("dbt_version"), meta.get("adapter_type"), meta.get("quoting"), macros, models,
              project.decode(errors="replace")]
    digest = hashlib.sha256(orjson.dumps(inputs, option=orjson.OPT_SORT_KEYS, default=str)).digest()
    _digests[stamp] = digest
    return digest


def check_package_version(project_dir: Path) -> str:
    """The feature_store dbt package's version; :class:`CompileError` unless it matches this Python package.

    The macros and the Python side change together (a macro argument the Python side
    passes, say), so their major.minor versions must match. The package is the root
    project itself (this repository's example) or an install under ``dbt_packages``.
    """
    from feature_store import __version__

    root = _project_yaml(project_dir / "dbt_project.yml")
    if root.get("name") == "feature_store":
        found, where = root.get("version"), project_dir / "dbt_project.yml"
    else:
        where = project_dir / str(root.get("packages-install-path") or "dbt_packages") / "feature_store" / "dbt_project.yml"
        if not where.is_file():
            raise CompileError(
                f"the feature_store dbt package is not installed in {project_dir}: add it to packages.yml and run "
                "`dbt deps` (`fstore init` adds it)")
        found = _project_yaml(where).get("version")
    if str(found).split(".")[:2] != __version__.split(".")[:2]:
        raise CompileError(
            f"the feature_store dbt package is version {found} ({where}) but the fstore Python package is "
            f"{__version__}; their macros and code must match: point packages.yml at the {__version__} release "
            f"and run `dbt deps`, or install fstore {found}")
    return str(found)


def _project_yaml(path: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CompileError(f"cannot read {path}: {exc}") from None


def _compile_with_dbt(registry, call: str) -> str:
    # A separate target path: our compiles must not rewrite the manifest the registry reads,
    # and --no-populate-cache keeps dbt from opening the warehouse (a running `dbt build`
    # holds DuckDB's write lock).
    check_package_version(registry.project_dir)
    target_path = registry.manifest_path.parent / "feature_store" / "dbt"
    result, output = _invoke(
        registry.project_dir,
        ["compile", "--inline", call, "--log-level", "none", "--no-populate-cache", "--no-write-json",
         "--target-path", str(target_path)],
        registry.target.name,
        registry.profiles_dir,  # the profiles.yml the registry read (--profiles-dir)
    )
    if not result.success or not result.result or not result.result.results:
        detail = _error_text(result.exception) or output.strip() or "no detail from dbt"
        raise CompileError(f"dbt could not compile {call}: {detail}")
    return result.result.results[0].node.compiled_code


def _error_text(exc) -> str:
    """The innermost message of a dbt exception chain (our macros' raise_compiler_error text)."""
    messages = []
    while exc is not None:
        text = str(getattr(exc, "msg", "") or exc).strip()
        if text:
            messages.append(text)
        exc = exc.__cause__ or exc.__context__
    return messages[-1] if messages else ""


def _jinja(value: Any) -> str:
    """A Python value as a Jinja literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_jinja(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_jinja(k)}: {_jinja(v)}" for k, v in value.items()) + "}"
    if isinstance(value, timedelta):
        return _jinja(format_duration(value))
    return str(value)


def macro_call(name: str, **kwargs: Any) -> str:
    """``{{ feature_store.<name>(k=v, ...) }}`` with the values as Jinja literals."""
    args = ", ".join(f"{k}={_jinja(v)}" for k, v in kwargs.items())
    return f"{{{{ feature_store.{name}({args}) }}}}"
