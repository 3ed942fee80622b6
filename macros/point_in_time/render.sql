{#-
  Private helpers of point_in_time_join: the SQL around the per-view CTEs, shared by
  every engine variant.

  Shape of every plan:

    with __fs_input as (select *[, row_number() over (order by <t>, <keys>) as spine_row_number] from <spine>),
         __fs_v1 as (<one row per distinct (keys, t) of the spine: the chosen feature row>),
         ...
    select __fs_input.*, __fs_v1.<feature> as <name>, ...
    from __fs_input
    left join __fs_v1 on __fs_v1.<keys> = __fs_input.<keys> and __fs_v1.__fs_t = __fs_input.<t>
    ...

  Each view's result is a function of (keys, t) alone, so joining it back on
  (keys, t) rather than on a row number stays right even when an engine evaluates
  the spine CTE once per reference and numbers its rows differently each time
  (BigQuery runs a non-recursive CTE once per reference,
  https://cloud.google.com/bigquery/docs/reference/standard-sql/query-syntax#with_clause ;
  and rows tied in the numbering's order may get their numbers in any order).
  The equality join also makes NULL keys and NULL times match nothing, and keeps
  duplicate spine rows duplicates.

  The CTE is called __fs_input so that it never shadows the relation it reads (the
  Python API registers its spine as __fs_spine).

  Every column the join reads or names (join keys, times, features, spine columns, output
  names) goes through adapter.quote, so a column called `order` or `userId` works, and an
  output column is named exactly as declared. Only the join's own names (__fs_*) are bare.
-#}

{#- The columns `names`, each quoted and prefixed by `alias.` when given, joined by `sep`. -#}
{% macro _pit_cols(names, alias=none, sep=', ') %}
  {%- set cols = [] -%}
  {%- for name in names -%}
    {%- do cols.append((alias ~ '.' if alias else '') ~ adapter.quote(name)) -%}
  {%- endfor -%}
  {{ return(cols | join(sep)) }}
{% endmacro %}


{#- "<col> is not null and ..." for the columns `names` (quoted). -#}
{% macro _pit_not_null(names) %}
  {{ return(feature_store._pit_cols(names, sep=' is not null and ') ~ ' is not null') }}
{% endmacro %}


{#- "<alias>.<col> = <alias>.<col> and ..." for the view's join keys. -#}
{% macro _pit_key_match(view, left, right) %}
  {%- set parts = [] -%}
  {%- for key in view['keys'] -%}
    {%- do parts.append(left ~ '.' ~ adapter.quote(key) ~ ' = ' ~ right ~ '.' ~ adapter.quote(key)) -%}
  {%- endfor -%}
  {{ return(parts | join(' and ')) }}
{% endmacro %}


{#- t - ttl as SQL, or none when the view has no ttl. -#}
{% macro _pit_ttl_floor(view, t_expr) %}
  {%- if view['ttl_seconds'] is none -%}
    {{ return(none) }}
  {%- endif -%}
  {{ return(feature_store.timestamp_minus_seconds(t_expr, view['ttl_seconds']) | trim) }}
{% endmacro %}


{#- A TIMESTAMP expression moved back by a number of seconds, still a TIMESTAMP. -#}
{% macro timestamp_minus_seconds(t_expr, seconds) %}
  {{ return(adapter.dispatch('timestamp_minus_seconds', 'feature_store')(t_expr, seconds)) }}
{% endmacro %}

{% macro default__timestamp_minus_seconds(t_expr, seconds) %}
  {{ return(dbt.dateadd('second', -seconds, t_expr)) }}
{% endmacro %}

{#- BigQuery's dbt.dateadd is DATETIME_ADD over a DATETIME cast, and BigQuery compares no
    TIMESTAMP with a DATETIME; TIMESTAMP_SUB keeps the type.
    https://cloud.google.com/bigquery/docs/reference/standard-sql/timestamp_functions#timestamp_sub -#}
{% macro bigquery__timestamp_minus_seconds(t_expr, seconds) %}
  {{ return('timestamp_sub(' ~ t_expr ~ ', interval ' ~ seconds ~ ' second)') }}
{% endmacro %}


{#- The time window of the rule for view alias `f` at time `t_expr`: e <= t, e >= t - ttl
    (inclusive; when the view has a ttl), and with as_of_created the row was created by t
    (rows without a created time count as known). Every plan filters with this. -#}
{% macro _pit_time_conditions(view, as_of_created, t_expr, f='f') %}
  {%- set ts = f ~ '.' ~ adapter.quote(view['ts']) -%}
  {%- set conds = [ts ~ ' <= ' ~ t_expr] -%}
  {%- set floor = feature_store._pit_ttl_floor(view, t_expr) -%}
  {%- if floor is not none -%}
    {%- do conds.append(ts ~ ' >= ' ~ floor) -%}
  {%- endif -%}
  {%- if as_of_created and view['created'] -%}
    {%- set created = f ~ '.' ~ adapter.quote(view['created']) -%}
    {%- do conds.append('(' ~ created ~ ' is null or ' ~ created ~ ' <= ' ~ t_expr ~ ')') -%}
  {%- endif -%}
  {{ return(conds | join('\n            and ')) }}
{% endmacro %}


{#- Join conditions of a range join of spine alias `q` to view alias `f`: keys equal and
    the time window at q's time. -#}
{% macro _pit_range_conditions(view, as_of_created) %}
  {{ return(feature_store._pit_key_match(view, 'f', 'q') ~ '\n            and '
            ~ feature_store._pit_time_conditions(view, as_of_created, 'q.__fs_t')) }}
{% endmacro %}


{#- FROM clause of the constant-time plans (spine_time='constant'): the view's rows inside
    the window of each distinct spine time (alias `a`, column __fs_t), restricted to the
    spine's keys (alias `k`) by an equality join, so NULL keys match nothing and a small
    spine (an incremental sync) reads only its own entities. One distinct time makes this
    a filter of the view by one time window plus a hash join on the keys, no range join;
    several times stay correct, at the cost of one pass over the window per time. -#}
{% macro _pit_constant_time_rows(plan, view) %}
  {%- set t = adapter.quote(plan['timestamp']) -%}
  (select distinct {{ t }} as __fs_t from __fs_input where {{ t }} is not null) as a
        inner join {{ view['relation'] }} as f
            on {{ feature_store._pit_time_conditions(view, plan['as_of_created'], 'a.__fs_t') }}
        inner join (select distinct {{ feature_store._pit_cols(view['keys']) }}
            from __fs_input where {{ feature_store._pit_not_null(view['keys']) }}) as k
            on {{ feature_store._pit_key_match(view, 'f', 'k') }}
{%- endmacro %}


{#- Newest event time first; among equal ones the newest created time (NULL last). -#}
{% macro _pit_newest_first(view) %}
  {%- set order = 'f.' ~ adapter.quote(view['ts']) ~ ' desc' -%}
  {%- if view['created'] -%}
    {%- set order = order ~ ', f.' ~ adapter.quote(view['created']) ~ ' desc nulls last' -%}
  {%- endif -%}
  {{ return(order) }}
{% endmacro %}


{#- The select list of a per-view CTE over spine alias `q` (keys) and view alias `f`; the
    time is `t`, by default q.__fs_t. -#}
{% macro _pit_view_columns(view, q='q', f='f', t=none) %}
  {%- set cols = [feature_store._pit_cols(view['keys'], q, ',\n            ')] -%}
  {%- do cols.append((t or q ~ '.__fs_t') ~ ' as __fs_t') -%}
  {%- for feature in view['features'] -%}
    {%- do cols.append(f ~ '.' ~ adapter.quote(feature)) -%}
  {%- endfor -%}
  {%- do cols.append(feature_store._pit_row_times(view, f)) -%}
  {{ return(cols | join(',\n            ')) }}
{% endmacro %}


{#- The chosen row's event and created times of view alias `f`, as __fs_e and __fs_c. -#}
{% macro _pit_row_times(view, f='f') %}
  {%- set created = f ~ '.' ~ adapter.quote(view['created']) if view['created']
                    else 'cast(null as ' ~ dbt.type_timestamp() ~ ')' -%}
  {{ return(f ~ '.' ~ adapter.quote(view['ts']) ~ ' as __fs_e,\n            ' ~ created ~ ' as __fs_c') }}
{% endmacro %}


{#- The spine's query points: (keys, t) of every spine row, renamed t -> __fs_t. -#}
{% macro _pit_points(plan, view, distinct=false) %}
  {%- set t = adapter.quote(plan['timestamp']) -%}
  (select {{ 'distinct ' if distinct }}{{ feature_store._pit_cols(view['keys']) }}, {{ t }} as __fs_t
            from __fs_input where {{ feature_store._pit_not_null(view['keys'] + [plan['timestamp']]) }})
{%- endmacro %}


{#- The added row id: spine rows numbered in the order of their time and keys. Snowflake and
    Spark refuse a ranking window without ORDER BY, and elsewhere `over ()` numbers in no
    defined order; rows equal in time and every key are numbered in any order, which no
    output can tell apart. -#}
{% macro _pit_spine_numbering(plan) %}
  {%- set order = [plan['timestamp']] -%}
  {%- for view in plan['views'] -%}
    {%- for key in view['keys'] if key not in order -%}
      {%- do order.append(key) -%}
    {%- endfor -%}
  {%- endfor -%}
  row_number() over (order by {{ feature_store._pit_cols(order, '__fs_s') }}) as {{ adapter.quote(plan['row_id']) }}
{%- endmacro %}


{#- The output columns: the spine's (__fs_input.*), then each requested feature under its
    output name, then per view its row's times when asked; each view's row is the relation
    named by its `cte`. -#}
{% macro _pit_select_list(plan) %}
select
    __fs_input.*
{%- for out in plan['outputs'] %},
    {{ plan['views'][out['view']]['cte'] }}.{{ adapter.quote(out['feature']) }} as {{ adapter.quote(out['name']) }}
{%- endfor %}
{%- if plan['include_timestamps'] %}
{%- for view in plan['views'] %},
    {{ view['cte'] }}.__fs_e as {{ adapter.quote(view['name'] ~ '__event_timestamp') }},
    {{ view['cte'] }}.__fs_c as {{ adapter.quote(view['name'] ~ '__created_timestamp') }}
{%- endfor %}
{%- endif %}
{%- endmacro %}


{#- The whole query, given the rendered per-view CTE bodies (one per plan view).
    spine_hint goes between `as` and the spine CTE's body (e.g. `not materialized`). -#}
{% macro _pit_assemble(plan, view_sql, spine_hint='') %}
with __fs_input as {{ spine_hint ~ ' ' if spine_hint }}(
    select *{% if plan['add_row_id'] %}, {{ feature_store._pit_spine_numbering(plan) }}{% endif %}
    from {{ plan['spine_sql'] }} as __fs_s
)
{%- for view in plan['views'] %},
{{ view['cte'] }} as (
    -- {{ view['name'] }}
    {{ view_sql[loop.index0] }}
)
{%- endfor %}
{{ feature_store._pit_select_list(plan) }}
from __fs_input
{%- for view in plan['views'] %}
left join {{ view['cte'] }}
    on {{ feature_store._pit_key_match(view, view['cte'], '__fs_input') }}
    and {{ view['cte'] }}.__fs_t = __fs_input.{{ adapter.quote(plan['timestamp']) }}
{%- endfor %}
{% endmacro %}
