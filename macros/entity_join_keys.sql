{% macro entity_join_keys(entities) %}
  {{ return(adapter.dispatch('entity_join_keys', 'feature_store')(entities)) }}
{% endmacro %}

{#- Entities live in vars.feature_store.entities; dbt scopes that block to this project,
    so var('entities') finds it whether we are the root project or an installed package. -#}
{% macro default__entity_join_keys(entities) %}
  {%- if entities is string -%}
    {%- set entities = [entities] -%}
  {%- endif -%}
  {%- set declared = var('entities', {}) -%}
  {%- set keys = [] -%}
  {%- for name in entities -%}
    {%- if name not in declared -%}
      {{ exceptions.raise_compiler_error(
          "unknown entity '" ~ name ~ "'; declared entities: " ~ (declared.keys() | list | sort | join(', '))
          ~ ". Declare it under vars.feature_store.entities in dbt_project.yml") }}
    {%- endif -%}
    {%- for key in declared[name]['join_keys'] -%}
      {%- if key not in keys -%}
        {%- do keys.append(key) -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endfor -%}
  {{ return(keys) }}
{% endmacro %}
