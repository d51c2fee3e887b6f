-- 060: per-transaction entries of the batched provider's participant records (see
-- src/OrleansTwoPC.Storage/Batching/ParticipantRecordLayout.cs). A participant's record is stored as
-- its head in twopc_grain_state (sql/050: the resource and everything else that is not per
-- transaction) plus one row here per prepared transaction ('p:<txid>') and per decided one kept as a
-- tombstone ('d:<txid>'), so a write sends the head and only the entries that changed, however many
-- tombstones a hot participant keeps.
--
--  * Written only by BatchedStateWriter, in the same statement as the head and only when the head's
--    version check succeeded: the entries of a grain always belong to the head version stored.
--  * No foreign key to the head (it would lock the head row again per entry); heads are never
--    deleted (clear keeps the row and deletes its entries).
--  * COLLATE "C" like sql/050: byte order, the order the writer inserts and deletes in.
--  * Rows are inserted and deleted (an entry whose content changes is updated, which is rare): no
--    fillfactor reserve.
--
-- Idempotent: safe to run on every start.

CREATE TABLE IF NOT EXISTS twopc_state_entry
(
    state_name text COLLATE "C" NOT NULL,
    grain_key  text COLLATE "C" NOT NULL,
    entry_key  text COLLATE "C" NOT NULL,
    payload    bytea            NOT NULL,
    CONSTRAINT pk_twopc_state_entry PRIMARY KEY (state_name, grain_key, entry_key)
);
