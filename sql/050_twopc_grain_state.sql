-- 050: grain state of the batched provider (TwoPC:Storage:Provider = batched; see
-- src/OrleansTwoPC.Storage/Batching). Written only by BatchedStateWriter, read by it and by
-- StoredStateReader (recovery, operators, the invariant checker).
--
--  * The row identity is the grain's state name (what orleansstorage.graintypestring holds) and
--    its full string key, stored as given: no hashing, no numeric or GUID parsing, so every
--    distinct id has its own row (see StoredGrainKey for what the Orleans provider does instead).
--  * COLLATE "C": byte order, cheap to compare, and the same order in every silo, which the
--    writer relies on when it locks a batch's rows in key order.
--  * version is the compare-and-swap token (the ETag): a first write inserts version 1, every
--    write bumps it by one; clear keeps the row with a NULL payload and bumps it too, so a stale
--    activation's first write still collides.
--  * No index besides the primary key, and none on payload or version: updates change only
--    payload, version and modified_on, so they can stay HOT (heap-only tuples, no index writes).
--    fillfactor leaves room on each page for those new row versions.
--
-- Idempotent: safe to run on every start.

CREATE TABLE IF NOT EXISTS twopc_grain_state
(
    state_name  text COLLATE "C" NOT NULL,
    grain_key   text COLLATE "C" NOT NULL,
    version     integer          NOT NULL,
    payload     bytea            NULL,
    modified_on timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT pk_twopc_grain_state PRIMARY KEY (state_name, grain_key)
) WITH (fillfactor = 80);
