-- The shared store, format 1: every function's versions with their bundle bytes,
-- which one is current, and what was done to them. Invocations never read it:
-- each node serves from its own unpacked copy (the local store under its data dir).

-- The store format, for `polyfaas export`/`import` and future migrations.
CREATE TABLE store_format (format integer NOT NULL);
INSERT INTO store_format VALUES (1);

CREATE TABLE functions (
    name text PRIMARY KEY,
    current_version bigint NOT NULL,
    -- The number the next deploy gets: taken under the row lock, so two nodes
    -- deploying the same function at once get consecutive numbers.
    next_version bigint NOT NULL
);

CREATE TABLE versions (
    name text NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    version bigint NOT NULL,
    sha256 text NOT NULL,
    size bigint NOT NULL,
    language text NOT NULL,
    created_unix bigint NOT NULL,
    -- The zip as uploaded; a node checks it against sha256 before unpacking it.
    bundle bytea NOT NULL,
    PRIMARY KEY (name, version)
);

-- What each node did, newest last: deploys, rollbacks, prunes, deletes.
CREATE TABLE history (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    action text NOT NULL,
    version bigint,
    node text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
