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
-#}

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


{% macro _pit_resolve(spine, timestamp, features, full_feature_names, ttl_override, as_of_created, row_id,
                      include_timestamps, spine_time=none) %}
  {%- if features is string -%}
    {%- set features = [features] -%}
  {%- endif -%}
  {%- if not features -%}
    {{ exceptions.raise_compiler_error(
        "point_in_time_join: no features requested; pass features=['view:feature', ...] or a view name") }}
  {%- endif -%}
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

  {#- ref() every view while dbt parses, so the calling model depends on them. The graph
      is only there at execution time; until then nothing else can be checked. -#}
  {%- set view_names = [] -%}
  {%- for f in features -%}
    {%- set name = feature_store._pit_ref_view(f) -%}
    {%- if name not in view_names -%}
      {%- do view_names.append(name) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if not execute -%}
    {%- for name in view_names -%}
      {%- do ref(name) -%}
    {%- endfor -%}
    {{ return(none) }}
  {%- endif -%}

  {%- set known = feature_store._pit_feature_views() -%}
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

  {#- One plan entry per view, in order of first mention. -#}
  {%- set views = [] -%}
  {%- set index = {} -%}
  {%- for name in view_names -%}
    {%- set node = known[name] -%}
    {%- set meta = feature_store._pit_node_meta(node) -%}
    {%- set entities = meta.get('entities') or [] -%}
    {%- set keys = feature_store.entity_join_keys(entities) -%}
    {%- if not keys -%}
      {{ exceptions.raise_compiler_error(
          "point_in_time_join: feature view " ~ name ~ " declares no entities (meta.feature_store.entities)") }}
    {%- endif -%}
    {%- set ts = meta.get('timestamp') -%}
    {%- if not ts -%}
      {{ exceptions.raise_compiler_error(
          "point_in_time_join: feature view " ~ name ~ " has no meta.feature_store.timestamp") }}
    {%- endif -%}
    {%- set created = meta.get('created_timestamp') or none -%}
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
      {%- set ttl_seconds = none -%}
    {%- else -%}
      {%- set ttl_seconds = feature_store._pit_duration_seconds(ttl, ttl_what) -%}
    {%- endif -%}
    {%- set skip = keys + [ts] + ([created] if created else []) -%}
    {%- set all_features = [] -%}
    {%- for col in node['columns'] -%}
      {%- if col not in skip -%}
        {%- do all_features.append(col) -%}
      {%- endif -%}
    {%- endfor -%}
    {%- do index.update({name: views | length}) -%}
    {%- do views.append({
        'name': name, 'relation': ref(name), 'keys': keys, 'ts': ts, 'created': created,
        'ttl_seconds': ttl_seconds, 'all_features': all_features, 'features': [],
        'cte': '__fs_v' ~ (views | length + 1)}) -%}
  {%- endfor -%}

  {#- Features in request order; a bare view expands to all its features; a repeated
      reference is requested once. -#}
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

  {%- set add_row_id = row_id is none -%}
  {%- set row_id = 'spine_row_number' if add_row_id else row_id -%}

  {#- The spine: a relation, a table/view name, or a SELECT. -#}
  {%- if spine is string -%}
    {%- set text = spine | trim -%}
    {%- set head = text[:6] | lower -%}
    {%- if text.startswith('(') -%}
      {%- set spine_sql = text -%}
    {%- elif head == 'select' or (text[:4] | lower) == 'with' -%}
      {%- set spine_sql = '(' ~ text ~ ')' -%}
    {%- else -%}
      {%- set spine_sql = text -%}
    {%- endif -%}
  {%- else -%}
    {%- set spine_sql = spine | string -%}
    {#- A relation we can look into: check the columns now, naming what is missing. An
        empty list means the relation is not built yet (e.g. `dbt compile` before a
        build); the query itself will fail then. -#}
    {%- set columns = adapter.get_columns_in_relation(spine) | map(attribute='name') | map('lower') | list -%}
    {%- if columns -%}
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
    {%- endif -%}
  {%- endif -%}

  {{ return({
      'spine_sql': spine_sql, 'timestamp': timestamp, 'row_id': row_id, 'add_row_id': add_row_id,
      'views': views, 'outputs': outputs, 'as_of_created': as_of_created,
      'include_timestamps': include_timestamps, 'spine_time': spine_time}) }}
{% endmacro %}
