# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The thin module: documentation matches the argument spec, and main() maps results and errors."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import sqlite3
import subprocess
import sys

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

import app_sqlite
from conftest import REPO
from ansible_collections.agent_ui.postgresql.plugins.modules import sqlite_to_postgresql as module

MODULE = 'ansible_collections.agent_ui.postgresql.plugins.modules.sqlite_to_postgresql'


def run_module(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def run_module_process(args, tmp_path):
    """Run the module as Ansible does: a Python process reading its arguments, printing one JSON result.

    Returns (return code, the parsed result, stderr).  A traceback is what Ansible shows as
    MODULE FAILURE: stdout that is not JSON, the stack on stderr.
    """
    args_file = tmp_path / 'module-args.json'
    args_file.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
    env = dict(os.environ, PYTHONPATH=str(REPO / 'collections'))
    proc = subprocess.run([sys.executable, '-m', MODULE, str(args_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, cwd=str(tmp_path), timeout=300, check=False)
    assert 'Traceback' not in proc.stderr and 'Traceback' not in proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def assert_clean_failure(outcome, *words):
    returncode, result, _stderr = outcome
    assert returncode == 1 and result['failed'] is True
    assert 'exception' not in result
    for word in words:
        assert word in result['msg'], result['msg']
    return result


def test_documentation_matches_argument_spec():
    doc = yaml.safe_load(module.DOCUMENTATION)
    spec = module.argument_spec()
    assert sorted(doc['options']) == sorted(spec)
    for name, option in doc['options'].items():
        assert option['type'] == spec[name]['type'], name
        assert option.get('default') == spec[name].get('default'), name
        assert option.get('choices') == spec[name].get('choices'), name
        assert option.get('required', False) == spec[name].get('required', False), name
    assert doc['version_added'] == '0.1.0'
    assert doc['attributes']['check_mode']['support'] == 'full'
    assert doc['attributes']['diff_mode']['support'] == 'full'
    yaml.safe_load(module.EXAMPLES)
    returned = yaml.safe_load(module.RETURN)
    assert all({'description', 'returned', 'type', 'sample'} <= set(value) for value in returned.values())


def test_missing_psycopg2_fails_politely(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(module, 'HAS_PSYCOPG2', False)
    result = run_module({'src': str(tmp_path / 'x.sqlite')}, capsys)
    assert result['failed'] is True
    assert 'psycopg2' in result['msg'] and 'Failed to import the required Python library' in result['msg']


def test_module_loads_then_reports_no_change(postgresql_server, app_db, tmp_path, capsys):
    src = str(tmp_path / 'app.sqlite')
    info = app_sqlite.generate(src, agents=5, skills=5, mcp_servers=3, tasks=50, large_prompt_kb=0)
    args = dict(postgresql_server.params(app_db), src=src, _ansible_diff=True)
    first = run_module(args, capsys)
    assert first['changed'] is True
    assert first['diff']['after']['tables'] == info['tables']
    second = run_module(args, capsys)
    assert second['changed'] is False


def test_module_check_mode_writes_nothing(postgresql_server, app_db, tmp_path, capsys):
    src = str(tmp_path / 'app.sqlite')
    app_sqlite.generate(src, agents=5, skills=5, mcp_servers=3, tasks=50, large_prompt_kb=0)
    result = run_module(dict(postgresql_server.params(app_db), src=src, _ansible_check_mode=True), capsys)
    assert result['changed'] is True and result['plan']['agents']['rows_to_load'] == 5
    assert postgresql_server.query(app_db, 'SELECT count(*) FROM agents')[0][0] == 0


def test_module_fails_with_problems(postgresql_server, app_db, tmp_path, capsys):
    src = str(tmp_path / 'app.sqlite')
    app_sqlite.generate(src, agents=5, skills=5, mcp_servers=3, tasks=50, large_prompt_kb=0, bad='enum')
    result = run_module(dict(postgresql_server.params(app_db), src=src), capsys)
    assert result['failed'] is True
    assert 'nothing was written' in result['msg']
    assert result['problems'][0]['class'] == 'enum'
    assert postgresql_server.query(app_db, 'SELECT count(*) FROM agents')[0][0] == 0


def test_module_rejects_bad_policies(tmp_path, capsys):
    src = str(tmp_path / 'app.sqlite')
    app_sqlite.generate(src, agents=1, skills=1, mcp_servers=1, tasks=1, large_prompt_kb=0)
    result = run_module({'src': src, 'policies': {'unique': 'fix'}}, capsys)
    assert result['failed'] is True and 'has no fix rule' in result['msg']


# ---------------------------------------------------------------------------
# Errors end in a clear failure, never a traceback, and nothing is written
# ---------------------------------------------------------------------------

def small_app(tmp_path, **kwargs):
    src = str(tmp_path / 'app.sqlite')
    options = dict(agents=5, skills=5, mcp_servers=3, tasks=50, large_prompt_kb=0)
    options.update(kwargs)
    app_sqlite.generate(src, **options)
    return src


def agents_in(server, db):
    return server.query(db, 'SELECT count(*) FROM agents')[0][0]


@pytest.mark.parametrize('where', ['a directory', 'a missing directory'])
def test_a_report_path_that_cannot_be_written_fails_before_loading(postgresql_server, app_db, tmp_path, where):
    src = small_app(tmp_path)
    report = tmp_path / 'reports'
    if where == 'a directory':
        report.mkdir()
    else:
        report = report / 'report.json'
    outcome = run_module_process(dict(postgresql_server.params(app_db), src=src, report=str(report)), tmp_path)
    assert_clean_failure(outcome, 'report %s' % report, 'nothing was read or written')
    assert agents_in(postgresql_server, app_db) == 0


def test_a_refused_password_is_a_clear_failure(postgresql_server, app_db, tmp_path):
    src = small_app(tmp_path)
    role = 'pw_refused'
    hba = postgresql_server.query('postgres', 'SHOW hba_file')[0][0]
    with open(hba) as handle:
        original = handle.read()
    postgresql_server.query('postgres', 'DROP ROLE IF EXISTS %s' % role)
    postgresql_server.query('postgres', "SET password_encryption = 'scram-sha-256'; CREATE ROLE %s LOGIN PASSWORD 'right'" % role)
    try:
        # The throwaway server trusts every local connection; this role alone must give its password.
        with open(hba, 'w') as handle:
            handle.write('local all %s scram-sha-256\n%s' % (role, original))
        postgresql_server.query('postgres', 'SELECT pg_reload_conf()')
        args = dict(postgresql_server.params(app_db), src=src, login_user=role, login_password='wrong')
        result = assert_clean_failure(run_module_process(args, tmp_path), 'cannot connect to the target database',
                                      'password authentication failed for user "%s"' % role)
        assert 'wrong' not in result['msg']
    finally:
        with open(hba, 'w') as handle:
            handle.write(original)
        postgresql_server.query('postgres', 'SELECT pg_reload_conf()')
        postgresql_server.query('postgres', 'DROP ROLE IF EXISTS %s' % role)
    assert agents_in(postgresql_server, app_db) == 0


def test_a_source_locked_by_a_writer_is_a_clear_failure(postgresql_server, app_db, tmp_path):
    src = small_app(tmp_path)
    writer = sqlite3.connect(src, isolation_level=None)
    writer.execute('BEGIN EXCLUSIVE')
    try:
        outcome = run_module_process(dict(postgresql_server.params(app_db), src=src), tmp_path)
    finally:
        writer.execute('ROLLBACK')
        writer.close()
    assert_clean_failure(outcome, 'the source %s is locked by another connection' % src, 'Nothing was written')
    assert agents_in(postgresql_server, app_db) == 0


@pytest.mark.parametrize('rebuild', [True, False], ids=['counted-first', 'inside-copy'])
def test_a_source_that_breaks_mid_load_is_rolled_back(postgresql_server, app_db, tmp_path, rebuild):
    """With rebuild_after_load the broken table fails its row count; without, its rows fail inside COPY's producer thread."""
    src = small_app(tmp_path, tasks=3000)
    conn = sqlite3.connect(src)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
    page = conn.execute('PRAGMA page_size').fetchone()[0]
    conn.close()
    with open(src, 'r+b') as handle:  # the tasks table's root page: readable header, unreadable rows
        handle.seek((root - 1) * page)
        handle.write(b'\xff' * page)
    outcome = run_module_process(dict(postgresql_server.params(app_db), src=src, rebuild_after_load=rebuild), tmp_path)
    assert_clean_failure(outcome, 'the source %s failed (DatabaseError: database disk image is malformed)' % src,
                         'rolled back, nothing was written')
    assert agents_in(postgresql_server, app_db) == 0


def test_an_unforeseen_error_is_a_clear_failure(monkeypatch, capsys, tmp_path):
    """A bug still ends in fail_json; the stack goes to its ``exception`` key, which Ansible shows only when asked."""
    def broken(*_args, **_kwargs):
        raise RuntimeError('boom')
    monkeypatch.setattr(module, 'run', broken)
    result = run_module({'src': small_app(tmp_path)}, capsys)
    assert result['failed'] is True
    assert result['msg'].startswith('sqlite_to_postgresql stopped on an unexpected RuntimeError: boom; the transaction was rolled back')
    assert 'Traceback' not in result['msg']
