# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for plugins/filter/incident.py: the filters of failover.yml, switchover.yml and rejoin.yml.

The registered results are shaped as Ansible registers them (a loop of wait_for with failed_when: false, a
postgresql_query, a skipped task); the last tests run the filters in a real play, on real registered results.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.agent_ui.postgresql.plugins.filter import incident
from ansible_collections.agent_ui.postgresql.plugins.filter.incident import (
    pg_failover_summary, pg_hosts_where, pg_port_open, pg_prefer_addresses, pg_rejoin_plan,
)
from ansible_collections.agent_ui.postgresql.plugins.module_utils import pg_cluster, pg_rejoin

REPO = pathlib.Path(__file__).resolve().parents[4]
MEMBERS = ['pg1', 'pg2', 'pg3']
ENDPOINTS = [{'name': 'pg1', 'host': 'pg1.internal', 'port': 5432}, {'name': 'pg2', 'host': 'pg2.internal', 'port': 5433},
             {'name': 'pg3', 'host': 'pg3.internal', 'port': 5432}]


def test_the_filters():
    assert incident.FilterModule().filters() == {
        'pg_prefer_addresses': pg_prefer_addresses, 'pg_port_open': pg_port_open, 'pg_hosts_where': pg_hosts_where,
        'pg_failover_summary': pg_failover_summary, 'pg_rejoin_plan': pg_rejoin_plan}


# ---------------------------------------------------------------------------
# pg_prefer_addresses
# ---------------------------------------------------------------------------

def test_prefer_the_first_address_a_member_reported():
    states = {'pg1': {'reachable': True, 'addresses': ['10.89.0.3', '192.0.2.7']},
              'pg2': {'reachable': False},
              'pg3': {'reachable': True, 'addresses': []}}
    assert pg_prefer_addresses(ENDPOINTS, states) == [
        {'name': 'pg1', 'host': '10.89.0.3', 'port': 5432},
        {'name': 'pg2', 'host': 'pg2.internal', 'port': 5433},
        {'name': 'pg3', 'host': 'pg3.internal', 'port': 5432}]


def test_prefer_skips_empty_addresses_and_members_without_a_state():
    states = {'pg1': {'reachable': True, 'addresses': ['', None, '10.89.0.3']}, 'pg2': None, 'pg3': {'addresses': None}}
    assert [endpoint['host'] for endpoint in pg_prefer_addresses(ENDPOINTS, states)] == ['10.89.0.3', 'pg2.internal', 'pg3.internal']
    assert [endpoint['host'] for endpoint in pg_prefer_addresses(ENDPOINTS, {})] == ['pg1.internal', 'pg2.internal', 'pg3.internal']


def test_prefer_returns_new_dicts_with_every_key():
    endpoints = [dict(ENDPOINTS[0], extra='kept')]
    result = pg_prefer_addresses(endpoints, {'pg1': {'addresses': ['10.89.0.3']}})
    assert result == [{'name': 'pg1', 'host': '10.89.0.3', 'port': 5432, 'extra': 'kept'}]
    assert endpoints[0]['host'] == 'pg1.internal'
    unchanged = pg_prefer_addresses(endpoints, {})
    assert unchanged == endpoints and unchanged[0] is not endpoints[0]


def test_prefer_refuses_states_that_are_not_a_dict():
    with pytest.raises(AnsibleFilterError, match='^pg_prefer_addresses: states must be a dict'):
        pg_prefer_addresses(ENDPOINTS, [])


# ---------------------------------------------------------------------------
# pg_port_open
# ---------------------------------------------------------------------------

def started(endpoint):
    """wait_for that connected (exit_json)."""
    return {'item': endpoint, 'ansible_loop_var': 'item', 'changed': False, 'failed': False, 'state': 'started',
            'port': endpoint['port'], 'path': None, 'search_regex': None, 'match_groups': [], 'match_groupdict': {}, 'elapsed': 0}


def timed_out(endpoint):
    """wait_for that timed out (fail_json), registered with failed_when: false."""
    return {'item': endpoint, 'ansible_loop_var': 'item', 'changed': False, 'failed': False, 'failed_when_result': False,
            'elapsed': 1, 'msg': 'Timeout when waiting for %s:%d' % (endpoint['host'], endpoint['port'])}


