"""Live checks of the app_schema role: tables, constraints, triggers, indexes, the materialized view, privileges,
row-level security and the migration ledger. Every probe that writes runs in a transaction that is rolled back, so
the database stays empty for test_sqlite_migration.py."""
import base64
import hashlib
import importlib.util
import re
import shutil

import pytest

from conftest import PROJECT, play_recap, podman_hosts, run_playbook

testinfra_hosts = podman_hosts("postgresql")

DB = "claude_agent_ui"
OWNER = "agent_ui_owner"
MIGRATIONS = sorted((PROJECT / "roles" / "app_schema" / "files" / "migrations").glob("*.sql"))
CONVERGE = str(PROJECT / "molecule" / "resources" / "converge.yml")


def _unit_test_module(name):
    """A module of tests/unit/roles, for the names and catalog queries the unit tests already define."""
    path = PROJECT / "tests" / "unit" / "roles" / (name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The design's table, index and trigger names, from the unit test of the migration files.
DESIGN = _unit_test_module("test_app_schema_migrations")
# Catalog queries the unit tests run against a throwaway server, run here on the live host.
LIVE = _unit_test_module("test_app_schema_live")


def sql(host, script, check=True):
    """Run a psql script as postgres in the app database (one session); return the result."""
    b64 = base64.b64encode(script.encode()).decode()
    result = host.run("echo {} | base64 -d | runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {} -f -".format(b64, DB))
    if check:
        assert result.rc == 0, result.stderr
    return result


def as_role(host, role, statement):
    """Run one statement as `role` (session_user included) in a rolled-back transaction; return the result."""
    return sql(host, "BEGIN;\nSET LOCAL SESSION AUTHORIZATION {};\n{};\nROLLBACK;\n".format(role, statement), check=False)


def changed_counts(result):
    """changed= of each host in the play recap."""
    found = [str(counts["changed"]) for counts in play_recap(result.stdout).values()]
    assert found, result.stdout[-4000:] + result.stderr[-2000:]
    return found


# --- objects ------------------------------------------------------------------------------------------------------

def test_every_object_in_public_belongs_to_the_owner(host):
    tables = set(sql(host, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").stdout.split())
    assert DESIGN.DESIGN_TABLES | {"schema_migrations"} <= tables
    foreign = sql(host, "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = 'public' AND c.relowner <> '{0}'::regrole "
                        "UNION ALL SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                        "WHERE n.nspname = 'public' AND p.proowner <> '{0}'::regrole".format(OWNER)).stdout
    assert foreign == ""
    assert sql(host, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").stdout.strip() == OWNER
    assert sql(host, "SELECT rolcanlogin FROM pg_roles WHERE rolname = '{}'".format(OWNER)).stdout.strip() == "f"


def test_ids_are_identity_columns(host):
    rows = sql(host, "SELECT table_name, is_identity, identity_generation FROM information_schema.columns "
                     "WHERE table_schema = 'public' AND column_name = 'id' AND table_name <> 'agent_statistics'").stdout
    assert sorted(rows.splitlines()) == sorted("{}|YES|BY DEFAULT".format(t) for t in DESIGN.DESIGN_TABLES)


def test_check_constraints_hold(host):
    checks = sql(host, "SELECT conname FROM pg_constraint WHERE contype = 'c' AND connamespace = 'public'::regnamespace").stdout
    assert {"agents_model_check", "skills_experience_score_check", "mcp_servers_transport_check",
            "tasks_status_check"} <= set(checks.split())
    for statement in ("INSERT INTO agents (name, system_prompt, model) VALUES ('c1', 'p', 'gpt-4')",
                      "INSERT INTO skills (name, content, experience_score) VALUES ('c2', 'c', 100.5)",
                      "INSERT INTO mcp_servers (name, command, transport) VALUES ('c3', 'x', 'grpc')",
                      "INSERT INTO tasks (name, status) VALUES ('c4', 'done')"):
        result = as_role(host, "postgres", statement)
        assert result.rc != 0 and "violates check constraint" in result.stderr, (statement, result.stderr)


def test_foreign_keys_cascade_or_set_null(host):
    rows = sql(host, "SELECT conrelid::regclass::text || '.' || a.attname || ':' || confrelid::regclass::text || ':' || confdeltype::text "
                     "FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
                     "WHERE contype = 'f' AND connamespace = 'public'::regnamespace").stdout.split()
    expected = {"agents_skills_links.agent_id:agents:c", "agents_skills_links.skill_id:skills:c",
                "agents_mcp_servers_links.agent_id:agents:c", "agents_mcp_servers_links.mcp_server_id:mcp_servers:c",
                "tasks.agent_id:agents:n", "tasks.created_by_id:users:n", "agents.created_by_id:users:n",
                "agents.updated_by_id:users:n", "skills.created_by_id:users:n", "mcp_servers.updated_by_id:users:n"}
    assert expected <= set(rows), expected - set(rows)
    out = sql(host, """BEGIN;
INSERT INTO agents (id, name, system_prompt) VALUES (900001, 'fk-a', 'p');
INSERT INTO skills (id, name, content) VALUES (900001, 'fk-s', 'c');
INSERT INTO agents_skills_links (agent_id, skill_id) VALUES (900001, 900001);
INSERT INTO tasks (id, name, agent_id) VALUES (900001, 'fk-t', 900001);
DELETE FROM agents WHERE id = 900001;
SELECT count(*) FROM agents_skills_links WHERE skill_id = 900001;
SELECT coalesce(agent_id::text, 'null') FROM tasks WHERE id = 900001;
ROLLBACK;
""").stdout.split()
    assert out == ["0", "null"]
    orphan = as_role(host, "postgres", "INSERT INTO agents_mcp_servers_links (agent_id, mcp_server_id) VALUES (424242, 424242)")
    assert orphan.rc != 0 and "violates foreign key constraint" in orphan.stderr


def test_updated_at_trigger_and_search_vector(host):
    out = sql(host, """BEGIN;
INSERT INTO agents (id, name, description, system_prompt, updated_at)
    VALUES (900002, 'Kangaroo helper', 'jumps over fences', 'You answer questions about marsupials.', '2001-01-01');
SELECT search_vector @@ to_tsquery('english', 'kangaroo & fence & marsupial') FROM agents WHERE id = 900002;
UPDATE agents SET description = 'now about wombats' WHERE id = 900002;
SELECT updated_at > '2001-01-02', search_vector @@ to_tsquery('english', 'wombat') FROM agents WHERE id = 900002;
INSERT INTO skills (id, name, content, updated_at) VALUES (900002, 'Platypus lore', 'Monotremes lay eggs.', '2001-01-01');
UPDATE skills SET experience_score = 50 WHERE id = 900002;
SELECT updated_at > '2001-01-02', search_vector @@ to_tsquery('english', 'monotreme') FROM skills WHERE id = 900002;
INSERT INTO mcp_servers (id, name, command, updated_at) VALUES (900002, 'fs', 'npx', '2001-01-01');
UPDATE mcp_servers SET disabled = true WHERE id = 900002;
INSERT INTO tasks (id, name, updated_at) VALUES (900002, 't', '2001-01-01');
UPDATE tasks SET status = 'running' WHERE id = 900002;
SELECT bool_and(updated_at > '2001-01-02') FROM (SELECT updated_at FROM mcp_servers WHERE id = 900002
    UNION ALL SELECT updated_at FROM tasks WHERE id = 900002) u;
ROLLBACK;
""").stdout.split()
    assert out == ["t", "t|t", "t|t", "t"]
    triggers = set(sql(host, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").stdout.split())
    assert DESIGN.DESIGN_TRIGGERS <= triggers, DESIGN.DESIGN_TRIGGERS - triggers


def test_design_indexes_are_present(host):
    names = set(sql(host, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'").stdout.split())
    assert DESIGN.DESIGN_INDEXES <= names, DESIGN.DESIGN_INDEXES - names
    kinds = dict(line.split("|") for line in sql(host, "SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN "
                                                       "('idx_agents_tools_gin', 'idx_tasks_failed', 'idx_agent_stats_id')").stdout.splitlines())
    assert "USING gin (tools)" in kinds["idx_agents_tools_gin"]
    assert "WHERE ((status)::text = 'failed'::text)" in kinds["idx_tasks_failed"]
    assert kinds["idx_agent_stats_id"].startswith("CREATE UNIQUE INDEX")


def test_materialized_view_refreshes_concurrently(host):
    out = sql(host, """BEGIN;
INSERT INTO agents (id, name, system_prompt) VALUES (900003, 'mv-agent', 'p');
INSERT INTO tasks (name, agent_id, status, duration_ms) VALUES ('t1', 900003, 'completed', 100), ('t2', 900003, 'completed', 300),
    ('t3', 900003, 'failed', 5);
SET LOCAL ROLE agent_ui_owner;
REFRESH MATERIALIZED VIEW CONCURRENTLY agent_statistics;
SELECT task_count, avg_task_duration::int FROM agent_statistics WHERE name = 'mv-agent';
ROLLBACK;
""").stdout.split()
    assert out == ["2|200"]


def test_audit_log_names_the_login_role_and_ignores_bulk_load_from_app_roles(host):
    out = sql(host, """BEGIN;
SET LOCAL SESSION AUTHORIZATION express_user;
INSERT INTO agents (id, name, system_prompt) VALUES (900004, 'audited', 'p');
SET LOCAL agent_ui.bulk_load = 'on';
UPDATE agents SET description = 'still audited' WHERE id = 900004;
RESET SESSION AUTHORIZATION;
SET LOCAL agent_ui.bulk_load = 'on';
INSERT INTO agents (id, name, system_prompt) VALUES (900005, 'bulk loaded', 'p');
SELECT string_agg(operation || ':' || changed_by || ':' || coalesce(new_data->>'name', ''), ',' ORDER BY id)
    FROM audit_log WHERE (new_data->>'id')::int IN (900004, 900005);
ROLLBACK;
""").stdout.split()
    assert out == ["INSERT:express_user:audited,UPDATE:express_user:audited"]


# --- privileges -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role, statement, denied", [
    ("express_user", "INSERT INTO agents (name, system_prompt) VALUES ('e', 'p')", False),
    ("express_user", "UPDATE agents SET enabled = false", False),
    ("express_user", "SELECT count(*) FROM agent_statistics", False),
    ("express_user", "DELETE FROM agents", "permission denied for table agents"),
    ("express_user", "TRUNCATE tasks", "permission denied for table tasks"),
    ("express_user", "CREATE TABLE public.probe (id int)", "permission denied for schema public"),
    ("express_user", "SELECT count(*) FROM audit_log", "permission denied for table audit_log"),
    ("express_user", "INSERT INTO schema_migrations VALUES ('9999', 'x', 'x')", "permission denied for table schema_migrations"),
    ("agent_ui_readonly", "SELECT count(*) FROM agents JOIN tasks ON tasks.agent_id = agents.id", False),
    ("agent_ui_readonly", "SELECT count(*) FROM audit_log", False),
    ("agent_ui_readonly", "INSERT INTO agents (name, system_prompt) VALUES ('r', 'p')", "permission denied for table agents"),
    ("agent_ui_readonly", "UPDATE skills SET content = ''", "permission denied for table skills"),
    ("agent_ui_readonly", "SELECT count(*) FROM users", "permission denied for table users"),
    ("agent_ui_readonly", "CREATE TABLE public.probe (id int)", "permission denied for schema public"),
    ("strapi_user", "DELETE FROM tasks", False),
    ("strapi_user", "CREATE TABLE public.strapi_probe (id int)", False),
    ("strapi_user", "ALTER TABLE agents ADD COLUMN x int", "must be owner of table agents"),
    ("strapi_user", "DROP TABLE tasks", "must be owner of table tasks"),
    ("strapi_user", "INSERT INTO audit_log (table_name, operation, changed_by) VALUES ('x', 'x', 'x')",
     "permission denied for table audit_log"),
])
def test_least_privilege(host, role, statement, denied):
    result = as_role(host, role, statement)
    if denied:
        assert result.rc != 0 and denied in result.stderr, result.stderr
    else:
        assert result.rc == 0, result.stderr


def test_every_foreign_key_column_is_indexed(host):
    """The design document's checklist: an FK without an index makes ON DELETE scan the whole child table."""
    unindexed = sql(host, LIVE.UNINDEXED_FOREIGN_KEYS).stdout.split()
    assert unindexed == []
    assert sql(host, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
               ).stdout.strip() == "12"


def test_public_can_neither_create_nor_use_schema_public_nor_connect(host):
    acl = sql(host, "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'").stdout.strip()
    assert not re.search(r"[{,]=", acl), "PUBLIC still has privileges on schema public: " + acl
    result = sql(host, """BEGIN;
CREATE ROLE agent_ui_probe NOLOGIN;
SELECT has_database_privilege('agent_ui_probe', current_database(), 'CONNECT'),
       has_database_privilege('agent_ui_probe', current_database(), 'TEMPORARY'),
       has_schema_privilege('agent_ui_probe', 'public', 'USAGE');
SET LOCAL SESSION AUTHORIZATION agent_ui_probe;
CREATE TABLE public.probe (id int);
ROLLBACK;
""", check=False)
    assert result.stdout.split() == ["f|f|f"]
    assert "permission denied for schema public" in result.stderr


def test_future_tables_of_the_owner_keep_the_grants(host):
    out = sql(host, """BEGIN;
SET LOCAL ROLE agent_ui_owner;
CREATE TABLE probe_future (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY);
RESET ROLE;
SELECT has_table_privilege('strapi_user', 'probe_future', 'DELETE'),
       has_table_privilege('express_user', 'probe_future', 'INSERT,UPDATE'),
       has_table_privilege('express_user', 'probe_future', 'DELETE'),
       has_table_privilege('agent_ui_readonly', 'probe_future', 'SELECT'),
       has_table_privilege('agent_ui_readonly', 'probe_future', 'INSERT');
ROLLBACK;
""").stdout.split()
    assert out == ["t|t|f|t|f"]


def test_app_roles_log_in_with_scram_over_tls(host):
    host.run("install -m 0600 /dev/null /root/.pgpass.schema && printf '%s\\n' '*:*:*:express_user:mol-express-7d2f4a' "
             "> /root/.pgpass.schema")
    conninfo = ("host={} dbname={} user=express_user sslmode=verify-full connect_timeout=5 "
                "sslrootcert=/etc/ssl/certs/agent-ui-postgresql-ca.pem").format(host.backend.get_hostname(), DB)
    result = host.run("PGPASSFILE=/root/.pgpass.schema psql -XAtq '{}' -c 'SELECT current_user, count(*) FROM agents'".format(conninfo))
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "express_user|0"
    assert sql(host, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'express_user'").stdout.strip() == "t"


# --- row-level security -------------------------------------------------------------------------------------------

def test_rls_is_off_by_default_and_the_policy_exists(host):
    assert sql(host, "SELECT relrowsecurity FROM pg_class WHERE oid = 'agents'::regclass").stdout.strip() == "f"
    assert sql(host, "SELECT count(*) FROM pg_policies WHERE tablename = 'agents' AND policyname = 'user_agents'").stdout.strip() == "1"


def test_rls_switch_enforces_the_policy_then_turns_off():
    on = run_playbook("--tags", "app_schema_rls", "-e", "app_schema_rls_enabled=true", CONVERGE)
    assert changed_counts(on) == ["1"], on.stdout[-3000:]
    try:
        import testinfra
        host = testinfra.get_host(podman_hosts("postgresql")[0])
        out = sql(host, """BEGIN;
INSERT INTO users (id, email) VALUES (900006, 'rls@example.org');
INSERT INTO agents (id, name, system_prompt, created_by_id) VALUES (900006, 'mine', 'p', 900006), (900007, 'theirs', 'p', NULL);
SET LOCAL SESSION AUTHORIZATION express_user;
SELECT count(*) FROM agents;
SET LOCAL app.user_id = '900006';
SELECT string_agg(name, ',') FROM agents;
ROLLBACK;
""").stdout.split()
        assert out == ["0", "mine"]
    finally:
        off = run_playbook("--tags", "app_schema_rls", CONVERGE)
        assert changed_counts(off) == ["1"], off.stdout[-3000:]


# --- migrations -----------------------------------------------------------------------------------------------------

def test_the_ledger_records_every_migration_with_its_checksum(host):
    rows = sql(host, "SELECT version, checksum, description, applied_by FROM schema_migrations ORDER BY version").stdout
    expected = ["{}|{}|{}|postgres".format(p.name[:4], hashlib.sha256(p.read_bytes()).hexdigest(), p.read_text().splitlines()[0][3:])
                for p in MIGRATIONS]
    assert rows.splitlines() == expected


def test_check_diff_after_converge_reports_no_changes():
    result = run_playbook("--check", "--diff", "--tags", "app_schema", CONVERGE)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert changed_counts(result) == ["0"], result.stdout[-6000:]


def test_an_edited_applied_migration_fails_loudly_and_changes_nothing(host, tmp_path):
    before = sql(host, "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY 1").stdout
    edited = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS[0].parent, edited)
    target = edited / MIGRATIONS[1].name
    target.write_text(target.read_text() + "CREATE INDEX idx_sneaky ON agents(locale);\n")
    result = run_playbook("--tags", "app_schema", "-e", "__app_schema_migrations_dir=" + str(edited), CONVERGE)
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "Migration {} ({}) was applied on".format(MIGRATIONS[1].name[:4], MIGRATIONS[1].name) in output, output[-3000:]
    assert "An applied migration is never edited" in output
    assert sql(host, "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY 1").stdout == before
    assert sql(host, "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_sneaky'").stdout.strip() == "0"
