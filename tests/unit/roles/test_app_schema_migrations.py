"""Static checks of roles/app_schema/files/migrations: versioned, transactional, never dropping data.

The live behaviour (order, transactions, checksums, privileges) is proven by the molecule scenario `migration`.
"""
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROLE = Path(__file__).resolve().parents[3] / "roles" / "app_schema"
MIGRATIONS = sorted((ROLE / "files" / "migrations").glob("*.sql"))
LEDGER = ROLE / "files" / "schema_migrations.sql"

# Statements that destroy data. Migrations only ever add; a change of mind is a new migration that keeps the data.
DESTRUCTIVE = [
    r"\bDROP\s+(TABLE|SCHEMA|DATABASE|COLUMN|MATERIALIZED\s+VIEW|VIEW)\b",
    r"\bTRUNCATE\b",
    r"\bDELETE\s+FROM\b",
    r"\bALTER\s+TABLE\b[^;]*\bDROP\b",
]
# The runner wraps each file in one transaction and records it there: a file must not end or split that transaction,
# nor use what cannot run inside one.
FORBIDDEN = [
    r"(?:^|;)\s*(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|SAVEPOINT)\b",
    r"\bCONCURRENTLY\b",
    r"\bVACUUM\b",
    r"(?:^|;)\s*SET\s+(SESSION\s+|LOCAL\s+)?(ROLE|search_path)\b",
]

DESIGN_TABLES = {"users", "agents", "skills", "mcp_servers", "agents_skills_links", "agents_mcp_servers_links", "tasks",
                 "audit_log"}
DESIGN_INDEXES = {
    "idx_agents_name", "idx_agents_enabled", "idx_agents_model", "idx_agents_created_at", "idx_agents_updated_at",
    "idx_skills_name", "idx_skills_experience_score", "idx_skills_created_at", "idx_mcp_servers_name",
    "idx_mcp_servers_disabled", "idx_mcp_servers_transport", "idx_tasks_agent_id", "idx_tasks_status",
    "idx_tasks_created_at", "idx_tasks_completed_at", "idx_agents_skills_agent_id", "idx_agents_skills_skill_id",
    "idx_agents_mcps_agent_id", "idx_agents_mcps_mcp_id", "idx_agents_tools_gin", "idx_agents_disallowed_tools_gin",
    "idx_skills_allowed_tools_gin", "idx_mcp_servers_args_gin", "idx_mcp_servers_env_gin", "idx_tasks_result_gin",
    "idx_agents_search_gin", "idx_skills_search_gin", "idx_agents_enabled_name", "idx_mcp_servers_active",
    "idx_tasks_completed", "idx_tasks_failed", "idx_agents_enabled_model", "idx_tasks_agent_status_created",
    "idx_agents_skills_composite", "idx_agents_mcps_composite", "idx_agent_stats_name", "idx_agent_stats_id",
}
DESIGN_TRIGGERS = {
    "update_agents_updated_at", "update_skills_updated_at", "update_mcp_servers_updated_at", "update_tasks_updated_at",
    "tsvector_update_agents", "tsvector_update_skills",
    "agents_audit_trigger", "skills_audit_trigger", "mcp_servers_audit_trigger",
}


def code(path):
    """The SQL without comments, string literals and the bodies of dollar-quoted functions."""
    text = re.sub(r"--[^\n]*", "", path.read_text())
    text = re.sub(r"\$\$.*?\$\$", "$$ $$", text, flags=re.S)
    return re.sub(r"'(?:[^']|'')*'", "''", text)


def all_code():
    return "\n".join(code(p) for p in MIGRATIONS)


def test_there_are_migrations():
    assert [p.name for p in MIGRATIONS][:5] == [
        "0001_tables.sql", "0002_indexes.sql", "0003_fulltext.sql", "0004_audit.sql", "0005_statistics_mv.sql"]


@pytest.mark.parametrize("path", MIGRATIONS, ids=lambda p: p.name)
def test_name_and_description(path):
    assert re.match(r"^[0-9]{4}_[a-z0-9_]+\.sql$", path.name), "the role only applies NNNN_name.sql"
    first = path.read_text().splitlines()[0]
    assert first.startswith("-- ") and len(first) > 10, "the first line, a comment, is the recorded description"


def test_versions_are_unique_and_contiguous():
    versions = [int(p.name[:4]) for p in MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))


@pytest.mark.parametrize("path", MIGRATIONS + [LEDGER], ids=lambda p: p.name)
def test_never_drops_data(path):
    sql = code(path)
    for pattern in DESTRUCTIVE:
        match = re.search(pattern, sql, re.I | re.S)
        assert match is None, "{}: {!r} destroys data; write a migration that keeps it".format(path.name, match.group(0))


@pytest.mark.parametrize("path", MIGRATIONS + [LEDGER], ids=lambda p: p.name)
def test_runs_inside_the_runner_transaction(path):
    sql = code(path)
    for pattern in FORBIDDEN:
        match = re.search(pattern, sql, re.I)
        assert match is None, "{}: {!r} breaks the one-transaction-per-migration rule".format(path.name, match.group(0))


