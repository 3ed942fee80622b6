{#-
  point_in_time_join: attach features to every row of a spine as they were at the
  row's timestamp. The rule (docs/point-in-time.md): for spine keys k and time t,
  take the view's row with keys k and the greatest event time e such that e <= t
  and, when the view has a ttl L, e >= t - L (inclusive); among rows with that e
  the greatest created time. No such row, or a NULL key: NULL.
  One output row per spine row, spine columns first; the Python API and the online
  sync compile this same macro, so there is one implementation of the rule.

  Arguments are documented in point_in_time_join.yml. The plan (views, features,
  ttls) is resolved once in feature_store._pit_resolve; the variants below only
  choose how each view's row is found.

  spine_time='constant' says every spine row has the same time (the online sync's
  snapshot: all entities as of one moment). Then each view's row is the latest per key
  inside one time window, which needs no range join: filter the view to the window,
  join it to the spine's distinct keys on equality, keep the newest row per key. The
  time is read from the spine (its distinct times), not passed as a literal, so the
  compiled SQL does not change with the as-of time (the sync compiles it once), and
  a spine that does carry several times still gets the rule's rows, only slower.
-#}

{% macro point_in_time_join(spine, timestamp, features, full_feature_names=false, ttl_override=none,
                            as_of_created=false, row_id=none, include_timestamps=false,
                            implementation=none, spine_time=none) %}
  {%- set known = [none, 'default', 'range', 'asof', 'lateral'] -%}
  {%- if implementation not in known -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: implementation must be none (the adapter's best plan), 'default' (portable "
        ~ "range join), on DuckDB 'range' or 'asof', on Postgres 'lateral'; got " ~ implementation) }}
  {%- endif -%}
  {%- if spine_time == 'constant' and implementation in ['range', 'asof', 'lateral'] -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: implementation='" ~ implementation ~ "' is a plan for spines whose times vary; "
        ~ "with spine_time='constant' pass implementation=none or 'default'") }}
  {%- endif -%}
  {%- set plan = feature_store._pit_resolve(spine, timestamp, features, full_feature_names, ttl_override,
                                            as_of_created, row_id, include_timestamps, spine_time) -%}
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
  SQL only (no QUALIFY, no ASOF, feature_store.timestamp_minus_seconds for t - ttl):
  the plan on BigQuery, Trino and Spark (Postgres uses it for views without an index,
  Snowflake under as_of_created). Our tests run it on DuckDB, Postgres and Spark.
  Its cost grows with the rows per key inside the ttl window: fine for daily views
  with a ttl of days, slow for views with no ttl and a long history.
  With spine_time='constant' the same numbering runs over the view's rows inside the
  window of the one time, joined to the spine's keys on equality (no range join).
-#}
{% macro default__point_in_time_join(plan, implementation=none) %}
  {%- set view_sql = [] -%}
  {%- for view in plan['views'] -%}
    {%- do view_sql.append(feature_store._pit_ranked_view(plan, view)) -%}
  {%- endfor -%}
  {{ return(feature_store._pit_assemble(plan, view_sql)) }}
{% endmacro %}


