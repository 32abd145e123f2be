"""Acceptance 2 of issue 3: the sqlite_to_postgresql module moves a generated app SQLite file (every table
populated: unicode, prompts over 100 kB, NULLs, every timestamp form) into the schema of test_schema.py.

The tests run in this order, on the empty database that converge left: check mode writes nothing; each class of bad
input fails with a clear message and writes nothing; a load killed mid-COPY leaves the target unchanged; the
migrate playbook then loads everything exactly; a second run of it changes nothing; it refuses a replica.
"""
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import PROJECT, inventory_file, podman_hosts, psql, run_playbook

sys.path.insert(0, str(PROJECT / "tests" / "support"))
import app_sqlite  # noqa: E402  (the shared generator, owned by the module's tests)
from test_schema import DESIGN, OWNER, changed_counts  # noqa: E402

testinfra_hosts = podman_hosts("postgresql")

DB = "claude_agent_ui"
WORK = "/var/lib/postgresql/migration"
APP = WORK + "/app.sqlite"
MODULE = "agent_ui.postgresql.sqlite_to_postgresql"
APP_NAME = "agent_ui.postgresql.sqlite_to_postgresql"
MIGRATE = str(PROJECT / "playbooks" / "migrate.yml")
# Enough tasks for the COPY to last a few seconds (the kill test), small enough to keep the scenario quick.
TASKS = 60000
TARGET_TABLES = app_sqlite.TABLES + ("users", "audit_log")


def module(hostname, args, check=False, diff=False):
    """Run the module ad hoc as the postgres OS user; return its result (the JSON callback's host entry)."""
    cmd = ["ansible", "-i", inventory_file(), hostname, "-b", "--become-user", "postgres", "-m", MODULE,
           "-a", json.dumps(dict({"login_unix_socket": "/var/run/postgresql", "db": DB}, **args))]
    cmd += ["--check"] if check else []
    cmd += ["--diff"] if diff else []
    env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    try:
        # The JSON document, without what other enabled callbacks (profile_tasks) print around it.
        start = 0 if proc.stdout.startswith("{") else proc.stdout.index("\n{") + 1
        document = json.JSONDecoder().raw_decode(proc.stdout[start:])[0]
        return document["plays"][0]["tasks"][0]["hosts"][hostname]
    except (ValueError, KeyError, IndexError):
        raise AssertionError("no module result: " + proc.stdout[-3000:] + proc.stderr[-3000:])


def counts(host):
    rows = psql(host, " UNION ALL ".join("SELECT '{0}', count(*) FROM {0}".format(t) for t in TARGET_TABLES), db=DB)
    return {name: int(n) for name, n in (line.split("|") for line in rows.splitlines())}


def sequences(host):
    return psql(host, "SELECT sequencename || '=' || coalesce(last_value, 0) FROM pg_sequences ORDER BY 1", db=DB).split()


def writes(host):
    """Rows ever inserted, updated or deleted in the app's tables (committed or not)."""
    return int(psql(host, "SELECT pg_stat_clear_snapshot(); SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) "
                          "FROM pg_stat_user_tables", db=DB).splitlines()[-1])


def sqlite_scalar(host, path, query):
    script = "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])"
    result = host.run("python3 -c {} {} {}".format(shlex.quote(script), shlex.quote(path), shlex.quote(query)))
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


EMPTY = {t: 0 for t in TARGET_TABLES}


@pytest.fixture(scope="module")
def source(host):
    """The app SQLite file and one file per class of bad input, generated on the host, owned by postgres."""
    host.run("install -d -o postgres -g postgres -m 0750 {}".format(WORK))
    generator = (PROJECT / "tests" / "support" / "app_sqlite.py").read_text()
    host.run("cat > /usr/local/lib/app_sqlite.py <<'EOF_GENERATOR'\n{}\nEOF_GENERATOR".format(generator))
    mapping = (PROJECT / "plugins" / "module_utils" / "migration_app.py").read_text()  # the generator's enum domains
    host.run("cat > /usr/local/lib/migration_app.py <<'EOF_MAPPING'\n{}\nEOF_MAPPING".format(mapping))
    result = host.run("runuser -u postgres -- python3 /usr/local/lib/app_sqlite.py {} --tasks {}".format(APP, TASKS))
    assert result.rc == 0, result.stderr
    info = json.loads(result.stdout)
    for bad in app_sqlite.BAD_CLASSES:
        result = host.run("runuser -u postgres -- python3 /usr/local/lib/app_sqlite.py {work}/bad-{bad}.sqlite --agents 6 --skills 6 "
                          "--mcp-servers 3 --tasks 20 --large-prompt-kb 1 --bad {bad}".format(work=WORK, bad=bad))
        assert result.rc == 0, result.stderr
        info.setdefault("bad_files", {})[bad] = json.loads(result.stdout)["bad"]
    return info


