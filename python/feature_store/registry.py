"""The registry: typed feature definitions read from dbt's ``target/manifest.json``.

There is no second registry database. A feature view is a dbt model whose
``config.meta.feature_store`` block declares it; entities are declared once under
``vars.feature_store.entities`` in ``dbt_project.yml``. This module parses both
into small dataclasses and validates them, collecting every problem at once.

It never imports dbt: the serving path depends on it and must start fast.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable

import orjson
import yaml

from feature_store.errors import (
    DefinitionError,
    EntityDataFrameError,
    ManifestError,
    ManifestMissing,
    UnknownFeature,
    UnknownFeatureView,
)

__all__ = [
    "Entity",
    "Fallback",
    "Feature",
    "FeatureView",
    "Problem",
    "Registry",
    "output_names",
    "parse_duration",
    "type_kind",
]

VIEW_META_KEYS = (
    "entities",
    "timestamp",
    "created_timestamp",
    "ttl",
    "owner",
    "online",
    "tags",
    "freshness_sla",
    "description",
)
COLUMN_META_KEYS = ("fallback", "deprecated", "replaced_by", "tags")

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Words people write instead of a unit letter, for the fix-it hint.
_UNIT_WORDS = {
    "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "day": "d", "days": "d", "week": "w", "weeks": "w",
}


def parse_duration(text: Any) -> timedelta:
    """Parse ``<int><unit>`` (unit one of s, m, h, d, w) into a timedelta.

    Raises ValueError whose message suggests the right spelling (``2 days`` -> ``2d``).
    """
    m = _DURATION.match(str(text))
    if m and not isinstance(text, bool):
        return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    hint = "write it as <int><unit> with unit s, m, h, d or w, e.g. 2d"
    loose = re.match(r"^\s*(\d+)\s*([A-Za-z]+)\s*$", str(text))
    if loose and loose.group(2).lower() in _UNIT_WORDS:
        hint = f"write it as {loose.group(1)}{_UNIT_WORDS[loose.group(2).lower()]}"
    raise ValueError(f"{text!r} is not a duration; {hint}")


def format_duration(value: timedelta | None) -> str:
    """The inverse of :func:`parse_duration`, for display (``None`` -> ``-``)."""
    if value is None:
        return "-"
    secs = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if secs and secs % size == 0:
            return f"{secs // size}{unit}"
    return f"{secs}s"


_KINDS = (
    ("bool", re.compile(r"^(bool|boolean|logical)$")),
    ("int", re.compile(r"^(tinyint|smallint|int|integer|bigint|hugeint|int[1248]|u?(tiny|small|big|huge)?int|long|short|byte)$")),
    ("float", re.compile(r"^(float|double|real|float[48]|double precision)$")),
    ("decimal", re.compile(r"^(decimal|numeric|number)(\(.*\))?$")),
    ("string", re.compile(r"^(varchar|text|string|char|character varying|bpchar|nvarchar|character)(\(.*\))?$")),
    ("timestamp", re.compile(r"^(timestamp|datetime|timestamptz|timestamp with time zone|timestamp without time zone|timestamp_ntz|timestamp_tz|timestamp_ltz)(\(\d+\))?$")),
    ("date", re.compile(r"^date$")),
)


@functools.lru_cache(maxsize=1024)
def type_kind(data_type: str | None) -> str | None:
    """Map a declared ``data_type`` to one of int, float, decimal, string, bool, timestamp, date.

    ``None`` when the type is missing or not one we can store online.
    """
    if not data_type:
        return None
    t = " ".join(data_type.strip().lower().split())
    for kind, pattern in _KINDS:
        if pattern.match(t):
            return kind
    return None


@dataclass(frozen=True)
class Problem:
    """One validation finding, printed as a single line a user can act on."""

    severity: str  # "error", "warning" or "note"
    model: str
    where: str  # the meta key or column at fault
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.model}: {self.where}: {self.message}"


@dataclass(frozen=True)
class Entity:
    """A business object features describe (a user, a transaction), keyed by its join keys."""

    name: str
    join_keys: tuple[str, ...]
    description: str = ""
    # Declared types of the join keys, taken from the views that use the entity.
    join_key_types: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Fallback:
    """What a missing value becomes: ``impute`` a default, or ``gate`` (refuse to serve)."""

    kind: str  # "impute" or "gate"
    value: Any = None

    def __str__(self) -> str:
        return "gate" if self.kind == "gate" else f"impute {self.value!r}"


@dataclass(frozen=True)
class Feature:
    """One feature column of a feature view."""

    name: str
    view: str
    data_type: str | None
    description: str = ""
    fallback: Fallback | None = None
    deprecated: str | None = None  # the tombstone date, ISO text
    replaced_by: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def kind(self) -> str | None:
        """Storage kind derived from ``data_type`` (int, float, decimal, string, bool, timestamp, date)."""
        return type_kind(self.data_type)

    @property
    def ref(self) -> str:
        """The full reference ``view:feature``."""
        return f"{self.view}:{self.name}"


@dataclass(frozen=True)
class FeatureView:
    """One dbt model declared as a feature view: one row per entity key per event timestamp."""

    name: str
    unique_id: str
    relation: str
    entities: tuple[str, ...]
    join_keys: tuple[str, ...]
    timestamp: str
    features: tuple[Feature, ...]
    created_timestamp: str | None = None
    ttl: timedelta | None = None
    owner: str | None = None
    tags: tuple[str, ...] = ()
    online: bool = False
    freshness_sla: timedelta | None = None
    description: str = ""
    column_types: dict[str, str | None] = field(default_factory=dict, compare=False)
    upstream: tuple[str, ...] = ()
    downstream: tuple[str, ...] = ()

    def feature(self, name: str) -> Feature:
        """The feature called ``name``; :class:`UnknownFeature` with a did-you-mean otherwise."""
        for f in self.features:
            if f.name == name:
                return f
        raise UnknownFeature(
            f"feature view {self.name} has no feature {name!r}{_did_you_mean(name, [f.name for f in self.features])}"
        )

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


def output_names(features: list[Feature], full_feature_names: bool) -> list[str]:
    """The name each feature gets in a result (``view__feature`` when full), offline and online alike.

    Raises :class:`EntityDataFrameError` when two features would get the same name.
    """
    names = [f"{f.view}__{f.name}" if full_feature_names else f.name for f in features]
    seen: dict[str, Feature] = {}
    for f, name in zip(features, names):
        if name in seen:
            raise EntityDataFrameError(
                f"features {seen[name].ref} and {f.ref} would both be named {name!r}; "
                "pass full_feature_names=True (names become view__feature) or request only one")
        seen[name] = f
    return names


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _meta(node: dict) -> dict:
    """The node's ``feature_store`` meta: ``config.meta`` first (dbt 1.10+), then top-level ``meta``."""
    for meta in ((node.get("config") or {}).get("meta") or {}, node.get("meta") or {}):
        if "feature_store" in meta:
            return meta["feature_store"]
    return {}


