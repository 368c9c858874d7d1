-- Incremental (macros/incremental_lake.sql): a CRM export re-lands every customer, but only the
-- customers whose record changed get a new `_changed_at`, so only their emails are recomputed.
{{ config(materialized='incremental', unique_key='customer_id', incremental_strategy='delete+insert',
          on_schema_change='fail') }}

with newest as (
    select distinct on (customer_id)
        customer_id,
        email_token,
        account_token,
        segment,
        cast(joined_on as date) as joined_on,
        city,
        _ingested_at,
        _batch_id
    from {{ lake_parts('raw_customers') }}
    -- the newest copy of each record
    order by customer_id, _ingested_at desc, _batch_id desc
)

{{ staged_changes('newest', 'customer_id') }}
