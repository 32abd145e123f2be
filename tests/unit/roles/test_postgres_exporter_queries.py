# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""roles/exporters/files/postgres_exporter_queries.yml, the exporter's custom queries, run on a throwaway PostgreSQL.

The exporter logs in as a member of pg_monitor and nothing more: every query runs here as such a login role (the
throwaway server trusts local connections, so it logs in without a password), must return a row, and must return
exactly the columns its metrics name. On a standalone primary the replication metrics say "primary, no lag".
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import pathlib
import time

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
QUERIES_FILE = REPO / 'roles' / 'exporters' / 'files' / 'postgres_exporter_queries.yml'
with open(str(QUERIES_FILE)) as _handle:
    QUERIES = yaml.safe_load(_handle)
USAGES = {'GAUGE', 'COUNTER', 'LABEL'}
MONITOR = 'agent_ui_test_monitor_%d' % os.getpid()
SLOT = 'agent_ui_test_slot_%d' % os.getpid()


def columns(name):
    """The result columns the metrics of query ``name`` name, in order."""
    return [list(metric)[0] for metric in QUERIES[name]['metrics']]


# ---------------------------------------------------------------------------
# The file's shape (no server)
# ---------------------------------------------------------------------------

def test_the_file_holds_the_queries():
    assert isinstance(QUERIES, dict) and sorted(QUERIES) == sorted([
        'agent_ui_connections', 'agent_ui_replication', 'agent_ui_replication_slot', 'agent_ui_archiver',
        'agent_ui_activity'])


@pytest.mark.parametrize('name', sorted(QUERIES))
def test_every_query_has_a_query_and_metrics_of_one_column_each(name):
    entry = QUERIES[name]
    assert set(entry) <= {'query', 'metrics', 'master', 'cache_seconds'}, entry
    assert isinstance(entry['query'], str) and entry['query'].strip()
    assert isinstance(entry['metrics'], list) and entry['metrics']
    for metric in entry['metrics']:
        assert isinstance(metric, dict) and len(metric) == 1, metric
        [(column, spec)] = metric.items()
        assert isinstance(spec, dict) and set(spec) == {'usage', 'description'}, (name, column)
        assert spec['usage'] in USAGES, (name, column, spec['usage'])
        assert isinstance(spec['description'], str) and spec['description'].strip(), (name, column)
    assert len(set(columns(name))) == len(columns(name)), 'a column listed twice in %s' % name
    assert any(list(metric.values())[0]['usage'] != 'LABEL' for metric in entry['metrics']), 'no value in %s' % name


def test_every_metric_name_starts_with_agent_ui():
    names = ['%s_%s' % (name, column) for name in QUERIES for metric in QUERIES[name]['metrics']
             for column, spec in metric.items() if spec['usage'] != 'LABEL']
    assert names and all(metric.startswith('agent_ui_') for metric in names), names
    assert len(set(names)) == len(names)
    assert 'agent_ui_connections_used' in names and 'agent_ui_replication_lag_seconds' in names


# ---------------------------------------------------------------------------
# As a pg_monitor login role, on a throwaway PostgreSQL
# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def monitor(postgresql_server):
    """A login role that is a member of pg_monitor only, and a physical replication slot; both dropped after."""
    postgresql_server.query('postgres', 'DROP ROLE IF EXISTS "%s"' % MONITOR)
    postgresql_server.query('postgres', 'CREATE ROLE "%s" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
                                        'IN ROLE pg_monitor' % MONITOR)
    postgresql_server.query('postgres', "SELECT pg_create_physical_replication_slot(%s, true)", (SLOT,))
    try:
        yield MONITOR
    finally:
        postgresql_server.query('postgres', 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots '
                                            'WHERE slot_name = %s', (SLOT,))
        postgresql_server.query('postgres', 'DROP ROLE "%s"' % MONITOR)


def connect_as(server, role, db='postgres'):
    """An autocommit connection logged in as ``role`` (local connections are trusted)."""
    import psycopg2
    conn = psycopg2.connect(**dict(server.dsn(db), user=role))
    conn.autocommit = True
    return conn


def run(server, role, sql):
    """(column names, rows) of ``sql`` run as ``role``."""
    conn = connect_as(server, role)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return [column.name for column in cur.description], cur.fetchall()
    finally:
        conn.close()


def named(server, role, name):
    """The rows of query ``name`` run as ``role``, each a dict of column to value."""
    names, rows = run(server, role, QUERIES[name]['query'])
    return [dict(zip(names, row)) for row in rows]


