-- 070: which batched rows hold an unfinished transaction, so the recovery sweep finds them without
-- reading every row: coordinator records are never deleted (a resubmitted order must get its outcome
-- again), so a scan of them all grows with every order ever placed.
--
--  * open is set by BatchedStateWriter with every write: true for a coordinator record that is not
--    completed, false for everything else (participant records: their prepared transactions are
--    entry rows of their own, sql/060, found through the entry table). NULL: written before this
--    column, or by an older silo during an upgrade; readers then fall back to the payload.
--  * ix_twopc_grain_state_open holds only open rows. A write that leaves open unchanged can stay a
--    HOT update; a coordinator record changes it once, when its transaction completes.
--  * ix_twopc_grain_state_unmarked holds only rows with no flag yet: empty once the backfill below
--    has run, unless an older silo still writes.
--
-- Idempotent: the column and indexes are created only when missing; the backfill touches only rows
-- without a flag.

ALTER TABLE twopc_grain_state ADD COLUMN IF NOT EXISTS open boolean NULL;

UPDATE twopc_grain_state
   SET open = (payload IS NOT NULL AND position('"CompletedAt":null'::bytea IN payload) > 0)
 WHERE open IS NULL;

DO $$
BEGIN
    IF to_regclass('ix_twopc_grain_state_open') IS NULL THEN
        CREATE INDEX ix_twopc_grain_state_open ON twopc_grain_state (state_name, grain_key) WHERE open;
    END IF;
    IF to_regclass('ix_twopc_grain_state_unmarked') IS NULL THEN
        CREATE INDEX ix_twopc_grain_state_unmarked ON twopc_grain_state (state_name) WHERE open IS NULL;
    END IF;
END
$$;
