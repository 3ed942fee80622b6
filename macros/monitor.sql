{#-
  The offline side of `fstore monitor` (python/feature_store/monitor.py, docs/monitoring.md), per engine.

  Each query reads its time bounds from a one-row relation the Python side names for the
  run (`window`, columns __fs_start, __fs_end and __fs_now), not from literals: the compiled
  SQL does not change with the run's time, so it is compiled once and then cached.

  Per feature view:
    - `sample`: the drift baseline, the view's rows with an event time in
      [__fs_start, __fs_end) (the last 7 days, today excluded), at most `sample_rows` of
      them, drawn at random: the sampled columns only;
    - `snapshot`: the latest row per entity as of __fs_now (no ttl: every entity the view
      knows, a stable population): its row count, its greatest event time (the offline
      lag), and per feature the count of non-NULL values (the fill rate).
-#}

{% macro monitor_queries(views, window, sample_rows) %}
  {%- set out = {} -%}
  {%- for v in views -%}
    {%- do out.update({v['name']: {
        'sample': feature_store.monitor_sample(v['relation'], v['timestamp'], v['sampled'], window, sample_rows),
        'snapshot': feature_store.monitor_snapshot(v['relation'], v['keys'], v['timestamp'],
                                                   v.get('created_timestamp'), v['features'], window)}}) -%}
  {%- endfor -%}
  {{ return(tojson(out)) }}
{% endmacro %}


{#- The event-time condition of the drift baseline: inside [__fs_start, __fs_end). -#}
{% macro _monitor_in_window(timestamp, window) -%}
  {{ adapter.quote(timestamp) }} >= (select __fs_start from {{ window }})
    and {{ adapter.quote(timestamp) }} < (select __fs_end from {{ window }})
{%- endmacro %}


{% macro _monitor_columns(columns) -%}
  {{ feature_store._pit_cols(columns) if columns else '1 as ' ~ adapter.quote('__fs_none') }}
{%- endmacro %}


{#- At most `rows` random rows of the window. -#}
{% macro monitor_sample(relation, timestamp, columns, window, rows) %}
  {{ return(adapter.dispatch('monitor_sample', 'feature_store')(relation, timestamp, columns, window, rows)) }}
{% endmacro %}

{% macro default__monitor_sample(relation, timestamp, columns, window, rows) %}
select {{ feature_store._monitor_columns(columns) }}
from {{ relation }}
where {{ feature_store._monitor_in_window(timestamp, window) }}
order by {{ feature_store.monitor_random() }}
limit {{ rows }}
{% endmacro %}

{#- A uniform draw per row: random() on PostgreSQL, Snowflake, Trino and DuckDB; Spark and
    BigQuery call it rand(). -#}
{% macro monitor_random() %}
  {{ return(adapter.dispatch('monitor_random', 'feature_store')()) }}
{% endmacro %}

{% macro default__monitor_random() %}random(){% endmacro %}

{% macro spark__monitor_random() %}rand(){% endmacro %}

{% macro bigquery__monitor_random() %}rand(){% endmacro %}

{#- DuckDB samples without sorting the window: a reservoir of `rows`, seeded, so one
    build's data gives one sample run after run (a monitor that flips between runs on the
    same data would page people for nothing). The sample applies to the FROM clause, before
    any WHERE, hence the subquery. -#}
{% macro duckdb__monitor_sample(relation, timestamp, columns, window, rows) %}
select * from (
    select {{ feature_store._monitor_columns(columns) }}
    from {{ relation }}
    where {{ feature_store._monitor_in_window(timestamp, window) }}
) as __fs_window
using sample reservoir({{ rows }} rows) repeatable (13)
{% endmacro %}



{#- One row: __fs_rows (entities), __fs_latest (the greatest event time up to __fs_now) and,
    per feature, its non-NULL count among the entities' latest rows, under the feature's
    own name. The latest row is the point-in-time join's (feature_store._pit_newest_first:
    a NULL created timestamp is older than any). Portable SQL (row_number() over a
    partition), so no engine version. -#}
{% macro monitor_snapshot(relation, keys, timestamp, created_timestamp, features, window) %}
  {{ return(adapter.dispatch('monitor_snapshot', 'feature_store')(relation, keys, timestamp, created_timestamp,
                                                                   features, window)) }}
{% endmacro %}

{% macro default__monitor_snapshot(relation, keys, timestamp, created_timestamp, features, window) %}
with ranked as (
    select
        {%- for f in features %}
        {{ adapter.quote(f) }},
        {%- endfor %}
        {{ adapter.quote(timestamp) }} as __fs_ts,
        row_number() over (partition by {{ feature_store._pit_cols(keys) }}
                           order by {{ feature_store._pit_newest_first({'ts': timestamp, 'created': created_timestamp}) }})
            as __fs_rank
    from {{ relation }} as f
    where {{ feature_store._pit_not_null(keys) }}
      and {{ adapter.quote(timestamp) }} <= (select __fs_now from {{ window }})
)
select
    count(*) as __fs_rows,
    max(__fs_ts) as __fs_latest
    {%- for f in features %},
    count({{ adapter.quote(f) }}) as {{ adapter.quote(f) }}
    {%- endfor %}
from ranked
where __fs_rank = 1
{% endmacro %}


{#-
  The monitor history (`fstore monitor` appends one Parquet file per run under
  <push_dir>/_fstore/monitor_history/target=<target name>/date=YYYY-MM-DD/; docs/monitoring.md)
  of the target being built, as a SELECT of its columns, read by feature_store.fstore_landing
  (macros/landing.sql): on DuckDB the files themselves, elsewhere the relation named in
  vars."feature_store:monitor_history_relation", else no rows. The model monitor_history
  selects it, for dashboards.
-#}
{% macro monitor_history() %}
  {{ return(feature_store.fstore_landing('monitor_history', feature_store._monitor_history_columns())) }}
{% endmacro %}


{#- The columns of python/feature_store/monitor.py's history_schema(), in order. -#}
{% macro _monitor_history_columns() %}
  {%- set ts, text, num, count = dbt.type_timestamp(), dbt.type_string(), dbt.type_float(), dbt.type_bigint() -%}
  {{ return([('run_at', ts), ('as_of', ts), ('view', text), ('feature', text), ('metric', text), ('source', text),
             ('value', num), ('warn', num), ('alert', num), ('level', text), ('n_offline', count),
             ('n_online', count)]) }}
{% endmacro %}
