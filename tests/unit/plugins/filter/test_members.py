# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for plugins/filter/members.py: endpoints, addresses and node states of the cluster's members.

The hostvars and registered results are shaped as Ansible hands them to the filters (roles/postgresql/tasks/probe.yml,
topology.yml, standby.yml and templates/pg_hba.conf.j2).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.agent_ui.postgresql.plugins.filter import members
from ansible_collections.agent_ui.postgresql.plugins.filter.members import pg_member_addresses, pg_member_endpoints, pg_probe_states

MEMBERS = ['pg1', 'pg2', 'pg3']


def test_the_filters():
    assert members.FilterModule().filters() == {'pg_member_endpoints': pg_member_endpoints, 'pg_member_addresses': pg_member_addresses,
                                                'pg_probe_states': pg_probe_states, 'pg_running_members': members.pg_running_members}


# ---------------------------------------------------------------------------
# pg_member_endpoints
# ---------------------------------------------------------------------------

def test_endpoints_default_to_the_inventory_name_and_the_default_port():
    assert pg_member_endpoints(['pg1', 'pg2'], {'pg1': {}, 'pg2': {'ansible_host': '10.0.0.12'}}) == [
        {'name': 'pg1', 'host': 'pg1', 'port': 5432}, {'name': 'pg2', 'host': 'pg2', 'port': 5432}]


def test_endpoints_take_the_replication_host_and_port_of_each_member():
    hostvars = {'pg1': {'postgresql_replication_host': '10.0.0.11', 'postgresql_port': 5433},
                'pg2': {'postgresql_replication_host': 'pg2.internal'},
                'pg3': {'postgresql_port': '6432'}}
    assert pg_member_endpoints(MEMBERS, hostvars, 5434) == [
        {'name': 'pg1', 'host': '10.0.0.11', 'port': 5433},
        {'name': 'pg2', 'host': 'pg2.internal', 'port': 5434},
        {'name': 'pg3', 'host': 'pg3', 'port': 6432}]


def test_endpoints_ports_are_numbers():
    endpoint = pg_member_endpoints(['pg1'], {'pg1': {'postgresql_port': '5433'}}, '5432')[0]
    assert endpoint['port'] == 5433 and isinstance(endpoint['port'], int)
    assert pg_member_endpoints(['pg2'], {}, '5435')[0]['port'] == 5435


@pytest.mark.parametrize('unset', [None, ''])
def test_endpoints_treat_null_and_empty_as_unset(unset):
    hostvars = {'pg1': {'postgresql_replication_host': unset, 'postgresql_port': unset}}
    assert pg_member_endpoints(['pg1'], hostvars, 5440) == [{'name': 'pg1', 'host': 'pg1', 'port': 5440}]


def test_endpoints_of_a_host_that_hostvars_does_not_know():
    assert pg_member_endpoints(['pg9'], {'pg1': {'postgresql_port': 5433}}) == [{'name': 'pg9', 'host': 'pg9', 'port': 5432}]


def test_endpoints_keep_the_order_and_take_any_iterable():
    assert [e['name'] for e in pg_member_endpoints(('pg3', 'pg1', 'pg2'), {})] == ['pg3', 'pg1', 'pg2']
    assert pg_member_endpoints([], {}) == []


@pytest.mark.parametrize('bad', ['pg1', b'pg1', 5, None])
def test_endpoints_refuse_members_that_are_not_a_list(bad):
    with pytest.raises(AnsibleFilterError, match='^pg_member_endpoints: members must be a list of inventory names'):
        pg_member_endpoints(bad, {})


# ---------------------------------------------------------------------------
# pg_member_addresses
# ---------------------------------------------------------------------------

def facts(address):
    return {'ansible_facts': {'default_ipv4': {'address': address, 'interface': 'eth0'}}}


def test_addresses_from_the_facts():
    hostvars = {'pg1': facts('10.0.0.11'), 'pg2': facts('10.0.0.12')}
    assert pg_member_addresses(['pg1', 'pg2'], hostvars) == [
        {'name': 'pg1', 'address': '10.0.0.11'}, {'name': 'pg2', 'address': '10.0.0.12'}]


