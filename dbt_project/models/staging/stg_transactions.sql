select
    txn_id,
    customer_id,
    cast(booked_at as timestamptz) as booked_at,
    cast(amount as double) as amount,
    currency,
    merchant,
    channel,
    cast(is_disputed as boolean) as is_disputed
from {{ source('lake', 'raw_transactions') }}
