"""The security baseline on the live servers: dev-sec postgres-baseline and the CIS PostgreSQL 16 items of docs/security.md.

Each test is tagged with the control ids it proves (@controls). For a control that is met, the test asserts the
benchmark's own check. A control listed in baseline_waivers.yml must still fail that check, or its waiver is stale,
and must pass the compensating check that its waiver promises. tests/unit/test_security_doc.py keeps
docs/security.md, baseline_waivers.yml and these ids in step.
"""
import re
import shlex
from pathlib import Path

import pytest
import yaml

from conftest import podman_hosts, psql, role_vars

testinfra_hosts = podman_hosts("postgresql")

WAIVERS = yaml.safe_load((Path(__file__).resolve().parent / "baseline_waivers.yml").read_text())
DEVSEC_CIPHERS = "ALL:!ADH:!LOW:!EXP:!MD5:@STRENGTH"
controls = pytest.mark.controls


def verdict(control, literal, compensating=True, detail=""):
    """Judge one control: the benchmark's own check, or for a waived control, the check its waiver promises."""
    if control in WAIVERS:
        assert not literal, "{} now passes as the benchmark writes it: remove its waiver ({})".format(control, detail)
        assert compensating, "{} is waived, but its compensating check fails: {}".format(control, detail)
    else:
        assert literal, "{} fails: {}".format(control, detail)


@pytest.fixture(scope="module")
def rv(host):
    return role_vars(host.backend.get_hostname())


