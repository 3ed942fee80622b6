{#-
  The serving log drained offline (python/feature_store/servinglog.py, docs/serving-log.md):
  one row per served feature value of the sampled online reads, from the Parquet files the
  drain lands under <push_dir>/_fstore/serving_log/target=<target.name>/date=YYYY-MM-DD/ (the
  target being built: dev's reads in dev, prod's in prod). On engines other than DuckDB, name
  a relation over that target's folder in vars."feature_store:serving_log_relation".
-#}
{% macro serving_log() %}
  {{ return(feature_store.fstore_landing('serving_log', feature_store._serving_log_columns())) }}
{% endmacro %}


{#- The columns of servinglog.log_schema(), in order. -#}
{% macro _serving_log_columns() %}
  {%- set ts, text = dbt.type_timestamp(), dbt.type_string() -%}
  {{ return([('id', text), ('served_at', ts), ('client', text), ('view', text), ('entity', text),
             ('event_ts', ts), ('feature', text), ('value', text), ('status', text)]) }}
{% endmacro %}