def test_the_override_wins_over_the_facts():
    hostvars = {'pg1': dict(facts('10.0.0.11'), postgresql_replication_source_address='192.0.2.0/24'),
                'pg2': {'postgresql_replication_source_address': '2001:db8::12'}}
    assert pg_member_addresses(['pg1', 'pg2'], hostvars) == [
        {'name': 'pg1', 'address': '192.0.2.0/24'}, {'name': 'pg2', 'address': '2001:db8::12'}]


@pytest.mark.parametrize('host_vars', [
    {},                                                     # no facts gathered (unreachable)
    {'ansible_facts': {}},                                  # facts without the network subset
    {'ansible_facts': {'default_ipv4': {}}},                # no default route
    {'ansible_facts': {'default_ipv4': {'address': ''}}},
    {'ansible_facts': None},
    {'postgresql_replication_source_address': '', 'ansible_facts': {'default_ipv4': None}},
])
def test_address_is_none_when_nothing_tells(host_vars):
    assert pg_member_addresses(['pg1'], {'pg1': host_vars}) == [{'name': 'pg1', 'address': None}]


def test_addresses_of_an_empty_override_fall_back_to_the_facts():
    hostvars = {'pg1': dict(facts('10.0.0.11'), postgresql_replication_source_address=None)}
    assert pg_member_addresses(['pg1'], hostvars) == [{'name': 'pg1', 'address': '10.0.0.11'}]


def test_addresses_of_hosts_hostvars_does_not_know_and_the_order():
    assert pg_member_addresses(['pg3', 'pg1'], {'pg1': facts('10.0.0.11')}) == [{'name': 'pg3', 'address': None},
                                                                                {'name': 'pg1', 'address': '10.0.0.11'}]


def test_addresses_refuse_members_that_are_not_a_list():
    with pytest.raises(AnsibleFilterError, match='^pg_member_addresses: members must be a list'):
        pg_member_addresses('pg1,pg2', {})


# ---------------------------------------------------------------------------
# pg_probe_states
# ---------------------------------------------------------------------------

def probe(**node):
    """A registered result of pg_node_info."""
    return {'changed': False, 'failed': False, 'node': node}


PRIMARY_NODE = {'running': True, 'in_recovery': False, 'primary_conninfo_host': None, 'timeline': 2}


