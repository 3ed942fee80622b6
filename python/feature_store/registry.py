"""The registry: typed feature definitions read from dbt's ``target/manifest.json``.

There is no second registry database. A feature view is a dbt model whose
``config.meta.feature_store`` block declares it; entities are declared once, in the
global var ``feature_store:entities`` of the root ``dbt_project.yml`` (the var the macros
read too). Only the root project's models are views, plus those of packages named on
purpose. This module parses both
into small dataclasses and validates them, collecting every problem at once.

Validation is what makes a clean ``fstore validate`` safe to sync and serve. Beyond
missing or misspelled keys, it rejects as errors:

* on views with ``online: true``, every column whose declared type the online store
  cannot carry: types with no storage kind (see :func:`type_kind`: blobs, lists,
  structs, maps, intervals, JSON, UUID, decimals wider than 38 digits ...) and integers
  beyond the signed 64-bit range (HUGEINT, UHUGEINT, UBIGINT); offline-only views get a
  warning for the former and nothing for the latter, since training reads them fine;
* on online views, join keys of float or decimal type: an online key is text that must
  match byte for byte (``27.4`` and ``27.40`` are two entities), unlike a SQL join;
* on every view, columns named like a field of the online hash
  (:data:`feature_store.codec.RESERVED_FIELDS`) or starting with :data:`RESERVED_PREFIX`;
* on feature services (dbt exposures of ``type: ml``, see :class:`FeatureService`),
  references to features or views that do not exist; :meth:`Registry.validate` adds the
  features they use past their tombstone date, which depend on the day it runs;
* anything of the wrong shape, in the manifest or in the definitions, named by model
  (or file) and key. Only a manifest, project or profiles file whose top level or
  sections are unusable raises (:class:`ManifestError`, naming the file and key):
  loading never raises anything but a :class:`FeatureStoreError`.

It never imports dbt, duckdb or pyarrow: the serving path depends on it and must start fast.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import reprlib
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

import orjson
import yaml

from feature_store import codec
from feature_store.errors import (
    DefinitionError,
    EntityDataFrameError,
    ManifestError,
    ManifestMissing,
    UnknownFeature,
    UnknownFeatureView,
)

__all__ = [
    "ENTITIES_VAR",
    "Consumer",
    "DbtNode",
    "Entity",
    "Fallback",
    "Feature",
    "FeatureService",
    "FeatureView",
    "Lineage",
    "Problem",
    "RESERVED_PREFIX",
    "Registry",
    "SPINE_RELATION",
    "SPINE_ROW",
    "SPINE_TS",
    "output_names",
    "parse_duration",
    "type_kind",
]

# The one place entities are declared: a global var of the root project, namespaced like
# dbt-date's "dbt_date:time_zone". A top-level var named after a package would be read by
# dbt as that package's scope, so a consumer's entities would leak into its examples.
ENTITIES_VAR = "feature_store:entities"

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
    "log_sample_rate",
    "monitors",
    "deprecated",
    "replaced_by",
)
COLUMN_META_KEYS = ("fallback", "deprecated", "replaced_by", "tags", "monitors")
# The thresholds `monitors:` may set, on a view or a column (fstore monitor, fstore skew).
# Shares and statistics in [0, 1] but PSI (unbounded), the bin count and the lag factor.
MONITOR_KEYS = ("ks_warn", "ks_alert", "psi_warn", "psi_alert", "psi_bins", "fill_rate_min", "skew_max", "lag_factor")
_MONITOR_SHARES = ("ks_warn", "ks_alert", "fill_rate_min", "skew_max")
EXPOSURE_META_KEYS = ("features",)

# A model that calls the join macro (itself, or through macros of its own) on a view is a
# training set of that view: dbt records the macros a node calls in its depends_on.
POINT_IN_TIME_JOIN = "macro.feature_store.point_in_time_join"
# What lineage shows as where the data comes from; the other upstream nodes are models.
SOURCE_TYPES = ("source", "seed")
_GRAPH_TYPES = ("model", "seed", "snapshot", "source", "exposure")

# Names of the point-in-time join: the Python API registers the spine as SPINE_RELATION
# and adds SPINE_ROW and SPINE_TS to it, and the join's macros name their CTEs and helper
# columns __fs_*. A model column named so would be shadowed or duplicated in the join.
RESERVED_PREFIX = "__fs_"
SPINE_RELATION = "__fs_spine"
SPINE_ROW = "__fs_row"
SPINE_TS = "__fs_ts"

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
        try:
            return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        except (OverflowError, ValueError):  # beyond timedelta, or more digits than int() takes
            raise ValueError(f"{text!r} is too long a duration; the longest is {timedelta.max.days}d") from None
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
    ("int", re.compile(r"^(tinyint|smallint|int|integer|bigint|hugeint|signed|long|short|byte|int(1|2|4|8|16|32|64|128)"
                       r"|u(tinyint|smallint|integer|bigint|hugeint)|uint(8|16|32|64|128))$")),
    ("float", re.compile(r"^(float|double|real|float[48]|double precision)$")),
    ("string", re.compile(r"^(varchar|text|string|char|character varying|bpchar|nvarchar|character)(\(.*\))?$")),
    ("timestamp", re.compile(r"^(timestamp|datetime|timestamptz|timestamp with time zone|timestamp without time zone"
                             r"|timestamp_ntz|timestamp_tz|timestamp_ltz|timestamp_(s|ms|us|ns))(\(\d+\))?$")),
    ("date", re.compile(r"^date$")),
)
# Integers beyond the signed 64-bit range the int kind promises: DuckDB hands HUGEINT and
# UHUGEINT to Arrow as decimal128, which the sync's int64 cast overflows (UHUGEINT's upper
# half even wraps to negatives), and UBIGINT's upper half is no int64 either.
_WIDE_INT = re.compile(r"^(hugeint|uhugeint|ubigint|int128|uint64|uint128)$")
_DECIMAL_SHAPE = re.compile(r"^(decimal|numeric|number|dec) ?\([^()]*\)$")
# At most 9 digits: int() refuses very long digit strings, and no engine goes near that.
_DECIMAL = re.compile(r"^(decimal|numeric|number|dec)( ?\(\s*(\d{1,9})\s*(,\s*(\d{1,9})\s*)?\))?$")
# The widest decimal DuckDB and Arrow's decimal128 carry.
_MAX_DECIMAL_PRECISION = 38
# Join key kinds allowed online: those whose text is one per value. Decimal and float keys
# that are equal in SQL can differ as text (27.4 / 27.40), and an online key is that text.
_KEY_KINDS = ("int", "string", "bool", "timestamp", "date")


def type_kind(data_type: Any) -> str | None:
    """Map a declared ``data_type`` to one of int, float, decimal, string, bool, timestamp, date.

    ``None`` when the type is missing, not text, or not one the online store can hold:
    lists, structs, maps, blobs, intervals, JSON, UUID, bit, and decimals whose precision
    is not 1 to 38 or whose scale exceeds it. Integers wider than 64 bits (HUGEINT,
    UBIGINT ...) are ``int``: they read back as Python ints, though the sync refuses them.
    """
    return _type_kind(data_type) if isinstance(data_type, str) else None


@functools.lru_cache(maxsize=1024)
def _type_kind(data_type: str) -> str | None:
    t = _normalize_type(data_type)
    decimal = _DECIMAL.match(t)
    if decimal:
        precision, scale = decimal.group(3), decimal.group(5)
        if precision is None:
            return "decimal"
        ok = 1 <= int(precision) <= _MAX_DECIMAL_PRECISION and int(scale or 0) <= int(precision)
        return "decimal" if ok else None
    for kind, pattern in _KINDS:
        if pattern.match(t):
            return kind
    return None


def _normalize_type(data_type: str) -> str:
    return " ".join(data_type.strip().lower().split())


@functools.lru_cache(maxsize=1024)
def _online_type_problem(data_type: str) -> str | None:
    """Why the online sync cannot store a column of ``data_type`` (``None`` when it can)."""
    t = _normalize_type(data_type)
    cast = "cast it in the model's SQL to a supported type (numeric, string, boolean, timestamp, date)"
    if type_kind(data_type) is None:
        if _DECIMAL_SHAPE.match(t):
            return (f"data_type {data_type!r} is not a decimal the online store can hold (precision 1 to "
                    f"{_MAX_DECIMAL_PRECISION}, scale at most the precision); {cast}")
        return f"data_type {data_type!r} cannot be stored online; {cast}"
    if _WIDE_INT.match(t):
        return (f"data_type {data_type!r} holds integers beyond the signed 64-bit range, which the online "
                "sync cannot store; cast it in the model's SQL to bigint if its values fit, else to decimal(38,0) "
                "or varchar")
    return None


def _reserved_problem(column: str) -> str | None:
    """Why ``column`` cannot name a column of a feature view (``None`` when it can)."""
    lowered = column.lower()  # DuckDB, where the sync's snapshot adds __event_ts, folds identifier case
    if lowered in codec.RESERVED_FIELDS:
        return f"the name {column!r} is reserved for the online store's own hash field; rename the column"
    if lowered.startswith(RESERVED_PREFIX):
        return (f"the name {column!r} is reserved: names starting with {RESERVED_PREFIX} belong to the "
                "point-in-time join; rename the column")
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
    deprecated: str | None = None  # the tombstone date, ISO text: the column's or its view's, the earlier
    replaced_by: str | None = None
    tags: tuple[str, ...] = ()
    # monitor thresholds: the view's `monitors:` overridden by the column's (keys: MONITOR_KEYS)
    monitors: dict[str, float] = field(default_factory=dict, compare=False)

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
    log_sample_rate: float | None = None  # share of online reads logged; None: the default
    monitors: dict[str, float] = field(default_factory=dict, compare=False)
    deprecated: str | None = None  # the view's tombstone date, ISO text (each feature has it too)
    replaced_by: str | None = None
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


@dataclass(frozen=True)
class FeatureService:
    """The features an ML model reads: a dbt exposure of ``type: ml`` that depends on feature views.

    ``features`` are the references listed under the exposure's
    ``config.meta.feature_store.features``: ``view:feature``, or ``view`` for every
    feature of a view. An ml exposure that lists none reads every feature of the views
    it ``depends_on``; ``features`` then holds those view names and ``listed`` is false.
    :meth:`Registry.feature_service` resolves them to ``view:feature`` references.
    """

    name: str
    unique_id: str
    features: tuple[str, ...]
    depends_on: tuple[str, ...] = ()  # node ids, as dbt recorded them
    owner: str | None = None  # the owner's email, else their name
    description: str = ""
    path: str = ""  # the YAML file declaring the exposure, relative to its project
    type: str = "ml"
    listed: bool = True


@dataclass(frozen=True)
class DbtNode:
    """One node of dbt's graph as lineage shows it: a source, seed, snapshot, model or exposure."""

    unique_id: str
    name: str  # a source's is ``source_name.table``
    resource_type: str
    path: str = ""  # its file, relative to its project
    depends_on: tuple[str, ...] = ()
    joins_features: bool = False  # a model calling feature_store.point_in_time_join: a training set
    type: str = ""  # an exposure's type (ml, dashboard, application, ...)
    owner: str | None = None  # an exposure's owner

    def to_dict(self) -> dict[str, Any]:
        """The node as JSON-ready data (an exposure's type and owner too)."""
        out: dict[str, Any] = {"name": self.name, "resource_type": self.resource_type, "unique_id": self.unique_id,
                               "path": self.path}
        if self.resource_type == "exposure":
            out.update(type=self.type, owner=self.owner)
        return out


