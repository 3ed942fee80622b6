{#-
  Apache Spark (dbt-spark) variants of point_in_time_join and its helpers; tests/test_spark.py
  runs them. The plan is default__'s range join with row_number() in a subquery, which is plain
  Spark SQL (https://spark.apache.org/docs/latest/sql-ref-syntax-qry-select-window.html); Spark has
  no ASOF join and no LATERAL top-1 probe to prefer over it.
-#}

{#- The plans of other engines are refused by name, as on DuckDB and Postgres, rather than
    silently replaced by the range join. -#}
{% macro spark__point_in_time_join(plan, implementation=none) %}
  {%- if implementation in ['range', 'asof', 'lateral'] -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: implementation='" ~ implementation ~ "' is a "
        ~ ("Postgres" if implementation == 'lateral' else "DuckDB") ~ " plan; on Spark pass none or 'default' "
        ~ "(the range join)") }}
  {%- endif -%}
  {{ return(feature_store.default__point_in_time_join(plan)) }}
{% endmacro %}


{#- t - ttl, to the microsecond. dbt-spark's dateadd goes through to_unix_timestamp, whole
    seconds, so with a 3h ttl a spine time of 10:00:00.5 would get the floor 07:00:00 and
    a row at 07:00:00.2, outside the window, would match. A timestamp minus an interval
    literal (a day-time interval) keeps the fraction:
    https://spark.apache.org/docs/latest/sql-ref-literals.html#interval-literal -#}
{% macro spark__timestamp_minus_seconds(t_expr, seconds) %}
  {{ return('(' ~ t_expr ~ ' - interval ' ~ seconds ~ ' seconds)') }}
{% endmacro %}
