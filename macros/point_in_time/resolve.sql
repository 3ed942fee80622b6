{#-
  Private helpers of point_in_time_join: turn the macro's arguments into a plan (a
  dict) that every engine variant renders. All argument checks live here, so every
  variant raises the same compiler errors.

  The plan:
    spine_sql      FROM expression of the spine (relation, table name or "(subquery)")
    timestamp      the spine's time column
    row_id         the row-number column in the output; add_row_id when we add it
    views          [{name, relation, keys, ts, created, ttl_seconds, features, cte}]
    outputs        [{view (index into views), feature, name}] in request order
    spine_time     'varies' or 'constant' (the plan to render; the rows are the same)

  Names in the plan are raw (as declared); the render macros quote them when they emit SQL.
-#}

{#- The seconds of a duration written <int><unit> (unit s, m, h, d or w). -#}
{% macro _pit_duration_seconds(value, what) %}
  {%- set units = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800} -%}
  {%- set m = none if (value is none or value is boolean) else modules.re.match('^\\s*(\\d+)\\s*([smhdw])\\s*$', value | string) -%}
  {%- if m is none -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: " ~ what ~ " " ~ (value | string) ~ " is not a duration; write it as <int><unit> "
        ~ "with unit s, m, h, d or w, e.g. 2d") }}
  {%- endif -%}
  {{ return((m.group(1) | int) * units[m.group(2)]) }}
{% endmacro %}