def _has_meta(node: dict) -> bool:
    return any(
        "feature_store" in m for m in (((node.get("config") or {}).get("meta") or {}), node.get("meta") or {})
    )


def _as_tuple(value: Any) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def _render_env(text: str) -> str:
    """Resolve ``{{ env_var('NAME', 'default') }}`` the way dbt would, without Jinja."""

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(3)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise ManifestError(f"profiles.yml uses env_var('{name}') but {name} is not set")
        return default

    return re.sub(r"\{\{\s*env_var\(\s*['\"](\w+)['\"]\s*(,\s*['\"]([^'\"]*)['\"]\s*)?\)\s*\}\}", sub, text)


@dataclass(frozen=True)
class Target:
    """The dbt target in use: its name and, for DuckDB, the warehouse file."""

    name: str
    type: str
    path: Path | None


def _load_target(project_dir: Path, profile: str, target: str | None, profiles_dir: Path | None) -> Target:
    candidates = [profiles_dir] if profiles_dir else []
    if os.environ.get("DBT_PROFILES_DIR"):
        candidates.append(Path(os.environ["DBT_PROFILES_DIR"]))
    candidates += [project_dir, Path.home() / ".dbt"]
    for directory in candidates:
        path = Path(directory) / "profiles.yml"
        if path.is_file():
            profiles = yaml.safe_load(_render_env(path.read_text())) or {}
            break
    else:
        return Target(name=target or "dev", type="unknown", path=None)
    prof = profiles.get(profile) or {}
    name = target or os.environ.get("DBT_TARGET") or prof.get("target") or "dev"
    outputs = prof.get("outputs") or {}
    if name not in outputs:
        raise ManifestError(
            f"profile {profile!r} in {path} has no target {name!r}; targets: {', '.join(outputs) or 'none'}"
        )
    out = outputs[name]
    db_path = out.get("path")
    if db_path and db_path != ":memory:" and not os.path.isabs(db_path):
        db_path = project_dir / db_path
    return Target(name=name, type=out.get("type", "unknown"), path=Path(db_path) if db_path else None)