@pytest.mark.parametrize("path", MIGRATIONS + [LEDGER], ids=lambda p: p.name)
def test_utf8_without_bom_and_ends_with_newline(path):
    data = path.read_bytes()
    data.decode("utf-8")
    assert not data.startswith(b"\xef\xbb\xbf")
    assert data.endswith(b"\n")


# Evaluates the role's own expressions (tasks/migrations.yml, "Read the migration files and their checksums") with
# Ansible's templating, in a process of its own (the plugin loader takes over the ansible_collections imports).
ROLE_CHECKSUM = """
import json, sys
import yaml
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader([])
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
tasks_file, paths = sys.argv[1], json.loads(sys.argv[2])
task = [t for t in yaml.safe_load(open(tasks_file)) if t["name"] == "Read the migration files and their checksums"][0]
result = {}
for path in paths:
    variables = {"item": path, "__app_schema_sql": trust_as_template(task["vars"]["__app_schema_sql"])}
    templar = Templar(loader=DataLoader(), variables=variables)
    result[path] = templar.template(trust_as_template(task["vars"]["__app_schema_entry"]["checksum"]))
print(json.dumps(result))
"""


def role_checksums(paths):
    """What the app_schema role records as the checksum of each file."""
    out = subprocess.run([sys.executable, "-c", ROLE_CHECKSUM, str(ROLE / "tasks" / "migrations.yml"),
                          json.dumps([str(p) for p in paths])], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_recorded_checksum_is_sha256sum_of_the_file(tmp_path):
    # The ledger's documented contract (schema_migrations.sql): checksum = `sha256sum FILE`, byte for byte, so an
    # operator can verify a recorded migration with coreutils. Edge cases: CRLF, trailing blanks and blank lines,
    # no final newline, non-ASCII text.
    edges = {"crlf.sql": b"-- crlf\r\nSELECT 1;\r\n", "trailing.sql": b"-- blanks\nSELECT 1;  \n\n\n",
             "no_newline.sql": b"-- none\nSELECT 1;", "utf8.sql": "-- caf\u00e9 \u6570\u636e\nSELECT '\u00e9';\n".encode()}
    for name, data in edges.items():
        (tmp_path / name).write_bytes(data)
    paths = MIGRATIONS + [tmp_path / name for name in sorted(edges)]
    recorded = role_checksums(paths)
    for path in paths:
        expected = subprocess.run(["sha256sum", str(path)], stdout=subprocess.PIPE, universal_newlines=True,
                                  check=True).stdout.split()[0]
        assert recorded[str(path)] == expected == hashlib.sha256(path.read_bytes()).hexdigest(), path.name


def test_every_design_table_index_and_trigger_is_created():
    sql = all_code()
    tables = set(re.findall(r"CREATE\s+TABLE\s+(\w+)", sql, re.I))
    indexes = set(re.findall(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(\w+)", sql, re.I))
    triggers = set(re.findall(r"CREATE\s+TRIGGER\s+(\w+)", sql, re.I))
    assert DESIGN_TABLES <= tables, DESIGN_TABLES - tables
    assert DESIGN_INDEXES <= indexes, DESIGN_INDEXES - indexes
    assert DESIGN_TRIGGERS <= triggers, DESIGN_TRIGGERS - triggers
    assert re.search(r"CREATE\s+MATERIALIZED\s+VIEW\s+agent_statistics", sql, re.I)
    assert re.search(r"CREATE\s+UNIQUE\s+INDEX\s+\w+\s+ON\s+agent_statistics\s*\(\s*id\s*\)", sql, re.I), \
        "REFRESH MATERIALIZED VIEW CONCURRENTLY needs a unique index on the view"


def test_ids_are_identity_columns_not_serial():
    sql = all_code()
    assert not re.search(r"\bSERIAL\b", sql, re.I)
    assert len(re.findall(r"GENERATED\s+BY\s+DEFAULT\s+AS\s+IDENTITY\s+PRIMARY\s+KEY", sql, re.I)) == len(DESIGN_TABLES)


def test_tasks_keeps_every_column_of_the_app():
    tasks = re.search(r"CREATE\s+TABLE\s+tasks\s*\((.*?)\n\);", all_code(), re.S | re.I).group(1)
    columns = {line.split()[0] for line in tasks.splitlines() if line.strip() and not line.strip().startswith(("CHECK",))}
    app = {"id", "name", "description", "status", "agent_id", "error_message", "duration_ms", "input_tokens",
           "output_tokens", "total_cost", "created_at", "updated_at"}
    assert app <= columns, app - columns
    assert re.search(r"^\s*message\s+text,\s*$", tasks, re.M), "tasks.message is nullable: the app has no such field"


def test_audit_trigger_honours_the_bulk_load_switch():
    text = (ROLE / "files" / "migrations" / "0004_audit.sql").read_text()
    assert "current_setting('agent_ui.bulk_load', true) = 'on'" in text
    assert "SECURITY DEFINER" in text and "SET search_path = pg_catalog, public" in text
