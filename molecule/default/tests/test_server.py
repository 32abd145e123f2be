"""Live checks of the PostgreSQL server role on Debian 12 and Debian 13 hosts."""
import re

import pytest

import testinfra

from conftest import PROJECT, ansible_host, group_hosts, play_recap, podman_hosts, psql, remote_psql, role_vars, run_playbook

testinfra_hosts = podman_hosts("postgresql")


@pytest.fixture(scope="module")
def rv(host):
    return role_vars(host.backend.get_hostname())


@pytest.fixture(scope="module")
def peer(host):
    """The other lab host, used as a remote client."""
    others = [n for n in group_hosts("postgresql") if n != host.backend.get_hostname()]
    assert others, "the scenario needs two hosts"
    return testinfra.get_host("podman://" + others[0])


def conninfo(host, rv, **kw):
    params = {
        "host": host.backend.get_hostname(),
        "port": rv["postgresql_port"],
        "dbname": "app_test",
        "user": "app_test",
        "sslmode": "verify-full",
        "sslrootcert": rv["postgresql_tls_ca_publish_path"],
        "connect_timeout": 5,
    }
    params.update(kw)
    return " ".join("{}={}".format(k, v) for k, v in params.items())


def test_server_runs_under_systemd_at_requested_version(host, rv):
    unit = "postgresql@{}-{}".format(rv["postgresql_version"], rv["postgresql_cluster_name"])
    assert host.service(unit).is_running
    assert host.service(unit).is_enabled
    assert int(psql(host, "SHOW server_version_num")) // 10000 == int(rv["postgresql_version"])
    assert host.run("systemctl show -p MainPID --value {}".format(unit)).stdout.strip() not in ("", "0")


def test_ssl_is_on_with_the_managed_certificate(host):
    assert psql(host, "SHOW ssl") == "on"
    cert = psql(host, "SHOW ssl_cert_file")
    assert "snakeoil" not in cert
    assert psql(host, "SHOW ssl_min_protocol_version") == "TLSv1.2"
    issuer = host.run("openssl x509 -noout -issuer -in {}".format(cert)).stdout
    assert "agent_ui.postgresql CA" in issuer


def test_data_checksums_and_scram(host):
    assert psql(host, "SHOW data_checksums") == "on"
    assert psql(host, "SHOW password_encryption") == "scram-sha-256"
    assert psql(host, "SELECT rolpassword FROM pg_authid WHERE rolname = 'app_test'").startswith("SCRAM-SHA-256$")