def test_the_role_is_a_member_of_pg_monitor_only(postgresql_server, monitor):
    conn = connect_as(postgresql_server, monitor)
    try:
        cur = conn.cursor()
        cur.execute('SELECT current_user, rolsuper, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = current_user')
        assert cur.fetchall() == [(monitor, False, False, False)]
        cur.execute('SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid '
                    'WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)')
        assert cur.fetchall() == [('pg_monitor',)]
    finally:
        conn.close()


@pytest.mark.parametrize('name', sorted(QUERIES))
def test_every_query_runs_as_pg_monitor_and_returns_its_metric_columns(postgresql_server, monitor, name):
    names, rows = run(postgresql_server, monitor, QUERIES[name]['query'])
    assert sorted(names) == sorted(columns(name)) and len(names) == len(columns(name)), (names, columns(name))
    assert rows, '%s returned no row' % name
    for row in rows:
        for column, value in zip(names, row):
            usage = [list(metric.values())[0]['usage'] for metric in QUERIES[name]['metrics'] if column in metric][0]
            if usage == 'LABEL':
                assert isinstance(value, str), (name, column, value)
            else:
                assert isinstance(value, (int, float)) and not isinstance(value, bool), (name, column, value)


def test_a_primary_is_no_replica_and_has_no_lag(postgresql_server, monitor):
    assert named(postgresql_server, monitor, 'agent_ui_replication') == [
        {'is_replica': 0, 'lag_seconds': 0, 'receiver_streaming': 0}]


def test_the_slot_is_physical_and_inactive(postgresql_server, monitor):
    rows = [row for row in named(postgresql_server, monitor, 'agent_ui_replication_slot') if row['slot_name'] == SLOT]
    assert len(rows) == 1
    assert rows[0]['slot_type'] == 'physical' and rows[0]['active'] == 0 and rows[0]['retained_bytes'] >= 0


def test_without_a_slot_the_slot_query_returns_no_row(postgresql_server, monitor):
    # The only query that may return no row: one row per slot, and the fixture made the only one.
    names, rows = run(postgresql_server, monitor, "SELECT * FROM (%s) AS q WHERE slot_name <> '%s'"
                      % (QUERIES['agent_ui_replication_slot']['query'], SLOT))
    assert rows == [] and sorted(names) == sorted(columns('agent_ui_replication_slot'))


def test_the_connections_against_max_connections(postgresql_server, monitor):
    [row] = named(postgresql_server, monitor, 'agent_ui_connections')
    assert row['max'] == int(postgresql_server.query('postgres', 'SHOW max_connections')[0][0])
    assert row['reserved'] == int(postgresql_server.query('postgres', 'SHOW superuser_reserved_connections')[0][0])
    assert 1 <= row['used'] <= row['max']  # the query's own connection at least


def test_the_archiver_on_a_server_that_does_not_archive(postgresql_server, monitor):
    [row] = named(postgresql_server, monitor, 'agent_ui_archiver')
    assert row['failing'] == 0 and row['failed_count'] == 0 and row['ready_count'] == 0
    assert row['archived_count'] >= 0 and row['last_archived_age_seconds'] >= 0


def test_the_activity_has_one_row_per_state_and_sees_an_idle_transaction(postgresql_server, monitor):
    rows = named(postgresql_server, monitor, 'agent_ui_activity')
    assert sorted(row['state'] for row in rows) == ['active', 'idle in transaction', 'idle in transaction (aborted)']
    assert all(row['longest_transaction_seconds'] >= 0 for row in rows)
    # A superuser's session idle in a transaction: pg_monitor sees other roles' sessions.
    other = postgresql_server.connect('postgres')
    try:
        other.autocommit = False
        other.cursor().execute('SELECT 1')
        time.sleep(0.3)
        states = dict((row['state'], row['longest_transaction_seconds'])
                      for row in named(postgresql_server, monitor, 'agent_ui_activity'))
    finally:
        other.rollback()
        other.close()
    assert states['idle in transaction'] >= 0.3
    assert len(states) == 3


def test_the_role_cannot_run_programs_on_the_server(postgresql_server, monitor):
    import psycopg2.errors
    conn = connect_as(postgresql_server, monitor)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            conn.cursor().execute("COPY (SELECT 1) TO PROGRAM 'true'")
    finally:
        conn.close()
