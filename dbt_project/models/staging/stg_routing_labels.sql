select distinct on (email_id)
    email_id, queue, priority, cast(labelled_at as timestamptz) as labelled_at
from {{ source('lake', 'raw_routing_labels') }}
-- the newest copy of each label
order by email_id, _ingested_at desc, _batch_id desc
