-- One row per support email, typed; text stays in the lake (masked) and reaches the model
-- through stg_email_text. Incremental: a run merges only mail landed since the last
-- (macros/incremental_lake.sql).
{{ config(materialized='incremental', unique_key='email_id', incremental_strategy='delete+insert',
          on_schema_change='fail') }}

with newest as (
    select distinct on (email_id)
        email_id,
        message_id,
        coalesce(thread_id, email_id) as thread_id,
        sender_token,
        cast(received_at as timestamptz) as received_at,
        cast(cast(received_at as timestamptz) at time zone 'UTC' as date) as received_date,
        cast(length(subject) as bigint) as subject_chars,
        cast(length(body) as bigint) as body_chars,
        cast(coalesce({{ list_length('attachment_names') }}, 0) as bigint) as n_attachments,
        in_reply_to is not null as is_reply,
        _ingested_at,
        _batch_id
    from {{ lake_parts('raw_emails') }}
    -- the newest copy of each record
    order by email_id, _ingested_at desc, _batch_id desc
)

{{ staged_changes('newest', 'email_id') }}
