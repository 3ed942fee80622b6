{#- What the online store served, as sampled by the serving log and landed by its drain
    (docs/serving-log.md): one row per served feature value. A view, so files landed after the
    build show at once (on DuckDB; a build that found no file yet needs one more build). -#}
{{ config(materialized='view') }}
{{ feature_store.serving_log() }}