def test_pg_stat_statements_is_preloaded_and_records_statements(host):
    assert "pg_stat_statements" in psql(host, "SHOW shared_preload_libraries")
    psql(host, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements", db="app_test")
    psql(host, "SELECT pg_stat_statements_reset()", db="app_test")
    for _attempt in range(3):
        psql(host, "SELECT 42 AS statements_probe", db="app_test")
    calls = psql(host, "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE '%AS statements_probe' "
                       "AND dbid = (SELECT oid FROM pg_database WHERE datname = 'app_test')", db="app_test")
    assert calls == "3", "pg_stat_statements recorded {} calls of the probe, not 3".format(calls)


def test_verify_full_with_the_published_ca_from_this_host(host, rv):
    result = remote_psql(host, conninfo(host, rv), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                         password=rv["lab_app_password"])
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "t"


def test_verify_full_from_another_lab_host(host, peer, rv):
    result = remote_psql(peer, conninfo(host, rv), "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                         password=rv["lab_app_password"])
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() in ("TLSv1.2", "TLSv1.3")


def test_sslmode_disable_is_rejected_from_another_host(host, peer, rv):
    result = remote_psql(peer, conninfo(host, rv, sslmode="disable", sslrootcert=""), password=rv["lab_app_password"])
    assert result.rc != 0
    assert "no encryption" in result.stderr or "rejects connection" in result.stderr, result.stderr


def test_wrong_password_is_rejected_from_another_host(host, peer, rv):
    result = remote_psql(peer, conninfo(host, rv), password="not-the-password")
    assert result.rc != 0
    assert "password authentication failed" in result.stderr, result.stderr


def test_postgres_cannot_log_in_over_tcp(host, peer, rv):
    result = remote_psql(peer, conninfo(host, rv, user="postgres", dbname="postgres"), password="anything")
    assert result.rc != 0
    assert 'pg_hba.conf rejects connection for host' in result.stderr and 'user "postgres"' in result.stderr, result.stderr


def test_computed_settings_equal_the_values_for_this_host(host, rv, tuning):
    facts = ansible_host(host.backend.get_hostname()).ansible("setup")["ansible_facts"]

    def declared_or_fact(var, fact):
        """An inventory value wins; the role default is the Ansible fact."""
        value = str(rv[var])
        return int(facts[fact] if value.startswith("{{") else value)

    inputs = {
        "memory_mb": declared_or_fact("postgresql_tuning_memory_mb", "ansible_memtotal_mb"),
        "cpus": declared_or_fact("postgresql_tuning_cpus", "ansible_processor_vcpus"),
        "storage": rv["postgresql_storage_type"],
        "profile": rv["postgresql_workload_profile"],
        "max_connections": int(rv["postgresql_max_connections"]),
        "version": int(rv["postgresql_version"]),
    }
    expected = tuning.pg_tune(inputs, rv["postgresql_settings_overrides"])
    rows = psql(host, "SELECT name, setting, coalesce(unit, '') FROM pg_settings WHERE name IN ({})".format(
        ",".join("'{}'".format(k) for k in expected)))
    live = {}
    for line in rows.splitlines():
        name, setting, unit = line.split("|")
        live[name] = (setting, unit or None)
    assert set(live) == set(expected)
    for name, value in expected.items():
        setting, unit = live[name]
        if re.match(r"^\d+(kB|MB|GB|TB)$", str(value)):
            assert tuning.pg_setting_to_kb(setting, unit) == tuning.pg_size_to_kb(value), name
        elif re.match(r"^-?\d+(\.\d+)?$", str(value)):
            assert float(setting) == float(value), name
        else:
            assert setting == str(value), name
    assert int(psql(host, "SHOW max_connections")) == inputs["max_connections"]


def test_pg_hba_parses_and_has_no_weak_rules(host):
    assert psql(host, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"
    weak = psql(host, "SELECT count(*) FROM pg_hba_file_rules "
                      "WHERE auth_method IN ('trust', 'md5', 'password', 'ident') OR type = 'host'")
    assert weak == "0"
    last = psql(host, "SELECT auth_method FROM pg_hba_file_rules ORDER BY line_number DESC LIMIT 1")
    assert last == "reject"


def test_configuration_files_belong_to_postgres(host, rv):
    conf_dir = "/etc/postgresql/{}/{}".format(rv["postgresql_version"], rv["postgresql_cluster_name"])
    expectations = {
        conf_dir: 0o700,
        conf_dir + "/postgresql.conf": 0o640,
        conf_dir + "/pg_hba.conf": 0o600,
        conf_dir + "/tls/server.key": 0o600,
    }
    for path, mode in expectations.items():
        f = host.file(path)
        assert f.exists, path
        assert f.user == "postgres" and f.group == "postgres", path
        assert f.mode == mode, "{} has mode {:o}".format(path, f.mode)


def test_connections_are_logged_with_the_prefix(host, rv):
    remote_psql(host, conninfo(host, rv, application_name="logprobe"), password=rv["lab_app_password"])
    log = "/var/log/postgresql/postgresql-{}-{}.log".format(rv["postgresql_version"], rv["postgresql_cluster_name"])
    content = host.file(log).content_string
    assert re.search(r"app_test@app_test app=\S+ client=\S+ LOG:  connection authorized: user=app_test "
                     r"database=app_test application_name=logprobe SSL enabled", content)
    assert re.search(r"app_test@app_test app=logprobe client=\S+ LOG:  disconnection", content)


def test_check_diff_after_converge_reports_no_changes():
    """`ansible-playbook --check --diff` right after converge must find nothing to change."""
    result = run_playbook("--check", "--diff", str(PROJECT / "molecule" / "resources" / "converge.yml"))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    recap = play_recap(result.stdout)
    assert recap, result.stdout[-4000:]
    assert [name for name, counts in recap.items() if counts["changed"]] == [], result.stdout[-6000:]


def test_no_password_reaches_the_server_log(host, rv):
    """ALTER ROLE ... PASSWORD is DDL: with log_statement = ddl the server would log the password in clear, unless the
    task that sends it turns statement logging off for its own session (the role's secret session settings)."""
    password = rv["lab_app_password"]
    assert psql(host, "SHOW log_statement") == "ddl"
    assert psql(host, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'app_test'") == "t"
    logged = host.run("grep -rl -F -e {} /var/log/postgresql".format(password))
    assert logged.stdout.split() == [], logged.stdout