class Registry:
    """Feature views and entities of one dbt project, parsed from its manifest.

    Use :meth:`load`; ``problems`` lists what :meth:`validate` found (errors,
    warnings and notes). Loading never raises for bad definitions: ``load(strict=True)``
    (the default for serving) raises :class:`DefinitionError` if any problem is an error.
    """

    def __init__(
        self,
        project_name: str,
        entities: dict[str, Entity],
        views: dict[str, FeatureView],
        problems: list[Problem],
        *,
        project_dir: Path,
        manifest_path: Path,
        target: Target,
        adapter_type: str | None = None,
    ):
        self.project_name = project_name
        self.entities = entities
        self.views = views
        self.problems = problems
        self.project_dir = project_dir
        self.manifest_path = manifest_path
        self.target = target
        self.adapter_type = adapter_type

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        project_dir: str | os.PathLike = ".",
        *,
        target: str | None = None,
        profiles_dir: str | os.PathLike | None = None,
        manifest_path: str | os.PathLike | None = None,
        strict: bool = False,
    ) -> "Registry":
        """Read ``dbt_project.yml`` and the manifest of the project at ``project_dir``.

        Raises :class:`ManifestError` when the manifest is missing or unreadable (run
        ``dbt parse``), and with ``strict=True`` :class:`DefinitionError` when a
        definition is invalid.
        """
        project_dir = Path(project_dir).resolve()
        project_file = project_dir / "dbt_project.yml"
        if not project_file.is_file():
            raise ManifestError(f"no dbt_project.yml in {project_dir}; pass --project-dir pointing at the dbt project")
        project = yaml.safe_load(project_file.read_text()) or {}
        project_name = project.get("name", "")
        fs_vars = ((project.get("vars") or {}).get(project_name) or {}) if project_name else {}
        if "entities" not in fs_vars:
            # A project that installs feature_store as a package scopes its vars to the package.
            fs_vars = (project.get("vars") or {}).get("feature_store") or fs_vars
        target_obj = _load_target(
            project_dir, project.get("profile", project_name), target, Path(profiles_dir) if profiles_dir else None
        )
        if manifest_path is None:
            manifest_path = project_dir / project.get("target-path", "target") / "manifest.json"
        manifest_path = Path(manifest_path)
        try:
            raw = manifest_path.read_bytes()
        except FileNotFoundError:
            raise ManifestMissing(
                f"no manifest at {manifest_path}; run `dbt parse` in {project_dir} (or any fstore command, "
                "which runs it for you) to create it"
            ) from None
        try:
            manifest = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ManifestError(f"{manifest_path} is not valid JSON ({exc}); run `dbt parse` again") from None
        registry = cls.from_manifest(
            manifest,
            fs_vars.get("entities") or {},
            project_name=project_name,
            project_dir=project_dir,
            manifest_path=manifest_path,
            target=target_obj,
        )
        if strict:
            errors = [p for p in registry.problems if p.severity == "error"]
            if errors:
                raise DefinitionError(errors)
        return registry

    @classmethod
    def from_manifest(
        cls,
        manifest: dict,
        entity_vars: dict,
        *,
        project_name: str = "",
        project_dir: Path = Path("."),
        manifest_path: Path = Path("target/manifest.json"),
        target: Target | None = None,
    ) -> "Registry":
        """Build a registry from an already parsed manifest dict and the entities var."""
        problems: list[Problem] = []
        entities: dict[str, Entity] = {}
        if not isinstance(entity_vars, dict):
            problems.append(Problem("error", "dbt_project.yml", "vars.feature_store.entities",
                                    "must be a mapping of entity name to {join_keys: [...]}"))
            entity_vars = {}
        for name, spec in entity_vars.items():
            keys = _as_tuple((spec or {}).get("join_keys"))
            if not keys:
                problems.append(Problem("error", "dbt_project.yml", f"vars.feature_store.entities.{name}",
                                        "declares no join_keys; add join_keys: [<column>]"))
                continue
            entities[name] = Entity(name=name, join_keys=keys, description=(spec or {}).get("description") or "")

        child_map = manifest.get("child_map") or {}
        views: dict[str, FeatureView] = {}
        for uid, node in (manifest.get("nodes") or {}).items():
            if node.get("resource_type") != "model" or not _has_meta(node):
                continue
            view = _parse_view(uid, node, entities, child_map, problems)
            if view is not None:
                views[view.name] = view

        _check_across_views(views, entities, problems)
        metadata = manifest.get("metadata") or {}
        return cls(
            project_name or metadata.get("project_name", ""),
            entities,
            views,
            problems,
            project_dir=project_dir,
            manifest_path=manifest_path,
            target=target or Target("dev", metadata.get("adapter_type", "unknown"), None),
            adapter_type=metadata.get("adapter_type"),
        )

    # -- queries ----------------------------------------------------------------------------

    def view(self, name: str) -> FeatureView:
        """The feature view called ``name``; :class:`UnknownFeatureView` with a did-you-mean otherwise."""
        try:
            return self.views[name]
        except KeyError:
            raise UnknownFeatureView(
                f"no feature view {name!r} in the registry{_did_you_mean(name, self.views)}; "
                "`fstore list` shows them (run `dbt parse` if you just added it)"
            ) from None

    def resolve(self, refs: Iterable[str]) -> list[Feature]:
        """Resolve ``view:feature`` and bare ``view`` references to features, in order, without repeats."""
        out: list[Feature] = []
        seen: set[str] = set()
        for ref in refs:
            view_name, _, feature_name = str(ref).partition(":")
            view = self.view(view_name.strip())
            chosen = [view.feature(feature_name.strip())] if feature_name else list(view.features)
            for f in chosen:
                if f.ref not in seen:
                    seen.add(f.ref)
                    out.append(f)
        return out

    def stale_files(self) -> list[Path]:
        """Model, macro and project files changed after the manifest was written."""
        try:
            built = self.manifest_path.stat().st_mtime
        except FileNotFoundError:
            return []
        newer = []
        roots = [self.project_dir / "models", self.project_dir / "macros"]
        for path in [self.project_dir / "dbt_project.yml"]:
            if path.exists() and path.stat().st_mtime > built:
                newer.append(path)
        for root in roots:
            for dirpath, _, files in os.walk(root):
                for name in files:
                    if name.endswith((".sql", ".yml", ".yaml")):
                        p = Path(dirpath) / name
                        if p.stat().st_mtime > built:
                            newer.append(p)
        return newer

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def _parse_view(
    uid: str, node: dict, entities: dict[str, Entity], child_map: dict, problems: list[Problem]
) -> FeatureView | None:
    name = node.get("name") or uid.rsplit(".", 1)[-1]
    meta = _meta(node)

    def problem(where: str, message: str, severity: str = "error") -> None:
        problems.append(Problem(severity, name, where, message))

    if not isinstance(meta, dict):
        problem("meta.feature_store", f"must be a mapping, got {meta!r}")
        return None
    for key in meta:
        if key not in VIEW_META_KEYS:
            problem(f"meta.feature_store.{key}",
                    f"unknown key{_did_you_mean(key, VIEW_META_KEYS)} (known: {', '.join(VIEW_META_KEYS)})")

    columns = node.get("columns") or {}
    column_types = {c: (spec or {}).get("data_type") for c, spec in columns.items()}

    entity_names = _as_tuple(meta.get("entities"))
    join_keys: list[str] = []
    if not entity_names:
        problem("meta.feature_store.entities", "missing; name the entities this view is keyed by, e.g. entities: [user]")
    for ent in entity_names:
        if ent not in entities:
            problem("meta.feature_store.entities",
                    f"unknown entity {ent!r}{_did_you_mean(str(ent), entities)}; declare it under "
                    "vars.feature_store.entities in dbt_project.yml")
            continue
        for key in entities[ent].join_keys:
            if key not in columns:
                problem(f"column {key}",
                        f"join key of entity {ent!r} is not a declared column of the model; add it to the model and its YAML")
            join_keys.append(key)

    timestamp = meta.get("timestamp")
    if not timestamp:
        problem("meta.feature_store.timestamp", "missing; name the event timestamp column, e.g. timestamp: event_ts")
    elif timestamp not in columns:
        problem("meta.feature_store.timestamp",
                f"column {timestamp!r} is not declared on the model{_did_you_mean(str(timestamp), columns)}")
    created = meta.get("created_timestamp")
    if created is not None and created not in columns:
        problem("meta.feature_store.created_timestamp",
                f"column {created!r} is not declared on the model{_did_you_mean(str(created), columns)}")
    for col in (timestamp, created):
        if col in columns and column_types.get(col) and type_kind(column_types[col]) not in ("timestamp", "date"):
            problem(f"column {col}", f"is a time column but declared as {column_types[col]!r}; declare data_type: timestamp")

    def duration(key: str) -> timedelta | None:
        if meta.get(key) is None:
            return None
        try:
            return parse_duration(meta[key])
        except ValueError as exc:
            problem(f"meta.feature_store.{key}", str(exc))
            return None

    ttl = duration("ttl")
    freshness_sla = duration("freshness_sla")
    online = meta.get("online", False)
    if not isinstance(online, bool):
        problem("meta.feature_store.online", f"must be true or false, got {online!r}")
        online = False
    if online and meta.get("ttl") is None:
        problem("meta.feature_store.ttl",
                "online view without ttl: its values never expire online; declare ttl (e.g. ttl: 2d)", "warning")
    owner = meta.get("owner")
    if not owner:
        problem("meta.feature_store.owner", "missing; name a team or person to page, e.g. owner: team@example.com")

    for col, dtype in column_types.items():
        if not dtype:
            problem(f"column {col}", "has no data_type; declare data_type on every column (the contract needs it)")

    time_cols = {timestamp, created}
    features = []
    for col, spec in columns.items():
        if col in join_keys or col in time_cols:
            continue
        features.append(_parse_feature(name, col, spec or {}, problem))

    return FeatureView(
        name=name,
        unique_id=uid,
        relation=node.get("relation_name") or "",
        entities=tuple(entity_names),
        join_keys=tuple(dict.fromkeys(join_keys)),
        timestamp=timestamp or "",
        created_timestamp=created,
        features=tuple(features),
        ttl=ttl,
        owner=owner,
        tags=_as_tuple(meta.get("tags")) or tuple(node.get("tags") or ()),
        online=online,
        freshness_sla=freshness_sla,
        description=meta.get("description") or node.get("description") or "",
        column_types=column_types,
        upstream=tuple((node.get("depends_on") or {}).get("nodes") or ()),
        downstream=tuple(c for c in child_map.get(uid, ()) if not c.startswith("test.")),
    )


