-- Incremental: a run merges only the transactions landed since the last (macros/incremental_lake.sql).
-- `_prev_customer_id` / `_prev_booked_at` keep where a corrected transaction was before, so
-- email_features also revisits the emails it counted for then.
{{ config(materialized='incremental', unique_key='txn_id', incremental_strategy='delete+insert',
          on_schema_change='fail') }}

with newest as (
    select distinct on (txn_id)
        txn_id,
        customer_id,
        cast(booked_at as timestamptz) as booked_at,
        cast(amount as float8) as amount,
        currency,
        merchant,
        channel,
        cast(is_disputed as boolean) as is_disputed,
        -- when the row last changed (e.g. a dispute was flagged): features must not see the future
        cast(updated_at as timestamptz) as updated_at,
        _ingested_at,
        _batch_id
    from {{ lake_parts('raw_transactions') }}
    -- the newest copy of each record
    order by txn_id, _ingested_at desc, _batch_id desc
)

{{ staged_changes('newest', 'txn_id', previous=['customer_id', 'booked_at']) }}
