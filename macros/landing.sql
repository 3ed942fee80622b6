{#-
  Reading the Parquet files landed under the landing folder (vars."feature_store:push_dir",
  default `push`; feature_store._push_dir) from dbt models. Shared by pushed_rows (a view's
  pushed rows, push.sql) and fstore_landing (fstore's own files, under <push_dir>/_fstore/).
-#}

{#-
  fstore's own landed files of one kind for the dbt target being built,
  <push_dir>/_fstore/<name>/target=<target.name>/**/*.parquet (the serving log:
  `serving_log`, python/feature_store/servinglog.py; the monitor history: `monitor_history`),
  as a SELECT of `columns` ([(name, data_type)]) cast to their types. Each target (dev,
  prod, ...) has its own online store, so its own files: another target's are never read.

  Where they come from:
    - vars."feature_store:<name>_relation" naming a relation (any engine): that relation,
      e.g. an external table over <push_dir>/_fstore/<name>/target=<target name>/ on Spark,
      Snowflake, BigQuery (that target's folder only);
    - else on DuckDB: the target's Parquet files themselves, read with read_parquet;
    - else (and on DuckDB while no file has landed): no rows, with the columns and types.

  fstore lands instants as Parquet timestamps in UTC; a column declared `timestamp` comes
  out as naive UTC whatever the session's time zone (DuckDB would shift it to its own).
-#}
{% macro fstore_landing(name, columns) %}
  {{ return(adapter.dispatch('fstore_landing', 'feature_store')(name, columns)) }}
{% endmacro %}


{% macro default__fstore_landing(name, columns) %}
  {%- set relation = var('feature_store:' ~ name ~ '_relation', none) -%}
  {%- if relation -%}
    {{ return(feature_store._cast_select(columns, relation, distinct=false)) }}
  {%- endif -%}
  {%- set files = feature_store.landed_parquet('_fstore/' ~ name ~ '/target=' ~ target.name ~ '/**/*.parquet') -%}
  {%- if files -%}
    {{ return(feature_store._cast_select(columns, files, distinct=false, utc_instants=true)) }}
  {%- endif -%}
  {{ return(feature_store._typed_empty(columns)) }}
{% endmacro %}


{#- The landed Parquet files matching `glob` (relative to the landing folder) as a relation
    the engine reads in place, or none: only DuckDB reads them where they land; elsewhere
    point a var at an external table (see fstore_landing and pushed_rows). -#}
{% macro landed_parquet(glob) %}
  {{ return(adapter.dispatch('landed_parquet', 'feature_store')(glob)) }}
{% endmacro %}

{% macro default__landed_parquet(glob) %}
  {{ return(none) }}
{% endmacro %}


{#- DuckDB: read_parquet over the files matching `glob` (relative to the landing folder), or
    none when no file matches. read_parquet fails on a glob that matches no file, so whether
    one exists is asked (glob(), which does not fail) while the model compiles, in the same
    run that then reads them; files only ever appear, so what was found is still there when
    the query runs. Partition folders are not read as columns (hive_partitioning off): a
    feature may be called `date` or `hour`. union_by_name: files landed before a column was
    added lack it, and read NULL there. -#}
{% macro duckdb__landed_parquet(glob) %}
  {%- set pattern = "'" ~ (feature_store._push_dir() ~ '/' ~ glob) | replace("'", "''") ~ "'" -%}
  {%- if execute -%}
    {%- set found = run_query("select count(*) from glob(" ~ pattern ~ ")") -%}
    {%- if found.columns[0].values()[0] > 0 -%}
      {{ return("read_parquet(" ~ pattern ~ ", hive_partitioning = false, union_by_name = true)") }}
    {%- endif -%}
  {%- endif -%}
  {{ return(none) }}
{% endmacro %}


{#- SELECT [DISTINCT] of `columns` from `source`, each cast to its declared type. With
    utc_instants (DuckDB reading fstore's files), a `timestamp` column is taken as the UTC
    instant it was landed as and given as naive UTC: a plain cast would shift it to the
    session's time zone. Before dbt has parsed (no columns): a placeholder. -#}
{% macro _cast_select(columns, source, distinct=true, utc_instants=false) %}
  {%- if not columns -%}
    {{ return("select 1 as " ~ adapter.quote("__fs_unparsed")) }}
  {%- endif -%}
  {%- set casts = [] -%}
  {%- for name, data_type in columns -%}
    {%- set value = adapter.quote(name) -%}
    {%- if utc_instants and (data_type | lower) == 'timestamp' -%}
      {%- set value = "timezone('UTC', " ~ value ~ ")" -%}
    {%- endif -%}
    {%- do casts.append("cast(" ~ value ~ " as " ~ data_type ~ ") as " ~ adapter.quote(name)) -%}
  {%- endfor -%}
  {{ return("select " ~ ("distinct" if distinct else "") ~ "\n    " ~ (casts | join(',\n    ')) ~ "\nfrom " ~ source) }}
{% endmacro %}


{#- No rows, the columns and their types: a one-row derived table filtered out, which every
    engine accepts (some refuse a SELECT without FROM, or WHERE without FROM). -#}
{% macro _typed_empty(columns) %}
  {%- if not columns -%}
    {{ return("select 1 as " ~ adapter.quote("__fs_unparsed")) }}
  {%- endif -%}
  {%- set nulls = [] -%}
  {%- for name, data_type in columns -%}
    {%- do nulls.append("cast(null as " ~ data_type ~ ") as " ~ adapter.quote(name)) -%}
  {%- endfor -%}
  {{ return("select\n    " ~ (nulls | join(',\n    ')) ~ "\nfrom (select 1 as " ~ adapter.quote("__fs_one")
            ~ ") as " ~ adapter.quote("__fs_none") ~ "\nwhere 1 = 0") }}
{% endmacro %}
