# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for plugins/filter/cluster.py: the replication filters over plugins/module_utils/pg_cluster.py.

The decisions are tested in tests/unit/plugins/module_utils/test_pg_cluster.py; here, that each filter is the
right function, that a ValueError reaches the play as AnsibleFilterError with the filter's name in front, and
that the filters work in a real play (ansible-core's templating hands them its own dict, list and str types).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import inspect
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.agent_ui.postgresql.plugins.filter import cluster
from ansible_collections.agent_ui.postgresql.plugins.module_utils import pg_cluster

REPO = pathlib.Path(__file__).resolve().parents[4]
FILTERS = cluster.FilterModule().filters()

PRIMARY = {'reachable': True, 'data': True, 'running': True, 'in_recovery': False, 'system_identifier': '42',
           'current_lsn': '0/5000100'}
REPLICA = {'reachable': True, 'data': True, 'running': True, 'in_recovery': True, 'system_identifier': '42', 'standby_signal': True,
           'receive_lsn': '0/5000000', 'replay_lsn': '0/5000000', 'replay_pause_state': 'not paused', 'primary_host': 'pg1',
           'wal_receiver': {'status': 'streaming', 'sender_host': 'pg1'}}
STATES = {'pg1': PRIMARY, 'pg2': REPLICA, 'pg3': dict(REPLICA, receive_lsn='0/4000000', replay_lsn='0/4000000')}
MEMBERS = ['pg1', 'pg2', 'pg3']


def test_the_filters():
    assert sorted(FILTERS) == ['pg_failover_plan', 'pg_lsn_diff', 'pg_switchover_plan', 'pg_sync_standby_names', 'pg_topology']


@pytest.mark.parametrize('name, function, args', [
    ('pg_topology', pg_cluster.cluster_topology, (STATES, MEMBERS, 'pg1')),
    ('pg_failover_plan', pg_cluster.failover_plan, (STATES, MEMBERS, {'force': True})),
    ('pg_switchover_plan', pg_cluster.switchover_plan, (STATES, MEMBERS, {'target': 'pg2', 'max_lag_bytes': 1024})),
    ('pg_sync_standby_names', pg_cluster.sync_standby_names_for, ('pg1', MEMBERS, 2, 'FIRST')),
    ('pg_lsn_diff', pg_cluster.lsn_diff, ('0/3000000', '0/2000000')),
])
def test_each_filter_is_its_function(name, function, args):
    assert FILTERS[name].__name__ == name
    assert FILTERS[name].__doc__ == function.__doc__
    assert FILTERS[name](*args) == function(*args)


def doc_options(name):
    return yaml.safe_load((REPO / 'plugins' / 'filter' / (name + '.yml')).read_text())['DOCUMENTATION']['options']


def test_documented_defaults_are_the_code_defaults():
    defaults = inspect.signature(pg_cluster.sync_standby_names_for).parameters
    options = doc_options('pg_sync_standby_names')
    assert options['num']['default'] == defaults['num'].default
    assert options['method']['default'] == defaults['method'].default
    assert options['method']['choices'] == list(pg_cluster.SYNC_METHODS)
    max_lag = doc_options('pg_switchover_plan')['params']['suboptions']['max_lag_bytes']
    assert max_lag['default'] == pg_cluster.DEFAULT_MAX_LAG_BYTES


def test_pg_lsn_diff():
    assert FILTERS['pg_lsn_diff']('0/3000000', '0/2000000') == 16777216
    assert FILTERS['pg_lsn_diff'](None, '0/2000000') is None


def test_pg_sync_standby_names_defaults():
    assert FILTERS['pg_sync_standby_names']('pg2', MEMBERS) == 'ANY 1 ("pg1", "pg3")'


@pytest.mark.parametrize('name, args, message', [
    ('pg_lsn_diff', ('0/XYZ', '0/1'), "pg_lsn_diff: '0/XYZ' is not an LSN"),
    ('pg_sync_standby_names', ('pg1', MEMBERS, 3), 'pg_sync_standby_names: num is 3 but pg1 has only 2 other members'),
    ('pg_topology', ([], MEMBERS, 'pg1'), 'pg_topology: states must be a dict, got list'),
    ('pg_failover_plan', (STATES, MEMBERS, {'force': 'perhaps'}), "pg_failover_plan: params.force must be true or false"),
    ('pg_switchover_plan', (STATES, 'pg1', {}), 'pg_switchover_plan: members must be a list'),
])
def test_errors_become_filter_errors_named_after_the_filter(name, args, message):
    with pytest.raises(AnsibleFilterError) as caught:
        FILTERS[name](*args)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value.__cause__, ValueError)


