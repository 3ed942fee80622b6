"""``fstore``: the command line for feature_store.

The library never prints; this module owns tables, progress bars, ``--json`` and
``--quiet``. Every command takes ``--project-dir``, ``--profiles-dir`` and
``--target`` as dbt's commands do.
"""

from __future__ import annotations

import atexit
import functools
import gc
import re
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import click
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from feature_store.errors import FeatureStoreError, ManifestMissing
from feature_store.registry import FeatureView, Registry, format_duration

# Piped output is for grep and scripts: never wrap or truncate it at 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 250)

# When the command ends, the interpreter's last garbage collection walks every object still
# alive to free memory the OS takes back anyway: 0.3-0.4 s once dbt is imported (its ~150k
# objects), on every command that connects to a warehouse. gc.freeze() puts them out of
# its reach; atexit hooks (the serving log's flush) and stream flushing still run.
atexit.register(gc.freeze)


class _Group(click.Group):
    """Turns our own errors into one clear line and exit status 1, instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FeatureStoreError as exc:
            err.print(f"[red]Error:[/red] {exc}", markup=True)
            sys.exit(1)


def project_options(fn):
    """--project-dir / --profiles-dir / --target, as dbt users expect them."""

    @click.option("--project-dir", default=".", envvar="DBT_PROJECT_DIR", show_default=True,
                  type=click.Path(file_okay=False, path_type=Path), help="The dbt project directory.")
    @click.option("--profiles-dir", default=None, envvar="DBT_PROFILES_DIR",
                  type=click.Path(file_okay=False, path_type=Path),
                  help="Where profiles.yml is (default: the project dir, then ~/.dbt).")
    @click.option("--target", "-t", default=None, envvar="DBT_TARGET", help="The dbt target (default: the profile's).")
    @functools.wraps(fn)
    def wrapper(*args, project_dir, profiles_dir, target, **kwargs):
        return fn(*args, project=(project_dir, profiles_dir, target), **kwargs)

    return wrapper


def load_registry(project: tuple, quiet: bool = False) -> Registry:
    """The project's registry; runs `dbt parse` first (saying so) when there is no manifest yet."""
    project_dir, profiles_dir, target = project
    try:
        registry = Registry.load(project_dir, target=target, profiles_dir=profiles_dir)
    except ManifestMissing:
        from feature_store.compiler import parse_project

        if not quiet:
            err.print(f"No manifest in {Path(project_dir).resolve() / 'target'}; running `dbt parse` for you...")
        parse_project(project_dir, target=target, profiles_dir=profiles_dir)
        registry = Registry.load(project_dir, target=target, profiles_dir=profiles_dir)
    stale = registry.stale_files()
    if stale and not quiet:
        names = ", ".join(str(p.relative_to(registry.project_dir)) for p in stale[:3])
        more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        err.print(f"[yellow]Warning:[/yellow] the manifest is older than {names}{more}; "
                  "run `dbt parse` (or `dbt build`) to pick up the changes", markup=True)
    return registry


def _json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode())


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="feature-store", prog_name="fstore")
@click.option("--redis-timeout", type=click.FloatRange(min=0.01), default=None, metavar="SECONDS",
              help="Connect and read timeout of each Redis attempt (default 0.25s; a sync's writes wait 30s).")
@click.option("--redis-retries", type=click.IntRange(min=0), default=None, metavar="N",
              help="Retries after a failed Redis attempt, with backoff (default 2; refused passwords never).")
@click.pass_context
def main(ctx: click.Context, redis_timeout: float | None, redis_retries: int | None) -> None:
    """feature_store: dbt models as ML features, offline for training and online from Redis.

    \b
    After `dbt build`:
      fstore list                      what feature views exist
      fstore validate                  check every definition
      fstore lineage view:feature      where a feature comes from, what uses it
      fstore historical --spine labels.parquet --timestamp-column label_ts \\
          --features user_order_features --out training.parquet
      fstore sync                      push the latest values to Redis
      fstore status                    what each view's last sync did
      fstore skew                      were the values served the values training gets?
      fstore audit                     who reads which feature online, per day
      fstore deprecations              CI: fail while a tombstoned or removed feature is still read
      fstore init                      add feature_store to your own dbt project
      fstore get user_order_features --entity user_id=42
      fstore serve                     features over HTTP (Feast's API), on 127.0.0.1:6566
    """
    ctx.obj = {"redis_timeout": redis_timeout, "redis_retries": redis_retries}


# -- registry ----------------------------------------------------------------------------------


def _view_row(view: FeatureView) -> dict:
    return {
        "view": view.name,
        "entities": list(view.entities),
        "features": len(view.features),
        "ttl": format_duration(view.ttl),
        "online": view.online,
        "owner": view.owner,
        "tags": list(view.tags),
        # Features on their way out and their tombstone dates, so a reader sees them coming; a
        # view-level date is every feature's (an earlier column date wins for that column).
        "deprecated": {f.name: f.deprecated for f in view.features if f.deprecated},
        "view_deprecated": view.deprecated,
        "view_replaced_by": view.replaced_by,
    }