def test_the_generated_source_has_what_the_acceptance_asks_for(host, source):
    assert all(n > 0 for n in source["tables"].values()), source["tables"]
    assert int(sqlite_scalar(host, APP, "SELECT max(length(CAST(system_prompt AS BLOB))) FROM agents")) > 100 * 1024
    assert int(sqlite_scalar(host, APP, "SELECT count(*) FROM tasks WHERE description IS NULL")) > 0
    kinds = sqlite_scalar(host, APP, "SELECT group_concat(DISTINCT typeof(created_at)) FROM tasks")
    assert {"text", "integer"} <= set(kinds.split(",")), kinds


def test_check_mode_on_the_fresh_database_writes_nothing(host, source):
    assert counts(host) == EMPTY
    result = module(host.backend.get_hostname(), {"src": APP, "report": WORK + "/check-report.json"}, check=True, diff=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert {t: p["rows_to_load"] for t, p in result["plan"].items()} == source["tables"]
    assert result["validation"]["counts_match"] and result["validation"]["checksums_match"]
    assert result["diff"]["after"]["tables"]["tasks"] == TASKS
    assert counts(host) == EMPTY
    assert not host.file(WORK + "/check-report.json").exists


def test_check_mode_leaves_the_sequences_alone(host, source):
    before = sequences(host)
    module(host.backend.get_hostname(), {"src": APP}, check=True)
    assert sequences(host) == before


@pytest.fixture(scope="module")
def bad_results(host, source):
    """Every bad file through the module, six at a time (each fails before writing anything)."""
    name = host.backend.get_hostname()
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {bad: pool.submit(module, name, {"src": "{}/bad-{}.sqlite".format(WORK, bad)}) for bad in app_sqlite.BAD_CLASSES}
    return {bad: future.result() for bad, future in futures.items()}


@pytest.mark.parametrize("bad", sorted(app_sqlite.BAD_CLASSES))
def test_each_class_of_bad_input_fails_with_a_clear_message(host, source, bad_results, bad):
    result = bad_results[bad]
    where = source["bad_files"][bad]
    assert result.get("failed") is True, result
    assert result["changed"] is False
    msg = result["msg"]
    assert "nothing was written" in msg, msg
    assert "[{}]".format(where["class"]) in msg, msg
    assert "{} (id={})".format(where["table"], where["pk"]) in msg, msg
    problem = result["problems"][0]
    assert {"table", "pk", "column", "value_excerpt", "rule"} <= set(problem), problem
    assert counts(host) == EMPTY


# Runs inside the container: polls the COPY progress view as fast as psql starts, and SIGKILLs the module's process
# the moment its COPY into tasks has rows. Polling from the controller through podman exec is too slow: a
# 60,000-task COPY can start and end between two polls. The [l] keeps pkill from matching this script itself.
KILL_WATCHER = """
for attempt in $(seq 1 3000); do
  if [ "$(runuser -u postgres -- psql -XAtq -d {db} -c {query})" = 1 ]; then
    pkill -9 -f 'AnsiballZ_sqlite_to_postgresq[l]' && echo killed-mid-copy > {log}
    exit 0
  fi
  sleep 0.01
done
echo never-seen > {log}
"""


def test_killing_the_module_mid_load_leaves_the_target_unchanged(host, source):
    assert counts(host) == EMPTY
    log = WORK + "/kill-watcher.log"
    query = ("SELECT count(*) FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid) WHERE "
             "a.application_name = '{}' AND p.relid = 'tasks'::regclass AND p.tuples_processed > 0".format(APP_NAME))
    script = KILL_WATCHER.format(db=shlex.quote(DB), query=shlex.quote(query), log=log)
    host.run("rm -f {}".format(log))
    host.run("nohup bash -c {} >/dev/null 2>&1 &".format(shlex.quote(script)))
    name = host.backend.get_hostname()
    cmd = ["ansible", "-i", inventory_file(), name, "-b", "--become-user", "postgres", "-m", MODULE,
           "-a", json.dumps({"src": APP, "login_unix_socket": "/var/run/postgresql", "db": DB})]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600, check=False)
    verdict = ""
    for dummy in range(50):
        verdict = host.run("cat {}".format(log)).stdout.strip()
        if verdict:
            break
        time.sleep(0.2)
    host.run("pkill -f 'seq 1 300[0]'")
    assert verdict == "killed-mid-copy", "the COPY into tasks was never seen in progress ({})".format(verdict or "no verdict")
    for dummy in range(100):
        if psql(host, "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{}'".format(APP_NAME)) == "0":
            break
        time.sleep(0.2)
    assert psql(host, "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{}'".format(APP_NAME)) == "0"
    assert counts(host) == EMPTY


