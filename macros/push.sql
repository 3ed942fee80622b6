{#-
  The rows pushed to a feature view (python/feature_store/push.py, docs/push.md), as a SELECT
  of the view's declared columns cast to their declared types, each distinct row once: a
  view's model unions it in, so training sets see pushed rows after the next `dbt build`.

  Pushes land as Parquet files under <push_dir>/<view>/date=YYYY-MM-DD/hour=HH/<digest>.parquet.
  Rows are made distinct because a client that retries a push across an hour boundary, or
  in other batches, lands the same rows in another file.

  Where they come from:
    - vars."feature_store:push_relations" naming a relation for the view (any engine): that
      relation, e.g. an external table over <push_dir>/<view>/ on Spark, Snowflake, BigQuery;
    - else on DuckDB: the Parquet files themselves, read with read_parquet;
    - else: no rows (an empty relation with the view's columns), so the model still builds.
-#}

{% macro pushed_rows(view_name) %}
  {{ return(adapter.dispatch('pushed_rows', 'feature_store')(view_name)) }}
{% endmacro %}


{% macro default__pushed_rows(view_name) %}
  {%- set columns = feature_store._push_columns(view_name) -%}
  {%- set relation = feature_store._push_relation(view_name) -%}
  {%- if relation -%}
    {{ return(feature_store._cast_select(columns, relation)) }}
  {%- endif -%}
  {#- DuckDB reads the files where they land (feature_store.landed_parquet). -#}
  {%- set files = feature_store.landed_parquet(view_name ~ '/**/*.parquet') -%}
  {%- if files -%}
    {{ return(feature_store._cast_select(columns, files)) }}
  {%- endif -%}
  {{ return(feature_store._typed_empty(columns)) }}
{% endmacro %}


{#- The landing folder: vars."feature_store:push_dir" (default `push`), a relative path taken
    from the dbt project directory, as fstore's default_landing_dir does. -#}
{% macro _push_dir() %}
  {%- set configured = var('feature_store:push_dir', 'push') | string -%}
  {%- if configured.startswith('/') -%}
    {{ return(configured.rstrip('/')) }}
  {%- endif -%}
  {#- dbt resolves the project directory it runs (an absolute path) into the invocation's args. -#}
  {%- set project_dir = invocation_args_dict.get('project_dir') or flags.PROJECT_DIR or '.' -%}
  {{ return((project_dir | string).rstrip('/') ~ '/' ~ configured.rstrip('/')) }}
{% endmacro %}


{#- vars."feature_store:push_relations"[view_name], or none. -#}
{% macro _push_relation(view_name) %}
  {%- set relations = var('feature_store:push_relations', {}) -%}
  {%- if relations is not mapping -%}
    {{ exceptions.raise_compiler_error(
        "vars.\"feature_store:push_relations\" must map feature view names to relations, e.g. "
        ~ "{user_txn_features: \"landing.user_txn_features\"}; got " ~ (relations | string)) }}
  {%- endif -%}
  {{ return(relations.get(view_name)) }}
{% endmacro %}


{#- [(name, data_type)] of the view's declared columns, in order. The view is looked up by
    name among the feature views (point_in_time_join's lookup); every column needs a
    data_type, which the pushed values are cast to so the union matches the contract. -#}
{% macro _push_columns(view_name) %}
  {%- if not execute -%}
    {{ return([]) }}
  {%- endif -%}
  {%- set views = feature_store._pit_feature_views() -%}
  {%- if view_name not in views -%}
    {{ exceptions.raise_compiler_error(
        "pushed_rows: unknown feature view '" ~ view_name ~ "'; feature views: "
        ~ (views.keys() | list | sort | join(', ')) ~ ". A feature view is a model with config.meta.feature_store") }}
  {%- endif -%}
  {%- set columns = [] -%}
  {%- for column in views[view_name].columns.values() -%}
    {%- if not column.data_type -%}
      {{ exceptions.raise_compiler_error(
          "pushed_rows: column " ~ column.name ~ " of " ~ view_name ~ " has no data_type; declare one on "
          ~ "every column (pushed values are cast to it)") }}
    {%- endif -%}
    {%- do columns.append((column.name, column.data_type)) -%}
  {%- endfor -%}
  {%- if not columns -%}
    {{ exceptions.raise_compiler_error(
        "pushed_rows: feature view " ~ view_name ~ " declares no columns; declare them in its YAML") }}
  {%- endif -%}
  {{ return(columns) }}
{% endmacro %}
