-- Invocation logs of every node, so that any node's
-- `GET /api/v1/functions/{name}/logs` shows the whole cluster's. Nodes write
-- them in batches, off the request path, one batch at a time (an advisory lock),
-- so ids become visible in order and `id` is a cursor no reader can skip past.
-- Retention: the newest 50 per function, and a byte budget for all together,
-- both enforced by the writers.
CREATE TABLE invocation_logs (
    id bigserial PRIMARY KEY,
    function text NOT NULL,
    node text NOT NULL,
    request_id text NOT NULL,
    at_unix bigint NOT NULL,
    version bigint NOT NULL,
    outcome text NOT NULL,
    status integer NOT NULL,
    duration_ms double precision NOT NULL,
    text text NOT NULL,
    truncated boolean NOT NULL
);
CREATE INDEX invocation_logs_by_function ON invocation_logs (function, id);
