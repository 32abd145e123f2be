"""Streaming replication as site.yml converged it (issue 11, acceptance 1), checked on the live servers."""
import re

import pytest

import cluster_lib as lab
from cluster_lib import psql

BOOTSTRAP = "mol-cluster-pg2"


def test_the_named_bootstrap_primary_is_the_primary_and_the_others_stream_from_it():
    roles = lab.roles()
    assert roles[BOOTSTRAP] == "primary", roles  # the variable, not host order (pg1 sorts first)
    assert sorted(name for name, role in roles.items() if role == "replica") == ["mol-cluster-pg1", "mol-cluster-pg3"]
    assert lab.wait_streaming(BOOTSTRAP, 2) == ["mol-cluster-pg1", "mol-cluster-pg3"]


def test_every_walsender_runs_over_tls():
    rows = psql(BOOTSTRAP, "SELECT r.application_name, s.ssl, s.version FROM pg_stat_replication r "
                           "JOIN pg_stat_ssl s USING (pid) ORDER BY 1").splitlines()
    assert len(rows) == 2 and all(row.split("|")[1] == "t" for row in rows), rows


def test_each_replica_has_its_own_active_slot_and_the_slots_are_bounded():
    slots = psql(BOOTSTRAP, "SELECT slot_name, slot_type, active FROM pg_replication_slots ORDER BY 1").splitlines()
    assert slots == ["mol_cluster_pg1|physical|t", "mol_cluster_pg3|physical|t"]
    for name in lab.members():
        assert psql(name, "SHOW max_slot_wal_keep_size") == "2GB"
    for name in lab.replicas():
        assert psql(name, "SELECT count(*) FROM pg_replication_slots") == "0"
        receiver = psql(name, "SELECT status, slot_name, sender_host FROM pg_stat_wal_receiver")
        assert receiver == "streaming|{}|{}".format(name.replace("-", "_"), BOOTSTRAP)


@pytest.mark.parametrize("replica", ["mol-cluster-pg1", "mol-cluster-pg3"])
def test_a_replica_refuses_writes(replica):
    result = lab.host(replica).run("runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {} -c {}".format(
        lab.DB, "'CREATE TABLE refused (i int)'"))
    assert result.rc != 0 and "read-only transaction" in result.stderr, result.stderr
    assert psql(replica, "SELECT pg_is_in_recovery()") == "t"


def test_the_maintenance_timer_runs_on_every_member_and_does_its_work_only_on_the_primary():
    """Every member has the vacuum timer, so that whichever is promoted vacuums; a replica's run is skipped by the
    unit's ExecCondition (a replica cannot vacuum), not failed."""
    unit = "agent-ui-postgresql-vacuum.service"
    for name in lab.members():
        node = lab.host(name)
        assert node.run("systemctl is-enabled agent-ui-postgresql-vacuum.timer").stdout.strip() == "enabled"
        started, run = lab.shared.run_unit(node, unit)
        assert started.rc == 0, run
        skipped = "Skipped due to 'exec-condition'" in run
        assert skipped == (name != BOOTSTRAP), (name, run)
        # systemd's Result says why: skipped by the condition on a replica, done on the primary; never "failed".
        result = node.run("systemctl show -p Result --value " + unit).stdout.strip()
        assert result == ("exec-condition" if skipped else "success"), (name, result, run)
        assert node.run("systemctl is-failed " + unit).stdout.strip() != "failed"
    assert psql(BOOTSTRAP, "SELECT count(*) > 0 FROM pg_stat_user_tables WHERE last_vacuum > now() - interval '10 min'",
                db=lab.DB) == "t"


def test_the_replication_and_rewind_roles_are_scram_and_not_superusers():
    rows = psql(BOOTSTRAP, "SELECT rolname, rolsuper, rolreplication, rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid "
                           "WHERE rolname IN ('replicator', 'agent_ui_rewind') ORDER BY 1").splitlines()
    assert rows == ["agent_ui_rewind|f|f|t", "replicator|f|t|t"]
    # pg_rewind's source-side functions, as PostgreSQL's documentation lists them, and only those.
    granted = psql(BOOTSTRAP, "SELECT p.oid::regprocedure FROM pg_proc p WHERE has_function_privilege('agent_ui_rewind', p.oid, "
                              "'EXECUTE') AND p.proname IN ('pg_ls_dir', 'pg_stat_file', 'pg_read_binary_file', "
                              "'pg_read_file')").splitlines()
    assert sorted(granted) == ["pg_ls_dir(text,boolean,boolean)", "pg_read_binary_file(text)",
                               "pg_read_binary_file(text,bigint,bigint,boolean)", "pg_stat_file(text,boolean)"], granted