{#- The portable per-view CTE body of default__ (also Postgres' plan for a view without an index). -#}
{% macro _pit_ranked_view(plan, view) %}
  {%- if plan['spine_time'] == 'constant' -%}
    {%- set key_alias, t_expr = 'k', 'a.__fs_t' -%}
    {%- set rows = feature_store._pit_constant_time_rows(plan, view) -%}
  {%- else -%}
    {%- set key_alias, t_expr = 'q', 'q.__fs_t' -%}
    {%- set rows = feature_store._pit_points(plan, view) ~ ' as q\n        inner join ' ~ view['relation']
          ~ ' as f\n            on ' ~ feature_store._pit_range_conditions(view, plan['as_of_created']) -%}
  {%- endif -%}
  {%- set sql -%}
    select * from (
        select
            {{ feature_store._pit_view_columns(view, q=key_alias, t=t_expr) }},
            row_number() over (
                partition by {{ feature_store._pit_cols(view['keys'], key_alias) }}, {{ t_expr }}
                order by {{ feature_store._pit_newest_first(view) }}
            ) as __fs_rn
        from {{ rows }}
    ) as ranked
    where __fs_rn = 1
  {%- endset -%}
  {{ return(sql) }}
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
  {%- if implementation == 'lateral' -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: implementation='lateral' is a Postgres plan; on DuckDB pass none, 'range', "
        ~ "'asof' or 'default'") }}
  {%- endif -%}
  {%- set view_sql = [] -%}
  {%- for view in plan['views'] -%}
    {%- if plan['spine_time'] == 'constant' -%}
      {%- do view_sql.append(feature_store._pit_duckdb_constant_time(plan, view)) -%}
      {%- continue -%}
    {%- endif -%}
    {%- set use_asof = implementation == 'asof'
          or (implementation is none and view['ttl_seconds'] is none) -%}
    {%- if plan['as_of_created'] and view['created'] -%}
      {%- set use_asof = false -%}
    {%- endif -%}
    {%- if use_asof -%}
      {%- if view['created'] -%}
        {%- set view_order = "{'e': " ~ adapter.quote(view['ts']) ~ ", 'c': coalesce(cast("
              ~ adapter.quote(view['created']) ~ " as timestamp), cast('-infinity' as timestamp))}" -%}
        {%- set point_order = "{'e': q.__fs_t, 'c': cast('infinity' as timestamp)}" -%}
      {%- else -%}
        {%- set view_order = adapter.quote(view['ts']) -%}
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
            where {{ feature_store._pit_not_null(view['keys'] + [view['ts']]) }}
        ) as f
            on {{ feature_store._pit_key_match(view, 'f', 'q') }}
            and {{ point_order }} >= f.__fs_order
        {%- if floor is not none %}
        where f.{{ adapter.quote(view['ts']) }} >= {{ floor }}
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
            partition by {{ feature_store._pit_cols(view['keys'], 'q') }}, q.__fs_t
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


