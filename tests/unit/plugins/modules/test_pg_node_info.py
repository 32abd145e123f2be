# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The thin pg_node_info module: documentation matches the argument spec, main() returns the node or fails clearly."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.agent_ui.postgresql.plugins.module_utils import pg_node
from ansible_collections.agent_ui.postgresql.plugins.modules import pg_node_info as module


def run_module(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def assert_option_matches(name, option, spec):
    assert option['type'] == spec['type'], name
    assert option.get('default') == spec.get('default'), name
    assert option.get('choices') == spec.get('choices'), name
    assert option.get('required', False) == spec.get('required', False), name
    assert option.get('elements') == spec.get('elements'), name
    assert sorted(option.get('suboptions') or {}) == sorted(spec.get('options') or {}), name
    for sub, suboption in (option.get('suboptions') or {}).items():
        assert_option_matches('%s.%s' % (name, sub), suboption, spec['options'][sub])


def test_documentation_matches_argument_spec():
    doc = yaml.safe_load(module.DOCUMENTATION)
    spec = pg_node.argument_spec()
    assert sorted(doc['options']) == sorted(spec)
    for name, option in doc['options'].items():
        assert_option_matches(name, option, spec[name])
    assert doc['attributes']['check_mode']['support'] == 'full'
    assert doc['attributes']['diff_mode']['support'] == 'none'
    assert yaml.safe_load(module.EXAMPLES)
    returned = yaml.safe_load(module.RETURN)
    assert all({'description', 'returned', 'type', 'sample'} <= set(value) for value in returned.values())
    # The sample shows every key of the node, and only those.
    assert list(returned['node']['sample']) == list(pg_node.NODE_KEYS)


def fake_gather(seen):
    def gather(params):
        seen.append(params)
        node = pg_node.empty_node()
        node.update(installed=False, data=False, placeholder=False, standby_signal=False, running=False)
        return node
    return gather


@pytest.mark.parametrize('check_mode', [False, True])
def test_main_returns_the_node_unchanged(monkeypatch, capsys, check_mode):
    seen = []
    monkeypatch.setattr(module, 'gather', fake_gather(seen))
    args = {'version': 16, 'peers': [{'name': 'pg2', 'host': '10.0.0.12'}], '_ansible_check_mode': check_mode}
    result = run_module(args, capsys)
    assert result['changed'] is False and 'failed' not in result
    assert list(result['node']) == list(pg_node.NODE_KEYS)
    assert seen[0]['peers'] == [{'name': 'pg2', 'host': '10.0.0.12', 'port': 5432}]
    assert seen[0]['cluster_name'] == 'main' and seen[0]['os_user'] == 'postgres' and seen[0]['wal_end'] is False


def test_main_on_a_host_without_postgresql(monkeypatch, capsys, tmp_path):
    """The real gather() on this host for a version that is not installed: a report, not a failure."""
    result = run_module({'version': 99, 'data_dir': str(tmp_path / 'none'), 'service': 'agent-ui-no-such-unit'}, capsys)
    node = result['node']
    assert result['changed'] is False and 'failed' not in result
    assert (node['installed'], node['data'], node['running']) == (False, False, False)
    assert node['timeline'] is None and node['wal_end_lsn'] is None


def test_main_fails_clearly_without_runuser(monkeypatch, capsys):
    def gather(params):
        raise pg_node.NodeInfoError('runuser is missing')
    monkeypatch.setattr(module, 'gather', gather)
    result = run_module({'version': 15}, capsys)
    assert result['failed'] is True and result['msg'] == 'runuser is missing' and 'exception' not in result


def test_main_reports_a_bug_without_a_traceback_in_the_message(monkeypatch, capsys):
    def gather(params):
        raise KeyError('oops')
    monkeypatch.setattr(module, 'gather', gather)
    result = run_module({'version': 15}, capsys)
    assert result['failed'] is True and 'unexpected KeyError' in result['msg'] and 'report this as a bug' in result['msg']


def test_probe_timeout_must_be_positive(capsys):
    result = run_module({'version': 15, 'probe_timeout': 0}, capsys)
    assert result['failed'] is True and 'probe_timeout' in result['msg']


def test_peer_without_host_is_refused(capsys):
    result = run_module({'version': 15, 'peers': [{'name': 'pg2'}]}, capsys)
    assert result['failed'] is True and 'host' in result['msg']
