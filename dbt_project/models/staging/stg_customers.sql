select
    customer_id,
    email_token,
    account_token,
    segment,
    cast(joined_on as date) as joined_on,
    city
from {{ source('lake', 'raw_customers') }}