{#-
  DuckDB, spine_time='constant': per key (and spine time) the newest row inside the
  window, found by a grouped arg_max rather than row_number. Measured on a daily view of
  100k users x 29 rows with a created timestamp, every user as of one time, 2 threads,
  the query alone (best of 15, run interleaved):

                                                  ttl 3d     no ttl
    varying plan (range + QUALIFY / ASOF)        0.037 s    0.35 s (ASOF; range 0.31 s)
    constant time, row_number() (the default__)  0.040 s    0.33 s
    constant time, arg_max (this plan)           0.033 s    0.078 s
    plain filter + QUALIFY over the view         0.026 s    0.26 s

  With a ttl of days every plan reads a few rows per key; without one, numbering each
  key's whole history costs 4x a grouped arg_max. Through snapshot() (full read):
  0.55 -> 0.20 s without a ttl (1.8 -> 0.24 s read in 4 partitions), 0.15 s either
  way with one.
  DuckDB pitfalls (https://duckdb.org/docs/stable/sql/functions/aggregates):
    - arg_max skips rows whose arg is NULL: the row is packed into a struct, which is
      never NULL even when every feature in it is, so a NULL value stays NULL and the
      features, event and created time all come from the one chosen row.
    - the tie rule is the struct {e, created is not null, created}: structs compare
      field by field (https://duckdb.org/docs/stable/sql/data_types/struct), so the
      greatest e wins, then a known created time over a NULL one, then the greatest.
      Without the flag a NULL created time compares above every value and would win
      (the property tests catch that). Only rows equal in all three stay ambiguous, as
      the rule leaves them.
-#}
{% macro _pit_duckdb_constant_time(plan, view) %}
  {%- set picked = [] -%}
  {%- for feature in view['features'] -%}
    {%- do picked.append(adapter.quote(feature) ~ ' := f.' ~ adapter.quote(feature)) -%}
  {%- endfor -%}
  {%- set e = 'f.' ~ adapter.quote(view['ts']) -%}
  {%- do picked.append('__fs_e := ' ~ e) -%}
  {%- if view['created'] -%}
    {%- set c = 'f.' ~ adapter.quote(view['created']) -%}
    {%- do picked.append('__fs_c := ' ~ c) -%}
    {%- set newest = 'struct_pack(e := ' ~ e ~ ', known := ' ~ c ~ ' is not null, c := ' ~ c ~ ')' -%}
  {%- else -%}
    {%- do picked.append('__fs_c := cast(null as timestamp)') -%}
    {%- set newest = e -%}
  {%- endif -%}
  {%- set sql -%}
    select
            {{ feature_store._pit_cols(view['keys']) }}, __fs_t,
            {%- for feature in view['features'] %}
            __fs_pick.{{ adapter.quote(feature) }} as {{ adapter.quote(feature) }},
            {%- endfor %}
            __fs_pick.__fs_e as __fs_e,
            __fs_pick.__fs_c as __fs_c
        from (
            select {{ feature_store._pit_cols(view['keys'], 'k') }}, a.__fs_t,
                arg_max(struct_pack({{ picked | join(', ') }}), {{ newest }}) as __fs_pick
            from {{ feature_store._pit_constant_time_rows(plan, view) }}
            group by {{ feature_store._pit_cols(view['keys'], 'k') }}, a.__fs_t
        ) as picked
  {%- endset -%}
  {{ return(sql) }}
{% endmacro %}


{#-
  Postgres: per view, the top-1-per-point idiom where an index serves it. For each
  distinct (keys, t) of the spine a LATERAL subquery reads the view's rows of those keys
  inside the rule's window, newest first (event, then created time, NULL last), and keeps
  the first (https://www.postgresql.org/docs/current/queries-table-expressions.html#QUERIES-LATERAL).
  With a btree index that leads with the view's join keys and then its event time, each
  run is a short backward index scan; without one, each run scans the whole view. So the
  plan is chosen per view from the catalog when the join compiles: LATERAL when such an
  index exists (dbt-postgres' `indexes` model config; the example's feature views declare
  theirs), else default__'s range join. Measured on Postgres 15, 2 cores, 100k spine
  points against a view of 2M rows, 2,000 keys x 1,000 daily rows (with 20,000 keys x
  100 rows: LATERAL the same, the range join 1-2 s, LATERAL without an index > 20 s):

                                   ttl 2d      no ttl
    LATERAL, with the index        0.8 s       0.9 s
    range join, with the index     0.9 s      22 s
    range join, no index           4.3 s      14 s

  implementation='lateral' forces LATERAL for every view (tests, benchmarks). When every
  view gets LATERAL, the spine itself probes them in key order (_pit_postgres_ordered_probes
  below), for varying and constant spine times alike.

  Otherwise, with spine_time='constant' the view is read once: its rows inside the window,
  joined to the spine's distinct keys, sorted and cut to the first row per (keys, t) by
  DISTINCT ON, which needs no index (https://www.postgresql.org/docs/current/sql-select.html#SQL-DISTINCT).
-#}
{% macro postgres__point_in_time_join(plan, implementation=none) %}
  {%- if implementation in ['range', 'asof'] -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: implementation='" ~ implementation ~ "' is a DuckDB plan; on Postgres pass "
        ~ "none (LATERAL where an index serves it), 'lateral' or 'default'") }}
  {%- endif -%}
  {%- set probed = [] -%}
  {%- for view in plan['views'] -%}
    {%- if implementation == 'lateral' or feature_store._pit_postgres_has_probe_index(view) -%}
      {%- do probed.append(view['name']) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if probed | length == plan['views'] | length -%}
    {{ return(feature_store._pit_postgres_ordered_probes(plan)) }}
  {%- endif -%}
  {%- set view_sql = [] -%}
  {%- for view in plan['views'] -%}
    {%- if plan['spine_time'] == 'constant' -%}
      {%- set sql -%}
    select distinct on ({{ feature_store._pit_cols(view['keys'], 'k') }}, a.__fs_t)
            {{ feature_store._pit_view_columns(view, q='k', t='a.__fs_t') }}
        from {{ feature_store._pit_constant_time_rows(plan, view) }}
        order by {{ feature_store._pit_cols(view['keys'], 'k') }}, a.__fs_t, {{ feature_store._pit_newest_first(view) }}
      {%- endset -%}
    {%- elif view['name'] in probed -%}
      {%- set sql -%}
    select
            {{ feature_store._pit_view_columns(view) }}
        from {{ feature_store._pit_points(plan, view, distinct=true) }} as q
        left join lateral (
            select * from {{ view['relation'] }} as f
            where {{ feature_store._pit_key_match(view, 'f', 'q') }}
            and {{ feature_store._pit_time_conditions(view, plan['as_of_created'], 'q.__fs_t') }}
            order by {{ feature_store._pit_newest_first(view) }}
            limit 1
        ) as f on true
      {%- endset -%}
    {%- else -%}
      {%- set sql = feature_store._pit_ranked_view(plan, view) -%}
    {%- endif -%}
    {%- do view_sql.append(sql) -%}
  {%- endfor -%}
  {{ return(feature_store._pit_assemble(plan, view_sql)) }}
{% endmacro %}


{#- Postgres, when every view has the probe index: no per-view CTE and no join back. Each
    spine row probes each view with a LATERAL top-1 subquery, and the spine is read sorted
    by the first view's keys and its time, so consecutive probes land on neighbouring index
    pages instead of random ones (with the index larger than shared_buffers, probes in hash
    order read ~40x more pages). bench/historical.py --target postgres, 100k users, 1M spine
    rows: 4.7 s against 14.7 s for the per-view CTE plan; a hand-written query 4.4 s. NULL
    keys or times match nothing (equality, comparison), duplicate spine rows stay
    duplicates, and the callers order by the row id. -#}
{% macro _pit_postgres_ordered_probes(plan) %}
  {%- set first = plan['views'][0] -%}
{{ feature_store._pit_select_list(plan) }}
from (
    select *{% if plan['add_row_id'] %}, {{ feature_store._pit_spine_numbering(plan) }}{% endif %}
    from {{ plan['spine_sql'] }} as __fs_s
    order by {{ feature_store._pit_cols(first['keys'] + [plan['timestamp']], '__fs_s') }}
) as __fs_input
{%- for view in plan['views'] %}
left join lateral (
    -- {{ view['name'] }}
    select {{ feature_store._pit_cols(view['features'], 'f') }},
            {{ feature_store._pit_row_times(view) }}
        from {{ view['relation'] }} as f
        where {{ feature_store._pit_key_match(view, 'f', '__fs_input') }}
            and {{ feature_store._pit_time_conditions(view, plan['as_of_created'], '__fs_input.' ~ adapter.quote(plan['timestamp'])) }}
        order by {{ feature_store._pit_newest_first(view) }}
        limit 1
) as {{ view['cte'] }} on true
{%- endfor %}
{% endmacro %}


{#- Whether the view's table has a valid, non-partial btree index whose leading columns are
    its join keys (in any order) and then its event time: what the LATERAL probe needs.
    False when the relation does not exist yet (e.g. `dbt compile` before a build). -#}
{% macro _pit_postgres_has_probe_index(view) %}
  {%- set relation = view['relation'] -%}
  {%- set n = view['keys'] | length -%}
  {%- set query -%}
    select i.indexrelid::bigint as index_id, k.position, coalesce(a.attname, '') as column_name
    from pg_catalog.pg_index as i
    join pg_catalog.pg_class as t on t.oid = i.indrelid
    join pg_catalog.pg_namespace as s on s.oid = t.relnamespace
    join pg_catalog.pg_class as ic on ic.oid = i.indexrelid
    join pg_catalog.pg_am as am on am.oid = ic.relam
    cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, position)
    left join pg_catalog.pg_attribute as a on a.attrelid = t.oid and a.attnum = k.attnum and k.attnum > 0
    where s.nspname = '{{ relation.schema }}' and t.relname = '{{ relation.identifier }}'
      and am.amname = 'btree' and i.indisvalid and i.indpred is null and k.position <= {{ n + 1 }}
    order by index_id, k.position
  {%- endset -%}
  {%- set leading = {} -%}
  {%- for row in run_query(query).rows -%}
    {%- do leading.setdefault(row['index_id'] | string, []).append(row['column_name']) -%}
  {%- endfor -%}
  {%- for columns in leading.values() -%}
    {%- if columns | length == n + 1 and (columns[:n] | sort) == (view['keys'] | sort)
          and columns[n] == view['ts'] -%}
      {{ return(true) }}
    {%- endif -%}
  {%- endfor -%}
  {{ return(false) }}
{% endmacro %}
