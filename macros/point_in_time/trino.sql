{#-
  Trino: no trino__point_in_time_join, on purpose. default__ (the portable range join +
  row_number() in point_in_time_join.sql) is right here and Trino has nothing clearly
  better; what was checked:

    - Syntax: standard SQL throughout (no QUALIFY, which Trino lacks); `desc nulls last`
      in a window ORDER BY is Trino syntax; the ttl floor is dbt-trino's dateadd,
      date_add('second', -n, t), which keeps the timestamp type. Identifiers are quoted
      with double quotes. tests/test_compile_engines.py parses every compiled statement
      with sqlglot's Trino dialect.
    - Plan: `row_number() over (partition by ...) ... where __fs_rn = 1` is the shape
      Trino's window filter push-down can turn into a per-partition top-N rather than a
      full sort, and the key equality makes the range join a hash join with the time
      window as its filter.
    - No ASOF JOIN exists in Trino. A view without a ttl therefore pays default__'s cost
      (every older row of the key meets each spine row), as on any engine without ASOF.
-#}
