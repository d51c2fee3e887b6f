-- 010: grain state storage for AddAdoNetGrainStorage (Invariant "Npgsql").
--
-- Differences from the stock Orleans PostgreSQL script, on purpose:
--  * One row per grain state is enforced by a unique index over the whole identity. The stock
--    script has none, so two activations racing their first write could both insert.
--  * GrainIdExtensionString is NOT NULL DEFAULT '' so the unique index also covers keys
--    without an extension (NULLs never collide in a unique index). The provider sends NULL
--    for "no extension"; every query maps it to '' with COALESCE.
--  * Every write returns exactly one row. On a version mismatch it returns NULL: the 10.4.2
--    provider turns an empty/NULL result into InconsistentStateException. (Returning 0 would
--    NOT be detected for a first insert, whose ETag is null.)
--  * Only PayloadBinary is kept (the provider's serializers all produce binary payloads).
--
-- Idempotent: safe to run on every start.

CREATE TABLE IF NOT EXISTS OrleansStorage
(
    GrainIdHash            integer      NOT NULL,
    GrainIdN0              bigint       NOT NULL,
    GrainIdN1              bigint       NOT NULL,
    GrainTypeHash          integer      NOT NULL,
    GrainTypeString        varchar(512) NOT NULL,
    GrainIdExtensionString varchar(512) NOT NULL DEFAULT '',
    ServiceId              varchar(150) NOT NULL,
    PayloadBinary          bytea        NULL,
    ModifiedOn             timestamptz  NOT NULL DEFAULT now(),
    Version                integer      NOT NULL
);

-- The row identity. Hashes first: they are the most selective and the cheapest to compare.
-- Guarded rather than "CREATE INDEX IF NOT EXISTS", which takes a SHARE lock on the table
-- (blocking grain writes until the schema transaction commits) even when the index exists.
DO $do$
BEGIN
    IF to_regclass('ux_orleansstorage_identity') IS NULL THEN
        CREATE UNIQUE INDEX ux_orleansstorage_identity
            ON OrleansStorage (GrainIdHash, GrainTypeHash, ServiceId, GrainIdN0, GrainIdN1,
                               GrainTypeString, GrainIdExtensionString);
    END IF;
END
$do$;

-- Write = compare-and-swap on Version.
--   p_version NULL  -> first write: insert version 1 unless a row exists (also when racing:
--                      ON CONFLICT waits for the other inserter, then does nothing).
--   p_version n     -> update only where Version = n; the new version is n + 1.
-- Returns the new version, or NULL when nothing was written (mismatch).
CREATE OR REPLACE FUNCTION orleans_storage_write(
    p_grainidhash            integer,
    p_grainidn0              bigint,
    p_grainidn1              bigint,
    p_graintypehash          integer,
    p_graintypestring        text,
    p_grainidextensionstring text,
    p_serviceid              text,
    p_version                integer,
    p_payloadbinary          bytea)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_new integer;
BEGIN
    IF p_version IS NULL THEN
        INSERT INTO OrleansStorage AS s
            (GrainIdHash, GrainIdN0, GrainIdN1, GrainTypeHash, GrainTypeString,
             GrainIdExtensionString, ServiceId, PayloadBinary, ModifiedOn, Version)
        VALUES
            (p_grainidhash, p_grainidn0, p_grainidn1, p_graintypehash, p_graintypestring,
             COALESCE(p_grainidextensionstring, ''), p_serviceid, p_payloadbinary, now(), 1)
        ON CONFLICT (GrainIdHash, GrainTypeHash, ServiceId, GrainIdN0, GrainIdN1,
                     GrainTypeString, GrainIdExtensionString) DO NOTHING
        RETURNING s.Version INTO v_new;
    ELSE
        UPDATE OrleansStorage AS s
           SET PayloadBinary = p_payloadbinary,
               ModifiedOn    = now(),
               Version       = s.Version + 1
         WHERE s.GrainIdHash            = p_grainidhash
           AND s.GrainTypeHash          = p_graintypehash
           AND s.ServiceId              = p_serviceid
           AND s.GrainIdN0              = p_grainidn0
           AND s.GrainIdN1              = p_grainidn1
           AND s.GrainTypeString        = p_graintypestring
           AND s.GrainIdExtensionString = COALESCE(p_grainidextensionstring, '')
           AND s.Version                = p_version
        RETURNING s.Version INTO v_new;
    END IF;
    RETURN v_new;
END;
$fn$;

-- Clear = same compare-and-swap, but drops the payload and keeps the row (and its version),
-- so a later first-write from a stale activation still collides. Returns the new version or NULL.
CREATE OR REPLACE FUNCTION orleans_storage_clear(
    p_grainidhash            integer,
    p_grainidn0              bigint,
    p_grainidn1              bigint,
    p_graintypehash          integer,
    p_graintypestring        text,
    p_grainidextensionstring text,
    p_serviceid              text,
    p_version                integer)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_new integer;
BEGIN
    UPDATE OrleansStorage AS s
       SET PayloadBinary = NULL,
           ModifiedOn    = now(),
           Version       = s.Version + 1
     WHERE s.GrainIdHash            = p_grainidhash
       AND s.GrainTypeHash          = p_graintypehash
       AND s.ServiceId              = p_serviceid
       AND s.GrainIdN0              = p_grainidn0
       AND s.GrainIdN1              = p_grainidn1
       AND s.GrainTypeString        = p_graintypestring
       AND s.GrainIdExtensionString = COALESCE(p_grainidextensionstring, '')
       AND s.Version                = p_version
    RETURNING s.Version INTO v_new;
    RETURN v_new;
END;
$fn$;

-- Delete (only used with DeleteStateOnClear = true). The provider expects a value different
-- from the ETag it sent, so success returns the old version + 1; a mismatch returns NULL.
CREATE OR REPLACE FUNCTION orleans_storage_delete(
    p_grainidhash            integer,
    p_grainidn0              bigint,
    p_grainidn1              bigint,
    p_graintypehash          integer,
    p_graintypestring        text,
    p_grainidextensionstring text,
    p_serviceid              text,
    p_version                integer)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_new integer;
BEGIN
    DELETE FROM OrleansStorage AS s
     WHERE s.GrainIdHash            = p_grainidhash
       AND s.GrainTypeHash          = p_graintypehash
       AND s.ServiceId              = p_serviceid
       AND s.GrainIdN0              = p_grainidn0
       AND s.GrainIdN1              = p_grainidn1
       AND s.GrainTypeString        = p_graintypestring
       AND s.GrainIdExtensionString = COALESCE(p_grainidextensionstring, '')
       AND s.Version                = p_version
    RETURNING s.Version + 1 INTO v_new;
    RETURN v_new;
END;
$fn$;

INSERT INTO OrleansQuery (QueryKey, QueryText) VALUES
(
    'ReadFromStorageKey',
    $q$SELECT s.PayloadBinary AS "PayloadBinary", s.Version AS "Version"
  FROM OrleansStorage AS s
 WHERE s.GrainIdHash            = @GrainIdHash
   AND s.GrainTypeHash          = @GrainTypeHash
   AND s.ServiceId              = @ServiceId
   AND s.GrainIdN0              = @GrainIdN0
   AND s.GrainIdN1              = @GrainIdN1
   AND s.GrainTypeString        = @GrainTypeString
   AND s.GrainIdExtensionString = COALESCE(@GrainIdExtensionString, '')$q$
),
(
    'WriteToStorageKey',
    $q$SELECT orleans_storage_write(@GrainIdHash, @GrainIdN0, @GrainIdN1, @GrainTypeHash, @GrainTypeString, @GrainIdExtensionString, @ServiceId, @GrainStateVersion, @PayloadBinary) AS "NewGrainStateVersion"$q$
),
(
    'ClearStorageKey',
    $q$SELECT orleans_storage_clear(@GrainIdHash, @GrainIdN0, @GrainIdN1, @GrainTypeHash, @GrainTypeString, @GrainIdExtensionString, @ServiceId, @GrainStateVersion) AS "NewGrainStateVersion"$q$
),
(
    'DeleteStorageKey',
    $q$SELECT orleans_storage_delete(@GrainIdHash, @GrainIdN0, @GrainIdN1, @GrainTypeHash, @GrainTypeString, @GrainIdExtensionString, @ServiceId, @GrainStateVersion) AS "NewGrainStateVersion"$q$
)
ON CONFLICT (QueryKey) DO UPDATE SET QueryText = EXCLUDED.QueryText;