@main.command("list")
@project_options
@click.option("--tag", "tags", multiple=True, help="Only views with this tag (repeatable: all must match).")
@click.option("--owner", default=None, help="Only views owned by this owner.")
@click.option("--online", "online_only", is_flag=True, help="Only views synced to the online store.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_views(project, tags, owner, online_only, as_json):
    """List the feature views: entities, number of features, ttl, online, owner, tags, deprecated features.

    \b
    Examples:
      fstore list
      fstore list --online --tag finance-grade --json
    """
    registry = load_registry(project, quiet=as_json)
    views = [
        v for v in sorted(registry.views.values(), key=lambda v: v.name)
        if all(t in v.tags for t in tags) and (owner is None or v.owner == owner) and (v.online or not online_only)
    ]
    rows = [_view_row(v) for v in views]
    if as_json:
        _json(rows)
        return
    table = Table("view", "entities", "#features", "ttl", "online", "owner", "tags", "deprecated", box=None,
                  pad_edge=False)
    for r in rows:
        deprecated = ", ".join(f"{name} ({date})" for name, date in r["deprecated"].items()
                               if date != r["view_deprecated"])
        if r["view_deprecated"]:
            instead = f", use {r['view_replaced_by']}" if r["view_replaced_by"] else ""
            whole = f"whole view ({r['view_deprecated']}{instead})"
            deprecated = ", ".join(x for x in (whole, deprecated) if x)
        table.add_row(r["view"], ", ".join(r["entities"]), str(r["features"]), r["ttl"],
                      "yes" if r["online"] else "no", r["owner"] or "-", ", ".join(r["tags"]) or "-",
                      f"[yellow]{deprecated}[/yellow]" if deprecated else "-")
    out.print(table)
    if not rows:
        err.print("No feature view matches." if registry.views else
                  "No feature views: declare config.meta.feature_store on a model (see README).")


def _describe_data(view: FeatureView) -> dict:
    roles = {k: "join key" for k in view.join_keys}
    roles[view.timestamp] = "event timestamp"
    if view.created_timestamp:
        roles[view.created_timestamp] = "created timestamp"
    features = {f.name: f for f in view.features}
    columns = []
    for name, dtype in view.column_types.items():
        f = features.get(name)
        columns.append({
            "column": name,
            "type": dtype,
            "role": roles.get(name, "feature"),
            "fallback": str(f.fallback) if f and f.fallback else None,
            "deprecated": (f"{f.deprecated}" + (f" -> {f.replaced_by}" if f.replaced_by else "")) if f and f.deprecated else None,
            "description": f.description if f else "",
        })
    return {
        "view": view.name,
        "unique_id": view.unique_id,
        "relation": view.relation,
        "description": view.description,
        "entities": list(view.entities),
        "join_keys": list(view.join_keys),
        "timestamp": view.timestamp,
        "created_timestamp": view.created_timestamp,
        "ttl": format_duration(view.ttl),
        "online": view.online,
        "owner": view.owner,
        "tags": list(view.tags),
        "freshness_sla": format_duration(view.freshness_sla),
        # the view's own tombstone (each feature's column shows it too)
        "deprecated": (view.deprecated + (f" -> {view.replaced_by}" if view.replaced_by else ""))
        if view.deprecated else None,
        "columns": columns,
        "upstream": list(view.upstream),
        "downstream": list(view.downstream),
    }


@main.command()
@project_options
@click.argument("view_name", metavar="VIEW")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def describe(project, view_name, as_json):
    """Show one feature view: columns, types, fallbacks, tombstones, ttl, upstream, downstream, and
    the models (dbt exposures) that use it.

    \b
    Example:
      fstore describe user_order_features
    """
    registry = load_registry(project, quiet=as_json)
    data = _describe_data(registry.view(view_name))
    data["used_by"] = [c.to_dict() for c in registry.consumers(data["view"])]
    if as_json:
        _json(data)
        return
    out.print(f"[bold]{data['view']}[/bold]  ({data['relation']})", markup=True)
    if data["description"]:
        out.print(data["description"])
    for label, key in (("entities", "entities"), ("join keys", "join_keys"), ("timestamp", "timestamp"),
                       ("created timestamp", "created_timestamp"), ("ttl", "ttl"), ("online", "online"),
                       ("owner", "owner"), ("tags", "tags"), ("freshness sla", "freshness_sla")):
        value = data[key]
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        out.print(f"  {label + ':':<19}{'yes' if value is True else 'no' if value is False else value or '-'}")
    if data["deprecated"]:  # the whole view is on its way out
        out.print(f"  {'deprecated:':<19}{data['deprecated']}")
    table = Table("column", "type", "role", "fallback", "deprecated", "description", box=None, pad_edge=False)
    for c in data["columns"]:
        table.add_row(c["column"], c["type"] or "[red]missing[/red]", c["role"], c["fallback"] or "-",
                      c["deprecated"] or "-", c["description"] or "")
    out.print()
    out.print(table)
    out.print()
    out.print(f"  upstream:   {', '.join(data['upstream']) or '-'}")
    out.print(f"  downstream: {', '.join(data['downstream']) or '-'}")
    for i, c in enumerate(data["used_by"] or [None]):
        out.print(f"  {'used by:' if i == 0 else '':<12}{_consumer_line(c) if c else '-'}")


def _consumer_uses(c: dict) -> str:
    """What an exposure uses of a view (a :meth:`Consumer.to_dict`)."""
    if c["features"]:
        return f"uses {', '.join(c['features'])}"
    return "depends on the view, lists no features" if c["type"] == "ml" else "depends on the view"


def _consumer_line(c: dict) -> str:
    """One exposure using a view: name, type, owner, and the features it uses."""
    about = ", ".join(x for x in (f"{c['type'] or 'untyped'} exposure", c["owner"]) if x)
    return f"{c['name']} ({about}): {_consumer_uses(c)}"


@main.command()
@project_options
@click.argument("feature_ref", metavar="FEATURE")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def lineage(project, feature_ref, as_json):
    """Show where a feature comes from and what uses it: sources, models, the feature, training sets, exposures.

    FEATURE is view:feature, or a view for all its features. Training sets are the models
    calling point_in_time_join on the view (dbt records the views a join reads, not which
    of their features); exposures are the dbt exposures using it, feature services first.

    \b
    Examples:
      fstore lineage user_order_features:user_7d_orders
      fstore lineage user_txn_features --json
    """
    registry = load_registry(project, quiet=as_json)
    data = registry.lineage(feature_ref).to_dict()
    if as_json:
        _json(data)
        return

    def section(title: str, rows: list[tuple[str, ...]], empty: str) -> None:
        out.print(f"[bold]{title}[/bold]", markup=True)
        if not rows:
            out.print(f"   {empty}")
            return
        table = Table(box=None, pad_edge=False, show_header=False)
        for row in rows:
            # Text, not markup: descriptions hold [brackets]; folded YAML leaves newlines in them.
            table.add_row("  ", *(Text(" ".join(cell.split())) for cell in row))
        out.print(table)

    out.print(f"Lineage of {feature_ref.strip()}", markup=False)
    section("1. sources", [(n["resource_type"], n["name"], n["path"]) for n in data["sources"]],
            "none: the view reads no source or seed")
    section("2. models, from the sources to the view",
            [("feature view" if n["feature_view"] else n["resource_type"], n["name"], n["path"])
             for n in data["models"]], "-")
    section("3. feature" if len(data["features"]) == 1 else "3. features",
            [(f["feature"], f["data_type"] or "-", f"deprecated {f['deprecated']}" if f["deprecated"] else "",
              f["description"]) for f in data["features"]], "none: the view has no feature columns")
    used = [("training set", n["name"], n["path"], "joins the view") for n in data["training_sets"]]
    used += [(f"{c['type'] or 'untyped'} exposure", c["name"], c["path"],
              "; ".join(x for x in (_consumer_uses(c), c["owner"] and f"owner {c['owner']}") if x))
             for c in data["exposures"]]
    section("4. used by", used, "nothing: no training set joins the view and no exposure uses it")


@main.command()
@project_options
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
def validate(project, as_json):
    """Check every feature definition; list every problem, one per line. Exit 1 on any error.

    \b
    Example:
      fstore validate
    """
    registry = load_registry(project, quiet=as_json)
    problems = registry.validate()  # the load's problems, and feature services past a tombstone
    errors = [p for p in problems if p.severity == "error"]
    if as_json:
        _json([{"severity": p.severity, "model": p.model, "where": p.where, "message": p.message}
               for p in problems])
    else:
        colors = {"error": "red", "warning": "yellow", "note": "cyan"}
        for p in problems:
            out.print(f"[{colors[p.severity]}]{p.severity}[/]: {p.model}: {p.where}: {p.message}", markup=True)
        n_features = sum(len(v.features) for v in registry.views.values())
        verdict = "[red]invalid[/red]" if errors else "[green]ok[/green]"
        out.print(f"{len(registry.views)} feature views, {n_features} features, {len(registry.entities)} entities: "
                  f"{verdict} ({len(errors)} errors, {len(problems) - len(errors)} warnings/notes)", markup=True)
    sys.exit(1 if errors else 0)


def online_store(registry: Registry, redis_url: str | None):
    """The registry's online store, with the group's --redis-timeout / --redis-retries."""
    from feature_store.online import OnlineStore, timeout_settings

    obj = click.get_current_context().find_root().obj or {}
    return OnlineStore.for_registry(registry, url=redis_url,
                                    **timeout_settings(obj.get("redis_timeout"), obj.get("redis_retries")))


def _duration(value: str, name: str) -> float:
    """``--wait 60s`` (or a bare number of seconds) as seconds."""
    from feature_store.registry import parse_duration

    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


def wait_option(fn):
    return click.option(
        "--wait", default="60s", show_default=True, metavar="DURATION",
        help="How long to wait while a `dbt build` holds the DuckDB file (or another sync holds a view's "
             "lock) before giving up; 0 fails at once.")(fn)


def redis_option(fn):
    return click.option("--redis-url", default=None, envvar="FEATURE_STORE_REDIS_URL",
                        help="Redis URL: redis://, redis+cluster://host:port[,…] or "
                             "redis+sentinel://host:port/service[/db] (rediss… for TLS; passwords allowed); "
                             "default $FEATURE_STORE_REDIS_URL, else redis://localhost:6379/0.")(fn)


def landing_option(what: str):
    """--landing-dir: where ``what`` (default: the project's var "feature_store:push_dir", else push/)."""
    return click.option("--landing-dir", default=None, envvar="FEATURE_STORE_LANDING_DIR",
                        type=click.Path(file_okay=False, path_type=Path),
                        help=f'Where {what} (default: the project\'s var "feature_store:push_dir", else push/).')


def _landing_folder(project: tuple, value: Path | None) -> Path:
    """The landing folder: ``--landing-dir``, else the project's (feature_store.push.default_landing_dir)."""
    from feature_store.push import default_landing_dir

    return value if value else default_landing_dir(project[0])


def on_wait_printer(silent: bool) -> Callable[[str], None]:
    """The ``on_wait`` of a command that waits for a `dbt build` or a lock: one line on stderr each time."""
    def on_wait(message: str) -> None:
        if not silent:
            err.print(f"[yellow]Waiting:[/yellow] {message}", markup=True)

    return on_wait


@main.command()
@click.option("--project-dir", default=".", envvar="DBT_PROJECT_DIR", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Your dbt project directory.")
@click.option("--entity", default="customer", show_default=True, help="The first entity to declare.")
@click.option("--join-key", default="customer_id", show_default=True, help="Its join key column.")
@click.option("--package", default=None,
              help="The packages.yml entry, e.g. 'git: https://…/feature_store.git' (default: this checkout, local).")
def init(project_dir, entity, join_key, package):
    """Add feature_store to an existing dbt project: the package, an entity, a starter view.

    Adds the package to packages.yml, the global var "feature_store:entities" to
    dbt_project.yml and a starter feature view under models/features/. Running it again
    changes nothing, and it never overwrites a file that exists.

    \b
    Example:
      cd my_dbt_project && fstore init --entity customer --join-key customer_id
    """
    from feature_store.scaffold import init_project

    report = init_project(project_dir, entity=entity, join_key=join_key, package=package)
    for line in report.changed:
        out.print(f"[green]added[/green]  {line}", markup=True)
    for line in report.kept:
        out.print(f"[dim]kept[/dim]   {line}", markup=True)
    out.print("\nNext: dbt deps && dbt build, then fstore validate, fstore sync, "
              f"fstore get {entity}_features --entity {join_key}=00001")


# -- offline -------------------------------------------------------------------------------------


def _split_features(values: tuple[str, ...]) -> list[str]:
    return [f.strip() for v in values for f in v.split(",") if f.strip()]


def _read_table(path: Path):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if not path.is_file():
        raise click.BadParameter(f"no file {path}", param_hint="--spine")
    if path.suffix.lower() == ".parquet":
        return pq.read_table(path)
    return pacsv.read_csv(path)


def _write_table(table, path: Path) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix.lower() == ".csv":
        pacsv.write_csv(table, tmp)
    else:
        pq.write_table(table, tmp)
    tmp.replace(path)  # a failed run leaves no half-written training set behind


@main.command()
@project_options
@click.option("--spine", required=True,
              help="Entity rows to join onto: a .parquet or .csv file, or a warehouse table or SELECT, "
                   "with the join keys and a timestamp.")
@click.option("--timestamp-column", default="event_timestamp", show_default=True,
              help="The spine's time column: features are taken as of this time.")
@click.option("--features", "-f", "feature_refs", multiple=True, required=True,
              help="view:feature or view (all its features); repeat or separate with commas.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the training set (.parquet or .csv).")
@click.option("--full-feature-names", is_flag=True, help="Name columns view__feature.")
@click.option("--ttl-override", default=None, help="A duration (e.g. 7d) replacing every view's ttl.")
@click.option("--as-of-created", is_flag=True,
              help="Ignore feature rows created after the spine time (late-arriving data).")
@wait_option
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def historical(project, spine, timestamp_column, feature_refs, out_path, full_feature_names, ttl_override,
               as_of_created, wait, quiet):
    """Build a point-in-time-correct training set from a spine file.

    \b
    Example:
      fstore historical --spine labels.parquet --timestamp-column label_ts \\
        --features user_order_features,user_txn_features:txn_velocity_60s --out training.parquet
      fstore historical --spine "select user_id, label_ts from stg_churn_labels" \\
        --timestamp-column label_ts -f user_order_features --out churn.parquet
    """
    from feature_store.offline import get_historical_features, null_rates

    started = time.perf_counter()
    registry = load_registry(project, quiet=quiet)
    spine_path = Path(spine)
    table = _read_table(spine_path) if spine_path.suffix.lower() in (".csv", ".parquet") else spine
    status = err.status("Building the training set...") if not quiet and err.is_terminal else None
    if status:
        status.start()
    try:
        if not quiet:
            rows = f"{table.num_rows:,} spine rows" if not isinstance(table, str) else f"the rows of {table!r}"
            err.print(f"Joining {len(_split_features(feature_refs))} feature reference(s) onto {rows}...")
        job = get_historical_features(
            registry, table, _split_features(feature_refs), timestamp_column=timestamp_column,
            full_feature_names=full_feature_names, ttl_override=ttl_override, as_of_created=as_of_created,
            wait=_duration(wait, "--wait"), on_wait=on_wait_printer(quiet),
        )
        result = job.to_arrow()
        _write_table(result, out_path)
    finally:
        if status:
            status.stop()
    if not quiet:
        feature_cols = job.columns[-len(job.features):]
        rates = ", ".join(f"{c} {r:.1%}" for c, r in null_rates(result, feature_cols).items())
        out.print(f"Wrote {result.num_rows:,} rows to {out_path} in {time.perf_counter() - started:.2f}s; "
                  f"NULL rate: {rates}")


# -- online ----------------------------------------------------------------------------------------


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO timestamp (e.g. 2026-11-01T00:00:00Z)",
                                 param_hint=name) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@main.command()
@project_options
@redis_option
@click.option("--view", "views", multiple=True, help="Only this view (repeatable); may name an offline view.")
@click.option("--select", "select", default=None, help="Only views matching, e.g. tag:finance-grade.")
@click.option("--full-refresh", is_flag=True,
              help="Read every entity, whatever the last sync proved (Redis still skips unchanged rows).")
@click.option("--start", default=None, help="Backfill: only rows created or changed from this ISO timestamp, in chunks.")
@click.option("--end", default=None, help="Backfill: only rows created or changed before this ISO timestamp.")
@click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
@wait_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def sync(project, redis_url, views, select, full_refresh, start, end, dry_run, wait, quiet, as_json):
    """Push the latest value per entity of the online views from the warehouse into Redis.

    Incremental, and exactly as correct as a full refresh: each view's last finished
    sync (its state is kept in Redis) proves which entities cannot have changed, and
    only the others are read. A view is read in full when its definition changed or
    Redis lost data since (flush, restart, failover, eviction). A row replaces the
    stored one when it is newer, or has the same timestamps and other content; never
    when it is older. Each view succeeds or fails on its own; the exit status is 1 if
    any failed.

    \b
    Examples:
      fstore sync
      fstore sync --view user_order_features --full-refresh
      fstore sync --select tag:finance-grade --dry-run
      fstore --redis-timeout 1 sync --wait 5m
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from feature_store.materialize import sync as run_sync

    registry = load_registry(project, quiet=quiet or as_json)
    store = online_store(registry, redis_url)
    show = not quiet and not as_json and err.is_terminal
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}{task.fields[of]} rows"),
                        TextColumn("{task.fields[rate]:,.0f} rows/s"), TimeRemainingColumn(), console=err,
                        disable=not show)
    tasks: dict[str, Any] = {}
    started: dict[str, float] = {}
    # A view's first callback comes after its first batch is written: its clock starts
    # when the previous view's last callback (or the sync) did.
    last_event = [time.perf_counter()]

    def on_progress(view: str, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if view not in tasks:
            tasks[view] = progress.add_task(view, total=total, rate=0.0, of="")
            started[view] = last_event[0]
        last_event[0] = now
        elapsed = max(now - started[view], 1e-9)
        progress.update(tasks[view], completed=done, total=total, rate=done / elapsed,
                        of="" if total is None else f"/{total:,}")

    with progress:
        report = run_sync(registry, store, views=list(views) or None, select=select, full_refresh=full_refresh,
                          start=_parse_time(start, "--start"), end=_parse_time(end, "--end"), dry_run=dry_run,
                          progress=on_progress, wait=_duration(wait, "--wait"), on_wait=on_wait_printer(quiet))
    for warning in report.warnings:
        err.print(f"[yellow]Warning:[/yellow] {warning}", markup=True)
    if as_json:
        _json(report.to_dict())
    elif not quiet:
        _print_sync_report(report)
    for view, reason in report.failed.items():
        err.print(f"[red]Failed:[/red] {view}: {reason}", markup=True)
    if not report.ok:
        sys.exit(1)


def _print_sync_report(report) -> None:
    data = report.to_dict()
    table = Table("view", "read", "rows read", "keys written", "unchanged", "skipped (older)", "expired on arrival",
                  "seconds", box=None, pad_edge=False)
    for v in data["views"]:
        mode = "failed" if v["error"] else v["mode"]
        table.add_row(v["view"], mode, f"{v['rows_read']:,}", f"{v['keys_written']:,}", f"{v['unchanged']:,}",
                      f"{v['skipped_older']:,}", f"{v['expired_on_arrival']:,}", f"{v['seconds']:.2f}")
    out.print(table)
    for v in data["views"]:
        if v["reason"] and not v["error"]:
            out.print(f"  {v['view']}: read in full: {v['reason']}")
    total = data["total"]
    verb = "would write" if data.get("dry_run") else "wrote"
    out.print(f"Sync {verb} {total['keys_written']:,} keys from {total['rows_read']:,} rows in "
              f"{total['seconds']:.2f}s ({total['unchanged']:,} unchanged, {total['skipped_older']:,} skipped as "
              f"older, {total['expired_on_arrival']:,} expired on arrival).")
    for sample in data.get("sample") or []:
        out.print(f"  {sample}")


def _parse_entity(values: tuple[str, ...], view: FeatureView) -> dict:
    """KEY=VALUE pairs, each by its join key's declared type: an int key takes canonical digits only,
    a string key stays text (zip=02139 is "02139"), anything else stays text for the read to check."""
    from feature_store.codec import INT_KEY_PATTERN
    from feature_store.registry import type_kind

    entity: dict[str, Any] = {}
    for v in values:
        key, sep, raw = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r}: write KEY=VALUE, e.g. user_id=42", param_hint="--entity")
        is_int = type_kind(view.column_types.get(key)) == "int"
        entity[key] = int(raw) if is_int and re.fullmatch(INT_KEY_PATTERN, raw) else raw
    return entity


@main.command()
@project_options
@redis_option
@click.argument("view_name", metavar="VIEW")
@click.option("--entity", "-e", "entity", multiple=True, required=True,
              help="A join key value, KEY=VALUE (repeat for composite keys).")
@click.option("--feature", "-f", "feature_names", multiple=True, help="Only these features (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (Feast's response shape, with statuses).")
def get(project, redis_url, view_name, entity, feature_names, as_json):
    """Read one entity's live feature values from the online store.

    \b
    Examples:
      fstore get user_order_features --entity user_id=42
      fstore get user_txn_features -e user_id=7 -f txn_velocity_60s --json
    """
    from feature_store.online import get_online_features

    registry = load_registry(project, quiet=as_json)
    view = registry.view(view_name)
    refs = [f"{view.name}:{f}" for f in feature_names] or [view.name]
    store = online_store(registry, redis_url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = get_online_features(registry, store, refs, [_parse_entity(entity, view)], gate="status")
    for w in caught:
        err.print(f"[yellow]Warning:[/yellow] {w.message}", markup=True)
    data = response.to_dict(include_status=True)
    if as_json:
        _json(data)
        return
    table = Table("feature", "value", "status", box=None, pad_edge=False)
    for name in response.feature_names:
        value = data[name][0]
        table.add_row(name, "-" if value is None else repr(value) if isinstance(value, str) else str(value),
                      data[f"{name}__status"][0])
    out.print(table)


@main.command()
@project_options
@redis_option
@click.option("--view", "views", multiple=True, help="Only this view (repeatable).")
@click.option("--no-count", is_flag=True, help="Skip counting keys in Redis and entities offline (both scan).")
@wait_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(project, redis_url, views, no_count, wait, as_json):
    """Show each online view's last finished sync and whether Redis still holds what it wrote.

    Per view: when the last sync finished, its as-of time, how it read (full or
    incremental) and the keys it wrote; the view's keys in Redis against its entities
    offline (both counted by a scan; --no-count skips them); and whether the view's
    definition changed since (the next sync then reads it in full).

    \b
    Examples:
      fstore status
      fstore status --view user_txn_features --json
    """
    from feature_store.materialize import select_views
    from feature_store.snapshot import count_entities
    from feature_store.writer import definition_digest

    registry = load_registry(project, quiet=as_json)
    store = online_store(registry, redis_url)
    rows = []
    for view in select_views(registry, list(views) or None):
        state = store.sync_state(view.name)
        row = {
            "view": view.name,
            "synced_at": state.get("synced_at"),
            "as_of": state.get("as_of"),
            "mode": state.get("mode"),
            "keys_written": int(state["keys_written"]) if state.get("keys_written") else None,
            "definition_changed": bool(state.get("definition")) and state.get("definition") != definition_digest(view),
            "keys_in_redis": None,
            "entities_offline": None,
        }
        if not no_count:
            row["keys_in_redis"] = store.count_keys(view.name)
            row["entities_offline"] = count_entities(registry, view, wait=_duration(wait, "--wait"))
        rows.append(row)
    if as_json:
        _json(rows)
        return
    table = Table("view", "last sync", "as of", "read", "keys written", "keys in Redis", "entities offline",
                  "definition", box=None, pad_edge=False)
    fmt = lambda v: "-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)  # noqa: E731
    for r in rows:
        table.add_row(r["view"], r["synced_at"] or "[red]never[/red]", fmt(r["as_of"]), fmt(r["mode"]),
                      fmt(r["keys_written"]), fmt(r["keys_in_redis"]), fmt(r["entities_offline"]),
                      "[yellow]changed since[/yellow]" if r["definition_changed"] else "same")
    out.print(table)


# -- serve -----------------------------------------------------------------------------------------


@main.command()
@project_options
@redis_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs tokens (--tokens-file).")
@click.option("--port", default=6566, show_default=True, type=click.IntRange(0, 65535), help="Port (Feast's default).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: one per core, less one when Redis runs on this machine).")
@click.option("--tokens-file", default=None, envvar="FEATURE_STORE_TOKENS_FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Bearer tokens and their scopes (YAML; see docs/server.md); else $FEATURE_STORE_TOKENS.")
@landing_option("/push lands rows for dbt")
@click.option("--max-entities", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Most entities per read (and rows per push); more answers 422.")
@click.option("--max-body-bytes", default=1 << 20, show_default=True, type=click.IntRange(min=1024),
              help="Largest request body; larger answers 413.")
@click.option("--access-log", is_flag=True, help="Log every request (uvicorn's access log).")
def serve(project, redis_url, host, port, workers, tokens_file, landing_dir, max_entities, max_body_bytes,
          access_log):
    """Serve features over HTTP: Feast-compatible reads, push, catalogue, health, metrics.

    Reads the manifest `dbt build` wrote (and again whenever it changes) and the Redis
    `fstore sync` fills. The API, tokens and errors: docs/server.md, or /docs once running.

    \b
    Examples:
      fstore serve
      fstore serve --host 0.0.0.0 --tokens-file tokens.yml --workers 4
      curl -s localhost:6566/get-online-features \\
        -d '{"features": ["user_order_features:user_7d_orders"], "entities": {"user_id": [42]}}'
    """
    from feature_store.server import ServerConfig, run

    project_dir, profiles_dir, target = project
    obj = click.get_current_context().find_root().obj or {}
    config = ServerConfig(
        project_dir=str(Path(project_dir).resolve()), target=target,
        profiles_dir=str(Path(profiles_dir).resolve()) if profiles_dir else None, redis_url=redis_url,
        redis_timeout=obj.get("redis_timeout"), redis_retries=obj.get("redis_retries"),
        tokens_file=str(tokens_file) if tokens_file else None,
        landing_dir=str(Path(landing_dir).resolve()) if landing_dir else None,
        max_entities=max_entities, max_body_bytes=max_body_bytes)
    err.print(f"Serving {config.project_dir} on http://{host}:{port} (docs at /docs)")
    run(config, host=host, port=port, workers=workers, access_log=access_log)


# -- audit: who reads what -------------------------------------------------------------------------


def _audit_day(value: str | None, name: str = "--today"):
    """``--today YYYY-MM-DD`` as a date (None: today in UTC)."""
    from datetime import date

    from feature_store.audit import utc_today

    if value is None:
        return utc_today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; write it as YYYY-MM-DD", param_hint=name) from None


def _audit_status(registry: Registry, ref: str, today) -> dict:
    """A counted feature against the registry, for `fstore audit`'s status column and JSON."""
    from feature_store.audit import feature_status

    kind, feature, date_ = feature_status(registry, ref, today)
    return {"status": kind, "tombstone": date_.isoformat() if date_ else None,
            "replaced_by": feature.replaced_by if feature else None}


@main.command()
@project_options
@redis_option
@click.option("--feature", "-f", "feature", default=None, metavar="FEATURE",
              help="Only this feature (view:feature), or a view's features (view).")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 90),
              help="How many UTC days to look back over, today included (counters are kept 90 days).")
