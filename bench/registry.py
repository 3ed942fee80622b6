"""How fast the registry loads a large manifest (the serving path pays this at start-up).

Writes a synthetic dbt project (dbt_project.yml + target/manifest.json) with
--views feature views of --features features each, then times ``Registry.load``
against the floor of merely parsing the same manifest JSON, in the same run.

    python bench/registry.py                 # 1,000 views x 20 features
    python bench/registry.py --views 5000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from feature_store.registry import ENTITIES_VAR, Registry  # noqa: E402


def synthetic_manifest(n_views: int, n_features: int) -> dict:
    nodes = {}
    child_map = {}
    for i in range(n_views):
        uid = f"model.bench.view_{i:05d}"
        columns = {
            "user_id": {"name": "user_id", "data_type": "bigint", "description": "", "meta": {}, "config": {"meta": {}}},
            "event_ts": {"name": "event_ts", "data_type": "timestamp", "description": "", "meta": {}, "config": {"meta": {}}},
        }
        for j in range(n_features):
            meta = {"feature_store": {"fallback": {"impute": 0}}} if j % 3 == 0 else {}
            columns[f"f_{i}_{j}"] = {
                "name": f"f_{i}_{j}", "data_type": "bigint" if j % 2 else "double",
                "description": f"feature {j} of view {i}", "meta": {}, "config": {"meta": meta}, "tags": [],
            }
        nodes[uid] = {
            "name": f"view_{i:05d}", "resource_type": "model", "package_name": "bench",
            "relation_name": f'"bench"."main"."view_{i:05d}"', "description": f"view {i}",
            "config": {"meta": {"feature_store": {
                "entities": ["user"], "timestamp": "event_ts", "ttl": "2d", "owner": "team@example.com",
                "online": i % 2 == 0, "tags": ["bench"]}}, "materialized": "table", "contract": {"enforced": True}},
            "meta": {}, "tags": [], "columns": columns,
            "depends_on": {"nodes": [f"model.bench.stg_{i % 50}"], "macros": []},
            "raw_code": "select 1" * 20,  # real manifests carry SQL text the registry must skip over
        }
        child_map[uid] = [f"test.bench.unique_{i}"]
    return {"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
                         "adapter_type": "duckdb", "project_name": "bench"},
            "nodes": nodes, "child_map": child_map, "macros": {}, "sources": {}, "exposures": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "dbt_project.yml").write_text(yaml.safe_dump({
            "name": "bench", "profile": "bench", "config-version": 2,
            "vars": {ENTITIES_VAR: {"user": {"join_keys": ["user_id"]}}}}))
        (project / "target").mkdir()
        manifest_file = project / "target" / "manifest.json"
        manifest_file.write_bytes(orjson.dumps(synthetic_manifest(args.views, args.features)))
        size_mb = manifest_file.stat().st_size / 1e6

        def timed(fn) -> list[float]:
            fn()  # warm the page cache and imports
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return times

        floor = timed(lambda: orjson.loads(manifest_file.read_bytes()))
        load = timed(lambda: Registry.load(project))
        registry = Registry.load(project)
        assert len(registry.views) == args.views, len(registry.views)
        assert not registry.errors(), registry.errors()[:3]
        features = sum(len(v.features) for v in registry.views.values())

    med_floor, med_load = statistics.median(floor), statistics.median(load)
    print(f"manifest: {args.views:,} views x {args.features} features ({features:,} features), {size_mb:.1f} MB")
    print(f"Registry.load          median {med_load * 1000:8.1f} ms   min {min(load) * 1000:8.1f} ms")
    print(f"baseline orjson.loads  median {med_floor * 1000:8.1f} ms   min {min(floor) * 1000:8.1f} ms")
    print(f"ratio load/parse-only: {med_load / med_floor:.2f}x")
    print(f"dbt imported: {any(m == 'dbt' or m.startswith('dbt.') for m in sys.modules)}")


if __name__ == "__main__":
    main()
