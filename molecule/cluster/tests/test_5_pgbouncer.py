"""PgBouncer in front of the cluster (issue 13: acceptance 1 to 3), checked on the live pooler, servers and clients.

These run last: the cluster has been failed over, switched over and restored, and PgBouncer was repointed each time
(failover.yml and switchover.yml); here a client goes through it while that happens again.
"""
import shlex
import time

import pytest

import cluster_lib as lab
from cluster_lib import psql

POOLER = lab.POOLER
CA = lab.CA
STATS_PASSWORD = "mol-pgbouncer-stats-6e1d0a9c"
ADMIN_PASSWORD = "mol-pgbouncer-admin-2f8b4c7d"
# molecule.yml: max_db_connections of the app_test database, on the one pooler.
APP_TEST_POOL_LIMIT = 40


def healthy(expected_replicas=2):
    primary = lab.primary()
    lab.wait_streaming(primary, expected_replicas)
    return primary


APP_PASSWORD = "lab-only-9f3c2a7e5d1b"  # .config/molecule/config.yml: lab_app_password


def client(conninfo, sql, password=APP_PASSWORD):
    """psql on the app host; the password through a 0600 passfile, never argv."""
    return lab.shared.remote_psql(lab.host(lab.APP), conninfo, sql, password)


def pooler_ip():
    return lab.address(POOLER)