def test_replication_is_allowed_only_from_the_members():
    addresses = sorted(psql(BOOTSTRAP, "SELECT address FROM pg_hba_file_rules WHERE database = '{replication}' "
                                       "AND auth_method = 'scram-sha-256'").split())
    members = sorted(lab.host(name).run("ip -o -4 addr show scope global").stdout.split()[3].split("/")[0]
                     for name in lab.members())
    assert addresses == members
    # The app host knows the password and still cannot stream.
    result = lab.host(lab.APP).run(
        "PGPASSWORD=mol-replication-4e7a1c psql -XAtq {} -c IDENTIFY_SYSTEM".format(
            "'host={} user=replicator dbname=replication replication=true sslmode=verify-full sslrootcert={}'".format(
                BOOTSTRAP, lab.CA)))
    assert result.rc != 0 and "pg_hba.conf rejects replication connection" in result.stderr, result.stderr
    # A member can, over TLS with the password file the role wrote.
    member = lab.host("mol-cluster-pg1").run(
        "runuser -u postgres -- psql -XAtq 'host={} user=replicator dbname=replication replication=true sslmode=verify-full "
        "sslrootcert=/etc/postgresql/17/main/tls/ca.crt passfile=/etc/postgresql/17/main/replication.pgpass' -c IDENTIFY_SYSTEM"
        .format(BOOTSTRAP))
    assert member.rc == 0 and member.stdout.split("|")[0] == psql(BOOTSTRAP, "SELECT system_identifier FROM pg_control_system()")


SECRETS = ["mol-replication-4e7a1c", "mol-rewind-9b3d2f", "mol-strapi-3b9e1c", "mol-express-7d2f4a", "mol-readonly-5c8e0b",
           "lab-only-9f3c2a7e5d1b"]


def test_no_password_outside_the_0600_password_file():
    """The replication passwords live in the password file only; no password reaches a server log (ALTER ROLE ...
    PASSWORD is DDL, and log_statement = ddl would log it: the role's password tasks turn logging off for themselves)."""
    for name in lab.members():
        node = lab.host(name)
        passfile = node.file("/etc/postgresql/17/main/replication.pgpass")
        assert (passfile.mode, passfile.user) == (0o600, "postgres")
        assert "mol-replication-4e7a1c" in passfile.content_string
        listing = node.run("grep -rl -e mol-replication-4e7a1c -e mol-rewind-9b3d2f /etc/postgresql /etc/systemd "
                           "/var/lib/postgresql/17/main/postgresql.auto.conf /var/log/postgresql 2>/dev/null").stdout.split()
        assert listing == ["/etc/postgresql/17/main/replication.pgpass"], (name, listing)
        in_logs = node.run("grep -rl {} /var/log/postgresql /var/log/journal 2>/dev/null".format(
            " ".join("-e " + secret for secret in SECRETS))).stdout.split()
        assert in_logs == [], (name, in_logs)
        conninfo = psql(name, "SHOW primary_conninfo")
        assert "password" not in conninfo and not re.search("mol-(replication|rewind)", conninfo)


def test_the_start_guard_runs_before_every_start():
    for name in lab.members():
        unit = lab.host(name).run("systemctl cat {}".format(lab.SERVICE)).stdout
        assert re.search(r"^ExecStartPre=.*pg_start_guard\.py --config /etc/postgresql/17/main/start_guard.json$", unit, re.M)


def test_check_diff_after_converge_changes_nothing():
    result = lab.shared.run_playbook("--check", "--diff", str(lab.PLAYBOOKS / "site.yml"))
    assert result.returncode == 0, lab.tail(result)
    recap = lab.shared.play_recap(result.stdout)
    assert sorted(recap) == sorted(lab.members() + lab.shared.group_hosts("pgbackrest") + lab.shared.group_hosts("pgbouncer")), \
        lab.tail(result)
    assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in recap.values()), lab.tail(result)


def test_migrate_refuses_a_streaming_replica():
    result = lab.shared.run_playbook(str(lab.PLAYBOOKS / "migrate.yml"), "-e", "migrate_target=mol-cluster-pg1",
                                     "-e", "migrate_src=/nonexistent.sqlite")
    assert result.returncode != 0
    assert "mol-cluster-pg1 is a replica (pg_is_in_recovery() is true)" in result.stdout + result.stderr, lab.tail(result)
    assert psql(BOOTSTRAP, "SELECT count(*) FROM pg_database WHERE datname = 'claude_agent_ui'") == "1"


def test_the_app_schema_reached_the_replicas_by_streaming():
    for name in lab.replicas():
        assert psql(name, "SELECT count(*) FROM schema_migrations", db="claude_agent_ui") == \
            psql(BOOTSTRAP, "SELECT count(*) FROM schema_migrations", db="claude_agent_ui")