def test_the_migrate_playbook_then_loads_everything_exactly(host, source):
    result = run_playbook("-e", "migrate_src=" + APP, MIGRATE)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    output = " ".join(result.stdout.split())
    assert "Loaded: agents {agents}, skills {skills}, mcp_servers {mcp_servers}".format(**source["tables"]) in output, output[-3000:]
    loaded = counts(host)
    assert {t: loaded[t] for t in app_sqlite.TABLES} == source["tables"]
    assert loaded["users"] == 0
    # One summary row in the audit trail instead of one per loaded row.
    assert psql(host, "SELECT string_agg(table_name || ':' || operation, ',') FROM audit_log", db=DB) == "migration:BULK_LOAD"
    # Spot checks independent of the module's own checksums: prompts over 100 kB, NULLs, unicode, identities.
    assert psql(host, "SELECT max(octet_length(system_prompt)) FROM agents", db=DB) == \
        sqlite_scalar(host, APP, "SELECT max(length(CAST(system_prompt AS BLOB))) FROM agents")
    assert psql(host, "SELECT count(*) FROM tasks WHERE description IS NULL", db=DB) == \
        sqlite_scalar(host, APP, "SELECT count(*) FROM tasks WHERE description IS NULL")
    assert psql(host, "SELECT md5(string_agg(name, '|' ORDER BY id)) FROM agents", db=DB) == \
        host.run("python3 -c {} {}".format(shlex.quote(
            "import hashlib, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "print(hashlib.md5('|'.join(r[0] for r in c.execute('SELECT name FROM agents ORDER BY id')).encode()).hexdigest())"),
            APP)).stdout.strip()
    next_id = psql(host, "BEGIN; INSERT INTO agents (name, system_prompt) VALUES ('after migration', 'p') RETURNING id; ROLLBACK",
                   db=DB).split()[0]
    assert int(next_id) == source["tables"]["agents"] + 1
    assert psql(host, "SELECT count(*) FROM agent_statistics", db=DB) == str(source["tables"]["agents"])
    # The loader may rebuild the indexes and foreign keys of a large table: all of them are back, valid, and
    # everything still belongs to the owner.
    indexes = set(psql(host, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'", db=DB).split())
    assert DESIGN.DESIGN_INDEXES <= indexes, DESIGN.DESIGN_INDEXES - indexes
    assert psql(host, "SELECT count(*) FILTER (WHERE convalidated), count(*) FROM pg_constraint "
                      "WHERE contype = 'f' AND connamespace = 'public'::regnamespace", db=DB) == "12|12"
    assert psql(host, "SELECT count(*) FROM pg_index WHERE NOT indisvalid", db=DB) == "0"
    assert psql(host, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                      "AND c.relkind IN ('r', 'm', 'S', 'i') AND c.relowner <> '{}'::regrole".format(OWNER), db=DB) == "0"
    assert psql(host, "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'tasks'", db=DB) == "t"
    report = json.loads(host.file(APP + ".migration-report.json").content_string)
    assert report["validation"]["counts_match"] and report["validation"]["checksums_match"]
    assert report["validation"]["fk_orphans"] == 0
    backup = APP + ".pre-migration.sqlite"
    assert sqlite_scalar(host, backup, "PRAGMA integrity_check") == "ok"
    assert sqlite_scalar(host, backup, "SELECT count(*) FROM tasks") == str(TASKS)
    assert host.file(backup).mode == 0o600 and host.file(backup).user == "root"


def test_a_second_run_changes_nothing(host, source):
    before = (counts(host), writes(host), psql(host, "SELECT max(id) FROM audit_log", db=DB))
    result = run_playbook("-e", "migrate_src=" + APP, MIGRATE)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert changed_counts(result) == ["0"], result.stdout[-5000:]
    assert "Already migrated (nothing written)" in " ".join(result.stdout.split())
    assert (counts(host), writes(host), psql(host, "SELECT max(id) FROM audit_log", db=DB)) == before


def test_the_migrate_playbook_refuses_a_replica(host, source):
    """A throwaway cluster in standby mode (standby.signal, no primary) on port 5499 stands in for a replica."""
    version = host.run("ls /usr/lib/postgresql").stdout.split()[-1]
    bindir = "/usr/lib/postgresql/{}/bin".format(version)
    data = "/var/lib/postgresql/fake-standby"
    setup = host.run("runuser -u postgres -- {0}/initdb -D {1} -A peer --no-sync >/dev/null && touch {1}/standby.signal && "
                     "runuser -u postgres -- {0}/pg_ctl -D {1} -l {1}.log -w -o \"-p 5499 -k /tmp -c listen_addresses=''\" start"
                     .format(bindir, data))
    try:
        assert setup.rc == 0, setup.stdout + setup.stderr
        result = run_playbook("-e", "migrate_src=" + APP, "-e", "app_schema_port=5499", "-e", "app_schema_login_unix_socket=/tmp",
                              MIGRATE)
        assert result.returncode != 0
        output = " ".join((result.stdout + result.stderr).split())
        assert "is a replica (pg_is_in_recovery() is true)" in output, output[-3000:]
        assert "Nothing was done" in output
    finally:
        host.run("runuser -u postgres -- {}/pg_ctl -D {} -m immediate -w stop".format(bindir, data))
        host.run("rm -rf {0} {0}.log".format(data))
