{#-
  The SQL of the online sync's read (python/feature_store/snapshot.py), per engine.

  The sync proves which entities may have changed since its last run by fingerprints:
  the view's entities are split into `parts` hash partitions, and each partition gets a
  digest of its row count and of the sum of its rows' hashes (a sum, not an xor:
  replacing two equal rows by two other equal rows changes a sum). A partition whose
  digest is unchanged holds exactly the rows it held before.

  Only the hash functions differ between engines; everything else is standard SQL.
-#}

{#- A non-negative 64-bit integer hash of the columns `names` (quoted here), equal for equal
    values in every run: entity partitions and row digests are built on it. -#}
{% macro entity_hash(names) %}
  {{ return(adapter.dispatch('entity_hash', 'feature_store')(names)) }}
{% endmacro %}

{% macro default__entity_hash(names) %}
  {{ exceptions.raise_compiler_error(
      "feature_store.entity_hash has no version for the " ~ adapter.type() ~ " adapter, which `fstore sync` "
      ~ "needs; add a macro " ~ adapter.type() ~ "__entity_hash(names) returning a non-negative bigint hash "
      ~ "of the columns") }}
{% endmacro %}

{#- DuckDB's hash() takes any columns and returns a UBIGINT
    (https://duckdb.org/docs/stable/sql/functions/utility#hashvalue). -#}
{% macro duckdb__entity_hash(names) -%}
  hash({{ feature_store._pit_cols(names) }})
{%- endmacro %}

{#- PostgreSQL: hashtextextended() of the row's text form, a bigint, masked to 63 bits.
    The text of a row is stable within a server for the session settings fstore uses
    (UTC, ISO dates; floats print their shortest exact form since PostgreSQL 12).
    https://www.postgresql.org/docs/current/functions-string.html -#}
{% macro postgres__entity_hash(names) -%}
  (hashtextextended(row({{ feature_store._pit_cols(names) }})::text, 0) & 9223372036854775807)
{%- endmacro %}

{#- Spark: xxhash64() takes any columns (https://spark.apache.org/docs/latest/api/sql/#xxhash64). -#}
{% macro spark__entity_hash(names) -%}
  (xxhash64({{ feature_store._pit_cols(names) }}) & 9223372036854775807)
{%- endmacro %}

{#- Snowflake: HASH() takes any columns, a signed 64-bit result
    (https://docs.snowflake.com/en/sql-reference/functions/hash). -#}
{% macro snowflake__entity_hash(names) -%}
  bitand(hash({{ feature_store._pit_cols(names) }}), 9223372036854775807)
{%- endmacro %}

{#- BigQuery: FARM_FINGERPRINT of the columns as one JSON text, an INT64
    (https://cloud.google.com/bigquery/docs/reference/standard-sql/hash_functions#farm_fingerprint). -#}
{% macro bigquery__entity_hash(names) -%}
  (farm_fingerprint(to_json_string(struct({{ feature_store._pit_cols(names) }}))) & 0x7FFFFFFFFFFFFFFF)
{%- endmacro %}

{#- Trino: xxhash64 of the columns as one JSON text, read as a bigint
    (https://trino.io/docs/current/functions/binary.html#xxhash64). -#}
{% macro trino__entity_hash(names) -%}
  bitwise_and(from_big_endian_64(xxhash64(to_utf8(json_format(cast(row({{ feature_store._pit_cols(names) }}) as json))))),
              9223372036854775807)
{%- endmacro %}


{#- One row per non-empty partition: p (0 <= p < parts) and d, its digest as 16 hex digits. -#}
{% macro sync_fingerprints(relation, keys, columns, parts) %}
  {{ return(adapter.dispatch('sync_fingerprints', 'feature_store')(relation, keys, columns, parts)) }}
{% endmacro %}

{% macro default__sync_fingerprints(relation, keys, columns, parts) %}
  {%- set digest_text = dbt.concat(["cast(count(*) as " ~ dbt.type_string() ~ ")", "':'",
        "cast(sum(cast(" ~ feature_store.entity_hash(columns) ~ " as decimal(38, 0))) as " ~ dbt.type_string() ~ ")"]) -%}
select
    mod({{ feature_store.entity_hash(keys) }}, {{ parts }}) as p,
    substr({{ dbt.hash(digest_text) }}, 1, 16) as d
from {{ relation }}
where {{ feature_store._pit_not_null(keys) }}
group by 1
{% endmacro %}

{#- DuckDB sums UBIGINT hashes into a HUGEINT (no overflow) and hashes the pair itself. -#}
{% macro duckdb__sync_fingerprints(relation, keys, columns, parts) %}
select
    {{ feature_store.entity_hash(keys) }} % {{ parts }} as p,
    format('{:016x}', hash(count(*), sum({{ feature_store.entity_hash(columns) }}))) as d
from {{ relation }}
where {{ feature_store._pit_not_null(keys) }}
group by 1
{% endmacro %}


{#-
  Everything the sync compiles for one view, as one JSON object (one dbt start-up):
  `fingerprints` (the query above), `entity_hash` (the expression over the keys, to pick
  partitions and chunks) and `latest` (point_in_time_join with spine_time='constant': the
  latest row per entity as of the spine's one time).
-#}
{% macro sync_queries(view, relation, keys, columns, parts, spine, timestamp, row_id) %}
  {%- set latest = feature_store.point_in_time_join(
        spine=spine, timestamp=timestamp, features=[view], full_feature_names=false, row_id=row_id,
        include_timestamps=true, spine_time='constant') -%}
  {{ return(tojson({
      'fingerprints': feature_store.sync_fingerprints(relation, keys, columns, parts),
      'entity_hash': feature_store.entity_hash(keys) | trim,
      'latest': latest})) }}
{% endmacro %}
