{#- Every `fstore monitor` run, one row per run and measure (docs/monitoring.md): for dashboards of
    drift, fill rate and freshness over time. A view, so a run appended after the build shows at
    once (on DuckDB; the first run after a build with no history needs one more build). -#}
{{ config(materialized='view') }}
{{ feature_store.monitor_history() }}
