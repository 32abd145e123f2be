# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Loading, validation, re-runs, check and diff mode against a throwaway PostgreSQL (migration_load.py).

The target schema comes from the app_schema role's migrations; the source from
tests/support/app_sqlite.py.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import contextlib
import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import app_sqlite
from conftest import REPO
from ansible_collections.agent_ui.postgresql.plugins.module_utils import migration_load
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_app import NULL_TIMESTAMP_FILL, app_specs
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_checks import MigrationError

TABLES = app_sqlite.TABLES


def generate(tmp_path, name='app.sqlite', **kwargs):
    options = dict(agents=20, skills=15, mcp_servers=8, tasks=400, large_prompt_kb=120)
    options.update(kwargs)
    path = str(tmp_path / name)
    return path, app_sqlite.generate(path, **options)


def migrate(server, db, src, check_mode=False, diff=False, **options):
    params = dict(server.params(db), src=src)
    params.update(options)
    return migration_load.run(params, check_mode=check_mode, diff=diff)


def counts(server, db):
    return dict((table, server.query(db, 'SELECT count(*) FROM %s' % table)[0][0]) for table in TABLES + ('audit_log',))


def source_counts(path):
    conn = sqlite3.connect(path)
    try:
        return dict((table, conn.execute('SELECT count(*) FROM %s' % table).fetchone()[0]) for table in TABLES)
    finally:
        conn.close()


def assert_empty(server, db):
    assert set(counts(server, db).values()) == {0}


# ---------------------------------------------------------------------------
# A full load
# ---------------------------------------------------------------------------

def test_app_migration_loads_validates_and_keeps_ids(postgresql_server, app_db, tmp_path):
    src, info = generate(tmp_path)
    result = migrate(postgresql_server, app_db, src)
    assert result['changed'] and result['action'] == 'load'
    assert result['validation']['counts_match'] and result['validation']['checksums_match']
    assert result['validation']['fk_orphans'] == 0
    for table, count in info['tables'].items():
        assert result['tables'][table]['loaded_rows'] == count
        assert result['tables'][table]['checksum_match'] is True
    found = counts(postgresql_server, app_db)
    assert dict((t, found[t]) for t in TABLES) == info['tables']
    # source ids are kept
    conn = sqlite3.connect(src)
    source_ids = [row[0] for row in conn.execute('SELECT id FROM tasks ORDER BY id')]
    prompt = conn.execute('SELECT system_prompt FROM agents WHERE id = 1').fetchone()[0]
    conn.close()
    assert [row[0] for row in postgresql_server.query(app_db, 'SELECT id FROM tasks ORDER BY id')] == source_ids
    # the >100 kB prompt arrives intact, the search_vector trigger ran
    loaded = postgresql_server.query(app_db, 'SELECT system_prompt, search_vector IS NOT NULL FROM agents WHERE id = 1')[0]
    assert loaded[0] == prompt and len(prompt.encode('utf-8')) > 100 * 1024 and loaded[1]
    # identities are past max(id)
    new_id = postgresql_server.query(app_db, "INSERT INTO tasks (name) VALUES ('after') RETURNING id")[0][0]
    assert new_id == max(source_ids) + 1
    # one BULK_LOAD audit row instead of one row per source row
    audit = postgresql_server.query(app_db, 'SELECT table_name, operation, new_data FROM audit_log')
    assert audit == [('migration', 'BULK_LOAD', info['tables'])]


def test_identities_continue_past_what_autoincrement_handed_out(postgresql_server, app_db, tmp_path):
    src, info = generate(tmp_path, large_prompt_kb=0)
    top = info['tables']['tasks']
    # The newest tasks were deleted, all server links too, and the agents' counter is ahead (as after a bulk delete).
    update_source(src, 'DELETE FROM tasks WHERE id > ?', top - 10)
    update_source(src, 'DELETE FROM agents_mcp_servers_links')
    update_source(src, "UPDATE sqlite_sequence SET seq = 1000 WHERE name = 'agents'")
    links = info['tables']['agents_mcp_servers_links']
    migrate(postgresql_server, app_db, src)
    query = functools.partial(postgresql_server.query, app_db)
    assert query('SELECT max(id) FROM tasks') == [(top - 10,)]
    assert query("INSERT INTO tasks (name) VALUES ('next') RETURNING id") == [(top + 1,)]
    assert query("INSERT INTO agents (name, system_prompt) VALUES ('next', 'p') RETURNING id") == [(1001,)]
    assert query('INSERT INTO agents_mcp_servers_links (agent_id, mcp_server_id) VALUES (1, 1) RETURNING id') == [(links + 1,)]
    # Tables without a counter beyond max(id) continue from max(id).
    assert query("INSERT INTO skills (name, content) VALUES ('next', '') RETURNING id") == [(info['tables']['skills'] + 1,)]