def _parse_feature(view: str, col: str, spec: dict, problem) -> Feature:
    config = spec.get("config") or {}
    meta = (config.get("meta") or {}).get("feature_store")
    if meta is None:
        meta = (spec.get("meta") or {}).get("feature_store") or {}
    dtype = spec.get("data_type")
    if dtype and type_kind(dtype) is None:
        problem(f"column {col}", f"data_type {dtype!r} cannot be served online; use a numeric, string, boolean or "
                "timestamp type", "warning")
    tags = tuple(config.get("tags") or spec.get("tags") or ())
    if not meta:  # the common case: a plain feature column
        return Feature(name=col, view=view, data_type=dtype, description=spec.get("description") or "", tags=tags)
    where = f"column {col}: meta.feature_store"
    if not isinstance(meta, dict):
        problem(where, f"must be a mapping, got {meta!r}")
        meta = {}
    for key in meta:
        if key not in COLUMN_META_KEYS:
            problem(f"{where}.{key}",
                    f"unknown key{_did_you_mean(key, COLUMN_META_KEYS)} (known: {', '.join(COLUMN_META_KEYS)})")
    fallback = None
    raw = meta.get("fallback")
    if raw == "gate":
        fallback = Fallback("gate")
    elif isinstance(raw, dict) and set(raw) == {"impute"}:
        value = raw["impute"]
        reason = _impute_mismatch(value, dtype)
        if reason:
            problem(f"{where}.fallback.impute", reason)
        fallback = Fallback("impute", value)
    elif raw is not None:
        problem(f"{where}.fallback", f"{raw!r} is not a fallback; write `fallback: gate` or `fallback: {{impute: <value>}}`")
    deprecated = meta.get("deprecated")
    if deprecated is not None:
        try:
            datetime.fromisoformat(str(deprecated))
        except ValueError:
            problem(f"{where}.deprecated", f"{deprecated!r} is not a date; write it as YYYY-MM-DD")
    return Feature(
        name=col,
        view=view,
        data_type=dtype,
        description=spec.get("description") or "",
        fallback=fallback,
        deprecated=str(deprecated) if deprecated is not None else None,
        replaced_by=meta.get("replaced_by"),
        tags=tuple(meta.get("tags") or ()) or tags,
    )