@click.option("--today", default=None, metavar="YYYY-MM-DD", help="The window's last day (default: today in UTC).")
@click.option("--unread", is_flag=True, help="Also list the online features nobody read in the window.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def audit(project, redis_url, feature, days, today, unread, as_json):
    """Show who reads which feature online: reads per client and day, from the read counters in Redis.

    Every online read (Python API, fstore get, HTTP) counts the entity rows it read per
    feature, client and UTC day. A feature gone from the project is marked removed, one with
    a deprecated date deprecated (or past its tombstone).

    \b
    Examples:
      fstore audit
      fstore audit --feature user_order_features:user_avg_basket_30d_legacy --days 30
      fstore audit --unread --json
    """
    from feature_store.audit import by_client, matches, read_counts, window

    registry = load_registry(project, quiet=as_json)
    store = online_store(registry, redis_url)
    last = _audit_day(today)
    span = window(days, last)
    rows = by_client(read_counts(store, days, last, feature))
    for row in rows:
        row.update(_audit_status(registry, row["feature"], last))
    read = {row["feature"] for row in rows}
    never = sorted(f.ref for v in registry.views.values() if v.online for f in v.features
                   if f.ref not in read and matches(f.ref, feature))
    if as_json:
        data = {
            "from": span[0].isoformat(), "to": last.isoformat(), "days": days, "prefix": store.prefix,
            "reads": [{**r, "by_day": {d.isoformat(): n for d, n in r["by_day"].items()},
                       "last_day": r["last_day"].isoformat()} for r in rows],
        }
        if unread:
            data["unread"] = never
        _json(data)
        return
    per_day = days <= 7  # a column per day while they fit
    table = Table("feature", "client", *(d.strftime("%m-%d") for d in span if per_day), "reads", "days read",
                  "last read", "status", box=None, pad_edge=False)
    for r in rows:
        status = {"removed": "[red]removed from the project[/red]",
                  "past_tombstone": f"[red]past tombstone {r['tombstone']}[/red]",
                  "deprecated": f"[yellow]deprecated, tombstone {r['tombstone']}[/yellow]"}.get(r["status"], "")
        if r["replaced_by"] and r["status"]:
            status += f" (use {r['replaced_by']})"
        table.add_row(r["feature"], r["client"] or "(unnamed)",
                      *(f"{r['by_day'].get(d, 0):,}" if r["by_day"].get(d) else "-" for d in span if per_day),
                      f"{r['reads']:,}", f"{len(r['by_day'])}/{days}", r["last_day"].isoformat(), status or "-")
    if rows:
        out.print(table)
    else:
        what = f" of {feature.strip()}" if feature else ""
        err.print(f"No reads{what} counted in the {days} days from {span[0]} to {last} under {store.prefix}.")
    if unread:
        out.print(f"Online features nobody read from {span[0]} to {last}: {', '.join(never) or 'none'}")


# -- deprecations: CI's check before removing a feature ------------------------------------------------


@main.command()
@project_options
@redis_option
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 90),
              help="A feature must have gone unread this many UTC days (today included) before it can go.")