def test_port_open_when_wait_for_started():
    results = [started(ENDPOINTS[0]), timed_out(ENDPOINTS[1]), started(ENDPOINTS[2])]
    registered = {'changed': False, 'msg': 'All items completed', 'results': results}
    assert pg_port_open(registered) == {'pg1': True, 'pg2': False, 'pg3': True}


def test_port_open_takes_the_results_list_too():
    assert pg_port_open([timed_out(ENDPOINTS[0]), started(ENDPOINTS[1])]) == {'pg1': False, 'pg2': True}
    assert pg_port_open({'results': []}) == {} and pg_port_open({}) == {}


def test_a_failed_wait_for_is_closed_even_with_a_state():
    # Without failed_when: false (or with another task that reports state), a failed result never counts as open.
    assert pg_port_open([dict(started(ENDPOINTS[0]), failed=True)]) == {'pg1': False}
    assert pg_port_open([dict(timed_out(ENDPOINTS[0]), state='stopped')]) == {'pg1': False}


def test_port_open_needs_the_endpoint_as_item():
    with pytest.raises(AnsibleFilterError, match='^pg_port_open: each result needs the endpoint'):
        pg_port_open([{'state': 'started'}])
    with pytest.raises(AnsibleFilterError, match='^pg_port_open: '):
        pg_port_open([{'item': {'host': '10.0.0.11'}, 'state': 'started'}])


# ---------------------------------------------------------------------------
# pg_hosts_where
# ---------------------------------------------------------------------------

def query(**row):
    return {'changed': False, 'failed': False, 'query': 'SELECT pg_is_in_recovery() AS in_recovery', 'query_result': [row],
            'rowcount': 1, 'statusmessage': 'SELECT 1'}