def test_timestamps_arrive_in_utc_with_milliseconds(postgresql_server, app_db, tmp_path):
    src, _info = generate(tmp_path, tasks=6, agents=2, skills=2, mcp_servers=1, large_prompt_kb=0)
    conn = sqlite3.connect(src)
    forms = ['2024-01-02 03:04:05', '2024-01-02T05:04:05.123+02:00', '2024-01-02T03:04:05.123Z', 1704164645,
             1704164645.5, 1704164645123]
    for task, value in enumerate(forms, start=1):
        conn.execute('UPDATE tasks SET created_at = ? WHERE id = ?', (value, task))
    conn.commit()
    conn.close()
    migrate(postgresql_server, app_db, src)
    rows = postgresql_server.query(app_db, "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') "
                                           'FROM tasks ORDER BY id')
    assert [row[0] for row in rows] == ['2024-01-02 03:04:05.000', '2024-01-02 03:04:05.123', '2024-01-02 03:04:05.123',
                                        '2024-01-02 03:04:05.000', '2024-01-02 03:04:05.500', '2024-01-02 03:04:05.123']


# ---------------------------------------------------------------------------
# NULL where the target says NOT NULL, and empty required text
# ---------------------------------------------------------------------------

def nullable_not_null_columns(src):
    """{(table, column): NULLs in the source} for each NOT NULL target column that the source lets be NULL."""
    conn = sqlite3.connect(src)
    found = {}
    try:
        for spec in app_specs():
            declared = dict((row[1], (row[3], row[5])) for row in conn.execute('PRAGMA table_info(%s)' % spec.source))
            for col in spec.columns:
                notnull, pk = declared[col.name]
                if col.not_null and not notnull and not pk:
                    found[(spec.name, col.name)] = conn.execute(
                        'SELECT count(*) FROM %s WHERE %s IS NULL' % (spec.source, col.name)).fetchone()[0]
    finally:
        conn.close()
    return found


def test_nulls_in_not_null_columns_are_filled_reported_and_rerun_unchanged(postgresql_server, app_db, tmp_path):
    src, info = generate(tmp_path, null_fills=True, large_prompt_kb=0)
    nulls = nullable_not_null_columns(src)
    assert len(nulls) == 15 and all(nulls.values()), nulls  # every such column holds NULLs somewhere
    result = migrate(postgresql_server, app_db, src, max_problems=100000)
    assert result['validation']['counts_match'] and result['validation']['checksums_match']
    assert dict((t, result['tables'][t]['loaded_rows']) for t in TABLES) == info['tables']  # the whole file loads
    # Every filled cell is reported as fixed, and nothing else.
    assert set((p['class'], p['action']) for p in result['problems']) == {('not_null', 'fix')}
    assert dict(collections.Counter((p['table'], p['column']) for p in result['problems'])) == nulls
    rules = dict(((p['table'], p['column'], p['pk']), p['rule']) for p in result['problems'])
    assert rules[('agents', 'model', '3')].endswith("filled with 'sonnet'")
    assert rules[('tasks', 'created_at', '1')].endswith('filled with updated_at, or %s when that is NULL too' % NULL_TIMESTAMP_FILL)
    query = functools.partial(postgresql_server.query, app_db)
    # The constant defaults, '' for content, true and false for the booleans.
    assert query('SELECT DISTINCT model, enabled FROM agents WHERE id % 3 = 0') == [('sonnet', True)]
    assert query('SELECT DISTINCT content, experience_score FROM skills WHERE id % 3 = 0') == [('', 0)]
    assert query('SELECT DISTINCT transport, disabled FROM mcp_servers WHERE id % 3 = 0') == [('stdio', False)]
    assert query('SELECT DISTINCT status FROM tasks WHERE id % 3 = 0') == [('pending',)]
    for table in ('agents', 'skills', 'mcp_servers', 'tasks'):
        # One timestamp NULL: the row's other one. Both NULL: the documented fixed instant.
        assert query('SELECT count(*) FROM %s WHERE id %% 4 IN (1, 2) AND created_at IS DISTINCT FROM updated_at' % table) == [(0,)]
        assert query('SELECT DISTINCT created_at = %%s AND updated_at = %%s FROM %s WHERE mod(id, 4) = 3' % table,
                     (NULL_TIMESTAMP_FILL, NULL_TIMESTAMP_FILL)) == [(True,)]
        assert query('SELECT count(*) FROM %s WHERE mod(id, 4) = 0 AND created_at = %%s' % table, (NULL_TIMESTAMP_FILL,)) == [(0,)]
    rerun = migrate(postgresql_server, app_db, src)
    assert rerun['changed'] is False and rerun['action'] == 'none'
    assert rerun['problem_summary']['by_action'] == {'fix': sum(nulls.values())}


def test_the_fills_can_be_refused(postgresql_server, app_db, tmp_path):
    src, _info = generate(tmp_path, null_fills=True, large_prompt_kb=0)
    with pytest.raises(MigrationError, match=r'not_null'):
        migrate(postgresql_server, app_db, src, policies={'not_null': 'fail'})
    assert_empty(postgresql_server, app_db)