@pytest.fixture(scope="module")
def databases(host):
    """Every database that accepts connections (postgres, template1 and the ones the roles create)."""
    names = psql(host, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname").split()
    assert {"postgres", "template1"} <= set(names)
    return names


def per_database(host, databases, sql):
    """{database: result} of one query run in every database."""
    return {db: psql(host, sql, db=db) for db in databases}


@pytest.fixture(scope="module")
def hba(host):
    rows = psql(host, "SELECT type, array_to_string(database, ','), array_to_string(user_name, ','), auth_method "
                      "FROM pg_hba_file_rules WHERE error IS NULL ORDER BY line_number")
    return [tuple(line.split("|")) for line in rows.splitlines()]


def setting(host, name):
    return psql(host, "SHOW {}".format(name))


def mode_and_owner(host, path):
    f = host.file(path)
    assert f.exists, path
    return f.mode, f.user


@controls("postgres-02")
def test_stable_postgresql_version(host, rv):
    client = host.run("psql -V").stdout
    server = setting(host, "server_version")
    assert re.match(r"^psql \(PostgreSQL\) (13|14|15|16|17)\b", client), client
    assert not re.search(r"RC|DEVEL|BETA", client + server, re.I), client + server
    assert int(setting(host, "server_version_num")) // 10000 == int(rv["postgresql_version"])


@controls("postgres-03")
def test_one_postmaster_per_host(host):
    # The postmaster keeps its argv; every child renames itself "postgres: <cluster>: <what>".
    out = host.run(r"for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
                   r" | grep -c '^/usr/lib/postgresql/[0-9]*/bin/postgres '").stdout.strip()
    assert out == "1", "{} postmasters".format(out)


@controls("postgres-04")
def test_no_untrusted_language_but_c_and_internal(host, databases):
    found = per_database(host, databases, "SELECT count(*) FROM pg_language WHERE NOT lanpltrusted "
                                          "AND lanname NOT IN ('internal', 'c')")
    assert set(found.values()) == {"0"}, found


@controls("postgres-05")
def test_only_the_default_languages(host, databases):
    found = per_database(host, databases, "SELECT string_agg(lanname, ',') FROM pg_language "
                                          "WHERE lanname NOT IN ('internal', 'c', 'sql', 'plpgsql')")
    assert set(found.values()) == {""}, found


@controls("postgres-06")
def test_roles_without_a_password_cannot_log_in(host):
    without = psql(host, "SELECT string_agg(usename, ',' ORDER BY usename) FROM pg_shadow WHERE passwd IS NULL")
    # A role without a password has no way in when nothing but postgres' local peer line accepts anyone without one.
    other_ways_in = psql(host, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NULL "
                               "AND auth_method NOT IN ('scram-sha-256', 'cert', 'reject') "
                               "AND NOT (type = 'local' AND user_name = '{postgres}' AND auth_method = 'peer')")
    verdict("postgres-06", without == "", other_ways_in == "0",
            "login roles without a password: {}; hba lines that let them in without one: {}".format(without, other_ways_in))


@controls("postgres-07")
def test_passwords_are_scram_verifiers(host):
    assert setting(host, "password_encryption") == "scram-sha-256"
    kinds = psql(host, "SELECT string_agg(DISTINCT split_part(passwd, '$', 1), ',') FROM pg_shadow WHERE passwd IS NOT NULL")
    assert kinds == "SCRAM-SHA-256", kinds


@controls("postgres-08", "cis-4.2")
def test_only_postgres_is_superuser_or_creates_roles_or_databases(host):
    privileged = psql(host, "SELECT string_agg(rolname, ',') FROM pg_roles WHERE rolsuper OR rolcreaterole OR rolcreatedb")
    assert privileged == "postgres"


@controls("postgres-09")
def test_only_the_dba_has_privileges_on_pg_authid(host):
    grantees = psql(host, "SELECT string_agg(DISTINCT grantee, ',') FROM information_schema.role_table_grants "
                          "WHERE table_name = 'pg_authid'")
    assert grantees == "postgres"
    acl = psql(host, "SELECT string_agg(DISTINCT pg_get_userbyid(a.grantee), ',') "
                     "FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = 'pg_catalog.pg_authid'::regclass")
    assert acl in ("", "postgres"), acl


@controls("postgres-10")
def test_configuration_belongs_to_postgres_alone(host, rv):
    conf_dir = "/etc/postgresql/{}/{}".format(rv["postgresql_version"], rv["postgresql_cluster_name"])
    assert mode_and_owner(host, conf_dir) == (0o700, "postgres")
    mode, owner = mode_and_owner(host, conf_dir + "/postgresql.conf")
    assert owner == "postgres" and mode & 0o600 == 0o600 and mode & 0o137 == 0, oct(mode)
    mode, owner = mode_and_owner(host, conf_dir + "/pg_hba.conf")
    assert owner == "postgres" and mode == 0o600, oct(mode)
    assert setting(host, "config_file") == conf_dir + "/postgresql.conf"
    assert setting(host, "hba_file") == conf_dir + "/pg_hba.conf"


@controls("postgres-11", "cis-6.8")
def test_tls_is_on_with_a_ca_signed_certificate(host):
    assert setting(host, "ssl") == "on"
    assert setting(host, "ssl_min_protocol_version") in ("TLSv1.2", "TLSv1.3")
    cert = setting(host, "ssl_cert_file")
    assert "snakeoil" not in cert
    result = host.run("openssl verify -CAfile {} {}".format(shlex.quote(setting(host, "ssl_ca_file")), shlex.quote(cert)))
    assert result.rc == 0, result.stdout + result.stderr


@controls("postgres-12")
def test_ciphers_are_a_stricter_subset_of_dev_secs(host, rv):
    ours = setting(host, "ssl_ciphers")
    assert ours == rv["postgresql_ssl_ciphers"]

    def suites(spec):
        result = host.run("openssl ciphers -v {}".format(shlex.quote(spec)))
        assert result.rc == 0, result.stderr
        return {line.split()[0]: line for line in result.stdout.splitlines()}

    allowed, devsec = suites(ours), suites(DEVSEC_CIPHERS)
    weak = [line for line in allowed.values()
            if re.search(r"Kx=RSA\b|Au=None|Mac=(SHA1|MD5)\b|Enc=(3DES|RC4|Camellia|None|DES)", line, re.I)]
    verdict("postgres-12", ours == DEVSEC_CIPHERS, allowed and set(allowed) <= set(devsec) and not weak,
            "suites beyond dev-sec's: {}; weak suites: {}".format(sorted(set(allowed) - set(devsec)), weak))
    assert set(devsec) - set(allowed), "the collection's list should drop something dev-sec's keeps"


@controls("postgres-13", "cis-5.1")
def test_local_connections_are_peer_or_refused(host, hba):
    local = [(user, method) for kind, _db, user, method in hba if kind == "local"]
    assert ("postgres", "peer") in local
    assert {method for _user, method in local} <= {"peer", "reject"}, local
    verdict("postgres-13", all(method == "peer" for _user, method in local), local[-1] == ("all", "reject"), str(local))


@controls("postgres-14", "cis-5.2")
def test_tcp_connections_need_scram_or_are_refused(host, hba):
    methods = {method for kind, _db, _user, method in hba if kind.startswith("host")}
    assert not methods & {"trust", "password", "md5", "ident"}, methods
    hostssl = [method for kind, _db, _user, method in hba if kind == "hostssl"]
    verdict("postgres-14", set(hostssl) == {"scram-sha-256"}, "scram-sha-256" in hostssl
            and set(hostssl) <= {"scram-sha-256", "cert", "reject"}, str(hostssl))


@controls("postgres-15")
def test_no_connection_without_tls(host, rv, hba):
    conf = host.file("/etc/postgresql/{}/{}/pg_hba.conf".format(rv["postgresql_version"], rv["postgresql_cluster_name"]))
    text = conf.content_string
    literal = not re.search(r"^host\s", text, re.M) and not re.search(r"^hostnossl\s", text, re.M)
    plain = [row for row in hba if row[0] in ("host", "hostnossl") and not (row[0] == "hostnossl" and row[3] == "reject")]
    verdict("postgres-15", literal, not plain, "lines that let a client in without TLS: {}".format(plain))


@controls("postgres-16/log_connections", "postgres-16/log_disconnections", "cis-3.1.20", "cis-3.1.21")
def test_connections_and_disconnections_are_logged(host):
    assert setting(host, "log_connections") == "on"
    assert setting(host, "log_disconnections") == "on"


@controls("postgres-16/logging_collector", "cis-3.1.3", "cis-3.1.2")
def test_the_log_is_written_to_a_file_of_postgres(host, rv):
    assert setting(host, "log_destination") == "stderr"
    log = "/var/log/postgresql/postgresql-{}-{}.log".format(rv["postgresql_version"], rv["postgresql_cluster_name"])
    mode, owner = mode_and_owner(host, log)
    # The server's stderr, redirected by pg_ctlcluster: the file is open in the postmaster.
    held = host.run("runuser -u postgres -- ls -l /proc/$(head -1 {}/postmaster.pid)/fd/".format(
        shlex.quote(setting(host, "data_directory"))))
    collector = setting(host, "logging_collector") == "on"
    for control in ("postgres-16/logging_collector", "cis-3.1.3"):
        verdict(control, collector, owner == "postgres" and log in held.stdout, "{} {:o} {}".format(log, mode, owner))


@controls("postgres-16/log_duration")
def test_slow_statements_are_logged(host, rv):
    threshold = setting(host, "log_min_duration_statement")
    assert threshold not in ("-1", ""), threshold
    verdict("postgres-16/log_duration", setting(host, "log_duration") == "on",
            psql(host, "SELECT setting FROM pg_settings WHERE name = 'log_min_duration_statement'")
            == str(rv["postgresql_log_min_duration_statement"]), threshold)


@controls("postgres-16/log_hostname", "cis-3.1.23")
def test_log_hostname_is_off_and_the_address_is_logged(host):
    off = setting(host, "log_hostname") == "off"
    verdict("cis-3.1.23", off)
    verdict("postgres-16/log_hostname", not off, "%h" in setting(host, "log_line_prefix"))


@controls("postgres-16/log_directory", "cis-3.1.4")
def test_log_directory_is_unused_without_the_collector(host):
    directory = setting(host, "log_directory")
    collector_off = setting(host, "logging_collector") == "off"
    verdict("postgres-16/log_directory", directory != "log", collector_off, directory)
    verdict("cis-3.1.4", directory not in ("log", ""), collector_off, directory)


@controls("postgres-16/log_line_prefix", "cis-3.1.24")
def test_log_line_prefix_names_who_did_what_from_where(host, rv):
    # Quoted: psql's output is stripped, and the prefix ends with a space.
    prefix = psql(host, "SELECT quote_literal(current_setting('log_line_prefix'))")[1:-1]
    assert prefix == rv["postgresql_log_line_prefix"]
    verdict("postgres-16/log_line_prefix", prefix == "%t %u %d %h",
            all(k in prefix for k in ("%u", "%d", "%h")) and ("%t" in prefix or "%m" in prefix), prefix)
    # CIS 3.1.24: at least '%m [%p]: db=%d,user=%u,app=%a,client=%h '.
    verdict("cis-3.1.24", all(k in prefix for k in ("%m", "%p", "%d", "%u", "%a", "%h")), detail=prefix)


@controls("cis-3.1.16", "cis-3.1.17", "cis-3.1.18")
def test_debug_printing_is_off(host):
    for name in ("debug_print_parse", "debug_print_rewritten", "debug_print_plan"):
        assert setting(host, name) == "off", name


@controls("cis-3.1.25", "cis-3.1.26")
def test_ddl_is_logged_with_utc_times(host):
    assert setting(host, "log_statement") in ("ddl", "mod", "all")
    assert setting(host, "log_timezone") == "UTC"


@controls("cis-3.1.6", "postgres-20")
def test_data_and_log_directories_belong_to_postgres_alone(host):
    assert mode_and_owner(host, setting(host, "data_directory")) == (0o700, "postgres")
    assert mode_and_owner(host, "/var/log/postgresql") == (0o700, "postgres")
    verdict("cis-3.1.6", setting(host, "logging_collector") == "on" and setting(host, "log_file_mode") == "0600",
            True, "the directory above is the protection")


@controls("postgres-17", "cis-4.4")
def test_public_has_no_privilege_on_any_table(host, databases):
    found = per_database(host, databases, "SELECT count(*) FROM information_schema.table_privileges WHERE grantee = 'PUBLIC' "
                                          "AND table_schema NOT IN ('pg_catalog', 'information_schema')")
    assert set(found.values()) == {"0"}, found


@controls("postgres-18")
def test_only_owners_hold_grant_options(host, databases):
    literal = per_database(host, databases, "SELECT count(*) FROM information_schema.table_privileges "
                                            "WHERE grantee <> 'postgres' AND is_grantable = 'YES'")
    # Grant options held by a role on a table it does not own: none may exist.
    foreign = per_database(host, databases, "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a "
                                            "WHERE a.is_grantable AND a.grantee NOT IN (c.relowner, 10)")
    verdict("postgres-18", set(literal.values()) == {"0"}, set(foreign.values()) == {"0"},
            "grantable: {}; held on tables of others: {}".format(literal, foreign))


@controls("postgres-19", "cis-4.3")
def test_the_one_security_definer_function_is_locked_down(host, databases):
    # dev-sec's query joins pg_user and so misses functions of NOLOGIN roles; this one counts every function.
    found = {}
    for db in databases:
        rows = psql(host, "SELECT n.nspname || '.' || p.proname, r.rolsuper, r.rolcanlogin, "
                          "array_to_string(p.proconfig, ';'), has_function_privilege('public', p.oid, 'EXECUTE') "
                          "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_roles r ON r.oid = p.proowner "
                          "WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')", db=db)
        found.update({(db, line.split("|")[0]): line.split("|")[1:] for line in rows.splitlines()})
    audit = [key for key in found if key[1] == "public.audit_trigger_func"]
    safe = len(found) == len(audit) and all(
        found[key] == ["f", "f", "search_path=pg_catalog, public, pg_temp", "f"] for key in audit)
    verdict("postgres-19", not found, safe, str(found))
    verdict("cis-4.3", safe, detail=str(found))


@controls("cis-4.8")
def test_public_may_neither_use_nor_create_in_schema_public(host, databases):
    found = per_database(host, databases, "SELECT coalesce(string_agg(a.privilege_type, ','), '') FROM pg_namespace n, "
                                          "aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a "
                                          "WHERE n.nspname = 'public' AND a.grantee = 0")
    assert set(found.values()) == {""}, found


@controls("cis-1.2")
def test_the_service_is_enabled(host, rv):
    unit = "postgresql@{}-{}".format(rv["postgresql_version"], rv["postgresql_cluster_name"])
    assert host.run("systemctl is-enabled {}".format(unit)).stdout.strip() == "enabled"
    assert host.run("systemctl is-active {}".format(unit)).stdout.strip() == "active"