@click.option("--today", default=None, metavar="YYYY-MM-DD", help="The day to check as of (default: today in UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print the problems and notices as JSON.")
def deprecations(project, redis_url, days, today, as_json):
    """Fail (exit 1) when shipping this project would break a reader of a feature on its way out.

    Compares the manifest with the read counters of the last --days days: a feature past its
    deprecated date (tombstone) that was still read fails, and so does a feature the manifest
    no longer has that was still read. Deprecated features still read before their tombstone,
    and tombstoned ones nobody reads any more, are notes. Run it in CI after `dbt parse`, with
    the --target and --redis-url of the deployment that serves (the counters' keys hold the
    project and target).

    \b
    Examples:
      fstore deprecations --target prod --redis-url "$PROD_REDIS_URL"
      fstore deprecations --days 14 --json
    """
    from feature_store.audit import TITLES, deprecation_problems, read_counts
    from feature_store.connection import redact

    registry = load_registry(project, quiet=as_json)
    store = online_store(registry, redis_url)
    last = _audit_day(today)
    counts = read_counts(store, days, last)
    problems = deprecation_problems(registry, counts, last, days)
    failing = [p for p in problems if p.failing]
    if as_json:
        _json({"today": last.isoformat(), "days": days, "prefix": store.prefix, "counters": len(counts),
               "ok": not failing, "problems": [p.to_dict() for p in problems]})
    else:
        for p in problems:
            label = "[red]error[/red]" if p.failing else "[cyan]note[/cyan]"
            out.print(f"{label}: {TITLES[p.kind]}: {p.message}", markup=True)
        if not counts:
            err.print(f"[yellow]Warning:[/yellow] no read counters at all in the {days} days to {last} under "
                      f"{store.prefix} at {redact(store.url)}; check --redis-url and --target (the deployment "
                      "that serves)", markup=True)
        verdict = "[red]failed[/red]" if failing else "[green]ok[/green]"
        out.print(f"Deprecations as of {last}, reads of the last {days} days: {verdict} ({len(failing)} failing, "
                  f"{len(problems) - len(failing)} notes)", markup=True)
    sys.exit(1 if failing else 0)


