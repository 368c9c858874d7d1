select email_id, queue, priority, cast(labelled_at as timestamptz) as labelled_at
from {{ source('lake', 'raw_routing_labels') }}
