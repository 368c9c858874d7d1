select
    customer_id,
    email_token,
    account_token,
    segment,
    cast(joined_on as date) as joined_on,
    city
from {{ source('lake', 'raw_customers') }}
qualify row_number() over (partition by customer_id order by _ingested_at desc, _batch_id desc) = 1