# -- skew audit ------------------------------------------------------------------------------------


def _window_start(value: str, now: datetime) -> datetime:
    """``--since``: a duration back from ``now`` (1h, 7d) or an ISO time (naive means UTC)."""
    from feature_store.registry import parse_duration

    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a duration (1h, 7d) nor an ISO time", param_hint="--since") \
            from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@main.command()
@project_options
@redis_option
@click.option("--since", default="1h", show_default=True, metavar="DURATION|ISO",
              help="Audit values served from this long ago (1h, 7d) or from this ISO time.")
@click.option("--until", default=None, metavar="ISO", help="...and served before this ISO time (default: now).")
@click.option("--view", "views", multiple=True, help="Only this view (repeatable).")
@landing_option("the serving log lands")
@click.option("--no-drain", is_flag=True, help="Audit what has landed; do not drain the serving log from Redis first.")
@click.option("--examples", "max_examples", default=5, show_default=True, type=click.IntRange(min=0),
              help="Differing values shown per feature.")
@wait_option
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON.")
def skew(project, redis_url, since, until, views, landing_dir, no_drain, max_examples, wait, as_json):
    """Audit the serving log for training/serving skew; exit 1 when a feature's share is above its threshold.

    Every value the online reads logged (a sample, at each view's log_sample_rate) is
    recomputed through the point-in-time join at its entity and the time it was served,
    and compared with what was served. Per feature: values compared, how many differ, the
    share, and examples with both values. 0 is the expected state; a feature alerts above
    its meta monitors.skew_max, else 0.1%. How to read it: docs/skew.md.

    \b
    Examples:
      fstore skew
      fstore skew --since 7d --view user_order_features --json
      fstore skew --since 2026-12-01T00:00:00Z --until 2026-12-02T00:00:00Z --no-drain
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from feature_store import servinglog
    from feature_store.skew import REASONS, SKIPPED, audit_skew

    registry = load_registry(project, quiet=as_json)
    for name in views:
        registry.view(name)  # an unknown view: did-you-mean, before anything runs
    now = datetime.now(timezone.utc)
    start, end = _window_start(since, now), _parse_time(until, "--until") or now
    landing = _landing_folder(project, landing_dir)
    drained = None
    if not no_drain:
        import dataclasses

        store = online_store(registry, redis_url)
        try:
            report = _drain_serving_log(store, landing, registry, quiet=as_json)
        finally:
            store.close()
        drained = dataclasses.asdict(report) if report is not None else None
    log = servinglog.read_log(landing, start, end, target=registry.target.name)
    if views:
        log = log.filter(pc.is_in(log.column("view"), value_set=pa.array(list(views), pa.string())))

    show = not as_json and err.is_terminal
    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed:,}/{task.total:,} reads"), TimeRemainingColumn(), console=err,
                        disable=not show)
    tasks: dict[str, Any] = {}

    def on_progress(view: str, done: int, total: int) -> None:
        if view not in tasks:
            tasks[view] = progress.add_task(view, total=total)
        progress.update(tasks[view], completed=done, total=total)

    on_wait = on_wait_printer(as_json)
    with progress:
        results = audit_skew(registry, log, wait=_duration(wait, "--wait"), max_examples=max_examples,
                             progress=on_progress, on_wait=on_wait)
    alerts = [r for r in results if r.alert]
    window = " to ".join(t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") for t in (start, end))
    if as_json:
        _json({"since": start.isoformat(), "until": end.isoformat(), "landing_dir": str(landing),
               "drained": drained, "values_logged": log.num_rows, "results": [r.to_dict() for r in results],
               "alerts": [r.ref for r in alerts]})
    else:
        _print_skew(results, window, log.num_rows, drained, REASONS, SKIPPED)
    if alerts:
        sys.exit(1)


def _drain_serving_log(store, landing: Path, registry: Registry, quiet: bool):
    """Drain the serving log into ``landing`` (fstore skew and monitor): the DrainReport, or None when
    another drain holds it, which then lands it; a warning says so, and says when entries were lost."""
    from feature_store import servinglog

    try:
        report = servinglog.drain(store, landing, target=registry.target.name)
    except servinglog.DrainLocked as exc:  # another drain is landing it: use what has landed
        if not quiet:
            err.print(f"[yellow]Warning:[/yellow] not drained: {exc}", markup=True)
        return None
    if report.lost_warning and not quiet:
        err.print(f"[yellow]Warning:[/yellow] {report.lost_warning}", markup=True)
    return report


def _print_skew(results, window: str, logged: int, drained: Any, reasons: dict, skipped: dict) -> None:
    if drained is not None:
        out.print(f"Drained {drained['entries']:,} serving-log entries ({drained['rows']:,} values) into "
                  f"{drained['files']:,} file(s).")
    if not results:
        out.print(f"No served values logged from {window} (UTC). Reads are logged at each view's "
                  "log_sample_rate; `fstore skew --since 7d` looks further back.")
        return
    out.print(f"Skew audit of {logged:,} served values from {window} (UTC)")
    table = Table("view", "feature", "compared", "differing", "share", "threshold", "alert", "skipped", box=None,
                  pad_edge=False)
    for r in results:
        share = f"{r.share:.3%}"
        table.add_row(r.view, r.feature, f"{r.compared:,}", f"{r.differing:,}",
                      f"[red]{share}[/red]" if r.differing else share, f"{r.threshold:.3%}",
                      "[red]ALERT[/red]" if r.alert else "ok",
                      ", ".join(f"{k} {n:,}" for k, n in r.skipped.items()) or "-")
    out.print(table)
    for r in results:
        if not r.differing:
            continue
        why = ", ".join(f"{k} {n:,}" for k, n in r.reasons.items())
        out.print(f"\n[bold]{r.ref}[/bold]: {r.differing:,} of {r.compared:,} differ ({why})", markup=True)
        for e in r.examples:
            entity = orjson.dumps(e["entity"]).decode() if not isinstance(e["entity"], str) else e["entity"]
            served = f"{e['served'] if e['served'] is not None else 'nothing'} ({e['status']}"
            served += f", row of {e['served_event_ts']})" if e["served_event_ts"] else ")"
            offline = e["offline"] if e["offline"] is not None else "NULL"
            offline += f" (row of {e['offline_event_ts']})" if e["offline_event_ts"] else ""
            out.print(Text(f"  {entity} at {e['served_at']}: served {served}, training set {offline}: {e['reason']}"))
        for code in r.reasons:
            out.print(Text(f"  {code}: {reasons.get(code, '')}"), style="dim")
    codes = sorted({k for r in results for k in r.skipped})
    for code in codes:
        out.print(Text(f"skipped {code}: {skipped.get(code, '')}"), style="dim")
    alerts = [r for r in results if r.alert]
    if alerts:
        out.print(f"[red]ALERT:[/red] {len(alerts)} feature(s) above their skew threshold: "
                  f"{', '.join(r.ref for r in alerts)}", markup=True)
    else:
        out.print("[green]No alert[/green]: every feature's share of differing values is within its threshold.",
                  markup=True)



# -- monitor ---------------------------------------------------------------------------------------


@main.command()
@project_options
@redis_option
@click.option("--view", "views", multiple=True, help="Only this view (repeatable).")
@click.option("--now", "now_text", default=None, metavar="ISO",
              help="Judge the data as of this time (default: the clock), e.g. for data pinned to another time.")
@landing_option("the serving log lands and the history is kept")
@click.option("--no-drain", is_flag=True, help="Use what has landed; do not drain the serving log from Redis first.")
@click.option("--no-skew", is_flag=True, help="Skip the skew audit (the point-in-time join of every served value).")
@click.option("--report", "report_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a self-contained HTML report (plots of drift and freshness over time) here.")
@click.option("--no-history", is_flag=True, help="Do not append this run to the history.")
@wait_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def monitor(project, redis_url, views, now_text, landing_dir, no_drain, no_skew, report_path, no_history, wait,
            as_json):
    """Check every feature's drift, fill rate and freshness (and skew); exit 1 when any alert fires.

    Drift compares the view's last 7 days offline (today excluded) with what the serving log
    recorded in the last hour: KS and PSI for numbers, PSI for strings and booleans. Fill
    rate: non-NULL values among the entities' latest rows offline, and among served values.
    Freshness: now minus the latest event time against freshness_sla, and the write lag
    (write time minus event time) the sync and pushes recorded, p95 against lag_factor x the
    SLA. Thresholds come from meta `monitors:` on the view or column (docs/monitoring.md).
    Each run is appended to the history that the dbt model monitor_history reads.

    \b
    Examples:
      fstore monitor
      fstore monitor --view user_order_features --json
      fstore monitor --report monitor.html
      fstore monitor --now 2026-12-01T12:10:00Z --no-drain
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from feature_store.monitor import read_history, run_monitors, write_history

    registry = load_registry(project, quiet=as_json)
    for name in views:
        registry.view(name)  # an unknown view: did-you-mean, before anything runs
    now = _parse_time(now_text, "--now")
    landing = _landing_folder(project, landing_dir)
    show = not as_json and err.is_terminal
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                        disable=not show, transient=True)

    on_wait = on_wait_printer(as_json)
    store = online_store(registry, redis_url)
    try:
        with progress:
            task = progress.add_task("starting", total=None)
            if not no_drain:
                progress.update(task, description="draining the serving log from Redis")
                _drain_serving_log(store, landing, registry, quiet=as_json)
            run = run_monitors(registry, landing, views=list(views) or None, now=now, wait=_duration(wait, "--wait"),
                               store=store, skew=not no_skew, on_wait=on_wait,
                               progress=lambda step: progress.update(task, description=step))
    finally:
        store.close()
    history_file = None if no_history else write_history(run, landing, target=registry.target.name)
    if report_path is not None:
        from feature_store.report import write_report

        write_report(run, report_path, read_history(landing, target=registry.target.name))
    if as_json:
        _json({**run.to_dict(), "history_file": str(history_file) if history_file else None,
               "report": str(report_path) if report_path else None})
    else:
        _print_monitor(run, history_file, report_path)
    if not run.ok:
        sys.exit(1)