REQUIRED_TEXT = [('agents', 'name'), ('agents', 'system_prompt'), ('skills', 'name'), ('mcp_servers', 'name'),
                 ('mcp_servers', 'command'), ('tasks', 'name')]


@pytest.mark.parametrize('blank', ['', ' \t\n', '\u3000'], ids=['empty', 'whitespace', 'ideographic-space'])
def test_empty_required_text_is_a_not_null_problem(postgresql_server, app_db, tmp_path, blank):
    src, _info = generate(tmp_path, large_prompt_kb=0)
    conn = sqlite3.connect(src)
    for table, name in REQUIRED_TEXT:
        conn.execute('UPDATE %s SET %s = ? WHERE id = 2' % (table, name), (blank,))
    conn.commit()
    conn.close()
    with pytest.raises(MigrationError) as raised:  # the default policy of not_null (fix) has no rule for them
        migrate(postgresql_server, app_db, src)
    problems = raised.value.details['problems']
    assert sorted((p['table'], p['column']) for p in problems) == sorted(REQUIRED_TEXT)
    assert set((p['class'], p['action'], p['pk']) for p in problems) == {('not_null', 'fail', '2')}
    assert all('but the column is required (no fix rule applies)' in p['rule'] for p in problems)
    assert_empty(postgresql_server, app_db)
    result = migrate(postgresql_server, app_db, src, policies={'not_null': 'skip_row'})
    assert [result['tables'][t]['skipped_rows'] for t in ('agents', 'skills', 'mcp_servers', 'tasks')] == [1, 1, 1, 1]
    assert postgresql_server.query(app_db, 'SELECT count(*) FROM agents WHERE id = 2') == [(0,)]


def test_the_one_character_text_0_stays_valid(postgresql_server, app_db, tmp_path):
    src, _info = generate(tmp_path, large_prompt_kb=0)
    conn = sqlite3.connect(src)
    for table, name in REQUIRED_TEXT:
        conn.execute('UPDATE %s SET %s = ? WHERE id = 2' % (table, name), ('0',))
    conn.commit()
    conn.close()
    result = migrate(postgresql_server, app_db, src)
    assert result['problems'] == []
    assert postgresql_server.query(app_db, 'SELECT name, system_prompt FROM agents WHERE id = 2') == [('0', '0')]


# ---------------------------------------------------------------------------
# Re-runs
# ---------------------------------------------------------------------------

def _row_versions(server, db):
    return dict((table, server.query(db, 'SELECT count(*), sum(xmin::text::bigint) FROM %s' % table)[0]) for table in TABLES)


def test_rerun_on_identical_data_changes_nothing(postgresql_server, app_db, tmp_path):
    src, _info = generate(tmp_path)
    migrate(postgresql_server, app_db, src)
    versions = _row_versions(postgresql_server, app_db)
    audit = counts(postgresql_server, app_db)['audit_log']
    result = migrate(postgresql_server, app_db, src)
    assert result['changed'] is False and result['action'] == 'none'
    assert all(table['checksum_match'] for table in result['tables'].values())
    assert _row_versions(postgresql_server, app_db) == versions
    assert counts(postgresql_server, app_db)['audit_log'] == audit


def test_an_empty_app_over_empty_tables_is_no_change(postgresql_server, app_db, tmp_path):
    """A freshly installed app (no rows yet) migrated twice writes nothing, not even an audit row, and says so."""
    src, _info = generate(tmp_path, agents=0, skills=0, mcp_servers=0, tasks=0)
    assert set(source_counts(src).values()) == {0}
    for _run in range(2):
        result = migrate(postgresql_server, app_db, src)
        assert result['changed'] is False and result['action'] == 'none'
        assert_empty(postgresql_server, app_db)
    assert migrate(postgresql_server, app_db, src, check_mode=True)['changed'] is False


def test_rerun_on_different_data_fails_with_a_summary_then_replace(postgresql_server, app_db, tmp_path):
    src, _info = generate(tmp_path)
    migrate(postgresql_server, app_db, src)
    versions = _row_versions(postgresql_server, app_db)
    conn = sqlite3.connect(src)
    conn.execute("UPDATE agents SET description = 'changed' WHERE id = 3")
    conn.execute('DELETE FROM tasks WHERE id = 7')
    conn.execute("INSERT INTO tasks (id, name, status, created_at, updated_at) VALUES (100000, 'new', 'pending', 0, 0)")
    conn.commit()
    conn.close()
    with pytest.raises(MigrationError) as info:
        migrate(postgresql_server, app_db, src)
    assert 'on_conflict=replace' in info.value.msg
    differences = info.value.details['differences']
    assert sorted(differences) == ['agents', 'tasks']
    assert differences['agents']['different_rows'] == 1
    assert differences['agents']['examples']['different'] == [{'pk': 3, 'columns': ['description']}]
    assert differences['tasks']['only_in_source'] == 1 and differences['tasks']['only_in_target'] == 1
    assert _row_versions(postgresql_server, app_db) == versions

    result = migrate(postgresql_server, app_db, src, on_conflict='replace')
    assert result['changed'] and result['action'] == 'replace'
    assert result['replaced']['agents']['different_rows'] == 1
    assert result['validation']['checksums_match']
    assert postgresql_server.query(app_db, 'SELECT description FROM agents WHERE id = 3')[0][0] == 'changed'
    assert migrate(postgresql_server, app_db, src)['changed'] is False


