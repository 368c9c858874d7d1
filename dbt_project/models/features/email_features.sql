-- The feature table the router is trained on and scored from: one row per email, joining its
-- text features with the sender's CRM record and transaction history *as of the email's time*
-- (no look-ahead: only transactions booked before the email count).
--
-- Incremental: a run recomputes only the emails whose inputs changed since the last build
-- (`_built_at`): new or re-landed mail and text, every email of a customer whose CRM record
-- changed, and every email of a customer in the window after a transaction that landed or
-- changed, however late. A full build (`dbt build --full-refresh`) gives the same table; it is
-- needed only when the lake loses parts, this SQL or its vars change. See dbt_project/README.md.
{{ config(materialized='incremental', unique_key='email_id', incremental_strategy='delete+insert',
          on_schema_change='fail') }}

{%- set recent = "interval '" ~ var('recent_days') ~ " days'" %}
{%- set dispute = "interval '" ~ var('dispute_days') ~ " days'" %}
-- a transaction counts for its customer's emails up to this long after it was booked
{%- set reach = "interval '" ~ ([var('recent_days'), var('dispute_days')] | max) ~ " days'" %}

with
{%- if is_incremental() %}
previous_build as (
    -- an empty table (no email had text yet) rebuilds from every change
    select coalesce(max(_built_at), '-infinity'::timestamptz) as built_at from {{ this }}
),

changed_customers as (
    select c.customer_id, c.email_token
    from {{ ref('stg_customers') }} as c, previous_build as p
    where c._changed_at > p.built_at
),

changed_txns as (
    select t.customer_id, t.booked_at, t._prev_customer_id, t._prev_booked_at
    from {{ ref('stg_transactions') }} as t, previous_build as p
    where t._changed_at > p.built_at
),

to_build as (
    select e.email_id
    from {{ ref('stg_emails') }} as e, previous_build as p
    where e._changed_at > p.built_at
    union
    select x.email_id
    from {{ ref('stg_email_text') }} as x, previous_build as p
    where x._changed_at > p.built_at
    union
    -- a changed CRM record: the emails matched to it before (its token may have changed) and now
    select f.email_id
    from {{ this }} as f
    inner join changed_customers as c on c.customer_id = f.customer_id
    union
    select e.email_id
    from {{ ref('stg_emails') }} as e
    inner join changed_customers as c on c.email_token = e.sender_token
    union
    -- a landed or changed transaction: its customer's emails received in its reach
    select e.email_id
    from {{ ref('stg_emails') }} as e
    inner join {{ ref('stg_customers') }} as c on c.email_token = e.sender_token
    inner join changed_txns as t
        on t.customer_id = c.customer_id
       and e.received_at > t.booked_at
       and e.received_at <= t.booked_at + {{ reach }}
    union
    -- ... and, for a corrected transaction, the emails it counted for before the correction
    select f.email_id
    from {{ this }} as f
    inner join changed_txns as t
        on t._prev_customer_id = f.customer_id
       and f.received_at > t._prev_booked_at
       and f.received_at <= t._prev_booked_at + {{ reach }}
),
{%- endif %}

emails as (
    select * from {{ ref('stg_emails') }}
    {%- if is_incremental() %}
    where email_id in (select email_id from to_build)
    {%- endif %}
),

customers as (
    select * from {{ ref('stg_customers') }}
),

txn_history as (
    select
        e.email_id,
        count(*) filter (
            where t.booked_at >= e.received_at - {{ recent }}
        ) as txn_count_30d,
        -- summed exactly in pence: a float sum depends on the order rows arrive in, and an
        -- incremental build must give the same bits as a full one
        cast(coalesce(sum(cast(-t.amount as decimal(18, 2))) filter (
            where t.amount < 0
              and t.booked_at >= e.received_at - {{ recent }}
        ), 0) as float8) as spend_30d,
        coalesce(max(-t.amount) filter (
            where t.amount < 0
              and t.booked_at >= e.received_at - {{ recent }}
        ), 0) as max_debit_30d,
        count(*) filter (
            where t.currency <> 'GBP'
              and t.booked_at >= e.received_at - {{ recent }}
        ) as foreign_txn_30d,
        count(*) filter (where t.is_disputed and t.updated_at <= e.received_at) as disputes_90d
    from emails as e
    inner join customers as c on c.email_token = e.sender_token
    inner join {{ ref('stg_transactions') }} as t
        on t.customer_id = c.customer_id
       and t.booked_at < e.received_at
       and t.booked_at >= e.received_at - {{ dispute }}
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
    cast(cast(coalesce(c.segment = 'premier', false) as integer) as float4) as segment_premier,
    cast(cast(coalesce(c.segment = 'business', false) as integer) as float4) as segment_business,
    coalesce(
        cast({{ dbt.datediff('c.joined_on', 'e.received_date', 'day') }} as float8) / 365.25, 0
    ) as tenure_years,
    coalesce(h.txn_count_30d, 0) as txn_count_30d,
    coalesce(h.spend_30d, 0) as spend_30d,
    coalesce(h.max_debit_30d, 0) as max_debit_30d,
    coalesce(h.foreign_txn_30d, 0) as foreign_txn_30d,
    coalesce(h.disputes_90d, 0) as disputes_90d,
    coalesce(e.subject_chars, 0) as subject_chars,
    coalesce(e.body_chars, 0) as body_chars,
    e.n_attachments,
    cast(cast(e.is_reply as integer) as float4) as is_reply,
    cast(extract(hour from e.received_at at time zone 'UTC') as bigint) as hour_of_day,
    x.text_vec,
    -- the run that computed this row: the next incremental run starts from changes after it
    {{ run_stamp() }} as _built_at
from emails as e
left join customers as c on c.email_token = e.sender_token
left join txn_history as h on h.email_id = e.email_id
inner join {{ ref('stg_email_text') }} as x on x.email_id = e.email_id