{#- The feature_store meta of a model node: config.meta first (dbt 1.10+), then meta. -#}
{% macro _pit_node_meta(node) %}
  {%- for meta in [(node.get('config') or {}).get('meta') or {}, node.get('meta') or {}] -%}
    {%- if 'feature_store' in meta -%}
      {{ return(meta['feature_store'] or {}) }}
    {%- endif -%}
  {%- endfor -%}
  {{ return(none) }}
{% endmacro %}


{#- name -> model node of every feature view (a model with feature_store meta). -#}
{% macro _pit_feature_views() %}
  {%- set views = {} -%}
  {%- for node in graph.nodes.values() -%}
    {%- if node.resource_type == 'model' and feature_store._pit_node_meta(node) is not none
          and node.name not in views -%}
      {%- do views.update({node.name: node}) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(views) }}
{% endmacro %}


{#- The view name of a reference "view:feature" or "view". -#}
{% macro _pit_ref_view(ref_text) %}
  {{ return((ref_text | string).split(':', 1)[0] | trim) }}
{% endmacro %}


{#- The features argument as a list of references; none at all is an error. -#}
{% macro _pit_feature_list(features) %}
  {%- if features is string -%}
    {%- set features = [features] -%}
  {%- endif -%}
  {%- if not features -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: no features requested; pass features=['view:feature', ...] or a view name") }}
  {%- endif -%}
  {{ return(features) }}
{% endmacro %}


{#- Check spine_time and timestamp; returns spine_time with its default ('varies') filled in. -#}
{% macro _pit_check_arguments(timestamp, spine_time) %}
  {%- set spine_time = spine_time or 'varies' -%}
  {%- if spine_time not in ['varies', 'constant'] -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: spine_time must be 'varies' (the default) or 'constant' (every spine row has "
        ~ "the same time); got " ~ (spine_time | string)) }}
  {%- endif -%}
  {%- if not timestamp or timestamp is not string -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: timestamp must name the spine's time column, got " ~ (timestamp | string)) }}
  {%- endif -%}
  {{ return(spine_time) }}
{% endmacro %}


{#- The view names of the feature references, in order of first mention. -#}
{% macro _pit_requested_views(features) %}
  {%- set view_names = [] -%}
  {%- for f in features -%}
    {%- set name = feature_store._pit_ref_view(f) -%}
    {%- if name not in view_names -%}
      {%- do view_names.append(name) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(view_names) }}
{% endmacro %}


{#- Fail unless every requested view, and every view ttl_override names, is a feature view. -#}
{% macro _pit_check_views_known(view_names, ttl_override, known) %}
  {%- for name in view_names -%}
    {%- if name not in known -%}
      {{ exceptions.raise_compiler_error(
          "point_in_time_join: unknown feature view '" ~ name ~ "'; feature views: "
          ~ (known.keys() | list | sort | join(', ')) ~ ". A feature view is a model with "
          ~ "config.meta.feature_store; run `dbt parse` after adding one") }}
    {%- endif -%}
  {%- endfor -%}
  {%- if ttl_override is mapping -%}
    {%- for name in ttl_override -%}
      {%- if name not in known -%}
        {{ exceptions.raise_compiler_error(
            "point_in_time_join: ttl_override names unknown feature view '" ~ name ~ "'; feature views: "
            ~ (known.keys() | list | sort | join(', '))) }}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
{% endmacro %}


{#- The join keys of a view's entities (meta.feature_store.entities); none is an error. -#}
{% macro _pit_view_join_keys(name, meta) %}
  {%- set keys = feature_store.entity_join_keys(meta.get('entities') or []) -%}
  {%- if not keys -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: feature view " ~ name ~ " declares no entities (meta.feature_store.entities)") }}
  {%- endif -%}
  {{ return(keys) }}
{% endmacro %}


{#- The ttl in force for a view, in seconds (none: no ttl): ttl_override's, else the view's own. -#}
{% macro _pit_view_ttl_seconds(name, meta, ttl_override) %}
  {%- if ttl_override is mapping and name in ttl_override -%}
    {%- set ttl = ttl_override[name] -%}
    {%- set ttl_what = "ttl_override for " ~ name -%}
  {%- elif ttl_override is not none and ttl_override is not mapping -%}
    {%- set ttl = ttl_override -%}
    {%- set ttl_what = "ttl_override" -%}
  {%- else -%}
    {%- set ttl = meta.get('ttl') -%}
    {%- set ttl_what = "ttl of feature view " ~ name -%}
  {%- endif -%}
  {#- A mapping entry of none (or 'none') lifts the view's ttl for this call. -#}
  {%- if ttl is none or (ttl is string and ttl | lower == 'none') -%}
    {{ return(none) }}
  {%- endif -%}
  {{ return(feature_store._pit_duration_seconds(ttl, ttl_what)) }}
{% endmacro %}


{#- The plan entry of one view (the `position`-th): relation, keys, times, ttl, its features. -#}
{% macro _pit_view_plan(name, node, ttl_override, position) %}
  {%- set meta = feature_store._pit_node_meta(node) -%}
  {%- set keys = feature_store._pit_view_join_keys(name, meta) -%}
  {%- set ts = meta.get('timestamp') -%}
  {%- if not ts -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: feature view " ~ name ~ " has no meta.feature_store.timestamp") }}
  {%- endif -%}
  {%- set created = meta.get('created_timestamp') or none -%}
  {%- set ttl_seconds = feature_store._pit_view_ttl_seconds(name, meta, ttl_override) -%}
  {#- Every declared column but the keys and the times is a feature. -#}
  {%- set skip = keys + [ts] + ([created] if created else []) -%}
  {%- set all_features = [] -%}
  {%- for col in node['columns'] -%}
    {%- if col not in skip -%}
      {%- do all_features.append(col) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return({
      'name': name, 'relation': ref(name), 'keys': keys, 'ts': ts, 'created': created,
      'ttl_seconds': ttl_seconds, 'all_features': all_features, 'features': [],
      'cte': '__fs_v' ~ (position + 1)}) }}
{% endmacro %}


{#- The output columns in request order; fills each view's `features` as it goes. -#}
{% macro _pit_outputs(features, views, full_feature_names) %}
  {#- A bare view expands to all its features; a repeated reference is requested once; two
      features that would get one output name are an error. -#}
  {%- set index = {} -%}
  {%- for view in views -%}
    {%- do index.update({view['name']: loop.index0}) -%}
  {%- endfor -%}
  {%- set outputs = [] -%}
  {%- set by_name = {} -%}
  {%- for f in features -%}
    {%- set name = feature_store._pit_ref_view(f) -%}
    {%- set view = views[index[name]] -%}
    {%- set parts = (f | string).split(':', 1) -%}
    {%- if parts | length == 2 and parts[1] | trim -%}
      {%- set wanted = [parts[1] | trim] -%}
      {%- if wanted[0] not in view.all_features -%}
        {{ exceptions.raise_compiler_error(
            "point_in_time_join: feature view " ~ name ~ " has no feature '" ~ wanted[0] ~ "'; its features: "
            ~ (view.all_features | join(', '))) }}
      {%- endif -%}
    {%- else -%}
      {%- set wanted = view.all_features -%}
    {%- endif -%}
    {%- for feature in wanted -%}
      {%- if feature not in view.features -%}
        {%- set out = (name ~ '__' ~ feature) if full_feature_names else feature -%}
        {%- if out in by_name -%}
          {{ exceptions.raise_compiler_error(
              "point_in_time_join: features " ~ by_name[out] ~ " and " ~ name ~ ":" ~ feature
              ~ " would both be named '" ~ out ~ "'; pass full_feature_names=true (columns become "
              ~ "view__feature) or request only one") }}
        {%- endif -%}
        {%- do by_name.update({out: name ~ ':' ~ feature}) -%}
        {%- do view.features.append(feature) -%}
        {%- do outputs.append({'view': index[name], 'feature': feature, 'name': out}) -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endfor -%}
  {{ return(outputs) }}
{% endmacro %}


{#- The spine as a FROM expression: a relation, a table/view name, or a SELECT in parentheses. -#}
{% macro _pit_spine_sql(spine) %}
  {%- if spine is not string -%}
    {{ return(spine | string) }}
  {%- endif -%}
  {%- set text = spine | trim -%}
  {%- if text.startswith('(') -%}
    {{ return(text) }}
  {%- elif (text[:6] | lower) == 'select' or (text[:4] | lower) == 'with' -%}
    {{ return('(' ~ text ~ ')') }}
  {%- endif -%}
  {{ return(text) }}
{% endmacro %}


{#- Check the columns of a spine relation: timestamp and join keys present, no name clashes. -#}
{% macro _pit_check_spine_columns(spine, timestamp, views, outputs, add_row_id, row_id) %}
  {%- if spine is string -%}
    {{ return(none) }}
  {%- endif -%}
  {#- A relation we can look into: check the columns now, naming what is missing. An empty
      list means the relation is not built yet (e.g. `dbt compile` before a build); the
      query itself will fail then. -#}
  {%- set columns = adapter.get_columns_in_relation(spine) | map(attribute='name') | map('lower') | list -%}
  {%- if not columns -%}
    {{ return(none) }}
  {%- endif -%}
  {%- if timestamp | lower not in columns -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: the spine " ~ spine ~ " has no column '" ~ timestamp ~ "' (the timestamp "
        ~ "argument); columns: " ~ (columns | join(', '))) }}
  {%- endif -%}
  {%- for view in views -%}
    {%- for key in view['keys'] -%}
      {%- if key | lower not in columns -%}
        {{ exceptions.raise_compiler_error(
            "point_in_time_join: join key '" ~ key ~ "' is missing from the spine " ~ spine
            ~ "; feature view " ~ view['name'] ~ " needs it (columns: " ~ (columns | join(', ')) ~ ")") }}
      {%- endif -%}
    {%- endfor -%}
  {%- endfor -%}
  {%- for out in outputs -%}
    {%- if out['name'] | lower in columns -%}
      {{ exceptions.raise_compiler_error(
          "point_in_time_join: feature column '" ~ out['name'] ~ "' would duplicate a column of the spine "
          ~ spine ~ "; rename it in the spine or pass full_feature_names=true") }}
    {%- endif -%}
  {%- endfor -%}
  {%- if add_row_id and row_id in columns -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: the spine " ~ spine ~ " already has a column spine_row_number; pass "
        ~ "row_id='spine_row_number' if it numbers the rows uniquely, or rename it") }}
  {%- endif -%}
{% endmacro %}


{#- The plan of one call (see the top of this file), or none while dbt only parses. -#}
{% macro _pit_resolve(spine, timestamp, features, full_feature_names, ttl_override, as_of_created, row_id,
                      include_timestamps, spine_time=none) %}
  {%- set features = feature_store._pit_feature_list(features) -%}
  {%- set spine_time = feature_store._pit_check_arguments(timestamp, spine_time) -%}
  {%- set view_names = feature_store._pit_requested_views(features) -%}

  {#- ref() every view while dbt parses, so the calling model depends on them. The graph
      is only there at execution time; until then nothing else can be checked. -#}
  {%- if not execute -%}
    {%- for name in view_names -%}
      {%- do ref(name) -%}
    {%- endfor -%}
    {{ return(none) }}
  {%- endif -%}

  {%- set known = feature_store._pit_feature_views() -%}
  {%- do feature_store._pit_check_views_known(view_names, ttl_override, known) -%}
  {#- One plan entry per view, in order of first mention. -#}
  {%- set views = [] -%}
  {%- for name in view_names -%}
    {%- do views.append(feature_store._pit_view_plan(name, known[name], ttl_override, loop.index0)) -%}
  {%- endfor -%}
  {%- set outputs = feature_store._pit_outputs(features, views, full_feature_names) -%}

  {%- set add_row_id = row_id is none -%}
  {%- set row_id = 'spine_row_number' if add_row_id else row_id -%}
  {%- do feature_store._pit_check_spine_columns(spine, timestamp, views, outputs, add_row_id, row_id) -%}

  {{ return({
      'spine_sql': feature_store._pit_spine_sql(spine), 'timestamp': timestamp, 'row_id': row_id,
      'add_row_id': add_row_id, 'views': views, 'outputs': outputs, 'as_of_created': as_of_created,
      'include_timestamps': include_timestamps, 'spine_time': spine_time}) }}
{% endmacro %}