def _impute_mismatch(value: Any, dtype: str | None) -> str | None:
    """Why ``value`` cannot impute a column of ``dtype`` (None when it can)."""
    kind = type_kind(dtype)
    if value is None or kind is None:
        return None
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "decimal": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "string": isinstance(value, str),
    }
    if kind in ok:
        good = ok[kind]
    else:  # timestamp / date: ISO text
        try:
            datetime.fromisoformat(str(value))
            good = isinstance(value, str)
        except ValueError:
            good = False
    if good:
        return None
    return f"{value!r} ({type(value).__name__}) cannot impute a {dtype} column; give a {kind} value"


def _check_across_views(views: dict[str, FeatureView], entities: dict[str, Entity], problems: list[Problem]) -> None:
    # Join key types must agree across views of one entity, or a join silently casts or fails.
    seen_types: dict[str, tuple[str, str]] = {}
    for view in views.values():
        for key in view.join_keys:
            dtype = view.column_types.get(key)
            if not dtype:
                continue
            norm = " ".join(dtype.lower().split())
            if key in seen_types and seen_types[key][0] != norm:
                other_view = seen_types[key][1]
                problems.append(Problem(
                    "error", view.name, f"column {key}",
                    f"join key declared as {dtype!r} but {other_view} declares it as {seen_types[key][0]!r}; "
                    "use one type for a join key in every view"))
            else:
                seen_types.setdefault(key, (norm, view.name))
    for ent in entities.values():
        ent.join_key_types.update({k: seen_types[k][0] for k in ent.join_keys if k in seen_types})
    by_name: dict[str, list[str]] = {}
    for view in views.values():
        for f in view.features:
            by_name.setdefault(f.name, []).append(view.name)
    for fname, owners in by_name.items():
        if len(owners) > 1:
            problems.append(Problem(
                "note", owners[0], f"feature {fname}",
                f"also defined in {', '.join(owners[1:])}; a join that takes both needs full_feature_names"))