_LEVEL_STYLE = {"ok": "green", "warn": "yellow", "alert": "bold red", "insufficient data": "cyan",
                "not checked": "dim"}


def _print_monitor(run, history_file: Path | None, report_path: Path | None) -> None:
    def level(text: str) -> Text:
        return Text(text, style=_LEVEL_STYLE.get(text, ""))

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    def secs(value: float | None) -> str:
        from feature_store.monitor import format_lag

        return "-" if value is None else format_lag(value)

    out.print(f"Monitors as of {run.now:%Y-%m-%d %H:%M:%S} UTC: offline sample {run.offline_window[0]:%Y-%m-%d} to "
              f"{run.offline_window[1]:%Y-%m-%d} (excluded), serving log {run.online_window[0]:%H:%M} to "
              f"{run.online_window[1]:%H:%M}")
    views = Table("view", "sla", "offline lag", "write lag p95 (max)", "entities", "level", box=None, pad_edge=False)
    for v in run.views:
        writes = ", ".join(f"{w.source} {secs(w.p95_s)} ({secs(w.max_s)})" for w in v.write_lag if w.p95_s is not None)
        views.add_row(v.view, format_duration(v.freshness_sla),
                      secs(v.offline_lag.total_seconds() if v.offline_lag is not None else None), writes or "-",
                      f"{v.entities:,}", level(v.level))
    out.print(views)
    out.print()
    skew = {(s.view, s.feature): s for s in run.skew}
    features = Table("feature", "drift", "n offline/online", "fill offline", "fill online", "skew", "level",
                     box=None, pad_edge=False)
    for f in run.features:
        stats = [f"KS {f.ks:.3f}" if f.ks is not None else "", f"PSI {f.psi:.3f}" if f.psi is not None else ""]
        drift = " ".join(s for s in stats if s) or ("-" if f.drift_level == "not checked" else f.drift_level)
        s = skew.get((f.view, f.feature))
        features.add_row(f.ref, drift, f"{f.n_offline:,}/{f.n_online:,}" if f.method != "-" else "-",
                         share(f.fill_offline), share(f.fill_online),
                         f"{s.share:.2%}" if s is not None and s.compared else "-",
                         level("alert" if s is not None and s.alert else f.level))
    out.print(features)
    notes = [f"  {v.view}: {n}" for v in run.views for n in v.notes]
    notes += [f"  {f.ref}: {n}" for f in run.features for n in f.notes if "insufficient" in f.level or "fewer" in n]
    if notes:
        out.print("\nNotes:")
        for line in notes:
            out.print(Text(line))
    for line in run.alerts:
        err.print(Text.assemble(("ALERT ", "bold red"), line))
    verdict = "[bold red]ALERT[/bold red]" if not run.ok else "[green]ok[/green]"
    where = f"; history {history_file}" if history_file else ""
    where += f"; report {report_path}" if report_path else ""
    out.print(f"\n{len(run.features)} features in {len(run.views)} views checked in {run.seconds:.1f}s: {verdict} "
              f"({len(run.alerts)} alerts){where}", markup=True)


if __name__ == "__main__":  # pragma: no cover
    main()
