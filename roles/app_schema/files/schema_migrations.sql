-- The ledger of applied migrations. agent_ui.postgresql.app_schema creates it, as the owner role, before the first
-- migration; it is not a migration itself. checksum is the sha256 of the migration file's bytes (sha256sum FILE).
CREATE TABLE schema_migrations (
    version     text PRIMARY KEY,
    description text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    applied_by  text NOT NULL DEFAULT current_user
);

COMMENT ON TABLE schema_migrations IS
    'Migrations applied by agent_ui.postgresql.app_schema (roles/app_schema/files/migrations); never edited by hand';