# ---------------------------------------------------------------------------
# Check mode and diff mode
# ---------------------------------------------------------------------------

def test_check_mode_is_a_dry_run(postgresql_server, app_db, tmp_path):
    src, info = generate(tmp_path)
    result = migrate(postgresql_server, app_db, src, check_mode=True, diff=True, report=str(tmp_path / 'report.json'),
                     backup=str(tmp_path / 'backup.sqlite'))
    assert result['changed'] is True
    assert result['validation']['checksums_match']
    assert result['plan']['tasks'] == {'action': 'load', 'rows_to_load': info['tables']['tasks'], 'rows_to_skip': 0,
                                       'rows_fixed': 0, 'target_rows_before': 0}
    assert result['diff']['after']['tables'] == info['tables']
    assert_empty(postgresql_server, app_db)
    assert not os.path.exists(str(tmp_path / 'report.json'))
    assert not os.path.exists(str(tmp_path / 'backup.sqlite'))


def test_check_mode_returns_every_problem(postgresql_server, app_db, tmp_path):
    src, _info = generate(tmp_path, bad='json')
    conn = sqlite3.connect(src)
    conn.execute("UPDATE tasks SET status = 'done' WHERE id IN (1, 2)")
    conn.commit()
    conn.close()
    with pytest.raises(MigrationError) as info:
        migrate(postgresql_server, app_db, src, check_mode=True)
    assert info.value.details['problem_summary']['by_class'] == {'json': 1, 'enum': 2}
    assert_empty(postgresql_server, app_db)


def test_the_headline_counts_each_class_with_its_first_example(postgresql_server, app_db, tmp_path):
    src, _info = generate(tmp_path, large_prompt_kb=0)
    conn = sqlite3.connect(src)
    conn.execute("UPDATE tasks SET status = 'done' WHERE id IN (5, 6, 7)")
    conn.execute("UPDATE agents SET tools = '[' WHERE id IN (4, 9)")
    conn.execute('UPDATE mcp_servers SET command = ? WHERE id = 3', ('x' * 501,))
    conn.commit()
    conn.close()
    with pytest.raises(MigrationError) as raised:
        migrate(postgresql_server, app_db, src, max_problems=1)
    msg = raised.value.msg
    assert '6 problem(s) under the fail policy, nothing was written' in msg
    # Most frequent class first, each with its first example, even past max_problems (only one problem is listed).
    at = [msg.index('enum 3 (first: tasks (id=5) status: status not in (pending, running, completed, failed, cancelled) [enum])'),
          msg.index('json 2 (first: agents (id=4) tools: '),
          msg.index('length 1 (first: mcp_servers (id=3) command: longer than 500 characters (501) [length])')]
    assert at == sorted(at)
    assert [p['pk'] for p in raised.value.details['problems']] == ['4']
    assert raised.value.details['problem_summary']['by_class'] == {'enum': 3, 'json': 2, 'length': 1}


def test_diff_mode_shows_counts_before_and_after(postgresql_server, app_db, tmp_path):
    src, info = generate(tmp_path)
    result = migrate(postgresql_server, app_db, src, diff=True)
    assert result['diff']['before']['tables'] == dict((t, 0) for t in TABLES)
    assert result['diff']['after']['tables'] == info['tables']
    assert 'diff' not in migrate(postgresql_server, app_db, src)


# ---------------------------------------------------------------------------
# Bad input: a clear failure and zero rows
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('bad', sorted(app_sqlite.BAD_CLASSES))
def test_each_bad_class_fails_and_leaves_zero_rows(postgresql_server, app_db, tmp_path, bad):
    src, info = generate(tmp_path, bad=bad, large_prompt_kb=0)
    with pytest.raises(MigrationError) as raised:
        migrate(postgresql_server, app_db, src, report=str(tmp_path / 'report.json'))
    where = info['bad']
    assert 'nothing was written' in raised.value.msg
    assert '%s (id=%s) %s' % (where['table'], where['pk'], where['column']) in raised.value.msg
    assert raised.value.details['problems'][0]['class'] == where['class']
    assert_empty(postgresql_server, app_db)
    report = json.load(open(str(tmp_path / 'report.json')))
    assert report['failed'] is True and report['problems'][0]['class'] == where['class']


