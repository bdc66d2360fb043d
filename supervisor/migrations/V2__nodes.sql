-- Every node that runs against this store, with its last heartbeat, for
-- `GET /admin/nodes`. A node writes its row every few seconds; rows of nodes
-- gone for a day are removed by the others.
CREATE TABLE nodes (
    node text PRIMARY KEY,
    address text NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at timestamptz NOT NULL
);
