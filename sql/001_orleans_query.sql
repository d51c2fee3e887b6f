-- 001: the query catalogue the Orleans ADO.NET providers read at start-up.
--
-- Every provider runs "SELECT QueryKey, QueryText FROM OrleansQuery" once and caches the texts,
-- so a query changed here takes effect on the next silo start. Later scripts upsert their rows
-- with INSERT ... ON CONFLICT (QueryKey) DO UPDATE so that re-running the scripts replaces
-- stale texts instead of failing.
--
-- Idempotent: safe to run on every start.

CREATE TABLE IF NOT EXISTS OrleansQuery
(
    QueryKey  varchar(64)   NOT NULL,
    QueryText varchar(8000) NOT NULL,
    CONSTRAINT pk_orleansquery PRIMARY KEY (QueryKey)
);
