-- audit_trigger_func() searches pg_temp last: search_path = pg_catalog, public, pg_temp
--
-- 0004 pinned the SECURITY DEFINER function's search_path to "pg_catalog, public". PostgreSQL then still searches
-- the session's temporary schema, and searches it first unless it is named: PostgreSQL's documentation ("Writing
-- SECURITY DEFINER Functions Safely") says to list pg_temp last. The function body qualifies audit_log already;
-- this closes the path for any name it does not qualify. 0004 is applied and never edited, hence this migration.
-- Runs inside one transaction, as the owner role, with search_path = public. Never edit it once applied.

ALTER FUNCTION audit_trigger_func() SET search_path = pg_catalog, public, pg_temp;
