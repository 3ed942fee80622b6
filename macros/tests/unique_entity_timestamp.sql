{#
  A feature view holds one row per (join keys, event timestamp): the point-in-time join
  picks "the" row at the greatest timestamp, and a tie makes that pick arbitrary
  (DuckDB's ASOF JOIN returns either row, run to run). A created timestamp is the
  declared tie-break, so with one the unit of uniqueness is keys + timestamp + created.
#}
{% test unique_entity_timestamp(model, entities, timestamp, created_timestamp=none) %}
  {{ return(adapter.dispatch('test_unique_entity_timestamp', 'feature_store')(
      model, entities, timestamp, created_timestamp)) }}
{% endtest %}

{% macro default__test_unique_entity_timestamp(model, entities, timestamp, created_timestamp) %}
  {#- dbt renders every test while it parses, those of disabled models too (the examples of
      an installed feature_store package, whose entities the consumer does not declare):
      resolve entities only when the test runs. -#}
  {%- if not execute -%}
    {{ return("select 1 as n_rows where 1 = 0") }}
  {%- endif -%}
  {%- if not timestamp -%}
    {{ exceptions.raise_compiler_error(
        "unique_entity_timestamp on " ~ model ~ ": argument `timestamp` is required (the event timestamp column)") }}
  {%- endif -%}
  {%- set names = feature_store.entity_join_keys(entities) + [timestamp] -%}
  {%- if created_timestamp -%}
    {%- do names.append(created_timestamp) -%}
  {%- endif -%}
  {#- Names from the test's arguments (dbt quotes only column_name): quoted here. -#}
  {%- set columns = [] -%}
  {%- for name in names -%}
    {%- do columns.append(adapter.quote(name)) -%}
  {%- endfor -%}
select
  {{ columns | join(',\n  ') }},
  count(*) as n_rows
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endmacro %}
