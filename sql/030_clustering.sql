-- 030: cluster membership for UseAdoNetClustering (Invariant "Npgsql").
--
-- The version row (one per DeploymentId = ClusterId) is the membership table's ETag: every
-- insert or update of a member must compare-and-swap it in the same transaction, so two
-- silos acting on the same snapshot cannot both win. The functions below do this with real
-- control flow (never ASSERT, which is a no-op when plpgsql.check_asserts is off): on any
-- mismatch they return 0 and leave both tables untouched.
--
-- Provider facts this script relies on (Orleans 10.4.2):
--  * Insert/update/version-insert results are read as one boolean-convertible value with
--    First(), so they must always return exactly one row and never NULL.
--  * Reads take the table version from the first row and decide "has a member" by a non-NULL
--    StartTime, so the reads are "version row LEFT JOIN members" and always return >= 1 row
--    once the version row exists. SiloName, HostName and ProxyPort are read without NULL
--    checks, hence NOT NULL.
--  * Times arrive as UTC DateTime typed timestamptz.
--
-- Idempotent: safe to run on every start.

CREATE TABLE IF NOT EXISTS OrleansMembershipVersionTable
(
    DeploymentId varchar(150) NOT NULL,
    Timestamp    timestamptz  NOT NULL DEFAULT now(),
    Version      integer      NOT NULL DEFAULT 0,
    CONSTRAINT pk_orleansmembershipversiontable PRIMARY KEY (DeploymentId)
);

CREATE TABLE IF NOT EXISTS OrleansMembershipTable
(
    DeploymentId varchar(150)  NOT NULL,
    Address      varchar(45)   NOT NULL,
    Port         integer       NOT NULL,
    Generation   integer       NOT NULL,
    SiloName     varchar(150)  NOT NULL,
    HostName     varchar(150)  NOT NULL,
    Status       integer       NOT NULL,
    ProxyPort    integer       NOT NULL,
    SuspectTimes varchar(8000) NULL,
    StartTime    timestamptz   NOT NULL,
    IAmAliveTime timestamptz   NOT NULL,
    CONSTRAINT pk_orleansmembershiptable PRIMARY KEY (DeploymentId, Address, Port, Generation),
    CONSTRAINT fk_orleansmembershiptable_version FOREIGN KEY (DeploymentId)
        REFERENCES OrleansMembershipVersionTable (DeploymentId)
);

-- Insert a member and bump the table version, both or neither. Returns 1 on success, 0 when
-- the version is stale, the version row is missing, or the member already exists.
CREATE OR REPLACE FUNCTION orleans_membership_insert(
    p_deploymentid text,
    p_address      text,
    p_port         integer,
    p_generation   integer,
    p_siloname     text,
    p_hostname     text,
    p_status       integer,
    p_proxyport    integer,
    p_starttime    timestamptz,
    p_iamalivetime timestamptz,
    p_version      integer)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
BEGIN
    -- The inner block is a subtransaction: if the member insert fails, the version bump
    -- made just before it is rolled back with it.
    BEGIN
        -- Row-locks the version row: concurrent writers queue here and then see the new
        -- version, so at most one of them passes the check.
        UPDATE OrleansMembershipVersionTable
           SET Version = Version + 1, Timestamp = now()
         WHERE DeploymentId = p_deploymentid AND Version = p_version;
        IF NOT FOUND THEN
            RETURN 0;
        END IF;

        INSERT INTO OrleansMembershipTable
            (DeploymentId, Address, Port, Generation, SiloName, HostName, Status, ProxyPort,
             SuspectTimes, StartTime, IAmAliveTime)
        VALUES
            (p_deploymentid, p_address, p_port, p_generation, p_siloname, p_hostname, p_status,
             p_proxyport, NULL, p_starttime, p_iamalivetime);
        RETURN 1;
    EXCEPTION
        WHEN unique_violation THEN
            RETURN 0;
    END;
END;
$fn$;

-- Update a member and bump the table version, both or neither. Returns 1 on success, 0 when
-- the version is stale or the member does not exist.
CREATE OR REPLACE FUNCTION orleans_membership_update(
    p_deploymentid text,
    p_address      text,
    p_port         integer,
    p_generation   integer,
    p_status       integer,
    p_suspecttimes text,
    p_iamalivetime timestamptz,
    p_version      integer)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
BEGIN
    BEGIN
        UPDATE OrleansMembershipVersionTable
           SET Version = Version + 1, Timestamp = now()
         WHERE DeploymentId = p_deploymentid AND Version = p_version;
        IF NOT FOUND THEN
            RETURN 0;
        END IF;

        UPDATE OrleansMembershipTable
           SET Status = p_status, SuspectTimes = p_suspecttimes, IAmAliveTime = p_iamalivetime
         WHERE DeploymentId = p_deploymentid AND Address = p_address
           AND Port = p_port AND Generation = p_generation;
        IF NOT FOUND THEN
            -- Undo the version bump: raising leaves the subtransaction, rolling it back.
            RAISE no_data_found;
        END IF;
        RETURN 1;
    EXCEPTION
        WHEN no_data_found THEN
            RETURN 0;
    END;
