{#-
  Incremental staging of lake datasets.

  The lake is append-only Parquet: each landed batch is a part under `ingest_date=<day>/`, and a
  record changed at the source lands again as a newer copy. A full build reads every part and
  keeps the newest copy per key; an incremental run reads only the parts landed since the last
  run and merges them into the staging table, so its cost follows what landed, not the history.

  Rules (see dbt_project/README.md):
  - "landed since the last run" is by the part's `ingest_date=<day>` folder (the UTC day the
    connector stamped the batch): a run reads the parts of the day of the last run that wrote
    this table (`_staged_at`) and of `landing_lookback_days` days before it, so a batch stamped
    before that run but written after it read the lake is not missed; re-reading a part is
    harmless, its copies are not newer than the stored ones;
  - a copy replaces the stored one only if it is newer by (`_ingested_at`, `_batch_id`), the
    order the full build uses (a re-processed quarantine record keeps its old ingest time and
    must not replace a newer copy);
  - `_changed_at` is the start of the run that last changed a record's content: a re-landed
    copy with the same content (a daily CRM export re-lands every customer) keeps its stamp, so
    the feature models downstream recompute only what really changed.
-#}

{#- The landing day of a lake part, from its `ingest_date=<day>` folder ('' outside that layout). -#}
{% macro lake_part_day() -%}
    {{ return(adapter.dispatch('lake_part_day')()) }}
{%- endmacro %}

{% macro default__lake_part_day() -%}
    coalesce(substring(filename from 'ingest_date=([0-9]{4}-[0-9]{2}-[0-9]{2})'), '')
{%- endmacro %}

{% macro duckdb__lake_part_day() -%}
    regexp_extract(filename, 'ingest_date=([0-9]{4}-[0-9]{2}-[0-9]{2})', 1)
{%- endmacro %}


{#- The first landing day an incremental run of this model reads, or none (read every part). -#}
{% macro landed_since() %}
    {%- if not (execute and is_incremental()) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set lookback = var('landing_lookback_days') | int -%}
    {%- if lookback < 0 -%}
        {{ exceptions.raise_compiler_error(
            "var landing_lookback_days must be a whole number of days >= 0, got " ~ lookback) }}
    {%- endif -%}
    {%- set since = run_query(
        "select cast(cast(max(_staged_at) at time zone 'UTC' as date) - " ~ lookback
        ~ " as varchar) from " ~ this
    ).columns[0].values()[0] -%}
    {{ return(since) }}
{% endmacro %}


{#-
  The rows of lake dataset `table` a run of the calling staging model reads, with the path of
  the part each came from as `filename` (DuckDB reads the Parquet parts themselves; on
  Postgres, `lib/lake_load.py` has loaded each part into the `lake` schema with its path).

  `since` is inlined as a literal: DuckDB skips the files whose path fails a constant filter on
  `filename` (it reads only their footers, for union_by_name), but not a filter on a subquery.
-#}
{% macro lake_parts(table) %}
    {%- set since = landed_since() -%}
    (
        select *
        from {{ source('lake', table) }}
        {%- if since is not none %}
        -- a part outside the ingest_date=<day> layout has no landing day: always read it
        where {{ lake_part_day() }} >= '{{ since }}' or {{ lake_part_day() }} = ''
        {%- endif %}
    ) as lake_rows
{% endmacro %}


{#- This invocation's start, the stamp of every row it writes (the same in every model). -#}
{% macro run_stamp() -%}
    cast('{{ run_started_at.isoformat() }}' as timestamptz)
{%- endmacro %}


{#-
  The newest copies in `newest` (one row per `key`, with `_ingested_at`, `_batch_id`) that the
  staging table does not hold yet, stamped with `_changed_at` and `_staged_at` (this run).

  `previous`: columns whose value before the last content change is kept as `_prev_<column>`,
  for downstream models that must also revisit what the record affected before it changed.
-#}
{% macro staged_changes(newest, key, previous=[]) %}
    {%- if is_incremental() -%}
        {%- set same = [] -%}
        {%- if execute -%}
            {%- for column in adapter.get_columns_in_relation(this) -%}
                {%- if not column.name.startswith('_') and column.name != key -%}
                    {%- do same.append(
                        "n." ~ adapter.quote(column.name) ~ " is not distinct from s."
                        ~ adapter.quote(column.name)) -%}
                {%- endif -%}
            {%- endfor -%}
        {%- endif -%}
        {%- set unchanged = "(s." ~ key ~ " is not null and " ~ (same | join(" and ") or "true") ~ ")" %}
    select
        n.*,
        case when {{ unchanged }} then s._changed_at else {{ run_stamp() }} end as _changed_at,
        {{ run_stamp() }} as _staged_at
        {%- for column in previous %},
        case when {{ unchanged }} then s._prev_{{ column }} else s.{{ column }} end
            as _prev_{{ column }}
        {%- endfor %}
    from {{ newest }} as n
    left join {{ this }} as s on s.{{ key }} = n.{{ key }}
    where s.{{ key }} is null
       or n._ingested_at > s._ingested_at
       or (n._ingested_at = s._ingested_at and n._batch_id > s._batch_id)
    {%- else %}
    select
        *,
        {{ run_stamp() }} as _changed_at,
        {{ run_stamp() }} as _staged_at
        {%- for column in previous %},
        -- a typed null: no earlier value on a full build
        case when false then {{ column }} end as _prev_{{ column }}
        {%- endfor %}
    from {{ newest }}
    {%- endif %}
{% endmacro %}


{#- The number of elements of a list column (0 for an empty list, null for null). -#}
{% macro list_length(column) -%}
    {{ return(adapter.dispatch('list_length')(column)) }}
{%- endmacro %}

{% macro default__list_length(column) -%}
    cardinality({{ column }})
{%- endmacro %}

{% macro duckdb__list_length(column) -%}
    len({{ column }})
{%- endmacro %}