def test_an_app_user_connects_through_pgbouncer_with_verify_full_and_scram():
    primary = healthy()
    result = client(lab.POOLER_DSN, "SELECT current_user, inet_server_addr(), pg_is_in_recovery()")
    assert result.rc == 0, result.stderr
    user, server, in_recovery = result.stdout.strip().split("|")
    assert user == lab.DB and in_recovery == "f"
    assert server == lab.address(primary)
    # PgBouncer's own connection to the server is TLS too (server_tls_sslmode verify-full).
    rows = psql(primary, "SELECT DISTINCT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                         "WHERE a.client_addr = '{}'".format(pooler_ip()))
    assert rows == "t", rows


def test_a_client_without_tls_is_refused():
    result = client("host={} port=6432 dbname={} user={} sslmode=disable".format(POOLER, lab.DB, lab.DB), "SELECT 1")
    assert result.rc != 0 and "SSL required" in result.stderr, result.stderr


@pytest.fixture()
def doomed_roles():
    primary = healthy()
    psql(primary, "DROP ROLE IF EXISTS mol_expired; DROP ROLE IF EXISTS mol_nologin; "
                  "CREATE ROLE mol_expired LOGIN PASSWORD 'mol-expired-password-1' VALID UNTIL '2001-01-01'; "
                  "CREATE ROLE mol_nologin NOLOGIN PASSWORD 'mol-nologin-password-1'")
    yield primary
    psql(lab.primary(), "DROP ROLE IF EXISTS mol_expired; DROP ROLE IF EXISTS mol_nologin")


def test_a_role_past_valid_until_or_without_login_is_refused_by_the_lookup_itself(doomed_roles):
    primary = doomed_roles
    for role, password in (("mol_expired", "mol-expired-password-1"), ("mol_nologin", "mol-nologin-password-1")):
        result = client("host={} port=6432 dbname={} user={} sslmode=verify-full sslrootcert={}".format(
            POOLER, lab.DB, role, CA), "SELECT 1", password=password)
        # "no such user": the lookup gave PgBouncer nothing, so it never asked the server.
        assert result.rc != 0 and "no such user" in result.stderr, (role, result.stderr)
    # The refusal is the lookup function's (CVE-2025-2291's lesson), not only the server's: it gives PgBouncer no
    # secret for them, nor for a superuser, while it does for the app's role.
    lookup = "SET ROLE pgbouncer_auth; SELECT count(*) FROM pgbouncer.user_lookup('{}')"
    for role, rows in (("mol_expired", "0"), ("mol_nologin", "0"), ("postgres", "0"), (lab.DB, "1")):
        assert psql(primary, lookup.format(role), db=lab.DB).splitlines()[-1] == rows, role


def test_the_lookup_function_is_locked_down():
    primary = healthy()
    row = psql(primary, "SELECT p.prosecdef, p.proconfig::text, r.rolsuper, r.rolcanlogin, "
                        "has_function_privilege('public', p.oid, 'EXECUTE'), "
                        "has_function_privilege('pgbouncer_auth', p.oid, 'EXECUTE'), "
                        "has_function_privilege('{db}', p.oid, 'EXECUTE') "
                        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_roles r ON r.oid = p.proowner "
                        "WHERE n.nspname = 'pgbouncer' AND p.proname = 'user_lookup'".format(db=lab.DB), db=lab.DB)
    assert row == 't|{"search_path=pg_catalog, pg_temp"}|f|f|f|t|f', row
    # The auth user itself may do nothing else: it owns nothing and reads no table of the app.
    assert psql(primary, "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication FROM pg_roles "
                         "WHERE rolname = 'pgbouncer_auth'") == "f"


@pytest.mark.parametrize("command", ["PAUSE", "SHUTDOWN", "KILL_CLIENT 0", "RELOAD"])
def test_the_stats_user_reads_the_console_but_cannot_act(command):
    console = "host={} port=6432 dbname=pgbouncer user=pgbouncer_stats sslmode=verify-full sslrootcert={}".format(POOLER, CA)
    shown = client(console, "SHOW POOLS", password=STATS_PASSWORD)
    assert shown.rc == 0 and lab.DB in shown.stdout, shown.stderr
    refused = client(console, command, password=STATS_PASSWORD)
    assert refused.rc != 0 and "admin access needed" in refused.stderr, (command, refused.stdout, refused.stderr)
    assert lab.host(POOLER).run("systemctl is-active pgbouncer").stdout.strip() == "active"


def test_the_admin_user_may_act_and_the_auth_file_is_pgbouncers_alone():
    console = "host={} port=6432 dbname=pgbouncer user=pgbouncer_admin sslmode=verify-full sslrootcert={}".format(POOLER, CA)
    result = client(console, "RECONNECT", password=ADMIN_PASSWORD)
    assert result.rc == 0, result.stderr
    node = lab.host(POOLER)
    userlist = node.file("/etc/pgbouncer/userlist.txt")
    assert (userlist.user, userlist.mode) == ("postgres", 0o600)
    assert node.run("runuser -u nobody -- cat /etc/pgbouncer/userlist.txt").rc != 0
    # The console accounts are SCRAM secrets, not passwords.
    assert ADMIN_PASSWORD not in userlist.content_string and STATS_PASSWORD not in userlist.content_string
    socket_dir = node.file("/var/run/postgresql")
    assert not socket_dir.mode & 0o002, oct(socket_dir.mode)


@pytest.fixture(scope="module")
def pgbench_tables():
    primary = healthy()
    node = lab.host(primary)
    init = node.run("runuser -u postgres -- /usr/lib/postgresql/17/bin/pgbench -i -q -s 5 {}".format(lab.DB))
    assert init.rc == 0, init.stderr
    psql(primary, "ALTER TABLE pgbench_accounts OWNER TO {db}; ALTER TABLE pgbench_branches OWNER TO {db}; "
                  "ALTER TABLE pgbench_tellers OWNER TO {db}; ALTER TABLE pgbench_history OWNER TO {db}".format(db=lab.DB),
         db=lab.DB)
    return primary


def test_500_clients_through_pgbouncer_against_max_connections_100(pgbench_tables):
    """pgbench on a replica's host (it has the server package), 500 clients for 20 s through the one pooler."""
    primary = pgbench_tables
    assert psql(primary, "SHOW max_connections") == "100"
    bench_host = lab.host(sorted(lab.replicas())[0])
    bench_host.run("install -m 0600 /dev/null /root/.pgpass.bench && echo '*:*:*:{db}:{pw}' "
                   "> /root/.pgpass.bench".format(db=lab.DB, pw=APP_PASSWORD))
    # The server connections the pooler opens, sampled on the primary while pgbench runs.
    sampler = ("for i in $(seq 1 60); do runuser -u postgres -- psql -XAtq -c \"SELECT count(*) FROM pg_stat_activity "
               "WHERE client_addr = '{ip}' AND datname = '{db}'\" >> /root/pool-samples; sleep 0.5; done").format(
                   ip=pooler_ip(), db=lab.DB)
    lab.host(primary).run("rm -f /root/pool-samples; nohup sh -c {} >/dev/null 2>&1 &".format(shlex.quote(sampler)))
    bench = bench_host.run(
        "PGPASSFILE=/root/.pgpass.bench PGSSLMODE=verify-full PGSSLROOTCERT={ca} /usr/lib/postgresql/17/bin/pgbench "
        "-h {pooler} -p 6432 -U {db} -n -b simple-update -c 500 -j 4 -T 20 {db}".format(ca=CA, pooler=POOLER, db=lab.DB))
    time.sleep(1)
    samples = [int(line) for line in lab.host(primary).run("cat /root/pool-samples").stdout.split()]
    assert bench.rc == 0, (bench.stdout[-2000:], bench.stderr[-2000:])
    assert "number of clients: 500" in bench.stdout and "number of failed transactions: 0 (0.000%)" in bench.stdout, \
        bench.stdout[-2000:]
    assert "aborted" not in bench.stderr, bench.stderr[-2000:]
    assert samples and 0 < max(samples) <= APP_TEST_POOL_LIMIT, samples
    tps = [line for line in bench.stdout.splitlines() if line.startswith("tps")]
    lab.MEASURED.append({"kind": "pgbench 500 clients through PgBouncer", "time_to_write_s": "-", "lost_rows": 0,
                         "lost_bytes": "-", "playbook_s": "-",
                         "acked": "{} (max {} server conns)".format(tps[0].split()[2] if tps else "?", max(samples))})


def test_a_failover_is_invisible_to_a_client_of_pgbouncer_but_for_a_wait():
    old = healthy()
    with lab.Writer(6000000, dsn=lab.POOLER_DSN) as writer:
        writer.wait_acks(50, after=time.time())
        kill_at = lab.kill_postgres(old)
        started = time.time()
        result, report = lab.playbook("failover.yml")
        wall = round(time.time() - started, 1)
        assert result.returncode == 0, lab.tail(result)
        new = report["new_primary"]
        assert report["pgbouncer"] == {POOLER: "ok"}, report["pgbouncer"]
        # The first write the NEW primary acknowledged (the writer records the server's address through PgBouncer).
        entry, _lost = lab.measure("failover through PgBouncer", kill_at, writer, new, report, wall,
                                   acked_by=lab.address(new))
    # The same address as before, no reconfiguration of the client; PgBouncer now points at the new primary.
    assert "host={} ".format(new) in lab.host(POOLER).file("/etc/pgbouncer/databases.ini").content_string
    assert client(lab.POOLER_DSN, "SELECT pg_is_in_recovery()").stdout.strip() == "f"
    rejoined, _report = lab.playbook("rejoin.yml", "rejoin_host=" + old)
    assert rejoined.returncode == 0, lab.tail(rejoined)
    healthy()


def test_a_switchover_gives_a_client_of_pgbouncer_a_wait_and_no_error():
    old = healthy()
    with lab.Writer(6100000, dsn=lab.POOLER_DSN) as writer:
        writer.wait_acks(50, after=time.time())
        started = time.time()
        result, report = lab.playbook("switchover.yml")
        assert result.returncode == 0, lab.tail(result)
        new = report["new_primary"]
        assert new != old and report["pgbouncer"] == {POOLER: "ok"}, report
        writer.wait_acks(50, after=time.time())
        errors = writer.errors(after=started)
        acks = [ack for ack in writer.acks() if ack[1] > started]
    assert errors == [], errors[:5]
    # The longest gap between two acknowledged writes is the wait PAUSE imposed (printed, not asserted).
    gaps = [b[1] - a[1] for a, b in zip(acks, acks[1:])]
    lab.MEASURED.append({"kind": "switchover through PgBouncer (longest wait)", "time_to_write_s": round(max(gaps), 2),
                         "lost_rows": 0, "lost_bytes": "-", "playbook_s": round(time.time() - started, 1),
                         "acked": len(acks)})
    assert lab.wait_streaming(new, 2)