END;
$fn$;

INSERT INTO OrleansQuery (QueryKey, QueryText) VALUES
(
    -- Creates the version row if absent; one row: 1 created, 0 already there.
    'InsertMembershipVersionKey',
    $q$WITH created AS (
    INSERT INTO OrleansMembershipVersionTable (DeploymentId, Timestamp, Version)
    VALUES (@DeploymentId, now(), 0)
    ON CONFLICT (DeploymentId) DO NOTHING
    RETURNING 1)
SELECT count(*)::integer AS "Created" FROM created$q$
),
(
    'InsertMembershipKey',
    $q$SELECT orleans_membership_insert(@DeploymentId, @Address, @Port, @Generation, @SiloName, @HostName, @Status, @ProxyPort, @StartTime, @IAmAliveTime, @Version) AS "Inserted"$q$
),
(
    'UpdateMembershipKey',
    $q$SELECT orleans_membership_update(@DeploymentId, @Address, @Port, @Generation, @Status, @SuspectTimes, @IAmAliveTime, @Version) AS "Updated"$q$
),
(
    -- Heartbeat: not versioned (by design of the protocol); never moves backwards.
    'UpdateIAmAlivetimeKey',
    $q$UPDATE OrleansMembershipTable
   SET IAmAliveTime = GREATEST(IAmAliveTime, @IAmAliveTime)
 WHERE DeploymentId = @DeploymentId AND Address = @Address
   AND Port = @Port AND Generation = @Generation$q$
),
(
    'MembershipReadRowKey',
    $q$SELECT v.DeploymentId AS "DeploymentId", m.Address AS "Address", m.Port AS "Port",
       m.Generation AS "Generation", m.SiloName AS "SiloName", m.HostName AS "HostName",
       m.Status AS "Status", m.ProxyPort AS "ProxyPort", m.SuspectTimes AS "SuspectTimes",
       m.StartTime AS "StartTime", m.IAmAliveTime AS "IAmAliveTime", v.Version AS "Version"
  FROM OrleansMembershipVersionTable AS v
  LEFT JOIN OrleansMembershipTable AS m
    ON m.DeploymentId = v.DeploymentId
   AND m.Address = @Address AND m.Port = @Port AND m.Generation = @Generation
 WHERE v.DeploymentId = @DeploymentId$q$
),
(
    'MembershipReadAllKey',
    $q$SELECT v.DeploymentId AS "DeploymentId", m.Address AS "Address", m.Port AS "Port",
       m.Generation AS "Generation", m.SiloName AS "SiloName", m.HostName AS "HostName",
       m.Status AS "Status", m.ProxyPort AS "ProxyPort", m.SuspectTimes AS "SuspectTimes",
       m.StartTime AS "StartTime", m.IAmAliveTime AS "IAmAliveTime", v.Version AS "Version"
  FROM OrleansMembershipVersionTable AS v
  LEFT JOIN OrleansMembershipTable AS m ON m.DeploymentId = v.DeploymentId
 WHERE v.DeploymentId = @DeploymentId$q$
),
(
    'GatewaysQueryKey',
    $q$SELECT m.Address AS "Address", m.ProxyPort AS "ProxyPort", m.Generation AS "Generation"
  FROM OrleansMembershipTable AS m
 WHERE m.DeploymentId = @DeploymentId AND m.Status = @Status AND m.ProxyPort > 0$q$
),
(
    -- Members first: they reference the version row.
    'DeleteMembershipTableEntriesKey',
    $q$DELETE FROM OrleansMembershipTable WHERE DeploymentId = @DeploymentId;
DELETE FROM OrleansMembershipVersionTable WHERE DeploymentId = @DeploymentId$q$
),
(
    -- Legacy bulk cleanup (used only when CleanupDefunctSiloEntryKey is absent):
    -- dead (Status 6) members whose last sign of life is older than the cut-off.
    'CleanupDefunctSiloEntriesKey',
    $q$DELETE FROM OrleansMembershipTable
 WHERE DeploymentId = @DeploymentId AND Status = 6
   AND IAmAliveTime < @IAmAliveTime AND StartTime < @IAmAliveTime$q$
),
(
    -- Optional per-entry cleanup (preferred by 10.4.2 when present): the provider has already
    -- chosen a dead entry from a read; delete it only if it is still exactly as read.
    'CleanupDefunctSiloEntryKey',
    $q$DELETE FROM OrleansMembershipTable
 WHERE DeploymentId = @DeploymentId AND Address = @Address AND Port = @Port
   AND Generation = @Generation AND Status = 6
   AND StartTime = @StartTime AND IAmAliveTime = @IAmAliveTime
   AND COALESCE(SuspectTimes, '') = COALESCE(@SuspectTimes, '')$q$
)
ON CONFLICT (QueryKey) DO UPDATE SET QueryText = EXCLUDED.QueryText;
