{#-
  Snowflake: per view, ASOF JOIN where it gives the rule's row, the portable range join
  where it cannot. ASOF JOIN
  (https://docs.snowflake.com/en/sql-reference/constructs/asof-join) finds, for each left
  row, the one right row with the closest match value; with
  MATCH_CONDITION (q.t >= f.e) and ON keys equal that is the greatest e <= t of the key,
  found by Snowflake's own ASOF operator instead of a range join that meets every row of
  the key inside the window (Snowflake says such queries "are optimized" with the ASOF
  syntax, https://docs.snowflake.com/en/user-guide/querying-time-series-data). No
  Snowflake measurement backs the choice; it follows DuckDB's (see duckdb__ in
  point_in_time_join.sql), except that ASOF serves views with a ttl too, as the floor
  costs nothing after the match.

  What the plan rests on, point by point (the first two are the page's):
    - MATCH_CONDITION takes ONE comparison of one left and one right column, and ON only
      equalities joined by AND: the ttl floor (e >= t - ttl) is a WHERE on the matched row
      after the join, as in duckdb__'s asof plan. A row older than the ttl is then dropped,
      which reads as "no match" (NULL), never as an older row: the match is the newest
      row <= t, and if that one is too old every older one is too.
    - An unmatched left row is null-padded (a left outer join): each ASOF runs over the
      distinct (keys, t) of the spine, and every plan is left-joined back on (keys, t) by
      _pit_assemble, so no spine row is lost or multiplied either way.
    - NULLs: the view's rows with a NULL key or event time are filtered out in a subquery
      before the join (the rule never matches them), and the spine's points have neither,
      so nothing rests on how a NULL match value compares.
    - Ties: nothing here relies on which of several right rows with the same match value
      (same keys and e) ASOF returns; any may come back. That is exactly the rule for a view
      without a created timestamp (rows equal in keys and e are the ambiguity the rule leaves
      open; unique_entity_timestamp tests for them). With a created timestamp the rule
      wants the greatest created among those rows, NULL losing, so such a view takes two
      steps: ASOF over the view's (keys, e) alone finds the matched e, which is the same
      whichever tied row was picked; an equality join on (keys, e) then reads the tied
      rows, and row_number() keeps the greatest created (`desc nulls last`: Snowflake
      sorts NULL first in a descending order unless told). Only rows equal in keys, e and
      created stay ambiguous, as the rule leaves them.
    - as_of_created on a view with a created timestamp adds "created <= t", a second
      inequality no ASOF can take: that view keeps the portable range join (default__'s
      _pit_ranked_view). Views without a created timestamp are unaffected by it.

  spine_time='constant' keeps default__'s plan: the view's rows inside the one window,
  joined to the spine's keys on equality, newest per key by row_number() (no range join,
  so ASOF has nothing to save).

  tests/test_compile_engines.py checks these shapes in the compiled SQL, and runs this
  plan, translated to DuckDB by sqlglot, against the reference on random data.
-#}
{% macro snowflake__point_in_time_join(plan, implementation=none) %}
  {%- if implementation in ['range', 'asof', 'lateral'] -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: implementation='" ~ implementation ~ "' is a DuckDB or Postgres plan; on "
        ~ "Snowflake pass none (ASOF JOIN where it is exact) or 'default' (the portable range join)") }}
  {%- endif -%}
  {%- set view_sql = [] -%}
  {%- for view in plan['views'] -%}
    {%- if plan['spine_time'] == 'constant' or (plan['as_of_created'] and view['created']) -%}
      {%- do view_sql.append(feature_store._pit_ranked_view(plan, view)) -%}
    {%- elif view['created'] -%}
      {%- do view_sql.append(feature_store._pit_snowflake_asof_then_created(plan, view)) -%}
    {%- else -%}
      {%- do view_sql.append(feature_store._pit_snowflake_asof(plan, view)) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(feature_store._pit_assemble(plan, view_sql)) }}
{% endmacro %}


{#- The view's rows that can match (keys and event time not NULL), as an ASOF right side;
    `columns` is the select list. -#}
{% macro _pit_snowflake_matchable(view, columns='*') %}
  {{ return('(\n            select ' ~ columns ~ '\n            from ' ~ view['relation']
            ~ '\n            where ' ~ feature_store._pit_not_null(view['keys'] + [view['ts']])
            ~ '\n        )') }}
{% endmacro %}


{#- A view without a created timestamp: ASOF JOIN on (keys equal, t >= e), the ttl floor after it. -#}
{% macro _pit_snowflake_asof(plan, view) %}
  {%- set floor = feature_store._pit_ttl_floor(view, 'q.__fs_t') -%}
  {%- set sql -%}
    select
            {{ feature_store._pit_view_columns(view) }}
        from {{ feature_store._pit_points(plan, view, distinct=true) }} as q
        asof join {{ feature_store._pit_snowflake_matchable(view) }} as f
            match_condition (q.__fs_t >= f.{{ adapter.quote(view['ts']) }})
            on {{ feature_store._pit_key_match(view, 'f', 'q') }}
        {%- if floor is not none %}
        where f.{{ adapter.quote(view['ts']) }} >= {{ floor }}
        {%- endif %}
  {%- endset -%}
  {{ return(sql) }}
{% endmacro %}


{#- A view with a created timestamp: ASOF over its (keys, e) finds the matched e (the same
    whichever tied row ASOF picks), then the rows with those keys and that e, the greatest
    created first (NULL last). -#}
{% macro _pit_snowflake_asof_then_created(plan, view) %}
  {%- set e = adapter.quote(view['ts']) -%}
  {%- set floor = feature_store._pit_ttl_floor(view, 'q.__fs_t') -%}
  {%- set sql -%}
    select
            {{ feature_store._pit_view_columns(view, q='p') }}
        from (
            select {{ feature_store._pit_cols(view['keys'], 'q') }}, q.__fs_t, m.{{ e }} as __fs_match_e
            from {{ feature_store._pit_points(plan, view, distinct=true) }} as q
            asof join {{ feature_store._pit_snowflake_matchable(view, feature_store._pit_cols(view['keys'] + [view['ts']])) }} as m
                match_condition (q.__fs_t >= m.{{ e }})
                on {{ feature_store._pit_key_match(view, 'm', 'q') }}
            {%- if floor is not none %}
            where m.{{ e }} >= {{ floor }}
            {%- endif %}
        ) as p
        inner join {{ view['relation'] }} as f
            on {{ feature_store._pit_key_match(view, 'f', 'p') }}
            and f.{{ e }} = p.__fs_match_e
        qualify row_number() over (
            partition by {{ feature_store._pit_cols(view['keys'], 'p') }}, p.__fs_t
            order by {{ feature_store._pit_newest_first(view) }}
        ) = 1
  {%- endset -%}
  {{ return(sql) }}
{% endmacro %}
