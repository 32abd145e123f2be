# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The thin module: documentation matches the argument spec, and main() maps results and errors."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

import app_sqlite
from ansible_collections.agent_ui.postgresql.plugins.modules import sqlite_to_postgresql as module


def run_module(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


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
