{% macro entity_join_keys(entities) %}
  {{ return(adapter.dispatch('entity_join_keys', 'feature_store')(entities)) }}
{% endmacro %}

{#- Entities live in the global var "feature_store:entities" of the root project (one
    place, read by fstore too); a var named after this package would be scoped to it. -#}
{% macro default__entity_join_keys(entities) %}
  {%- if entities is string -%}
    {%- set entities = [entities] -%}
  {%- endif -%}
  {%- set declared = var('feature_store:entities', {}) -%}
  {%- set keys = [] -%}
  {%- for name in entities -%}
    {%- if name not in declared -%}
      {{ exceptions.raise_compiler_error(
          "unknown entity '" ~ name ~ "'; declared entities: " ~ (declared.keys() | list | sort | join(', '))
          ~ ". Declare it under vars.\"feature_store:entities\" in dbt_project.yml") }}
    {%- endif -%}
    {%- for key in declared[name]['join_keys'] -%}
      {%- if key not in keys -%}
        {%- do keys.append(key) -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endfor -%}
  {{ return(keys) }}
{% endmacro %}
