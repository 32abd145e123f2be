# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that gather per-member facts of a replicated cluster into plain data.

``pg_member_endpoints`` reads, for each member, how its peers reach it (host and port), ``pg_member_addresses``
where its connections come from (the address the hostssl replication rules allow).  ``pg_probe_states`` turns the registered results of
the ``pg_node_info`` module into the ``{member: state}`` dict that the topology and failover filters read.

Both are pure: they only read their arguments.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from collections.abc import Mapping

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # Imported as a plain module, e.g. by unit tests without Ansible.
    class AnsibleFilterError(ValueError):
        """Stand-in for ansible.errors.AnsibleFilterError when Ansible is absent."""


def _get(mapping, key, default=None):
    """mapping[key], or default when the key is missing or its value is None or empty."""
    try:
        value = mapping[key]
    except (KeyError, TypeError):
        return default
    return default if value is None or value == '' else value


def _members(members, name):
    if isinstance(members, (str, bytes)) or not hasattr(members, '__iter__'):
        raise AnsibleFilterError('%s: members must be a list of inventory names, not %r' % (name, members))
    return list(members)


def pg_member_endpoints(members, hostvars, default_port=5432):
    """[{name, host, port}] for each member, in order: how the other members connect to it.

    host: ``postgresql_replication_host`` of the member, else its inventory name.  port: its ``postgresql_port``,
    else ``default_port``.
    """
    endpoints = []
    for name in _members(members, 'pg_member_endpoints'):
        host_vars = _get(hostvars, name, {})
        endpoints.append({
            'name': name,
            'host': _get(host_vars, 'postgresql_replication_host', name),
            'port': int(_get(host_vars, 'postgresql_port', default_port)),
        })
    return endpoints


def pg_member_addresses(members, hostvars):
    """[{name, address}] for each member, in order: where its connections come from.

    address: the member's ``postgresql_replication_source_address``, else the default IPv4 address in its facts, else
    None (the member was not reachable when the facts were gathered).
    """
    addresses = []
    for name in _members(members, 'pg_member_addresses'):
        host_vars = _get(hostvars, name, {})
        ipv4 = _get(_get(host_vars, 'ansible_facts', {}), 'default_ipv4', {})
        addresses.append({'name': name, 'address': _get(host_vars, 'postgresql_replication_source_address', _get(ipv4, 'address'))})
    return addresses


def pg_probe_states(members, probes, endpoints=None):
    """{member: state} from pg_node_info results.

    ``probes`` maps member names to registered results (of the task itself, or one item of a delegated loop).  A
    member with no result, an unreachable or failed one, gets ``{'reachable': False}``; the others get the module's
    ``node`` dict with ``reachable: True`` added, and ``primary_host``: the member that the host named in its
    primary_conninfo is (by the ``endpoints`` of pg_member_endpoints, or by inventory name), else that host as it is.
    """
    if not isinstance(probes, Mapping):
        raise AnsibleFilterError('pg_probe_states: probes must be a dict of member name to registered result')
    by_host = dict((endpoint['host'], endpoint['name']) for endpoint in endpoints or [])
    by_host.update((name, name) for name in members)
    states = {}
    for name in members:
        result = probes.get(name)
        if not isinstance(result, Mapping) or result.get('unreachable') or result.get('failed') \
                or not isinstance(result.get('node'), Mapping):
            states[name] = {'reachable': False}
            continue
        state = dict(result['node'])
        state['reachable'] = True
        host = state.get('primary_conninfo_host')
        state['primary_host'] = by_host.get(host, host) if host else None
        states[name] = state
    return states


def pg_running_members(states, in_recovery):
    """The members (sorted) that Ansible reached and that run, in recovery (replicas, ``in_recovery`` true) or not
    (primaries, false); never the role's placeholder. A state without those keys (an unreachable member) is left out.
    """
    if not isinstance(states, Mapping):
        raise AnsibleFilterError('pg_running_members: states must be a dict of member name to state')
    wanted = bool(in_recovery)
    return sorted(name for name, state in states.items()
                  if isinstance(state, Mapping) and state.get('reachable') and state.get('running')
                  and state.get('in_recovery') is wanted and not state.get('placeholder'))


class FilterModule(object):
    """Member facts of a replicated cluster."""

    def filters(self):
        """Map Jinja filter names to functions."""
        return {
            'pg_member_endpoints': pg_member_endpoints,
            'pg_member_addresses': pg_member_addresses,
            'pg_probe_states': pg_probe_states,
            'pg_running_members': pg_running_members,
        }
