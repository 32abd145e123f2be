"""The scheduled maintenance of the postgresql role, run on the live servers (issue 12: the design document's nightly
VACUUM ANALYZE and weekly reindex, as systemd timers; reindex is REINDEX CONCURRENTLY and off by default)."""
import json

import pytest

from conftest import PROJECT, podman_hosts, psql, run_playbook

testinfra_hosts = podman_hosts("postgresql")

TABLE = "maintenance_probe"


@pytest.fixture(scope="module")
def probe(host):
    psql(host, "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id int PRIMARY KEY, note text); "
               "INSERT INTO {t} SELECT g, 'row ' || g FROM generate_series(1, 2000) AS g; "
               "DELETE FROM {t} WHERE id % 2 = 0".format(t=TABLE), db="app_test")
    return host


def test_the_vacuum_timer_is_on_and_the_reindex_timer_is_off_by_default(host):
    assert host.run("systemctl is-enabled agent-ui-postgresql-vacuum.timer").stdout.strip() == "enabled"
    assert host.run("systemctl is-active agent-ui-postgresql-vacuum.timer").stdout.strip() == "active"
    assert host.run("systemctl is-enabled agent-ui-postgresql-reindex.timer").stdout.strip() == "disabled"
    assert "agent-ui-postgresql-vacuum.timer" in host.run("systemctl list-timers --no-legend").stdout


def test_the_vacuum_service_vacuums_and_analyzes_every_database(probe):
    host = probe
    assert psql(host, "SELECT last_vacuum IS NULL FROM pg_stat_user_tables WHERE relname = '{}'".format(TABLE),
                db="app_test") == "t"
    started = host.run("systemctl start agent-ui-postgresql-vacuum.service")
    assert started.rc == 0, host.run("journalctl -u agent-ui-postgresql-vacuum --no-pager -n 30").stdout
    assert host.run("systemctl show -p Result --value agent-ui-postgresql-vacuum.service").stdout.strip() == "success"
    row = psql(host, "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL, n_dead_tup FROM pg_stat_user_tables "
                     "WHERE relname = '{}'".format(TABLE), db="app_test")
    assert row == "t|t|0", row


def test_the_reindex_service_rebuilds_the_indexes_concurrently_and_leaves_them_valid(probe):
    host = probe
    index = "{}_pkey".format(TABLE)
    before = psql(host, "SELECT pg_relation_filenode('{}')".format(index), db="app_test")
    started = host.run("systemctl start agent-ui-postgresql-reindex.service")
    assert started.rc == 0, host.run("journalctl -u agent-ui-postgresql-reindex --no-pager -n 30").stdout
    after = psql(host, "SELECT pg_relation_filenode('{}')".format(index), db="app_test")
    assert after != before
    assert psql(host, "SELECT bool_and(indisvalid AND indisready) FROM pg_index", db="app_test") == "t"
    unit = host.file("/etc/systemd/system/agent-ui-postgresql-reindex.service").content_string
    assert "reindexdb --host=" in unit and "--concurrently" in unit, unit


def test_a_bad_schedule_is_refused_before_the_host_is_touched(host):
    name = host.backend.get_hostname()
    unit = "/etc/systemd/system/agent-ui-postgresql-vacuum.timer"
    before = host.file(unit).content_string
    result = run_playbook(str(PROJECT / "playbooks" / "site.yml"), "--limit", name, "--tags", "postgresql_maintenance",
                          "-e", json.dumps({"postgresql_maintenance_vacuum_schedule": "every full moon"}))
    assert result.returncode != 0 and "every full moon" in result.stdout + result.stderr
    assert host.file(unit).content_string == before
    assert "every full moon" not in host.file(unit).content_string