def test_skip_row_loads_the_rest_writes_rejects_and_reruns_unchanged(postgresql_server, app_db, tmp_path):
    src, info = generate(tmp_path, bad='json')
    reject = str(tmp_path / 'rejects.jsonl')
    result = migrate(postgresql_server, app_db, src, policies={'json': 'skip_row'}, reject_file=reject)
    agent = info['bad']['pk']
    assert result['validation']['checksums_match'] and result['validation']['fk_orphans'] == 0
    assert result['tables']['agents']['skipped_rows'] == 1
    assert result['reject_file']['written'] is True
    lines = [json.loads(line) for line in open(reject)]
    assert lines[0]['table'] == 'agents' and lines[0]['pk'] == str(agent)
    assert postgresql_server.query(app_db, 'SELECT count(*) FROM agents_skills_links WHERE agent_id = %s', (agent,))[0][0] == 0
    rerun = migrate(postgresql_server, app_db, src, policies={'json': 'skip_row'}, reject_file=reject)
    assert rerun['changed'] is False and rerun['reject_file']['written'] is False


def test_missing_schema_is_a_clear_failure(postgresql_server, empty_db, tmp_path):
    src, _info = generate(tmp_path, large_prompt_kb=0)
    with pytest.raises(MigrationError, match='apply the schema role first'):
        migrate(postgresql_server, empty_db, src)


def test_wrong_column_type_is_a_clear_failure(postgresql_server, app_db, tmp_path):
    src, _info = generate(tmp_path, large_prompt_kb=0)
    postgresql_server.query(app_db, 'ALTER TABLE tasks ALTER COLUMN created_at TYPE timestamp')
    with pytest.raises(MigrationError, match='tasks.created_at is timestamp without time zone'):
        migrate(postgresql_server, app_db, src)


class _ReplicaCursor(object):
    def execute(self, sql, args=None):
        pass

    def fetchone(self):
        return (True, 'UTF8', True)


def test_refuses_a_replica():
    with pytest.raises(MigrationError, match='replica'):
        migration_load._preflight(_ReplicaCursor(), 'public')


# ---------------------------------------------------------------------------
# Backup and report
# ---------------------------------------------------------------------------

def test_backup_is_verified_and_only_replaced_when_different(postgresql_server, app_db, tmp_path):
    src, info = generate(tmp_path, large_prompt_kb=0)
    backup = str(tmp_path / 'backup.sqlite')
    first = migrate(postgresql_server, app_db, src, backup=backup)
    assert first['backup']['integrity_check'] == 'ok' and first['backup']['changed'] is True
    assert source_counts(backup) == info['tables']
    second = migrate(postgresql_server, app_db, src, backup=backup)
    assert second['backup']['changed'] is False and second['changed'] is False


def _no_connection(params):
    raise AssertionError('backup_only must not connect to PostgreSQL')


def test_backup_only_backs_up_without_connecting(tmp_path):
    src, info = generate(tmp_path, large_prompt_kb=0)
    backup = str(tmp_path / 'backup.sqlite')
    params = {'src': src, 'backup': backup, 'backup_only': True}
    planned = migration_load.run(params, check_mode=True, connect_fn=_no_connection)
    assert planned['changed'] is True and not os.path.exists(backup)
    first = migration_load.run(params, connect_fn=_no_connection)
    assert first['action'] == 'backup_only' and first['changed'] is True
    assert first['backup']['integrity_check'] == 'ok' and source_counts(backup) == info['tables']
    assert os.stat(backup).st_mode & 0o777 == 0o600
    assert migration_load.run(params, connect_fn=_no_connection)['changed'] is False
    assert migration_load.run(params, check_mode=True, connect_fn=_no_connection)['changed'] is False


def test_backup_only_needs_a_backup_path(tmp_path):
    src, _info = generate(tmp_path, large_prompt_kb=0)
    with pytest.raises(MigrationError, match='backup_only needs backup'):
        migration_load.run({'src': src, 'backup_only': True}, connect_fn=_no_connection)


def test_backup_only_refuses_a_corrupt_source(tmp_path):
    src = str(tmp_path / 'corrupt.sqlite')
    with open(src, 'wb') as handle:
        handle.write(b'SQLite format 3\x00' + b'\xff' * 4096)
    backup = str(tmp_path / 'backup.sqlite')
    with pytest.raises(MigrationError):
        migration_load.run({'src': src, 'backup': backup, 'backup_only': True}, connect_fn=_no_connection)
    assert not os.path.exists(backup)
    assert [name for name in os.listdir(str(tmp_path)) if name.endswith('.tmp')] == []


def test_report_is_written(postgresql_server, app_db, tmp_path):
    src, info = generate(tmp_path, large_prompt_kb=0)
    report = str(tmp_path / 'report.json')
    result = migrate(postgresql_server, app_db, src, report=report)
    assert result['report_written'] is True
    data = json.load(open(report))
    assert data['validation']['checksums_match'] is True
    assert data['tables']['tasks']['loaded_rows'] == info['tables']['tasks']


# ---------------------------------------------------------------------------
# Killing the process mid-load leaves the target unchanged
# ---------------------------------------------------------------------------

