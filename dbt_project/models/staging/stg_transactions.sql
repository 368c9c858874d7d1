select
    txn_id,
    customer_id,
    cast(booked_at as timestamptz) as booked_at,
    cast(amount as double) as amount,
    currency,
    merchant,
    channel,
    cast(is_disputed as boolean) as is_disputed,
    -- when the row last changed (e.g. a dispute was flagged): features must not see the future
    cast(updated_at as timestamptz) as updated_at
from {{ source('lake', 'raw_transactions') }}
qualify row_number() over (partition by txn_id order by _ingested_at desc, _batch_id desc) = 1
