-- The hashed text of each email (written by the email_text_features asset, one part per landed
-- mail batch; a re-landed batch is hashed again). Incremental like the other staging models, so
-- a run copies the vectors of new mail only.
{{ config(materialized='incremental', unique_key='email_id', incremental_strategy='delete+insert',
          on_schema_change='fail') }}

with newest as (
    select distinct on (email_id) email_id, text_vec, _ingested_at, _batch_id
    from {{ lake_parts('email_text_features') }}
    -- the newest copy of each record
    order by email_id, _ingested_at desc, _batch_id desc
)

{{ staged_changes('newest', 'email_id') }}
