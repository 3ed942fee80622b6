{#
  The seeds cover a fixed past window; the demo wants live values. Every staging model
  moves its timestamps by one offset, seed_shift_seconds(), so the data's last moment
  (var seed_max_ts) lands on the build time. The offset comes from run_started_at,
  which dbt fixes once per invocation, so all models of one run shift identically.
#}

{% macro seed_shift_seconds() %}
  {{ return(adapter.dispatch('seed_shift_seconds', 'feature_store')()) }}
{% endmacro %}

{% macro default__seed_shift_seconds() %}
  {%- set enabled = var('shift_seeds_to_now', true) -%}
  {%- if enabled is string -%}
    {#- --vars on the command line may hand us text -#}
    {%- set enabled = enabled | lower in ('true', '1', 'yes', 'on') -%}
  {%- endif -%}
  {#- run_started_at is unset while dbt only parses -#}
  {%- if not enabled or run_started_at is none -%}
    {{ return(0) }}
  {%- endif -%}
  {%- set raw = var('seed_max_ts', none) -%}
  {%- if raw is none -%}
    {{ exceptions.raise_compiler_error(
        "var seed_max_ts is not set: run `python scripts/generate_seeds.py`, which writes it into dbt_project.yml") }}
  {%- endif -%}
  {%- set seed_max = modules.datetime.datetime.strptime(raw | string, '%Y-%m-%d %H:%M:%S') -%}
  {#- run_started_at is timezone-aware UTC; seeds are naive UTC. Whole seconds only, so
      the shift never adds a fractional part to second-precision source data. -#}
  {%- set now = run_started_at.astimezone(modules.pytz.utc).replace(tzinfo=none, microsecond=0) -%}
  {%- set delta = now - seed_max -%}
  {{ return(delta.days * 86400 + delta.seconds) }}
{% endmacro %}


{% macro shift_to_now(expr) %}
  {{ return(adapter.dispatch('shift_to_now', 'feature_store')(expr)) }}
{% endmacro %}

{% macro default__shift_to_now(expr) %}
  {%- set seconds = feature_store.seed_shift_seconds() -%}
  {%- if seconds == 0 -%}
    {{ expr }}
  {%- else -%}
    {{ dbt.dateadd('second', seconds, expr) }}
  {%- endif -%}
{% endmacro %}


{% macro data_now() %}
  {{ return(adapter.dispatch('data_now', 'feature_store')()) }}
{% endmacro %}

{#- "Now" on the data's clock: the build time when shifting (to the second), else the
    fixed seed_max_ts, so unshifted runs do not depend on the wall clock. -#}
{% macro default__data_now() %}
  {%- set seed_max = modules.datetime.datetime.strptime(var('seed_max_ts') | string, '%Y-%m-%d %H:%M:%S') -%}
  {%- set now = seed_max + modules.datetime.timedelta(seconds=feature_store.seed_shift_seconds()) -%}
  cast('{{ now.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}