def test_states_of_unreachable_failed_and_missing_results():
    probes = {
        'pg1': {'unreachable': True, 'changed': False, 'msg': 'Failed to connect to the host via ssh'},
        'pg2': {'failed': True, 'msg': 'runuser is missing', 'node': {'running': False}},
        'pg4': {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False'},
        'pg5': {'changed': False, 'failed': False, 'node': None},
        'pg6': 'not a result',
    }
    assert pg_probe_states(['pg1', 'pg2', 'pg3', 'pg4', 'pg5', 'pg6'], probes) == {
        name: {'reachable': False} for name in ('pg1', 'pg2', 'pg3', 'pg4', 'pg5', 'pg6')}


def test_a_reachable_state_is_the_node_with_reachable_and_primary_host():
    node = dict(PRIMARY_NODE, system_identifier='7340134298521411262', current_lsn='0/5000000')
    result = probe(**node)
    states = pg_probe_states(['pg1'], {'pg1': result})
    assert states == {'pg1': dict(node, reachable=True, primary_host=None)}
    assert result['node'] == node  # the registered result is not changed


def test_primary_host_by_endpoint_host_and_by_name():
    endpoints = [{'name': 'pg1', 'host': '10.0.0.11', 'port': 5432}, {'name': 'pg2', 'host': 'pg2.internal', 'port': 5432},
                 {'name': 'pg3', 'host': 'pg3', 'port': 5432}]
    probes = {'pg1': probe(running=True, in_recovery=True, primary_conninfo_host='pg2.internal'),
              'pg2': probe(running=True, in_recovery=True, primary_conninfo_host='10.0.0.11'),
              'pg3': probe(running=True, in_recovery=True, primary_conninfo_host='pg1')}
    states = pg_probe_states(MEMBERS, probes, endpoints)
    assert {name: state['primary_host'] for name, state in states.items()} == {'pg1': 'pg2', 'pg2': 'pg1', 'pg3': 'pg1'}


def test_primary_host_without_endpoints_only_knows_inventory_names():
    probes = {'pg2': probe(running=True, in_recovery=True, primary_conninfo_host='pg1'),
              'pg3': probe(running=True, in_recovery=True, primary_conninfo_host='10.0.0.11')}
    states = pg_probe_states(['pg2', 'pg3'], probes)
    assert states['pg2']['primary_host'] == 'pg1'
    assert states['pg3']['primary_host'] == '10.0.0.11'  # not a member's name or endpoint: the host as it is


def test_an_unknown_host_is_kept_as_it_is_and_no_host_is_none():
    endpoints = [{'name': 'pg1', 'host': '10.0.0.11', 'port': 5432}]
    probes = {'pg2': probe(running=True, in_recovery=True, primary_conninfo_host='backup.example.com'),
              'pg3': probe(running=False, primary_conninfo_host=''),
              'pg1': probe(running=False)}
    states = pg_probe_states(MEMBERS, probes, endpoints)
    assert states['pg2']['primary_host'] == 'backup.example.com'
    assert states['pg3']['primary_host'] is None
    assert states['pg1']['primary_host'] is None


def test_a_member_name_wins_over_an_endpoint_host_of_the_same_name():
    # pg2's peers reach it under the name "pg1" (a bad inventory, but the name of a member means that member).
    endpoints = [{'name': 'pg1', 'host': '10.0.0.11', 'port': 5432}, {'name': 'pg2', 'host': 'pg1', 'port': 5432}]
    states = pg_probe_states(['pg1', 'pg2', 'pg3'], {'pg3': probe(running=True, in_recovery=True, primary_conninfo_host='pg1')},
                             endpoints)
    assert states['pg3']['primary_host'] == 'pg1'


def test_states_only_for_the_members():
    states = pg_probe_states(['pg1'], {'pg1': probe(**PRIMARY_NODE), 'pg9': probe(**PRIMARY_NODE)})
    assert list(states) == ['pg1']


def test_states_feed_the_topology():
    """The states as pg_topology reads them: the replica follows the primary it names by address."""
    from ansible_collections.agent_ui.postgresql.plugins.module_utils.pg_cluster import cluster_topology
    common = {'data': True, 'system_identifier': '42', 'placeholder': False}
    probes = {'pg1': probe(running=True, in_recovery=False, current_lsn='0/5000000', **common),
              'pg2': probe(running=True, in_recovery=True, standby_signal=True, primary_conninfo_host='10.0.0.11', **common),
              'pg3': {'unreachable': True}}
    endpoints = pg_member_endpoints(MEMBERS, {'pg1': {'postgresql_replication_host': '10.0.0.11'}})
    topology = cluster_topology(pg_probe_states(MEMBERS, probes, endpoints), MEMBERS, 'pg1')
    assert topology['primary'] == 'pg1' and topology['replicas'] == ['pg2'] and topology['errors'] == []
    assert [entry['host'] for entry in topology['excluded']] == ['pg3']


@pytest.mark.parametrize('bad', [None, [], 'pg1'])
def test_probes_must_be_a_dict(bad):
    with pytest.raises(AnsibleFilterError, match='^pg_probe_states: probes must be a dict'):
        pg_probe_states(MEMBERS, bad)


def test_imports_and_raises_without_ansible(without_ansible):
    plain = without_ansible(members)
    with pytest.raises(plain.AnsibleFilterError, match='^pg_member_endpoints: '):
        plain.pg_member_endpoints('pg1', {})


def test_running_members_by_role_leaves_out_the_unreachable_and_the_placeholder():
    states = {
        'pg1': {'reachable': True, 'running': True, 'in_recovery': False},
        'pg2': {'reachable': True, 'running': True, 'in_recovery': True},
        'pg3': {'reachable': False},
        'pg4': {'reachable': True, 'running': True, 'in_recovery': False, 'placeholder': True},
        'pg5': {'reachable': True, 'running': False, 'in_recovery': None},
        'pg6': {'reachable': True, 'running': True, 'in_recovery': True},
    }
    assert members.pg_running_members(states, True) == ['pg2', 'pg6']
    assert members.pg_running_members(states, False) == ['pg1']
    with pytest.raises(AnsibleFilterError, match='^pg_running_members: '):
        members.pg_running_members([], True)
