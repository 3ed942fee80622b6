{#
  The seeds cover a fixed past window; the demo wants live values. Every staging model
  moves its timestamps by one offset, seed_shift_seconds(), so the data's last moment
  (var seed_max_ts) lands on the build time. The offset comes from run_started_at,
  which dbt fixes once per invocation, so all models of one run shift identically.

  var shift_seeds_to pins that moment instead: the offset no longer depends on the
  clock, so every build lands the same timestamps (tests and reproducible demos that
  still want data close to a chosen "now").
#}

{% macro seed_shift_seconds() %}
  {{ return(adapter.dispatch('seed_shift_seconds', 'feature_store')()) }}
{% endmacro %}

{% macro default__seed_shift_seconds() %}
  {%- set anchor = feature_store.seed_shift_target() -%}
  {%- if anchor is none -%}
    {%- set enabled = var('shift_seeds_to_now', true) -%}
    {%- if enabled is string -%}
      {#- --vars on the command line may hand us text -#}
      {%- set enabled = enabled | lower in ('true', '1', 'yes', 'on') -%}
    {%- endif -%}
    {#- run_started_at is unset while dbt only parses -#}
    {%- if not enabled or run_started_at is none -%}
      {{ return(0) }}
    {%- endif -%}
    {#- run_started_at is timezone-aware UTC; seeds are naive UTC. Whole seconds only, so
        the shift never adds a fractional part to second-precision source data. -#}
    {%- set anchor = run_started_at.astimezone(modules.pytz.utc).replace(tzinfo=none, microsecond=0) -%}
  {%- endif -%}
  {%- set delta = anchor - feature_store.seed_max_datetime() -%}
  {{ return(delta.days * 86400 + delta.seconds) }}
{% endmacro %}


{% macro seed_max_datetime() %}
  {%- set raw = var('seed_max_ts', none) -%}
  {%- if raw is none -%}
    {{ exceptions.raise_compiler_error(
        "var seed_max_ts is not set: run `python scripts/generate_seeds.py`, which writes it into dbt_project.yml") }}
  {%- endif -%}
  {{ return(modules.datetime.datetime.strptime(raw | string, '%Y-%m-%d %H:%M:%S')) }}
{% endmacro %}


{#- var shift_seeds_to as a naive UTC datetime, or none when unset. Checked here rather
    than left to strptime, whose ValueError would reach the user as a Python traceback
    without naming the var. -#}
{% macro seed_shift_target() %}
  {%- set raw = var('shift_seeds_to', none) -%}
  {%- if raw is none or (raw | string | trim) == '' -%}
    {{ return(none) }}
  {%- endif -%}
  {#- Unquoted in YAML, the value arrives as a datetime, whose text has a space (and
      +00:00 when a zone was given), so both spellings are accepted. -#}
  {%- set text = raw | string | trim -%}
  {%- set how = "write it as a UTC time \"YYYY-MM-DD HH:MM:SS\" (whole seconds), e.g. "
      ~ "--vars '{shift_seeds_to: \"2026-12-01 12:00:00\"}'" -%}
  {%- set m = modules.re.match('^(\\d{4})-(\\d{2})-(\\d{2})[ T](\\d{2}):(\\d{2}):(\\d{2})(Z|[+]00:?00| UTC)?$', text) -%}
  {%- if m is none -%}
    {%- set zone = modules.re.search('[+-]\\d{2}:?\\d{2}$', text) -%}
    {%- set why = "has a non-UTC offset" if zone is not none and modules.re.match('^\\d{4}-', text)
        else "is not a date and time" -%}
    {{ exceptions.raise_compiler_error("var shift_seeds_to '" ~ text ~ "' " ~ why ~ "; " ~ how) }}
  {%- endif -%}
  {%- set p = m.groups()[:6] | map('int') | list -%}
  {%- set month_ok = 1 <= p[1] <= 12 -%}
  {%- if month_ok -%}
    {#- the day before the 1st of the next month: the month's last day -#}
    {%- set first_next = modules.datetime.date(p[0] + (p[1] // 12), p[1] % 12 + 1, 1) -%}
    {%- set last_day = (first_next - modules.datetime.timedelta(days=1)).day -%}
  {%- endif -%}
  {%- if not month_ok or not (1 <= p[2] <= last_day) or p[3] > 23 or p[4] > 59 or p[5] > 59 or p[0] < 1 -%}
    {{ exceptions.raise_compiler_error("var shift_seeds_to '" ~ text ~ "' is not a valid date and time; " ~ how) }}
  {%- endif -%}
  {{ return(modules.datetime.datetime(p[0], p[1], p[2], p[3], p[4], p[5])) }}
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

{#- "Now" on the data's clock: the build time when shifting (to the second), the
    shift_seeds_to moment when pinned, else the fixed seed_max_ts, so only the default
    mode depends on the wall clock. -#}
{% macro default__data_now() %}
  {%- set now = feature_store.seed_max_datetime() + modules.datetime.timedelta(seconds=feature_store.seed_shift_seconds()) -%}
  cast('{{ now.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}