@dataclass(frozen=True)
class Consumer:
    """An exposure that consumes a feature view: the view's features it lists, or none when it
    only ``depends_on`` the view (a dashboard, say, or an ml exposure listing no features)."""

    name: str
    unique_id: str
    type: str
    owner: str | None
    path: str
    features: tuple[str, ...]  # names of the view's features it uses
    listed: bool  # whether it lists its features (else it depends on the view as a whole)

    def to_dict(self) -> dict[str, Any]:
        """The consumer as JSON-ready data."""
        return {"name": self.name, "unique_id": self.unique_id, "type": self.type, "owner": self.owner,
                "path": self.path, "features": list(self.features), "listed": self.listed}


@dataclass(frozen=True)
class Lineage:
    """Where a feature comes from and what uses it, from dbt's graph: what ``fstore lineage`` prints.

    ``models`` run from the sources up to the view (each after the nodes it reads; the
    view is last, marked ``feature_view`` in :meth:`to_dict`). ``training_sets`` are the models calling ``point_in_time_join`` on the
    view: the manifest records which views a join reads, not which of their features.
    """

    view: FeatureView
    features: tuple[Feature, ...]  # the one asked for, or every feature of the view
    sources: tuple[DbtNode, ...]
    models: tuple[DbtNode, ...]
    training_sets: tuple[DbtNode, ...]
    exposures: tuple[Consumer, ...]

    def to_dict(self) -> dict[str, Any]:
        """The lineage as JSON-ready data: what ``fstore lineage --json`` prints."""
        return {
            "view": self.view.name,
            "sources": [n.to_dict() for n in self.sources],
            "models": [{**n.to_dict(), "feature_view": n.unique_id == self.view.unique_id} for n in self.models],
            "features": [{"feature": f.ref, "data_type": f.data_type, "description": f.description,
                          "deprecated": f.deprecated, "replaced_by": f.replaced_by} for f in self.features],
            "training_sets": [n.to_dict() for n in self.training_sets],
            "exposures": [c.to_dict() for c in self.exposures],
        }


def output_names(features: list[Feature], full_feature_names: bool) -> list[str]:
    """The name each feature gets in a result (``view__feature`` when full), offline and online alike.

    Raises :class:`EntityDataFrameError` when two features would get the same name.
    """
    names = [f"{f.view}__{f.name}" if full_feature_names else f.name for f in features]
    seen: dict[str, Feature] = {}
    for f, name in zip(features, names, strict=True):
        if name in seen:
            raise EntityDataFrameError(
                f"features {seen[name].ref} and {f.ref} would both be named {name!r}; "
                "pass full_feature_names=True (names become view__feature) or request only one")
        seen[name] = f
    return names


