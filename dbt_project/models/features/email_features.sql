-- The feature table the router is trained on and scored from: one row per email, joining its
-- text features with the sender's CRM record and transaction history *as of the email's time*
-- (no look-ahead: only transactions booked before the email count).
with emails as (
    select * from {{ ref('stg_emails') }}
),

customers as (
    select * from {{ ref('stg_customers') }}
),

-- Text features are written per landed batch; a re-landed email has one row per copy, and the
-- newest copy is the one stg_emails keeps.
text_features as (
    select email_id, text_vec
    from {{ source('lake', 'email_text_features') }}
    qualify row_number() over (partition by email_id order by _ingested_at desc, _batch_id desc) = 1
),

txn_history as (
    select
        e.email_id,
        count(*) filter (
            where t.booked_at >= e.received_at - interval '{{ var("recent_days") }} days'
        ) as txn_count_30d,
        coalesce(sum(-t.amount) filter (
            where t.amount < 0
              and t.booked_at >= e.received_at - interval '{{ var("recent_days") }} days'
        ), 0) as spend_30d,
        coalesce(max(-t.amount) filter (
            where t.amount < 0
              and t.booked_at >= e.received_at - interval '{{ var("recent_days") }} days'
        ), 0) as max_debit_30d,
        count(*) filter (
            where t.currency <> 'GBP'
              and t.booked_at >= e.received_at - interval '{{ var("recent_days") }} days'
        ) as foreign_txn_30d,
        count(*) filter (where t.is_disputed and t.updated_at <= e.received_at) as disputes_90d
    from emails as e
    inner join customers as c on c.email_token = e.sender_token
    inner join {{ ref('stg_transactions') }} as t
        on t.customer_id = c.customer_id
       and t.booked_at < e.received_at
       and t.booked_at >= e.received_at - interval '{{ var("dispute_days") }} days'
    group by e.email_id
)

select
    e.email_id,
    e.thread_id,
    e.received_at,
    e.received_date,
    c.customer_id,
    c.customer_id is not null as is_known_customer,
    coalesce(c.segment, 'unknown') as segment,
    cast(coalesce(c.segment = 'premier', false) as float) as segment_premier,
    cast(coalesce(c.segment = 'business', false) as float) as segment_business,
    coalesce(date_diff('day', c.joined_on, e.received_date) / 365.25, 0) as tenure_years,
    coalesce(h.txn_count_30d, 0) as txn_count_30d,
    coalesce(h.spend_30d, 0) as spend_30d,
    coalesce(h.max_debit_30d, 0) as max_debit_30d,
    coalesce(h.foreign_txn_30d, 0) as foreign_txn_30d,
    coalesce(h.disputes_90d, 0) as disputes_90d,
    coalesce(e.subject_chars, 0) as subject_chars,
    coalesce(e.body_chars, 0) as body_chars,
    e.n_attachments,
    cast(e.is_reply as float) as is_reply,
    hour(e.received_at at time zone 'UTC') as hour_of_day,
    f.text_vec
from emails as e
left join customers as c on c.email_token = e.sender_token
left join txn_history as h on h.email_id = e.email_id
inner join text_features as f on f.email_id = e.email_id