KILL_CHILD = textwrap.dedent('''
    import json, os, sys, time
    sys.path.insert(0, {collections!r})
    from ansible_collections.agent_ui.postgresql.plugins.module_utils import migration_load, migration_stream
    migration_stream.CHUNK_BYTES = 16384
    original = migration_stream.CopyReader._chunks
    def slow_chunks(self):
        for number, chunk in enumerate(original(self)):
            yield chunk
            if number == 3 and not os.path.exists({marker!r}):
                open({marker!r}, 'w').close()
            if os.path.exists({marker!r}):
                time.sleep(0.05)
    migration_stream.CopyReader._chunks = slow_chunks
    migration_load.run(json.loads(sys.argv[1]))
''')


def _active_copy(server, db):
    return server.query(db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND query LIKE 'COPY %%FROM STDIN%%' AND state = 'active' AND pid <> pg_backend_pid()")[0][0]


def _backends(server, db):
    return server.query(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            "'agent_ui.postgresql.sqlite_to_postgresql'")[0][0]


def test_killed_mid_load_leaves_target_unchanged_and_rerun_succeeds(postgresql_server, app_db, tmp_path):
    src, info = generate(tmp_path, tasks=20000, large_prompt_kb=0)
    marker = str(tmp_path / 'copy-started')
    script = tmp_path / 'child.py'
    script.write_text(KILL_CHILD.format(collections=str(REPO / 'collections'), marker=marker))
    params = dict(postgresql_server.params(app_db), src=src)
    child = subprocess.Popen([sys.executable, str(script), json.dumps(params)])
    try:
        deadline = time.time() + 60
        while not os.path.exists(marker):
            assert child.poll() is None, 'the loading process ended before COPY started'
            assert time.time() < deadline
            time.sleep(0.02)
        while not _active_copy(postgresql_server, app_db):
            assert time.time() < deadline
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    deadline = time.time() + 30
    while _backends(postgresql_server, app_db):
        assert time.time() < deadline, 'the killed load is still connected'
        time.sleep(0.1)
    assert_empty(postgresql_server, app_db)
    result = migrate(postgresql_server, app_db, src)
    assert result['action'] == 'load' and result['validation']['checksums_match']
    assert dict((t, c) for t, c in counts(postgresql_server, app_db).items() if t in TABLES) == info['tables']


# ---------------------------------------------------------------------------
# Memory stays flat
# ---------------------------------------------------------------------------

# The child's own peak: VmHWM belongs to its address space.  Its ru_maxrss would not do: Linux carries
# the spawning process's high-water mark across exec, so it would report pytest's peak instead.
PEAK_RSS = textwrap.dedent('''
    import re
    with open('/proc/self/status') as status:
        print(int(re.search(r'VmHWM:\\s+(\\d+) kB', status.read()).group(1)) // 1024)
''')
RSS_CHILD = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, {collections!r})
    from ansible_collections.agent_ui.postgresql.plugins.module_utils import migration_load
    result = migration_load.run(json.loads(sys.argv[1]))
    assert result['validation']['checksums_match']
