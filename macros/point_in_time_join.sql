{#-
  point_in_time_join: attach features to every row of a spine as they were at the
  row's timestamp. The rule (DESIGN.md, "Semantics that must hold everywhere"): for
  spine keys k and time t, take the view's row with keys k and the greatest event
  time e such that e <= t and, when the view has a ttl L, e >= t - L (inclusive);
  among rows with that e the greatest created time. No such row, or a NULL key: NULL.
  One output row per spine row, spine columns first; the Python API and the online
  sync compile this same macro, so there is one implementation of the rule.

  Arguments are documented in point_in_time_join.yml. The plan (views, features,
  ttls) is resolved once in feature_store._pit_resolve; the variants below only
  choose how each view's row is found.
-#}

{% macro point_in_time_join(spine, timestamp, features, full_feature_names=false, ttl_override=none,
                            as_of_created=false, row_id=none, include_timestamps=false,
                            implementation=none) %}
  {%- set known = [none, 'default', 'range', 'asof'] -%}
  {%- if implementation not in known -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: implementation must be none (the adapter's best plan), 'default' (portable "
        ~ "range join), or on DuckDB 'range' or 'asof'; got " ~ implementation) }}
  {%- endif -%}
  {%- set plan = feature_store._pit_resolve(spine, timestamp, features, full_feature_names, ttl_override,
                                            as_of_created, row_id, include_timestamps) -%}
  {%- if plan is none -%}
    {#- dbt is only parsing: the refs are recorded, the SQL is not used. -#}
    {{ return('select 1 as __fs_parsing') }}
  {%- endif -%}
  {%- if implementation == 'default' -%}
    {{ return(feature_store.default__point_in_time_join(plan)) }}
  {%- endif -%}
  {{ return(adapter.dispatch('point_in_time_join', 'feature_store')(plan, implementation)) }}
{% endmacro %}


{#-
  Portable: for each view, a range join of the spine's (keys, t) to the view rows
  within [t - ttl, t], numbered newest first per (keys, t); keep number 1. Standard
  SQL only (no QUALIFY, no ASOF, dbt.dateadd for t - ttl), meant for Postgres,
  Snowflake, BigQuery and Trino; on Spark pass row_id, as its row_number() needs an
  ORDER BY and the added spine_row_number has none. Only DuckDB runs in our tests.
  Its cost grows with the rows per key inside the ttl window: fine for daily views
  with a ttl of days, slow for views with no ttl and a long history.
-#}
{% macro default__point_in_time_join(plan, implementation=none) %}
  {%- set view_sql = [] -%}
  {%- for view in plan['views'] -%}
    {%- set sql -%}
    select * from (
        select
            {{ feature_store._pit_view_columns(view) }},
            row_number() over (
                partition by {% for key in view['keys'] %}q.{{ key }}, {% endfor %}q.__fs_t
                order by {{ feature_store._pit_newest_first(view) }}
            ) as __fs_rn
        from {{ feature_store._pit_points(plan, view) }} as q
        inner join {{ view['relation'] }} as f
            on {{ feature_store._pit_range_conditions(view, plan['as_of_created']) }}
    ) as ranked
    where __fs_rn = 1
    {%- endset -%}
    {%- do view_sql.append(sql) -%}
  {%- endfor -%}
  {{ return(feature_store._pit_assemble(plan, view_sql)) }}
{% endmacro %}


{#-
  DuckDB: per view, the faster of two correct plans. Measured with bench/historical.py
  on 2 cores (1M users, 5M spine rows, a daily view with ttl 2d and an event view with
  ttl 1d; wall time, peak RSS of the whole process):

                            with the ttls           both views without ttl (--no-ttl)
    this macro (API)        8.3 s   2.3 GiB         16.8 s   5.9 GiB
    raw range + row_number  7.6 s   2.0 GiB         27.6 s   4.7 GiB
    raw ASOF LEFT JOIN     15.4 s   6.3 GiB         17.6 s   6.0 GiB

  * range: the portable plan, with QUALIFY. A ttl bounds the join to the rows inside
    [t - ttl, t], and DuckDB turns a single-key `row_number() = 1` into a grouped
    arg_max. Chosen for views with a ttl, and always under as_of_created (created <= t
    is a second inequality, which ASOF cannot take).

  * asof: ASOF JOIN on (keys equal, t >= e) for views without a ttl, where a range join
    meets every older row of the key. DuckDB pitfalls, and what we do about them
    (https://duckdb.org/docs/stable/sql/query_syntax/from#as-of-joins):
      - ties on (key, e): which row ASOF picks varies from run to run. Rather than
        dedupe the view first (a window over every view row), the inequality compares
        the struct {e, created} with {t, +infinity}: structs compare field by field, so
        the greatest (e, created) with e <= t wins. Only rows equal in both stay
        ambiguous, which the rule itself leaves open.
      - only equalities plus ONE inequality in ON: an OR has given wrong results
        (duckdb/duckdb#19027), a second inequality internal errors (duckdb/duckdb#19251).
        The ttl is a WHERE on the matched row after the join (dropping the row means
        "no match"), and the NOT NULL filters on the view sit in a subquery, not in ON
        (filters on the right side in ON were mis-applied, duckdb/duckdb#13899).
      - plain ASOF is an inner join and ASOF LEFT JOIN does not keep the spine's order:
        the ASOF runs over the distinct (keys, t) of the spine and is left-joined back
        on (keys, t) like every plan, so no spine row is lost or multiplied.

  Memory: ASOF and the big sorts take what DuckDB allows (80% of RAM by default). With
  memory_limit = 1200MB (duckdb_config in the Python API) both cases stay under 2 GiB
  peak: 10 s / 1.4 GiB with the ttls, 22 s / 1.7 GiB without.
-#}
{% macro duckdb__point_in_time_join(plan, implementation=none) %}
  {%- set view_sql = [] -%}
  {%- for view in plan['views'] -%}
    {%- set use_asof = implementation == 'asof'
          or (implementation is none and view['ttl_seconds'] is none) -%}
    {%- if plan['as_of_created'] and view['created'] -%}
      {%- set use_asof = false -%}
    {%- endif -%}
    {%- if use_asof -%}
      {%- if view['created'] -%}
        {%- set view_order = "{'e': " ~ view['ts'] ~ ", 'c': coalesce(cast(" ~ view['created']
              ~ " as timestamp), cast('-infinity' as timestamp))}" -%}
        {%- set point_order = "{'e': q.__fs_t, 'c': cast('infinity' as timestamp)}" -%}
      {%- else -%}
        {%- set view_order = view['ts'] -%}
        {%- set point_order = "q.__fs_t" -%}
      {%- endif -%}
      {%- set floor = feature_store._pit_ttl_floor(view, 'q.__fs_t') -%}
      {%- set sql -%}
    select
            {{ feature_store._pit_view_columns(view) }}
        from {{ feature_store._pit_points(plan, view, distinct=true) }} as q
        asof join (
            select *, {{ view_order }} as __fs_order
            from {{ view['relation'] }}
            where {% for key in view['keys'] %}{{ key }} is not null and {% endfor %}{{ view['ts'] }} is not null
        ) as f
            on {{ feature_store._pit_key_match(view, 'f', 'q') }}
            and {{ point_order }} >= f.__fs_order
        {%- if floor is not none %}
        where f.{{ view['ts'] }} >= {{ floor }}
        {%- endif %}
      {%- endset -%}
    {%- else -%}
      {%- set sql -%}
    select
            {{ feature_store._pit_view_columns(view) }}
        from {{ feature_store._pit_points(plan, view) }} as q
        inner join {{ view['relation'] }} as f
            on {{ feature_store._pit_range_conditions(view, plan['as_of_created']) }}
        qualify row_number() over (
            partition by {% for key in view['keys'] %}q.{{ key }}, {% endfor %}q.__fs_t
            order by {{ feature_store._pit_newest_first(view) }}
        ) = 1
      {%- endset -%}
    {%- endif -%}
    {%- do view_sql.append(sql) -%}
  {%- endfor -%}
  {#- DuckDB materializes a CTE that is referenced more than once (here: once per view and
      once for the output; https://duckdb.org/docs/stable/sql/query_syntax/with): a
      buffered copy of every spine row and column. For a spine that is a table or view,
      re-reading it is cheaper, and correct because each view's result is joined back
      on (keys, t), not on a row number. (DuckDB 2.0 materializes a CTE over a
      registered Arrow table or DataFrame regardless of the hint; that costs ~5% at 1M
      rows in bench/historical.py.) -#}
  {{ return(feature_store._pit_assemble(plan, view_sql, spine_hint='not materialized')) }}
{% endmacro %}
