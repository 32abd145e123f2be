-- Row-level security policy on agents (enforced only when app_schema_rls_enabled turns RLS on for the table)
--
-- A policy has no effect until ALTER TABLE agents ENABLE ROW LEVEL SECURITY, which the role runs only when
-- app_schema_rls_enabled is true (and reverts when it is false): the policy can exist on every install.
-- Deviation from the design document: current_setting('app.user_id', true) and NULLIF, so that a session that has
-- not set app.user_id sees no agents instead of failing with "unrecognized configuration parameter".
-- The owner role and superusers bypass RLS; the application roles do not.
-- Runs inside one transaction, as the owner role, with search_path = public. Never edit it once applied.

CREATE POLICY user_agents ON agents
    FOR ALL
    USING (created_by_id = NULLIF(current_setting('app.user_id', true), '')::integer);