''') + PEAK_RSS


def _peak_rss_mb(server, db, src, tmp_path):
    script = tmp_path / 'rss.py'
    script.write_text(RSS_CHILD.format(collections=str(REPO / 'collections')))
    output = subprocess.check_output([sys.executable, str(script), json.dumps(dict(server.params(db), src=src))])
    return int(output.decode().split()[-1])


def test_memory_stays_flat_when_the_data_grows_tenfold(postgresql_server, app_template, tmp_path):
    small, _info = generate(tmp_path, 'small.sqlite', tasks=8000, large_prompt_kb=0)
    large, _info = generate(tmp_path, 'large.sqlite', tasks=80000, large_prompt_kb=0)
    peaks = []
    for src in (small, large):
        db = postgresql_server.create_database('rss', template=app_template)
        try:
            peaks.append(_peak_rss_mb(postgresql_server, db, src, tmp_path))
        finally:
            postgresql_server.drop_database(db)
    assert peaks[1] < 150
    assert peaks[1] - peaks[0] < 12, peaks


def test_the_peak_measured_is_the_childs_own(tmp_path):
    """The measurement above sees the child's memory, not the larger memory of the process that starts it."""
    script = tmp_path / 'hwm.py'
    script.write_text("x = bytearray(40 << 20)\nx[::4096] = b'\\1' * len(x[::4096])\n" + PEAK_RSS)
    ballast = bytearray(200 << 20)
    ballast[::4096] = b'\1' * len(ballast[::4096])
    peak = int(subprocess.check_output([sys.executable, str(script)]).decode().split()[-1])
    assert 40 <= peak < 150, peak


# ---------------------------------------------------------------------------
# Property: random valid rows survive the round trip with equal checksums
# ---------------------------------------------------------------------------

TEXT = st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\x00'), max_size=60)
TIMESTAMP = st.one_of(
    st.datetimes(min_value=__import__('datetime').datetime(1000, 1, 1), max_value=__import__('datetime').datetime(9999, 1, 1)).map(
        lambda d: d.isoformat(' ')[:19]),
    st.datetimes(min_value=__import__('datetime').datetime(1971, 1, 1), max_value=__import__('datetime').datetime(2999, 1, 1)).map(
        lambda d: d.isoformat(timespec='milliseconds') + 'Z'),
    st.integers(0, 99999999999), st.integers(100000000000, 4102444800000),
)
# Required text (names, prompts) is not empty and not only whitespace.
REQUIRED = st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\x00'), min_size=1, max_size=60).filter(
    lambda text: not text.isspace())
TOOLS = st.lists(TEXT, max_size=5).map(json.dumps)
AGENT = st.fixed_dictionaries({
    'name': st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\x00'), min_size=1, max_size=100).filter(
        lambda text: not text.isspace()),
    'description': st.none() | TEXT, 'system_prompt': REQUIRED, 'tools': st.none() | TOOLS, 'disallowed_tools': st.none() | TOOLS,
    'model': st.sampled_from(app_sqlite.MODELS), 'enabled': st.sampled_from([0, 1, None]),
    'created_at': TIMESTAMP, 'updated_at': TIMESTAMP,
})
TASK = st.fixed_dictionaries({
    'name': REQUIRED, 'description': st.none() | TEXT, 'status': st.sampled_from(app_sqlite.STATUSES),
    'error_message': st.none() | TEXT, 'duration_ms': st.none() | st.integers(-2 ** 63, 2 ** 63 - 1),
    'input_tokens': st.none() | st.integers(0, 10 ** 12), 'output_tokens': st.none() | st.integers(0, 10 ** 12),
    'total_cost': st.none() | st.floats(allow_nan=False), 'created_at': TIMESTAMP, 'updated_at': TIMESTAMP,
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(agents=st.lists(AGENT, min_size=1, max_size=6, unique_by=lambda a: a['name']), tasks=st.lists(TASK, max_size=12),
       data=st.data())
def test_random_valid_rows_survive_the_round_trip(postgresql_server, app_template, tmp_path_factory, agents, tasks, data):
    path = str(tmp_path_factory.mktemp('prop') / 'app.sqlite')
    app_sqlite.generate(path, agents=0, skills=0, mcp_servers=0, tasks=0, large_prompt_kb=0)
    conn = sqlite3.connect(path)
    for number, agent in enumerate(agents, start=1):
        conn.execute('INSERT INTO agents (id, %s) VALUES (?, %s)' % (', '.join(agent), ', '.join('?' * len(agent))),
                     [number] + list(agent.values()))
    for number, task in enumerate(tasks, start=1):
        agent_id = data.draw(st.none() | st.integers(1, len(agents)))
        conn.execute('INSERT INTO tasks (id, agent_id, %s) VALUES (?, ?, %s)' % (', '.join(task), ', '.join('?' * len(task))),
                     [number * 7, agent_id] + list(task.values()))
    conn.commit()
    conn.close()
    db = postgresql_server.create_database('prop', template=app_template)
    try:
        result = migrate(postgresql_server, db, path)
        assert result['validation']['counts_match'] and result['validation']['checksums_match']
        assert result['tables']['agents']['loaded_rows'] == len(agents)
        assert result['tables']['tasks']['loaded_rows'] == len(tasks)
        assert migrate(postgresql_server, db, path)['changed'] is False
    finally:
        postgresql_server.drop_database(db)


# ---------------------------------------------------------------------------
# Secondary indexes and foreign keys are rebuilt after a large COPY, identically
# ---------------------------------------------------------------------------

def _definitions(server, db):
    indexes = server.query(db, "SELECT indexname, indexdef, obj_description(format('%I', indexname)::regclass, 'pg_class') "
                               "FROM pg_indexes WHERE schemaname = 'public'")
    constraints = server.query(db, "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), "
                                   "obj_description(oid, 'pg_constraint') FROM pg_constraint WHERE connamespace = 'public'::regnamespace")
    return sorted(indexes), sorted(constraints)


def test_indexes_and_foreign_keys_are_rebuilt_identically(postgresql_server, app_db, tmp_path, monkeypatch):
    monkeypatch.setattr(migration_load, 'REBUILD_MIN_ROWS', 100)
    postgresql_server.query(app_db, "COMMENT ON INDEX idx_tasks_status IS 'status lookups'")
    postgresql_server.query(app_db, "COMMENT ON CONSTRAINT tasks_agent_id_fkey ON tasks IS 'agent of the task'")
    before = _definitions(postgresql_server, app_db)
    src, _info = generate(tmp_path, agents=150, large_prompt_kb=0)
    result = migrate(postgresql_server, app_db, src)
    rebuilt = result['rebuilt_after_load']
    assert 'idx_tasks_result_gin' in rebuilt['tasks']['indexes'] and 'tasks_pkey' not in rebuilt['tasks']['indexes']
    assert sorted(rebuilt['tasks']['foreign_keys']) == ['tasks_agent_id_fkey', 'tasks_created_by_id_fkey']
    assert 'idx_agents_search_gin' in rebuilt['agents']['indexes']
    assert 'agents_name_key' not in rebuilt['agents']['indexes'] and 'agents_pkey' not in rebuilt['agents']['indexes']
    assert _definitions(postgresql_server, app_db) == before
    assert result['validation']['checksums_match'] and result['validation']['fk_orphans'] == 0


def test_rebuild_after_load_can_be_turned_off(postgresql_server, app_db, tmp_path, monkeypatch):
    monkeypatch.setattr(migration_load, 'REBUILD_MIN_ROWS', 100)
    src, _info = generate(tmp_path, large_prompt_kb=0)
    assert migrate(postgresql_server, app_db, src, rebuild_after_load=False)['rebuilt_after_load'] == {}


def test_server_timeouts_do_not_cut_the_load(postgresql_server, app_db, tmp_path):
    src, info = generate(tmp_path, tasks=30000, large_prompt_kb=0)
    postgresql_server.query(app_db, "ALTER DATABASE %s SET statement_timeout = '100ms'" % app_db)
    postgresql_server.query(app_db, "ALTER DATABASE %s SET idle_in_transaction_session_timeout = '100ms'" % app_db)
    started = time.time()
    result = migrate(postgresql_server, app_db, src)
    assert result['tables']['tasks']['loaded_rows'] == info['tables']['tasks']
    assert result['timings']['load_seconds'] > 0.1 or time.time() - started > 0.1


def test_a_lock_held_elsewhere_fails_cleanly(postgresql_server, app_db, tmp_path):
    src, _info = generate(tmp_path, large_prompt_kb=0)
    with held_lock(postgresql_server, app_db, 'LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE'):
        with pytest.raises(MigrationError, match='lock timeout'):
            migrate(postgresql_server, app_db, src, lock_timeout='200ms')
    assert_empty(postgresql_server, app_db)
    assert 'diff' not in migrate(postgresql_server, app_db, src)


@contextlib.contextmanager
def held_lock(server, db, sql):
    """Another session holding the lock ``sql`` takes; released after the block, or after 60 s at the latest.

    The release by timer keeps a run that ignored lock_timeout from hanging the suite: it then
    gets its lock and succeeds, and the test fails on that.
    """
    holder = server.connect(db)
    holder.autocommit = False
    holder.cursor().execute(sql)
    release = threading.Timer(60, holder.rollback)
    release.start()
    try:
        yield
    finally:
        release.cancel()
        holder.rollback()
        holder.close()


@pytest.mark.parametrize('check_mode', [False, True], ids=['real', 'check'])
def test_lock_timeout_fails_fast_naming_the_table(postgresql_server, app_db, tmp_path, check_mode):
    src, _info = generate(tmp_path, large_prompt_kb=0)
    # The throwaway server's lock_timeout is 0 (wait forever): only the option can end the wait.
    assert postgresql_server.query(app_db, 'SHOW lock_timeout') == [('0',)]
    with held_lock(postgresql_server, app_db, 'LOCK TABLE skills IN ROW EXCLUSIVE MODE'):  # the app in a write
        with pytest.raises(MigrationError) as raised:
            migrate(postgresql_server, app_db, src, check_mode=check_mode, lock_timeout='300ms')
    assert raised.value.msg.startswith('gave up after lock_timeout=300ms waiting for a lock on table "public"."skills" '
                                       '(SHARE ROW EXCLUSIVE)')
    assert 'nothing was written' in raised.value.msg
    assert_empty(postgresql_server, app_db)


def test_a_replace_waits_for_readers_only_up_to_lock_timeout(postgresql_server, app_db, tmp_path):
    """TRUNCATE needs ACCESS EXCLUSIVE, which waits for the app's readers; even a dry run stops after lock_timeout."""
    src, _info = generate(tmp_path, large_prompt_kb=0)
    migrate(postgresql_server, app_db, src)
    update_source(src, "UPDATE agents SET description = 'changed' WHERE id = 1")
    with held_lock(postgresql_server, app_db, 'SELECT count(*) FROM agents'):  # a reader in an open transaction
        with pytest.raises(MigrationError, match=r'waiting for a lock on tables agents, .* \(ACCESS EXCLUSIVE, to TRUNCATE them\)'):
            migrate(postgresql_server, app_db, src, check_mode=True, on_conflict='replace', lock_timeout='300ms')
    assert migrate(postgresql_server, app_db, src, on_conflict='replace')['action'] == 'replace'


def test_an_invalid_lock_timeout_is_refused(postgresql_server, app_db, tmp_path):
    src, _info = generate(tmp_path, large_prompt_kb=0)
    with pytest.raises(MigrationError, match="lock_timeout 'soon' is not a duration PostgreSQL accepts"):
        migrate(postgresql_server, app_db, src, lock_timeout='soon')


def update_source(src, sql, *args):
    conn = sqlite3.connect(src)
    conn.execute(sql, args)
    conn.commit()
    conn.close()
