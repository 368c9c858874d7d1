-- One row per support email, typed; text stays in the lake (masked) and reaches the model
-- through email_text_features.
select
    email_id,
    message_id,
    coalesce(thread_id, email_id) as thread_id,
    sender_token,
    cast(received_at as timestamptz) as received_at,
    cast(cast(received_at as timestamptz) at time zone 'UTC' as date) as received_date,
    length(subject) as subject_chars,
    length(body) as body_chars,
    coalesce(len(attachment_names), 0) as n_attachments,
    in_reply_to is not null as is_reply
from {{ source('lake', 'raw_emails') }}
qualify row_number() over (partition by email_id order by _ingested_at desc, _batch_id desc) = 1
