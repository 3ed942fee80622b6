{# NULLs pass: whether a column may be NULL is not_null's job, not this test's.
   column_name is used as dbt hands it over, like dbt's own not_null and unique: dbt
   quotes it when the column sets `quote: true` (a name like `order` or `userId` needs
   that), and quoting it again here would break exactly those columns
   (https://docs.getdbt.com/reference/resource-properties/quote). #}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
  {{ return(adapter.dispatch('test_accepted_range', 'feature_store')(
      model, column_name, min_value, max_value, inclusive)) }}
{% endtest %}

{% macro default__test_accepted_range(model, column_name, min_value, max_value, inclusive) %}
  {%- if min_value is none and max_value is none -%}
    {{ exceptions.raise_compiler_error(
        "accepted_range on " ~ model ~ "." ~ column_name ~ ": give min_value, max_value or both") }}
  {%- endif -%}
  {%- set lo_op = '>=' if inclusive else '>' -%}
  {%- set hi_op = '<=' if inclusive else '<' -%}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and not (
    {%- if min_value is not none %} {{ column_name }} {{ lo_op }} {{ min_value }}{% endif -%}
    {%- if min_value is not none and max_value is not none %} and{% endif -%}
    {%- if max_value is not none %} {{ column_name }} {{ hi_op }} {{ max_value }}{% endif %}
  )
{% endmacro %}
