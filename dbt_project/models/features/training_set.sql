-- Labelled history: the features of every email a human agent routed, with that routing.
select f.*, l.queue, l.priority
from {{ ref('email_features') }} as f
inner join {{ ref('stg_routing_labels') }} as l using (email_id)