SKIPPED = {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False', 'false_condition': 'x'}


def test_hosts_where_in_recovery_is_false():
    hostvars = {'pg1': {'recheck': SKIPPED}, 'pg2': {'recheck': query(in_recovery=True)},
                'pg3': {'recheck': query(in_recovery=False)}, 'pg4': {'recheck': query(in_recovery=False)}}
    assert pg_hosts_where(['pg4', 'pg1', 'pg2', 'pg3'], hostvars, 'recheck', 'in_recovery', False) == ['pg4', 'pg3']
    assert pg_hosts_where(['pg1', 'pg2', 'pg3'], hostvars, 'recheck', 'in_recovery', True) == ['pg2']


def test_hosts_where_rc_is_nonzero():
    def command(rc):
        return {'changed': rc == 0, 'failed': False, 'rc': rc, 'cmd': ['mkdir', '/run/lock'], 'stdout': '', 'stderr': ''}
    hostvars = {'pg1': {'lock': command(0)}, 'pg2': {'lock': command(1)}, 'pg3': {'lock': SKIPPED}, 'pg4': {'lock': command(2)},
                'pg5': {'lock': {'changed': False, 'failed': False}}}
    assert pg_hosts_where(['pg1', 'pg2', 'pg3', 'pg4', 'pg5'], hostvars, 'lock', 'rc', 'nonzero') == ['pg2', 'pg4']
    assert pg_hosts_where(['pg1', 'pg2', 'pg3', 'pg4', 'pg5'], hostvars, 'lock', 'rc', 0) == ['pg1']


def test_hosts_where_leaves_out_what_cannot_tell():
    hostvars = {'pg1': {}, 'pg2': {'recheck': 'text'}, 'pg3': {'recheck': dict(query(), query_result=[])},
                'pg4': {'recheck': {'unreachable': True, 'msg': 'Failed to connect'}}}
    for value in (False, None, 'nonzero'):
        found = pg_hosts_where(['pg1', 'pg2', 'pg3', 'pg4', 'pg9'], hostvars, 'recheck', 'in_recovery', value)
        assert found == (['pg3', 'pg4'] if value is None else [])
    assert pg_hosts_where(['pg1'], None, 'recheck', 'in_recovery', False) == []


def test_hosts_where_leaves_out_skipped_results_whatever_they_hold():
    hostvars = {'pg1': {'recheck': SKIPPED}, 'pg2': {'recheck': {'changed': False, 'failed': False}}}
    assert pg_hosts_where(['pg1', 'pg2'], hostvars, 'recheck', 'changed', False) == ['pg2']
    assert pg_hosts_where(['pg1', 'pg2'], hostvars, 'recheck', 'in_recovery', None) == ['pg2']


def test_hosts_where_reads_the_first_row_only():
    result = dict(query(), query_result=[{'in_recovery': True}, {'in_recovery': False}])
    assert pg_hosts_where(['pg1'], {'pg1': {'recheck': result}}, 'recheck', 'in_recovery', False) == []


# ---------------------------------------------------------------------------
# pg_failover_summary
# ---------------------------------------------------------------------------

RANKING = [{'host': 'pg2', 'position': 83886080, 'lsn': '0/5000000', 'paused': False, 'streaming': False},
           {'host': 'pg3', 'position': 67108864, 'lsn': '0/4000000', 'paused': True, 'streaming': True}]


def plan(**changes):
    """A promoting plan as pg_failover_plan returns it."""
    result = {'action': 'promote', 'reason': 'no primary is running', 'old_primary': 'pg1', 'old_primary_down': True,
              'fence': ['pg1'], 'candidate': 'pg2', 'candidate_lsn': '0/5000000', 'ranking': RANKING, 'repoint': ['pg3'],
              'skipped': [{'host': 'pg4', 'why': 'stopped'}], 'sync_provable': None, 'sync_reason': 'asynchronous replication.',
              'lost_bytes': 256, 'lost_estimate': 'exact: 256 bytes.', 'system_identifier': '42', 'notes': []}
    result.update(changes)
    return result


def finished(**changes):
    done = dict(new_primary='pg2', timeline=3, promote_lsn='0/5000000', first_write_lsn='0/50000D8', elapsed_seconds=4.2)
    done.update(changes)
    return plan(**done)


def test_summary_of_a_refusal():
    refusal = plan(action='refuse', reason='pg1 is a running primary: a failover is not needed.', lost_bytes=None)
    assert pg_failover_summary(refusal) == [
        'REFUSED: pg1 is a running primary: a failover is not needed.',
        '  candidate pg2 at 0/5000000',
        '  candidate pg3 at 0/4000000 (replay paused) (still streaming)',
        '  not a candidate: pg4: stopped']


def test_summary_of_a_refusal_names_nothing_as_fenced_or_repointed():
    """A refusal changes nothing, though pg_failover_plan has filled fence and repoint (here: commits not provable)."""
    common = dict(reachable=True, installed=True, data=True, placeholder=False, system_identifier='42', timeline=2)
    replica = dict(common, running=True, in_recovery=True, standby_signal=True, replay_pause_state='not paused', primary_host='pg1')
    states = {'pg1': dict(common, running=False, standby_signal=False, wal_end_lsn='0/5000100'),
              'pg2': dict(replica, receive_lsn='0/5000000', replay_lsn='0/5000000'),
              'pg3': dict(replica, receive_lsn='0/4000000', replay_lsn='0/4000000')}
    refusal = pg_cluster.failover_plan(states, MEMBERS, {'sync': 'FIRST 1 (pg1)'})
    assert refusal['action'] == 'refuse' and refusal['fence'] == ['pg1'] and refusal['repoint'] == ['pg3']
    lines = pg_failover_summary(refusal)
    assert lines[0] == 'REFUSED: ' + refusal['reason']
    assert not [line for line in lines if 'fence' in line or 'repoint' in line]


def test_summary_of_a_plan():
    assert pg_failover_summary(plan()) == [
        'plan: promote pg2 (at 0/5000000); old primary pg1',
        "WAL lost: 256 bytes behind the old primary's last WAL position. exact: 256 bytes.",
        'commits: asynchronous replication.',
        '  candidate pg2 at 0/5000000',
        '  candidate pg3 at 0/4000000 (replay paused) (still streaming)',
        '  not a candidate: pg4: stopped',
        'to fence (stopped and masked): pg1',
        'to repoint: pg3']


def test_a_plan_with_no_new_primary_yet_is_a_plan():
    # failover.yml's report of a refusal sets new_primary to null; elapsed_seconds belongs to a finished failover only.
    assert pg_failover_summary(plan(new_primary=None, elapsed_seconds=1.5)) == pg_failover_summary(plan())


def test_summary_of_a_plan_with_an_unknown_old_primary_and_loss():
    lines = pg_failover_summary(plan(old_primary=None, lost_bytes=None, lost_estimate='unknown: the old primary is not known.',
                                     sync_reason='', fence=[], repoint=[], skipped=[], ranking=RANKING[:1]))
    assert lines == ['plan: promote pg2 (at 0/5000000); old primary unknown',
                     'WAL lost: unknown. unknown: the old primary is not known.',
                     '  candidate pg2 at 0/5000000']


def test_summary_of_a_finished_failover():
    assert pg_failover_summary(finished(lost_bytes=16777216, lost_estimate='exact.')) == [
        'old primary: pg1 -> new primary: pg2, timeline 3',
        'LSN at promotion: 0/5000000 (first write on the new primary at 0/50000D8)',
        "WAL lost: 16777216 bytes (16.0 MB) behind the old primary's last WAL position. exact.",
        'commits: asynchronous replication.',
        '  candidate pg2 at 0/5000000',
        '  candidate pg3 at 0/4000000 (replay paused) (still streaming)',
        '  not a candidate: pg4: stopped',
        'fenced (stopped and masked): pg1',
        'repointed: pg3',
        'elapsed: 4.2 s']


def test_summary_of_a_finished_failover_with_an_unknown_loss():
    lines = pg_failover_summary(finished(old_primary=None, lost_bytes=None, lost_estimate='unknown: pg1 is unreachable.',
                                         elapsed_seconds=None))
    assert lines[:3] == ['old primary: unknown -> new primary: pg2, timeline 3',
                         'LSN at promotion: 0/5000000 (first write on the new primary at 0/50000D8)',
                         'WAL lost: unknown. unknown: pg1 is unreachable.']
    assert not [line for line in lines if line.startswith('elapsed')]


@pytest.mark.parametrize('lost, words', [
    (0, '0 bytes'),
    (1023, '1023 bytes'),
    (1024, '1024 bytes (1.0 kB)'),
    (1536, '1536 bytes (1.5 kB)'),
    (1048575, '1048575 bytes (1024.0 kB)'),
    (1048576, '1048576 bytes (1.0 MB)'),
    (3 * 1024 ** 3 + 512 * 1024 ** 2, '3758096384 bytes (3.5 GB)'),
])
def test_summary_gives_exact_lost_bytes(lost, words):
    assert pg_failover_summary(finished(lost_bytes=lost, lost_estimate='exact.'))[2] == \
        "WAL lost: %s behind the old primary's last WAL position. exact." % words


def test_the_documented_sample_is_a_real_failover():
    """pg_failover_summary.yml's sample: pg_failover_plan on these states, then the result failover.yml makes of it."""
    common = dict(reachable=True, installed=True, data=True, placeholder=False, system_identifier='42', timeline=2)
    replica = dict(common, running=True, in_recovery=True, standby_signal=True, replay_pause_state='not paused', primary_host='pg1')
    states = {'pg1': dict(common, running=False, standby_signal=False, wal_end_lsn='0/5000100'),
              'pg2': dict(replica, receive_lsn='0/5000000', replay_lsn='0/5000000'),
              'pg3': dict(replica, receive_lsn='0/4000000', replay_lsn='0/4000000')}
    planned = pg_cluster.failover_plan(states, MEMBERS, {'controller_port_open': {'pg1': False}})
    result = dict(planned, new_primary=planned['candidate'], timeline=3, promote_lsn=planned['candidate_lsn'],
                  first_write_lsn='0/50000D8', elapsed_seconds=4.2)
    sample = yaml.safe_load((REPO / 'plugins' / 'filter' / 'pg_failover_summary.yml').read_text())['RETURN']['_value']['sample']
    assert pg_failover_summary(result) == sample


@pytest.mark.parametrize('bad', [None, [], 'plan'])
def test_summary_needs_a_plan(bad):
    with pytest.raises(AnsibleFilterError, match='^pg_failover_summary: expected the failover plan'):
        pg_failover_summary(bad)


# ---------------------------------------------------------------------------
# pg_rejoin_plan (the decision is tested in tests/unit/plugins/module_utils/test_pg_rejoin.py)
# ---------------------------------------------------------------------------

SYSID = '7340134298521411262'
REJOIN_STATES = {
    'pg1': {'reachable': True, 'data': True, 'running': False, 'system_identifier': SYSID, 'timeline': 1, 'wal_end_lsn': '0/5000060'},
    'pg2': {'reachable': True, 'data': True, 'running': True, 'in_recovery': False, 'system_identifier': SYSID, 'timeline': 2,
            'current_lsn': '0/7000000'},
}
HISTORY = '1\t0/3000148\tno recovery target specified\n'


def test_rejoin_plan_is_the_module_utils_plan():
    params = {'history': HISTORY, 'allow_reclone': False}
    assert pg_rejoin_plan(REJOIN_STATES, ['pg1', 'pg2'], 'pg1', params) == pg_rejoin.rejoin_plan(REJOIN_STATES, ['pg1', 'pg2'], 'pg1', params)
    assert pg_rejoin_plan(REJOIN_STATES, ['pg1', 'pg2'], 'pg1')['diverged_bytes'] is None  # no history: timeline 1 is not in it


def test_the_documented_rejoin_sample_is_the_example():
    doc = yaml.safe_load((REPO / 'plugins' / 'filter' / 'pg_rejoin_plan.yml').read_text())
    states = dict(REJOIN_STATES, pg1=dict(REJOIN_STATES['pg1'], wal_segment_size=16777216))
    assert pg_rejoin_plan(states, ['pg1', 'pg2'], 'pg1', {'history': HISTORY}) == doc['RETURN']['_value']['sample']


@pytest.mark.parametrize('states, params, message', [
    ([], None, 'pg_rejoin_plan: states must be a dict'),
    (REJOIN_STATES, {'history': '1\t0/XYZ\tno recovery target specified\n'}, 'pg_rejoin_plan: timeline history line 1 is not'),
    (REJOIN_STATES, {'allow_reclone': 'perhaps'}, 'pg_rejoin_plan: params.allow_reclone must be true or false'),
    (dict(REJOIN_STATES, pg1=dict(REJOIN_STATES['pg1'], wal_end_lsn='5000060')), {'history': HISTORY}, "pg_rejoin_plan: '5000060' is not an LSN"),
])
def test_rejoin_errors_become_filter_errors(states, params, message):
    with pytest.raises(AnsibleFilterError) as caught:
        pg_rejoin_plan(states, ['pg1', 'pg2'], 'pg1', params)
    assert str(caught.value).startswith(message)


def test_imports_and_raises_without_ansible(without_ansible):
    plain = without_ansible(incident)
    with pytest.raises(plain.AnsibleFilterError, match='^pg_failover_summary: '):
        plain.pg_failover_summary([])
    with pytest.raises(plain.AnsibleFilterError, match='^pg_rejoin_plan: '):
        plain.pg_rejoin_plan([], [], 'pg1')


# ---------------------------------------------------------------------------
# In a real play, on real registered results
# ---------------------------------------------------------------------------

PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    endpoints:
      - {name: open, host: 127.0.0.1, port: %(open)d}
      - {name: closed, host: 127.0.0.1, port: %(closed)d}
      - {name: unknown, host: no-such-host.invalid, port: 5432}
  tasks:
    - name: Check each port, as failover_plan.yml does
      ansible.builtin.wait_for:
        host: "{{ item.host }}"
        port: "{{ item.port }}"
        timeout: 1
      loop: "{{ endpoints }}"
      register: ports
      failed_when: false

    - name: Fail to take a lock (mkdir of a directory that exists exits 1)
      ansible.builtin.command:
        argv: [mkdir, /]
      register: lock
      changed_when: false
      failed_when: false

    - name: Register a result on localhost
      ansible.builtin.set_fact:
        recheck: {query_result: [{in_recovery: false}]}

    - name: Register a skipped result
      ansible.builtin.command: "true"
      when: false
      register: skipped_task

    - name: Show them
      ansible.builtin.debug:
        msg: >-
          {{ {'open': ports | agent_ui.postgresql.pg_port_open,
              'primaries': ['localhost'] | agent_ui.postgresql.pg_hosts_where(hostvars, 'recheck', 'in_recovery', false),
              'skipped': ['localhost'] | agent_ui.postgresql.pg_hosts_where(hostvars, 'skipped_task', 'rc', 'nonzero'),
              'refused': ['localhost'] | agent_ui.postgresql.pg_hosts_where(hostvars, 'lock', 'rc', 'nonzero'),
              'locked': ['localhost'] | agent_ui.postgresql.pg_hosts_where(hostvars, 'lock', 'rc', 0),
              'summary': {'action': 'refuse', 'reason': 'no.'} | agent_ui.postgresql.pg_failover_summary} | to_json }}
"""


@pytest.fixture(scope='module', name='play_output')
def fixture_play_output(tmp_path_factory):
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)
    closed = socket.socket()
    closed.bind(('127.0.0.1', 0))  # bound, never listening: connections are refused
    try:
        playbook = tmp_path_factory.mktemp('play') / 'play.yml'
        playbook.write_text(PLAY % {'open': listener.getsockname()[1], 'closed': closed.getsockname()[1]})
        command = shutil.which('ansible-playbook', path=os.path.dirname(sys.executable)) or shutil.which('ansible-playbook')
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / 'collections'), ANSIBLE_NOCOLOR='1', ANSIBLE_STDOUT_CALLBACK='json',
                   ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0', ANSIBLE_PYTHON_INTERPRETER=sys.executable)
        result = subprocess.run([command, '-i', 'localhost,', '-c', 'local', str(playbook)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=str(playbook.parent), universal_newlines=True, check=False,
                                timeout=120)
    finally:
        listener.close()
        closed.close()
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = json.loads(result.stdout)['plays'][0]['tasks']
    return {task['task']['name']: task['hosts']['localhost'] for task in tasks}


def test_filters_in_a_play(play_output):
    assert all(not result.get('module_stderr') for result in play_output['Check each port, as failover_plan.yml does']['results'])
    assert play_output['Fail to take a lock (mkdir of a directory that exists exits 1)']['rc'] == 1
    shown = json.loads(play_output['Show them']['msg'])
    assert shown['open'] == {'open': True, 'closed': False, 'unknown': False}
    assert shown['primaries'] == ['localhost']
    assert shown['skipped'] == []
    assert shown['refused'] == ['localhost'] and shown['locked'] == []
    assert shown['summary'] == ['REFUSED: no.']


def test_the_summary_shows_the_plans_notes():
    plan = {'action': 'promote', 'candidate': 'pg2', 'candidate_lsn': '0/3000000', 'old_primary': 'pg1', 'lost_bytes': None,
            'lost_estimate': '', 'notes': ['pg1 cannot be fenced: Ansible cannot reach it']}
    lines = incident.pg_failover_summary(plan)
    assert 'note: pg1 cannot be fenced: Ansible cannot reach it' in lines
    assert 'WAL lost: unknown.' in lines


def test_the_summary_names_a_replica_that_does_not_follow():
    plan = {'action': 'promote', 'candidate': 'pg2', 'new_primary': 'pg2', 'old_primary': 'pg1', 'timeline': 3,
            'lost_bytes': 0, 'not_streaming': {'pg3': ['FATAL:  could not start WAL streaming']}}
    lines = incident.pg_failover_summary(plan)
    assert any(line.startswith('NOT STREAMING: pg3') and 'rejoin_host=pg3' in line and 'could not start WAL streaming' in line
               for line in lines), lines


@pytest.mark.parametrize('check, line', [
    ('ok', 'WAL archiving on the new primary: ok'),
    ('FAILED: ERROR: [082]: WAL segment was not archived',
     'ARCHIVING BROKEN: WAL archiving on the new primary: FAILED: ERROR: [082]: WAL segment was not archived'),
], ids=['ok', 'broken'])
def test_the_summary_of_a_finished_failover_says_whether_the_new_primary_archives(check, line):
    lines = incident.pg_failover_summary(finished(archive_check=check))
    assert line in lines and lines.index(line) < len(lines) - 1, lines


def test_a_plan_has_no_archive_line_yet():
    plan = {'action': 'promote', 'candidate': 'pg2', 'candidate_lsn': '0/3000000', 'old_primary': 'pg1',
            'lost_bytes': None, 'lost_estimate': '', 'archive_check': 'ok'}
    assert not any('archiving' in line for line in incident.pg_failover_summary(plan))


def test_the_summary_says_where_pgbouncer_points_and_which_host_was_not_repointed():
    lines = incident.pg_failover_summary(finished(pgbouncer={'pooler1': 'ok', 'pooler2': 'FAILED: unreachable: timed out'}))
    assert 'PgBouncer on pooler1: points at the new primary' in lines
    assert 'PGBOUNCER NOT REPOINTED: PgBouncer on pooler2: FAILED: unreachable: timed out' in lines
    assert not any('PgBouncer' in line for line in incident.pg_failover_summary(finished()))
