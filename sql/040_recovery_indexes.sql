-- 040: partial indexes for the recovery sweep (and operators): find, without scanning every row,
-- the participants that hold prepared (undecided) transactions and the coordinator records whose
-- transaction is not completed. The predicates match bytes of the JSON the silo writes
-- (System.Text.Json, compact): '"Prepared":{"' only appears when the Prepared map is non-empty.
-- position(bytea, bytea) is immutable, so it may appear in an index predicate.
-- Idempotent: created only when missing (to_regclass), so re-applying takes no table lock.

DO $$
BEGIN
    IF to_regclass('ix_orleansstorage_prepared') IS NULL THEN
        CREATE INDEX ix_orleansstorage_prepared ON OrleansStorage (GrainTypeString)
            WHERE position('"Prepared":{"'::bytea IN PayloadBinary) > 0;
    END IF;
    IF to_regclass('ix_orleansstorage_unfinished') IS NULL THEN
        CREATE INDEX ix_orleansstorage_unfinished ON OrleansStorage (GrainTypeString)
            WHERE position('"CompletedAt":null'::bytea IN PayloadBinary) > 0;
    END IF;
END
$$;
