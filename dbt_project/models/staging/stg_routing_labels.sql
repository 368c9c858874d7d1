select email_id, queue, priority, cast(labelled_at as timestamptz) as labelled_at
from {{ source('lake', 'raw_routing_labels') }}
qualify row_number() over (partition by email_id order by _ingested_at desc, _batch_id desc) = 1