def test_imports_and_raises_without_ansible(without_ansible):
    plain = without_ansible(cluster)
    with pytest.raises(plain.AnsibleFilterError, match='^pg_lsn_diff: '):
        plain.pg_lsn_diff('nonsense', '0/1')


PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    states: %(states)s
    members: %(members)s
    sync_text: ANY 1 ("pg2", "pg3")
  tasks:
    - name: Every filter, through Jinja
      ansible.builtin.set_fact:
        lsn_diff: "{{ '0/3000000' | agent_ui.postgresql.pg_lsn_diff('0/2000000') }}"
        sync_names: "{{ 'pg1' | agent_ui.postgresql.pg_sync_standby_names(members, 1, 'ANY') }}"
        topology: "{{ states | agent_ui.postgresql.pg_topology(members, 'pg2') }}"
        failover: "{{ states | agent_ui.postgresql.pg_failover_plan(members, {'force': 'true' | bool, 'sync': sync_text}) }}"
        switchover: "{{ states | agent_ui.postgresql.pg_switchover_plan(members, {'target': none, 'max_lag_bytes': 256}) }}"

    - name: Show them
      ansible.builtin.debug:
        msg: "{{ {'lsn_diff': lsn_diff, 'sync_names': sync_names, 'topology': topology, 'failover': failover,
                  'switchover': switchover} | to_json }}"

    - name: A filter error stops the play with the filter's name
      ansible.builtin.debug:
        msg: "{{ 'pg1' | agent_ui.postgresql.pg_sync_standby_names(members, 5) }}"
      ignore_errors: true
      register: refused

    - name: Show the error
      ansible.builtin.debug:
        msg: "{{ refused.msg }}"
"""


@pytest.fixture(scope='module', name='play_output')
def fixture_play_output(tmp_path_factory):
    playbook = tmp_path_factory.mktemp('play') / 'play.yml'
    playbook.write_text(PLAY % {'states': json.dumps(STATES), 'members': json.dumps(MEMBERS)})
    command = shutil.which('ansible-playbook', path=os.path.dirname(sys.executable)) or shutil.which('ansible-playbook')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / 'collections'), ANSIBLE_NOCOLOR='1', ANSIBLE_STDOUT_CALLBACK='json',
               ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
    result = subprocess.run([command, '-i', 'localhost,', '-c', 'local', str(playbook)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=str(playbook.parent), universal_newlines=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = json.loads(result.stdout)['plays'][0]['tasks']
    return {task['task']['name']: task['hosts']['localhost'] for task in tasks}


def test_filters_in_a_play(play_output):
    shown = json.loads(play_output['Show them']['msg'])
    assert shown['lsn_diff'] == 16777216
    assert shown['sync_names'] == 'ANY 1 ("pg2", "pg3")'
    assert shown['topology']['primary'] == 'pg1' and shown['topology']['replicas'] == ['pg2', 'pg3']
    assert shown['topology']['notes'][0].startswith('pg1 is the running primary, not pg2')
    assert shown['failover']['action'] == 'promote' and shown['failover']['fence'] == ['pg1']
    assert shown['failover']['candidate'] == 'pg2' and shown['failover']['sync_provable'] is True
    assert shown['failover']['lost_bytes'] == 256
    assert shown['switchover']['action'] == 'switchover' and shown['switchover']['target'] == 'pg2'
    assert shown['switchover']['lag_bytes'] == 256 and shown['switchover']['repoint'] == ['pg3']


def test_a_filter_error_in_a_play(play_output):
    assert 'pg_sync_standby_names: num is 5 but pg1 has only 2 other members' in play_output['Show the error']['msg']
