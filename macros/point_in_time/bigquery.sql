{#-
  BigQuery: no bigquery__point_in_time_join, on purpose. default__ (the portable range
  join + row_number() in point_in_time_join.sql, with _pit_ranked_view) is right here
  and nothing BigQuery offers does clearly better; what was checked:

    - Types: the ttl floor is feature_store.timestamp_minus_seconds, whose bigquery__
      version is TIMESTAMP_SUB (TIMESTAMP in, TIMESTAMP out), so no TIMESTAMP is compared
      with a DATETIME; tests/test_compile_engines.py checks the compiled SQL for that mix.
    - `desc nulls last` in the ranking window: GoogleSQL orders NULL as the smallest
      value, so a descending order already puts it last and the clause only restates the
      default. GoogleSQL's documented window grammar
      (https://github.com/google/zetasql/blob/master/docs/window-function-calls.md)
      lists ASC | DESC only, but its analyzer takes NULLS FIRST | LAST in a window ORDER
      BY under the same language feature as in a query's ORDER BY, which BigQuery has,
      and sqlglot parses it in the BigQuery dialect. Were it ever refused, dropping the
      clause on BigQuery would keep the rule.
    - Quoting: adapter.quote gives backticks; the join's own names (__fs_*) need none.
    - QUALIFY would change nothing: default__ keeps row_number() = 1 in an outer query,
      the same plan (and ZetaSQL, BigQuery's parser, has refused a QUALIFY without a
      WHERE, GROUP BY or HAVING beside it).
    - No ASOF JOIN exists in BigQuery. A view without a ttl therefore pays default__'s cost
      (every older row of the key meets each spine row), as on any engine without ASOF.
    - __fs_input is evaluated once per reference (render.sql explains why that stays
      right); for a spine that is an expensive query, materialize it first.
-#}