def _did_you_mean(word: Any, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _got(value: Any) -> str:
    """A short rendering of an unexpected value, for messages."""
    return f"{reprlib.repr(value)} ({type(value).__name__})"


def _names(value: Any) -> tuple[str, ...] | None:
    """A list of non-empty names as a tuple (one bare name too); ``None`` when it is not one."""
    if value is None or (type(value) is list and not value):  # the usual tags of a manifest
        return ()
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) and v for v in items):
        return None
    return tuple(items)


def _mapping(value: Any, file: Path, key: str, hint: str = "") -> dict:
    """``value`` (``None``: empty) if it is a mapping; :class:`ManifestError` naming ``file`` and ``key`` if not."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ManifestError(f"{file}: {key} must be a mapping, got {_got(value)}{hint}")
    return value


def _text(value: Any, file: Path, key: str, hint: str = "") -> Any:
    """``value`` if it is text or absent; :class:`ManifestError` naming ``file`` and ``key`` if not."""
    if value is not None and not isinstance(value, str):
        raise ManifestError(f"{file}: {key} must be text, got {_got(value)}{hint}")
    return value


def _read_yaml(path: Path, render_env: bool = False) -> dict:
    """The mapping a YAML file holds; :class:`ManifestError` naming the file when it holds none."""
    try:
        text = path.read_text()
        data = yaml.safe_load(_render_env(text) if render_env else text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from None
    return _mapping(data, path, "the top level")


def _render_env(text: str) -> str:
    """Resolve ``{{ env_var('NAME', 'default') }}`` (and ``| as_number``-style filters, which
    YAML's typing makes moot) for the few keys read here: type, path, target. Connections
    read the profile through dbt itself (feature_store.warehouse.profile)."""

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(3)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise ManifestError(f"profiles.yml uses env_var('{name}') but {name} is not set")
        return default

    return re.sub(r"\{\{\s*env_var\(\s*['\"](\w+)['\"]\s*(,\s*['\"]([^'\"]*)['\"]\s*)?\)(\s*\|\s*\w+)*\s*\}\}",
                  sub, text)


@dataclass(frozen=True)
class Target:
    """The dbt target in use: its name, adapter type, and for DuckDB the warehouse file;
    ``profile`` and ``profiles_file`` say where it was read (dbt reads it again to connect)."""

    name: str
    type: str
    path: Path | None
    profile: str = ""
    profiles_file: Path | None = None


def _load_target(project_dir: Path, profile: str, target: str | None, profiles_dir: Path | None) -> Target:
    candidates = [profiles_dir] if profiles_dir else []
    if os.environ.get("DBT_PROFILES_DIR"):
        candidates.append(Path(os.environ["DBT_PROFILES_DIR"]))
    candidates += [project_dir, Path.home() / ".dbt"]
    for directory in candidates:
        path = Path(directory) / "profiles.yml"
        if path.is_file():
            profiles = _read_yaml(path, render_env=True)
            break
    else:
        return Target(name=target or "dev", type="unknown", path=None, profile=profile)
    prof = _mapping(profiles.get(profile), path, profile)
    name = _text(target or os.environ.get("DBT_TARGET") or prof.get("target") or "dev", path, f"{profile}.target")
    outputs = _mapping(prof.get("outputs"), path, f"{profile}.outputs")
    if name not in outputs:
        raise ManifestError(
            f"profile {profile!r} in {path} has no target {name!r}; targets: {', '.join(map(str, outputs)) or 'none'}"
        )
    out = _mapping(outputs[name], path, f"{profile}.outputs.{name}")
    db_path = _text(out.get("path"), path, f"{profile}.outputs.{name}.path")
    if db_path and db_path != ":memory:" and not os.path.isabs(db_path):
        db_path = project_dir / db_path
    adapter = _text(out.get("type", "unknown"), path, f"{profile}.outputs.{name}.type")
    return Target(name=name, type=adapter, path=Path(db_path) if db_path else None, profile=profile,
                  profiles_file=path)


# dbt writes manifest.json in place: a reader that lands mid-write sees a cut-off file.
# A few short retries ride out a running `dbt build`; a file that stays broken is corrupt.
MANIFEST_READ_ATTEMPTS = 10
MANIFEST_READ_PAUSE = 0.2


def read_manifest(manifest_path: Path, project_dir: Path) -> dict:
    """The manifest as a dict; :class:`ManifestMissing` / :class:`ManifestError` with the next step."""
    for attempt in range(MANIFEST_READ_ATTEMPTS):
        try:
            raw = manifest_path.read_bytes()
        except FileNotFoundError:
            raise ManifestMissing(
                f"no manifest at {manifest_path}; run `dbt parse` in {project_dir} (or any fstore command, "
                "which runs it for you) to create it"
            ) from None
        except OSError as exc:
            raise ManifestError(f"cannot read {manifest_path}: {exc}") from None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if attempt + 1 == MANIFEST_READ_ATTEMPTS:
                raise ManifestError(
                    f"{manifest_path} is not valid JSON ({exc}); if a dbt command is writing it, retry when it "
                    "has finished, else run `dbt parse` again") from None
            time.sleep(MANIFEST_READ_PAUSE)
    raise AssertionError("unreachable")


class Registry:
    """Feature views, entities and feature services of one dbt project, parsed from its manifest.

    Use :meth:`load`; ``problems`` lists what loading found (errors, warnings and
    notes), and :meth:`validate` adds what depends on the date. Loading never raises for
    bad definitions: ``load(strict=True)`` (the default for serving) raises
    :class:`DefinitionError` if any problem is an error. ``feature_services`` are the ML
    models (dbt exposures of ``type: ml``) by name; ``graph`` is dbt's graph of sources,
    seeds, snapshots, models and exposures by node id, for :meth:`lineage`.
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
        feature_services: dict[str, FeatureService] | None = None,
        graph: dict[str, DbtNode] | None = None,
    ):
        self.project_name = project_name
        self.entities = entities
        self.views = views
        self.problems = problems
        self.feature_services = feature_services or {}
        self.graph = graph or {}
        self.project_dir = project_dir
        self.manifest_path = manifest_path
        self.target = target
        self.adapter_type = adapter_type
        self.profiles_dir: Path | None = None  # where profiles.yml was looked up (dbt is run with it too)

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
        packages: Iterable[str] = (),
    ) -> "Registry":
        """Read ``dbt_project.yml`` and the manifest of the project at ``project_dir``.

        The feature views are the root project's models, plus those of the installed
        dbt ``packages`` named (e.g. a shared features package); entities come from the
        global var ``feature_store:entities`` of the root project, the one the macros read.

        Raises :class:`ManifestError` when the manifest is missing or unreadable (run
        ``dbt parse``) or a file's top level is unusable, naming the file and the key, and
        with ``strict=True`` :class:`DefinitionError` when a definition is invalid.
        """
        project_dir = Path(project_dir).resolve()
        project_file = project_dir / "dbt_project.yml"
        if not project_file.is_file():
            raise ManifestError(f"no dbt_project.yml in {project_dir}; pass --project-dir pointing at the dbt project")
        project = _read_yaml(project_file)
        project_name = _text(project.get("name"), project_file, "name") or ""
        all_vars = _mapping(project.get("vars"), project_file, "vars")
        entity_vars = all_vars.get(ENTITIES_VAR)
        legacy = _mapping(all_vars.get("feature_store"), project_file, "vars.feature_store")
        if entity_vars is None and "entities" in legacy:
            raise ManifestError(
                f"{project_file}: vars.feature_store.entities is the old place for entities; move the block to the "
                f"global var \"{ENTITIES_VAR}\" (vars: {{\"{ENTITIES_VAR}\": {{user: {{join_keys: [user_id]}}}}}}), "
                "which dbt shows to every package and which fstore reads too")
        profile = _text(project.get("profile", project_name), project_file, "profile")
        target_obj = _load_target(project_dir, profile, target, Path(profiles_dir) if profiles_dir else None)
        if manifest_path is None:
            target_path = _text(project.get("target-path"), project_file, "target-path") or "target"
            manifest_path = project_dir / target_path / "manifest.json"
        manifest_path = Path(manifest_path)
        manifest = read_manifest(manifest_path, project_dir)
        registry = cls.from_manifest(
            manifest,
            entity_vars,
            project_name=project_name,
            project_dir=project_dir,
            manifest_path=manifest_path,
            target=target_obj,
            packages=packages,
        )
        registry.profiles_dir = Path(profiles_dir).resolve() if profiles_dir else None
        if strict:
            errors = [p for p in registry.problems if p.severity == "error"]
            if errors:
                raise DefinitionError(errors)
        return registry

    @classmethod
    def from_manifest(
        cls,
        manifest: dict,
        entity_vars: Any,
        *,
        project_name: str = "",
        project_dir: Path = Path("."),
        manifest_path: Path = Path("target/manifest.json"),
        target: Target | None = None,
        packages: Iterable[str] | None = None,
    ) -> "Registry":
        """Build a registry from an already parsed manifest dict and the entities var (``None``: no entities).

        Views are the models of the root project (``project_name``) and of ``packages``;
        ``None`` takes every model in the manifest (a manifest built here, in tests).

        Bad definitions, and nodes of the wrong shape, become problems naming the model
        (or the file) and the key; a manifest whose top level or sections (``nodes``,
        ``child_map``, ``metadata``, ``sources``, ``exposures``, ``macros``) are not
        mappings raises :class:`ManifestError`.
        """
        again = "; run `dbt parse` again"
        if not isinstance(manifest, dict):
            raise ManifestError(f"{manifest_path}: the top level must be a mapping, got {_got(manifest)}{again}")
        problems: list[Problem] = []
        entities = _parse_entities(entity_vars, problems)
        nodes = _mapping(manifest.get("nodes"), manifest_path, "nodes", again)
        child_map = _mapping(manifest.get("child_map"), manifest_path, "child_map", again)
        metadata = _mapping(manifest.get("metadata"), manifest_path, "metadata", again)
        sources = _mapping(manifest.get("sources"), manifest_path, "sources", again)
        exposures = _mapping(manifest.get("exposures"), manifest_path, "exposures", again)
        macros = _mapping(manifest.get("macros"), manifest_path, "macros", again)
        adapter_type = _text(metadata.get("adapter_type"), manifest_path, "metadata.adapter_type", again)
        manifest_project = _text(metadata.get("project_name"), manifest_path, "metadata.project_name", again)

        root = project_name or manifest_project or ""
        wanted = None if packages is None else {root, *packages}

        def ours(section: str, uid: str, node: Any) -> bool:
            """Whether a manifest entry is a mapping (else an error) of a package this registry reads.

            Another package's models and exposures are not this project's (an installed
            package's own examples, say) unless the project names that package."""
            if not isinstance(node, dict):
                problems.append(Problem("error", str(manifest_path), f"{section}.{uid}",
                                        f"must be a mapping, got {_got(node)}{again}"))
                return False
            package = node.get("package_name")
            return wanted is None or (isinstance(package, str) and package in wanted)

        views: dict[str, FeatureView] = {}
        for uid, node in nodes.items():
            if not ours("nodes", uid, node) or node.get("resource_type") != "model":
                continue
            view = _parse_view(uid, node, entities, child_map, problems)
            if view is None:
                continue
            if view.name in views:
                other = views[view.name]
                problems.append(Problem(
                    "error", view.name, "model name",
                    f"two feature views are named {view.name!r} ({other.unique_id} and {view.unique_id}); feature "
                    "references name views by model name, so rename one (or leave its package out)"))
                continue
            views[view.name] = view

        _check_across_views(views, entities, problems)
        services: dict[str, FeatureService] = {}
        for uid, node in exposures.items():
            if not ours("exposures", uid, node):
                continue
            service = _parse_service(uid, node, views, problems)
            if service is None:
                continue
            if service.name in services:
                problems.append(Problem(
                    "error", service.name, "exposure name",
                    f"two feature services are named {service.name!r} ({services[service.name].unique_id} and "
                    f"{service.unique_id}); feature_service= names them by exposure name, so rename one"))
                continue
            services[service.name] = service
        _check_services(services, views, problems)
        return cls(
            project_name or manifest_project or "",
            entities,
            views,
            problems,
            project_dir=project_dir,
            manifest_path=manifest_path,
            target=target or Target("dev", adapter_type or "unknown", None),
            adapter_type=adapter_type,
            feature_services=services,
            graph=_parse_graph(nodes, sources, exposures, macros),
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

    def feature_service(self, name: str) -> list[str]:
        """The ``view:feature`` references of the feature service (ML model exposure) ``name``, in order.

        A listed ``view`` becomes each of its features, as they are in this registry.
        :class:`UnknownFeature` with a did-you-mean when no exposure of type ml is called
        ``name``, or when the service names a feature or view that does not exist.
        """
        service = self.feature_services.get(name) if isinstance(name, str) else None
        if service is None:
            known = ", ".join(sorted(self.feature_services)) or "none declared"
            raise UnknownFeature(
                f"no feature service {name!r}{_did_you_mean(name, self.feature_services)}; a feature service is a "
                f"dbt exposure of type ml that depends on feature views (known: {known}; run `dbt parse` if you "
                "just added it)")
        try:
            return [f.ref for f in self.resolve(service.features)]
        except (UnknownFeature, UnknownFeatureView) as exc:
            raise UnknownFeature(f"feature service {name} ({service.path or service.unique_id}): {exc}; fix "
                                 "its meta.feature_store.features (`fstore validate` lists every problem)") from None

    def requested_features(self, features: Iterable[str] | str | None, feature_service: str | None) -> list[str]:
        """The feature references a read asked for: ``features``, or those of ``feature_service``.

        Exactly one of the two must be given; :class:`EntityDataFrameError` says so otherwise.
        """
        if features is not None and feature_service is not None:
            raise EntityDataFrameError(
                f"pass either features=[...] or feature_service={feature_service!r}, not both: a feature service "
                "already names its features")
        if feature_service is not None:
            return self.feature_service(feature_service)
        if features is None:
            raise EntityDataFrameError(
                "no features requested; pass features=['view:feature', ...] (or a view name), or "
                "feature_service='<ml exposure name>'")
        return [features] if isinstance(features, str) else list(features)

    def consumers(self, view_name: str, feature_name: str | None = None) -> list[Consumer]:
        """The exposures that consume feature view ``view_name`` (or only its feature ``feature_name``).

        Feature services that list the view's features (any of them, or ``feature_name``)
        or depend on it, then the other exposures that depend on it, each by name.
        """
        view = self.view(view_name)
        if feature_name is not None:
            view.feature(feature_name)
        out: list[Consumer] = []
        for s in sorted(self.feature_services.values(), key=lambda s: s.name):
            used = tuple(f.name for f in self._service_features(s)
                         if f.view == view.name and feature_name in (None, f.name))
            if used or (feature_name is None and view.unique_id in s.depends_on):
                out.append(Consumer(s.name, s.unique_id, s.type, s.owner, s.path, used, s.listed))
        services = {s.unique_id for s in self.feature_services.values()}
        for node in sorted(self.graph.values(), key=lambda n: (n.name, n.unique_id)):
            if node.resource_type == "exposure" and node.unique_id not in services and view.unique_id in node.depends_on:
                out.append(Consumer(node.name, node.unique_id, node.type, node.owner, node.path, (), False))
        return out

    def lineage(self, ref: str) -> Lineage:
        """Where feature ``ref`` (``view:feature``, or a view for all its features) comes from and what uses it.

        :class:`UnknownFeatureView` / :class:`UnknownFeature`, with a did-you-mean, when it does not exist.
        """
        view_name, sep, feature_name = str(ref).partition(":")
        view = self.view(view_name.strip())
        features = (view.feature(feature_name.strip()),) if sep else view.features
        upstream = self._upstream(view)
        training = sorted((n for n in self.graph.values()
                           if n.joins_features and view.unique_id in n.depends_on), key=lambda n: n.name)
        return Lineage(
            view=view,
            features=features,
            sources=tuple(n for n in upstream if n.resource_type in SOURCE_TYPES),
            models=tuple(n for n in upstream if n.resource_type not in SOURCE_TYPES),
            training_sets=tuple(training),
            exposures=tuple(self.consumers(view.name, feature_name.strip() if sep else None)),
        )

    def validate(self, today: date | None = None) -> list[Problem]:
        """Every problem: :attr:`problems`, and the feature services' use of deprecated features.

        A feature service using a feature whose tombstone date is ``today`` (default: today
        in UTC) or earlier is an error, one using a feature with a later tombstone a
        warning. These are kept out of :attr:`problems` on purpose: ``load(strict=True)``
        refuses a registry with errors, and serving must not stop because a date passed.
        """
        today = today or datetime.now(timezone.utc).date()
        problems = list(self.problems)
        for s in sorted(self.feature_services.values(), key=lambda s: s.name):
            for f in self._service_features(s):
                if not f.deprecated:
                    continue
                try:
                    tombstone = datetime.fromisoformat(f.deprecated).date()
                except ValueError:  # reported on the column already
                    continue
                listed = s.listed and f.ref in s.features
                stop = ("remove it from meta.feature_store.features" if listed else
                        f"list the features the model uses instead of all of {f.view}")
                instead = f" and use {f.replaced_by}" if f.replaced_by else ""
                where = _service_where(s, "meta.feature_store.features")
                if tombstone <= today:
                    problems.append(Problem("error", s.name, where, (
                        f"uses {f.ref}, which reached its tombstone on {tombstone} and is due for removal; move the "
                        f"model off it: {stop}{instead}")))
                else:
                    problems.append(Problem("warning", s.name, where, (
                        f"uses {f.ref}, deprecated with tombstone {tombstone} ({(tombstone - today).days} days "
                        f"left); before then, {stop}{instead}")))
        return problems

    def _service_features(self, service: FeatureService) -> list[Feature]:
        """The features a service names that exist (the others are problems already), in order."""
        out: list[Feature] = []
        for ref in service.features:
            view_name, sep, feature_name = ref.partition(":")
            view = self.views.get(view_name.strip())
            if view is None:
                continue
            for f in view.features:
                if (not sep or f.name == feature_name.strip()) and f not in out:
                    out.append(f)
        return out

    def _upstream(self, view: FeatureView) -> list[DbtNode]:
        """The view and every node it reads, each after the nodes it reads (a depth-first post-order)."""
        def node(uid: str) -> DbtNode:
            if uid == view.unique_id and uid not in self.graph:
                return DbtNode(uid, view.name, "model", depends_on=view.upstream)
            return self.graph.get(uid) or DbtNode(uid, uid.rsplit(".", 1)[-1], uid.split(".", 1)[0])

        order: list[DbtNode] = []
        seen: set[str] = set()
        stack: list[tuple[str, bool]] = [(view.unique_id, False)]
        while stack:
            uid, done = stack.pop()
            if done:
                order.append(node(uid))
                continue
            if uid in seen:
                continue
            seen.add(uid)
            stack.append((uid, True))
            stack += [(parent, False) for parent in sorted(node(uid).depends_on, reverse=True) if parent not in seen]
        return order

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


def _parse_entities(entity_vars: Any, problems: list[Problem]) -> dict[str, Entity]:
    """The entities var (``None``: none declared); an entity without usable join keys is left out."""

    def problem(where: str, message: str) -> None:
        problems.append(Problem("error", "dbt_project.yml", where, message))

    entities: dict[str, Entity] = {}
    if entity_vars is None:
        return entities
    if not isinstance(entity_vars, dict):
        problem(f'vars."{ENTITIES_VAR}"',
                f"must be a mapping of entity name to {{join_keys: [...]}}, got {_got(entity_vars)}")
        return entities
    for name, spec in entity_vars.items():
        where = f'vars."{ENTITIES_VAR}".{name}'
        if not isinstance(name, str) or not name:
            problem(where, f"an entity name must be non-empty text, got {_got(name)}")
            continue
        if spec is not None and not isinstance(spec, dict):
            problem(where, f"must be a mapping such as {{join_keys: [user_id]}}, got {_got(spec)}")
            continue
        spec = spec or {}
        raw_keys = spec.get("join_keys")
        keys = _as_names(raw_keys, f"{where}.join_keys", problem, "column names")
        if not keys:
            if _names(raw_keys) == ():
                problem(where, "declares no join_keys; add join_keys: [<column>]")
            continue
        description = _as_text(spec.get("description"), f"{where}.description", problem)
        entities[name] = Entity(name=name, join_keys=keys, description=description)
    return entities


_NOT_A_VIEW = object()


def _view_meta(node: dict, problem) -> Any:
    """The model's ``feature_store`` meta: ``config.meta`` first (dbt 1.10+), then top-level ``meta``.

    :data:`_NOT_A_VIEW` when neither declares one.
    """
    config = _as_mapping(node.get("config"), "config", problem)
    for where, meta in (("config.meta", config.get("meta")), ("meta", node.get("meta"))):
        meta = _as_mapping(meta, where, problem)
        if "feature_store" in meta:
            return meta["feature_store"]
    return _NOT_A_VIEW


def _as_mapping(value: Any, where: str, problem) -> dict:
    """``value`` if it is a mapping (``None``: empty); otherwise a problem at ``where``, and empty."""
    if value is None or isinstance(value, dict):
        return value or {}
    problem(where, f"must be a mapping, got {_got(value)}")
    return {}


def _as_text(value: Any, where: str, problem) -> str:
    """``value`` if it is text (``None``: empty); otherwise a problem at ``where``, and empty."""
    if value is None or isinstance(value, str):
        return value or ""
    problem(where, f"must be text, got {_got(value)}")
    return ""


def _as_names(value: Any, where: str, problem, what: str) -> tuple[str, ...]:
    """``value`` as a tuple of names (see :func:`_names`); otherwise a problem at ``where``, and empty."""
    names = _names(value)
    if names is None:
        problem(where, f"must be a list of {what}, got {_got(value)}")
        return ()
    return names


def _parse_view(
    uid: Any, node: dict, entities: dict[str, Entity], child_map: dict, problems: list[Problem]
) -> FeatureView | None:
    raw_name = node.get("name")
    name = raw_name if isinstance(raw_name, str) and raw_name else str(uid).rsplit(".", 1)[-1]

    def problem(where: str, message: str, severity: str = "error") -> None:
        problems.append(Problem(severity, name, where, message))

    meta = _view_meta(node, problem)
    if meta is _NOT_A_VIEW:
        return None
    if raw_name and not isinstance(raw_name, str):
        problem("name", f"must be text, got {_got(raw_name)}; run `dbt parse` again")
        return None
    if not isinstance(meta, dict):
        problem("meta.feature_store", f"must be a mapping, got {_got(meta)}")
        return None
    for key in meta:
        if key not in VIEW_META_KEYS:
            problem(f"meta.feature_store.{key}",
                    f"unknown key{_did_you_mean(key, VIEW_META_KEYS)} (known: {', '.join(VIEW_META_KEYS)})")

    parsed = _view_columns(node, problem)
    if parsed is None:
        return None
    columns, column_types, malformed = parsed
    entity_names, join_keys = _view_join_keys(meta, entities, columns, problem)
    timestamp = _time_column(meta, "timestamp", columns, problem, required=True)
    created = _time_column(meta, "created_timestamp", columns, problem, required=False)
    for col in (timestamp, created):
        if col in columns and column_types.get(col) and type_kind(column_types[col]) not in ("timestamp", "date"):
            problem(f"column {col}", f"is a time column but declared as {column_types[col]!r}; declare data_type: timestamp")
    ttl = _duration(meta, "ttl", problem)
    freshness_sla = _duration(meta, "freshness_sla", problem)
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
    owner = _as_text(owner, "meta.feature_store.owner", problem) or None

    for col, dtype in column_types.items():
        if not dtype and col not in malformed:
            problem(f"column {col}", "has no data_type; declare data_type on every column (the contract needs it)")
    for key in join_keys:
        declared = column_types.get(key)
        if declared:
            _check_join_key_type(key, declared, online, problem)

    log_sample_rate = _share(meta, "log_sample_rate", "meta.feature_store.log_sample_rate", problem)
    monitors = _monitors(meta.get("monitors"), "meta.feature_store.monitors", problem)
    deprecated = _date_text(meta.get("deprecated"), "meta.feature_store.deprecated", problem)
    replaced_by = _as_text(meta.get("replaced_by"), "meta.feature_store.replaced_by", problem) or None
    view_defaults = Feature(name="", view=name, data_type=None, deprecated=deprecated, replaced_by=replaced_by,
                            monitors=monitors)

    time_cols = {timestamp, created}
    features = []
    for col, spec in columns.items():
        if col in join_keys or col in time_cols:
            continue
        features.append(_parse_feature(view_defaults, col, spec, column_types[col], online, problem))

    tags = _as_names(meta.get("tags"), "meta.feature_store.tags", problem, "tags")
    node_tags = _as_names(node.get("tags"), "tags", problem, "tags")
    description = _as_text(meta.get("description"), "meta.feature_store.description", problem)
    node_description = _as_text(node.get("description"), "description", problem)
    depends_on = _as_mapping(node.get("depends_on"), "depends_on", problem)
    return FeatureView(
        name=name,
        unique_id=uid,
        relation=_as_text(node.get("relation_name"), "relation_name", problem),
        entities=entity_names,
        join_keys=tuple(join_keys),
        timestamp=timestamp or "",
        created_timestamp=created,
        features=tuple(features),
        ttl=ttl,
        owner=owner,
        tags=tags or node_tags,
        online=online,
        freshness_sla=freshness_sla,
        description=description or node_description,
        log_sample_rate=log_sample_rate,
        monitors=monitors,
        deprecated=deprecated,
        replaced_by=replaced_by,
        column_types=column_types,
        upstream=_as_names(depends_on.get("nodes"), "depends_on.nodes", problem, "node ids"),
        downstream=tuple(c for c in _as_names(child_map.get(uid), f"child_map.{uid}", problem, "node ids")
                         if not c.startswith("test.")),
    )


def _check_join_key_type(key: str, dtype: str, online: bool, problem) -> None:
    """Join keys must be storable, and on online views exact: online, a key is the text of its value."""
    kind = type_kind(dtype)
    reason = _online_type_problem(dtype)
    if reason is None and kind not in _KEY_KINDS:
        example = "27.4 and 27.40" if kind == "decimal" else "0.3 and 0.1 + 0.2"
        reason = (f"join key declared as {dtype!r}: online, a key is the text of its value, so {kind} keys "
                  f"that are equal in SQL ({example}) name different entities; cast it in the model's SQL to "
                  "bigint or varchar")
    if reason and online:
        problem(f"column {key}", reason)
    elif reason and kind is None:  # a SQL join takes any type; only serving needs a storable one
        problem(f"column {key}", f"{reason} before setting online: true", "warning")



def _view_columns(node: dict, problem) -> tuple[dict[str, dict], dict[str, str | None], set[str]] | None:
    """The model's columns: specs, declared types, and the names already reported as malformed."""
    raw_columns = node.get("columns")
    if raw_columns is not None and not isinstance(raw_columns, dict):
        problem("columns", f"must be a mapping of column name to spec, got {_got(raw_columns)}; run `dbt parse` again")
        return None
    columns: dict[str, dict] = {}
    column_types: dict[str, str | None] = {}
    malformed: set[str] = set()  # already reported, so "has no data_type" is not said twice
    for col, spec in (raw_columns or {}).items():
        if not isinstance(col, str) or not col:
            problem(f"column {col!r}", "a column name must be non-empty text")
            continue
        if spec is not None and not isinstance(spec, dict):
            problem(f"column {col}", f"must be a mapping (data_type, description, meta), got {_got(spec)}")
            malformed.add(col)
        spec = spec if isinstance(spec, dict) else {}
        dtype = spec.get("data_type")
        if dtype is not None and not isinstance(dtype, str):
            problem(f"column {col}: data_type", f"must be text such as 'bigint', got {_got(dtype)}")
            malformed.add(col)
            dtype = None
        columns[col] = spec
        column_types[col] = dtype
        reserved = _reserved_problem(col)
        if reserved:
            problem(f"column {col}", reserved)
    return columns, column_types, malformed


def _view_join_keys(meta: dict, entities: dict[str, Entity], columns: dict, problem) -> tuple[tuple, list[str]]:
    """The view's entity names and their join keys (in order, without repeats), each checked."""
    raw_entities = meta.get("entities")
    entity_names = _as_names(raw_entities, "meta.feature_store.entities", problem, "entity names")
    if not entity_names and _names(raw_entities) == ():
        problem("meta.feature_store.entities",
                "missing; name the entities this view is keyed by, e.g. entities: [user]")
    join_keys: list[str] = []
    for ent in entity_names:
        if ent not in entities:
            problem("meta.feature_store.entities",
                    f"unknown entity {ent!r}{_did_you_mean(ent, entities)}; declare it under "
                    f'vars."{ENTITIES_VAR}" in dbt_project.yml')
            continue
        for key in entities[ent].join_keys:
            if key not in columns:
                problem(f"column {key}",
                        f"join key of entity {ent!r} is not a declared column of the model; add it to the model and its YAML")
            join_keys.append(key)
    return entity_names, list(dict.fromkeys(join_keys))


def _time_column(meta: dict, key: str, columns: dict, problem, *, required: bool) -> str | None:
    """The column named by meta ``key`` (timestamp, created_timestamp), checked to exist."""
    value = meta.get(key)
    if value is None or (required and value == ""):
        if required:
            problem(f"meta.feature_store.{key}", "missing; name the event timestamp column, e.g. timestamp: event_ts")
        return None
    if not isinstance(value, str) or not value:
        problem(f"meta.feature_store.{key}", f"must be a column name, got {_got(value)}")
        return None
    if value not in columns:
        problem(f"meta.feature_store.{key}", f"column {value!r} is not declared on the model{_did_you_mean(value, columns)}")
    return value


def _duration(meta: dict, key: str, problem) -> timedelta | None:
    """Meta ``key`` (ttl, freshness_sla) as a timedelta; a problem when it is not a duration."""
    if meta.get(key) is None:
        return None
    try:
        return parse_duration(meta[key])
    except ValueError as exc:
        problem(f"meta.feature_store.{key}", str(exc))
        return None

def _parse_feature(view: Feature, col: str, spec: dict, dtype: str | None, online: bool, problem) -> Feature:
    """The feature ``col``; ``view`` holds what its view's meta gives every feature (tombstone, monitors)."""
    where_col = f"column {col}"
    if dtype:
        reason = _online_type_problem(dtype)
        if reason and online:
            problem(where_col, reason)
        elif reason and type_kind(dtype) is None:  # training reads any type, wide integers included
            problem(where_col, f"{reason} before setting online: true", "warning")
    config = _as_mapping(spec.get("config"), f"{where_col}: config", problem)
    meta = _as_mapping(config.get("meta"), f"{where_col}: config.meta", problem).get("feature_store")
    if meta is None:
        meta = _as_mapping(spec.get("meta"), f"{where_col}: meta", problem).get("feature_store")
    tags = (_as_names(config.get("tags"), f"{where_col}: config.tags", problem, "tags")
            or _as_names(spec.get("tags"), f"{where_col}: tags", problem, "tags"))
    description = _as_text(spec.get("description"), f"{where_col}: description", problem)
    plain = replace(view, name=col, data_type=dtype, description=description, tags=tags)
    if meta is None or meta == {}:  # the common case: a plain feature column
        return plain
    where = f"{where_col}: meta.feature_store"
    if not isinstance(meta, dict):
        problem(where, f"must be a mapping, got {_got(meta)}")
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
    dates = [d for d in (view.deprecated, _date_text(meta.get("deprecated"), f"{where}.deprecated", problem)) if d]
    return replace(
        plain,
        fallback=fallback,
        deprecated=min(dates, key=lambda d: datetime.fromisoformat(d).date()) if dates else None,
        replaced_by=_as_text(meta.get("replaced_by"), f"{where}.replaced_by", problem) or view.replaced_by,
        tags=_as_names(meta.get("tags"), f"{where}.tags", problem, "tags") or tags,
        monitors={**view.monitors, **_monitors(meta.get("monitors"), f"{where}.monitors", problem)},
    )


def _date_text(value: Any, where: str, problem) -> str | None:
    """A meta date (``deprecated``) as ISO text; a problem when it is not a date."""
    if value is None:
        return None
    try:
        datetime.fromisoformat(str(value))
    except ValueError:
        problem(where, f"{value!r} is not a date; write it as YYYY-MM-DD")
        return None
    return str(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _share(meta: dict, key: str, where: str, problem) -> float | None:
    """Meta ``key`` as a share in [0, 1]; a problem otherwise."""
    value = meta.get(key)
    if value is None:
        return None
    if not _number(value) or not 0 <= value <= 1:
        problem(where, f"must be a number from 0 to 1, got {value!r}")
        return None
    return float(value)


def _monitors(raw: Any, where: str, problem) -> dict[str, float]:
    """The monitor thresholds of a ``monitors:`` mapping (view or column), each checked."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problem(where, f"must be a mapping of thresholds ({', '.join(MONITOR_KEYS)}), got {_got(raw)}")
        return {}
    out: dict[str, float] = {}
    for key, value in raw.items():
        if key not in MONITOR_KEYS:
            problem(f"{where}.{key}", f"unknown threshold{_did_you_mean(str(key), MONITOR_KEYS)} "
                                      f"(known: {', '.join(MONITOR_KEYS)})")
        elif key in _MONITOR_SHARES:
            share = _share(raw, key, f"{where}.{key}", problem)
            if share is not None:
                out[key] = share
        elif key == "psi_bins":
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                problem(f"{where}.{key}", f"must be a whole number of bins, 2 or more, got {value!r}")
            else:
                out[key] = value
        elif not _number(value) or value <= 0:
            problem(f"{where}.{key}", f"must be a positive number, got {value!r}")
        else:
            out[key] = float(value)
    for warn, alert in (("ks_warn", "ks_alert"), ("psi_warn", "psi_alert")):
        if warn in out and alert in out and out[warn] > out[alert]:
            problem(where, f"{warn} ({out[warn]}) is above {alert} ({out[alert]}); a warning must come first")
    return out


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


# -- feature services and lineage ----------------------------------------------------------------


def _service_where(service: FeatureService, key: str) -> str:
    """Where a service's problem is: its YAML file (an exposure has no model to name) and the key."""
    return f"{service.path}: {key}" if service.path else key


def _parse_service(uid: Any, node: dict, views: dict[str, FeatureView], problems: list[Problem]) -> FeatureService | None:
    """An exposure as a feature service, or ``None`` when it is none (not ml, or reads no feature view)."""
    raw_name = node.get("name")
    name = raw_name if isinstance(raw_name, str) and raw_name else str(uid).rsplit(".", 1)[-1]
    raw_path = node.get("original_file_path")
    path = raw_path if isinstance(raw_path, str) else ""

    def problem(where: str, message: str, severity: str = "error") -> None:
        problems.append(Problem(severity, name, f"{path}: {where}" if path else where, message))

    meta = _view_meta(node, problem)  # an exposure's meta sits where a model's does
    exposure_type = node.get("type")
    if meta is _NOT_A_VIEW and exposure_type != "ml":
        return None  # a dashboard or an application: lineage shows it, it serves nothing
    if raw_name is not None and not isinstance(raw_name, str):
        problem("name", f"must be text, got {_got(raw_name)}; run `dbt parse` again")
        return None
    depends = _as_mapping(node.get("depends_on"), "depends_on", problem)
    parents = _as_names(depends.get("nodes"), "depends_on.nodes", problem, "node ids")
    if meta is _NOT_A_VIEW:
        used = tuple(v.name for v in views.values() if v.unique_id in parents)
        if not used:
            return None
        features, listed = used, False
        problem("meta.feature_store.features",
                f"lists no features, so it reads every feature of {', '.join(used)}; list the ones the model uses "
                f"(config: {{meta: {{feature_store: {{features: [{used[0]}:<feature>, ...]}}}}}}) so validate and "
                "lineage can track them", "note")
    else:
        if not isinstance(meta, dict):
            problem("meta.feature_store",
                    f"must be a mapping such as {{features: [view:feature, ...]}}, got {_got(meta)}")
            return None
        for key in meta:
            if key not in EXPOSURE_META_KEYS:
                problem(f"meta.feature_store.{key}",
                        f"unknown key{_did_you_mean(key, EXPOSURE_META_KEYS)} (known: {', '.join(EXPOSURE_META_KEYS)})")
        refs = _names(meta.get("features"))
        if refs is None:
            problem("meta.feature_store.features", f"must be a list of feature references ('view:feature', or "
                    f"'view' for all its features), got {_got(meta.get('features'))}")
            return None
        if not refs:
            problem("meta.feature_store.features", "missing; list the features the model uses, e.g. "
                    "features: [user_order_features:user_7d_orders]")
            return None
        if exposure_type != "ml":
            shown = repr(exposure_type) if isinstance(exposure_type, str) else _got(exposure_type)
            problem("type", f"is {shown}, yet the exposure lists features: a feature service is an ML model; "
                    "declare type: ml", "warning")
        features, listed = refs, True
    owner = _as_mapping(node.get("owner"), "owner", problem)
    email = _as_text(owner.get("email"), "owner.email", problem)
    owner_name = _as_text(owner.get("name"), "owner.name", problem)
    return FeatureService(
        name=name,
        unique_id=str(uid),
        features=features,
        depends_on=parents,
        owner=email or owner_name or None,
        description=_as_text(node.get("description"), "description", problem),
        path=path,
        type=exposure_type if isinstance(exposure_type, str) else "",
        listed=listed,
    )


def _check_services(services: dict[str, FeatureService], views: dict[str, FeatureView],
                    problems: list[Problem]) -> None:
    """Each listed reference names a feature (or view) that exists, and a view the exposure depends on."""
    for s in services.values():
        where = _service_where(s, "meta.feature_store.features")

        def problem(message: str, severity: str = "error", where: str = where, service: str = s.name) -> None:
            problems.append(Problem(severity, service, where, message))

        resolved: list[Feature] = []
        undeclared: list[str] = []
        for ref in s.features if s.listed else ():
            view_name, sep, feature_name = (part.strip() for part in ref.partition(":"))
            view = views.get(view_name)
            if view is None:
                problem(f"{ref!r}: no feature view {view_name!r}{_did_you_mean(view_name, views)}; name one that "
                        "`fstore list` shows, or remove the reference")
                continue
            if sep and not feature_name:
                problem(f"{ref!r} names no feature; write {view.name}:<feature>, or {view.name} for all its features")
                continue
            if sep and feature_name not in view.feature_names:
                problem(f"{ref!r}: feature view {view.name} has no feature {feature_name!r}"
                        f"{_did_you_mean(feature_name, view.feature_names)} (its features: "
                        f"{', '.join(view.feature_names)})")
                continue
            resolved += [f for f in view.features if (not sep or f.name == feature_name) and f not in resolved]
            if view.unique_id not in s.depends_on and view.name not in undeclared:
                undeclared.append(view.name)
                problem(f"uses {view.name} but does not depend_on it; add ref('{view.name}') to the exposure's "
                        "depends_on so dbt's lineage (and `fstore describe`) show the model reading it", "warning")
        try:
            output_names(resolved, False)
        except EntityDataFrameError as exc:
            problem(f"{exc}; readers of this service need full_feature_names=True", "warning")


def _macros_calling(macros: dict, target: str) -> set[str]:
    """``target`` and every macro that calls it, directly or through others."""
    callers: dict[str, list[str]] = {}
    for uid, macro in macros.items():
        depends = macro.get("depends_on") if isinstance(macro, dict) else None
        for called in (_names(depends.get("macros")) if isinstance(depends, dict) else None) or ():
            callers.setdefault(called, []).append(uid)
    found, todo = {target}, [target]
    while todo:
        for caller in callers.get(todo.pop(), ()):
            if caller not in found:
                found.add(caller)
                todo.append(caller)
    return found


def _parse_graph(nodes: dict, sources: dict, exposures: dict, macros: dict) -> dict[str, DbtNode]:
    """dbt's graph as lineage reads it: every source, seed, snapshot, model and exposure by node id.

    Not validated: what is not of the expected shape is left out, since a view's own
    ``depends_on`` and the feature services are checked, and reported, where they are parsed.
    """
    joins = _macros_calling(macros, POINT_IN_TIME_JOIN)
    graph: dict[str, DbtNode] = {}
    for section in (nodes, sources, exposures):
        for uid, node in section.items():
            if not isinstance(uid, str) or not isinstance(node, dict) or node.get("resource_type") not in _GRAPH_TYPES:
                continue
            rtype = node["resource_type"]
            name = _text_or(node.get("name"), uid.rsplit(".", 1)[-1])
            if rtype == "source" and _text_or(node.get("source_name"), ""):
                name = f"{node['source_name']}.{name}"
            depends = _dict_or_empty(node.get("depends_on"))
            owner = _dict_or_empty(node.get("owner"))
            graph[uid] = DbtNode(
                unique_id=uid,
                name=name,
                resource_type=rtype,
                path=_text_or(node.get("original_file_path"), ""),
                depends_on=_names(depends.get("nodes")) or (),
                joins_features=rtype == "model" and any(m in joins for m in _names(depends.get("macros")) or ()),
                type=_text_or(node.get("type"), "") if rtype == "exposure" else "",
                owner=(_text_or(owner.get("email"), "") or _text_or(owner.get("name"), "") or None
                       if rtype == "exposure" else None),
            )
    return graph


def _text_or(value: Any, default: str) -> str:
    """``value`` if it is non-empty text, else ``default``."""
    return value if isinstance(value, str) and value else default


def _dict_or_empty(value: Any) -> dict:
    return value if isinstance(value, dict) else {}
