-- 020: reminder table for UseAdoNetReminderService (Invariant "Npgsql").
--
-- Provider facts this script relies on (Orleans 10.4.2):
--  * StartTime arrives as a UTC DateTime (DbType.DateTime -> timestamptz), so timestamptz
--    stores it without any session-time-zone conversion.
--  * Period is read with GetInt64, so the column must be bigint (the parameter itself is
--    sent as int when it fits).
--  * GrainHash is the uint uniform hash cast to int; range reads compare it signed.
--  * Upsert and delete results are read with First(): both must always return one row.
--
-- Idempotent: safe to run on every start.

CREATE TABLE IF NOT EXISTS OrleansRemindersTable
(
    ServiceId    varchar(150) NOT NULL,
    GrainId      varchar(150) NOT NULL,
    ReminderName varchar(150) NOT NULL,
    StartTime    timestamptz  NOT NULL,
    Period       bigint       NOT NULL,
    GrainHash    integer      NOT NULL,
    Version      integer      NOT NULL,
    CONSTRAINT pk_orleansreminderstable PRIMARY KEY (ServiceId, GrainId, ReminderName)
);

-- Range reads (which reminders does this silo own?) scan by hash within one service.
-- Guarded for the same reason as the storage index: no table lock when it already exists.
DO $do$
BEGIN
    IF to_regclass('ix_orleansreminderstable_hash') IS NULL THEN
        CREATE INDEX ix_orleansreminderstable_hash ON OrleansRemindersTable (ServiceId, GrainHash);
    END IF;
END
$do$;

INSERT INTO OrleansQuery (QueryKey, QueryText) VALUES
(
    -- A new row starts at version 0; every re-registration bumps it (the ETag).
    'UpsertReminderRowKey',
    $q$INSERT INTO OrleansRemindersTable AS r
       (ServiceId, GrainId, ReminderName, StartTime, Period, GrainHash, Version)
VALUES (@ServiceId, @GrainId, @ReminderName, @StartTime, @Period, @GrainHash, 0)
ON CONFLICT (ServiceId, GrainId, ReminderName) DO UPDATE
   SET StartTime = EXCLUDED.StartTime,
       Period    = EXCLUDED.Period,
       GrainHash = EXCLUDED.GrainHash,
       Version   = r.Version + 1
RETURNING r.Version AS "Version"$q$
),
(
    'ReadReminderRowKey',
    $q$SELECT r.GrainId AS "GrainId", r.ReminderName AS "ReminderName", r.StartTime AS "StartTime",
       r.Period AS "Period", r.Version AS "Version"
  FROM OrleansRemindersTable AS r
 WHERE r.ServiceId = @ServiceId AND r.GrainId = @GrainId AND r.ReminderName = @ReminderName$q$
),
(
    'ReadReminderRowsKey',
    $q$SELECT r.GrainId AS "GrainId", r.ReminderName AS "ReminderName", r.StartTime AS "StartTime",
       r.Period AS "Period", r.Version AS "Version"
  FROM OrleansRemindersTable AS r
 WHERE r.ServiceId = @ServiceId AND r.GrainId = @GrainId$q$
),
(
    -- Non-wrapping range (begin < end in signed order).
    'ReadRangeRows1Key',
    $q$SELECT r.GrainId AS "GrainId", r.ReminderName AS "ReminderName", r.StartTime AS "StartTime",
       r.Period AS "Period", r.Version AS "Version"
  FROM OrleansRemindersTable AS r
 WHERE r.ServiceId = @ServiceId AND r.GrainHash > @BeginHash AND r.GrainHash <= @EndHash$q$
),
(
    -- Wrapping range: the ring segment crosses the int overflow point.
    'ReadRangeRows2Key',
    $q$SELECT r.GrainId AS "GrainId", r.ReminderName AS "ReminderName", r.StartTime AS "StartTime",
       r.Period AS "Period", r.Version AS "Version"
  FROM OrleansRemindersTable AS r
 WHERE r.ServiceId = @ServiceId AND (r.GrainHash > @BeginHash OR r.GrainHash <= @EndHash)$q$
),
(
    -- Deletes only the version the caller holds; always returns one row: 1 deleted, 0 not.
    'DeleteReminderRowKey',
    $q$WITH deleted AS (
    DELETE FROM OrleansRemindersTable AS r
     WHERE r.ServiceId = @ServiceId AND r.GrainId = @GrainId
       AND r.ReminderName = @ReminderName AND r.Version = @Version
    RETURNING 1)
SELECT count(*)::integer AS "Deleted" FROM deleted$q$
),
(
    'DeleteReminderRowsKey',
    $q$DELETE FROM OrleansRemindersTable WHERE ServiceId = @ServiceId$q$
)
ON CONFLICT (QueryKey) DO UPDATE SET QueryText = EXCLUDED.QueryText;
