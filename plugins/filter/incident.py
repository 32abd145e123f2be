# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters of the incident playbooks (failover.yml, switchover.yml, rejoin.yml) that shape data and words.

The decisions themselves are in plugins/module_utils/pg_cluster.py (filters pg_failover_plan, pg_switchover_plan).
These only move data around and write the summaries an operator reads; all are pure.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from collections.abc import Mapping

from ansible_collections.agent_ui.postgresql.plugins.module_utils.pg_rejoin import rejoin_plan

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # Imported as a plain module, e.g. by unit tests without Ansible.
    class AnsibleFilterError(ValueError):
        """Stand-in for ansible.errors.AnsibleFilterError when Ansible is absent."""


def pg_prefer_addresses(endpoints, states):
    """The endpoints with ``host`` replaced by the first address the member's own probe reported, when there is one.

    The controller checks each member's port; a member's own address is reachable from where Ansible reaches it even
    when the name its peers use resolves only inside their network.
    """
    if not isinstance(states, Mapping):
        raise AnsibleFilterError('pg_prefer_addresses: states must be a dict of member name to state')
    out = []
    for endpoint in endpoints:
        state = states.get(endpoint['name']) or {}
        addresses = [a for a in (state.get('addresses') or []) if a]
        out.append(dict(endpoint, host=addresses[0]) if addresses else dict(endpoint))
    return out


def pg_port_open(results):
    """{member: bool} from the registered loop of ansible.builtin.wait_for over endpoints (failed_when: false).

    A port is open when wait_for reached state 'started'; a timeout, a refused connection or a name that does not
    resolve all count as closed.
    """
    if isinstance(results, Mapping):
        results = results.get('results', [])
    opened = {}
    for result in results:
        item = result.get('item') or {}
        if 'name' not in item:
            raise AnsibleFilterError('pg_port_open: each result needs the endpoint (with a name) as its item')
        opened[item['name']] = result.get('state') == 'started' and not result.get('failed', False)
    return opened


def pg_hosts_where(hosts, hostvars, var, key, value):
    """The hosts (in order) whose registered ``var`` has ``query_result[0][key] == value`` (or ``var[key]`` for others).

    Used to find, from registered results, the survivors whose lock was refused (``rc != 0``: key rc, value 'nonzero')
    or the members that are primaries (in_recovery false).
    """
    found = []
    for host in hosts:
        result = (hostvars.get(host) or {}).get(var) if isinstance(hostvars, Mapping) else None
        if not isinstance(result, Mapping) or result.get('skipped'):
            continue
        if 'query_result' in result:
            rows = result.get('query_result') or []
            actual = rows[0].get(key) if rows else None
        else:
            actual = result.get(key)
        if value == 'nonzero':
            matched = actual not in (None, 0)
        else:
            matched = actual == value
        if matched:
            found.append(host)
    return found


def _bytes(value):
    if value is None:
        return 'unknown'
    units = (('GB', 1024 ** 3), ('MB', 1024 ** 2), ('kB', 1024))
    for unit, size in units:
        if value >= size:
            return '%d bytes (%.1f %s)' % (value, float(value) / size, unit)
    return '%d bytes' % value


def pg_failover_summary(plan):
    """The lines an operator reads, for a plan (before promotion) or a result (after it: with new_primary)."""
    if not isinstance(plan, Mapping):
        raise AnsibleFilterError('pg_failover_summary: expected the failover plan (a dict)')
    lines = []
    done = plan.get('new_primary') is not None
    if plan.get('action') != 'promote':
        lines.append('REFUSED: %s' % plan.get('reason'))
    elif done:
        lines.append('old primary: %s -> new primary: %s, timeline %s' % (
            plan.get('old_primary') or 'unknown', plan.get('new_primary'), plan.get('timeline')))
        lines.append('LSN at promotion: %s (first write on the new primary at %s)' % (
            plan.get('promote_lsn'), plan.get('first_write_lsn')))
    else:
        lines.append('plan: promote %s (at %s); old primary %s' % (
            plan.get('candidate'), plan.get('candidate_lsn'), plan.get('old_primary') or 'unknown'))
    if plan.get('action') == 'promote':
        lost = plan.get('lost_bytes')
        if lost is None:
            lines.append(('WAL lost: unknown. %s' % (plan.get('lost_estimate') or '')).strip())
        else:
            lines.append('WAL lost: %s behind the old primary\'s last WAL position. %s' % (_bytes(lost), plan.get('lost_estimate') or ''))
        if plan.get('sync_reason'):
            lines.append('commits: %s' % plan['sync_reason'])
    for entry in plan.get('ranking') or []:
        lines.append('  candidate %s at %s%s%s' % (entry.get('host'), entry.get('lsn'), ' (replay paused)' if entry.get('paused') else '',
                                                   '' if entry.get('streaming') is not True else ' (still streaming)'))
    for entry in plan.get('skipped') or []:
        lines.append('  not a candidate: %s: %s' % (entry.get('host'), entry.get('why')))
    # A refusal fences and repoints nothing; a plan has not done it yet.
    if plan.get('action') == 'promote' and plan.get('fence'):
        lines.append('%s (stopped and masked): %s' % ('fenced' if done else 'to fence', ', '.join(plan['fence'])))
    if plan.get('action') == 'promote' and plan.get('repoint'):
        lines.append('%s: %s' % ('repointed' if done else 'to repoint', ', '.join(plan['repoint'])))
    for host, log in sorted((plan.get('not_streaming') or {}).items()):
        lines.append('NOT STREAMING: %s does not follow the new primary; run rejoin.yml -e rejoin_host=%s. Its log: %s'
                     % (host, host, ' | '.join(log or [])))
    if done and plan.get('archive_check'):
        check = plan['archive_check']
        lines.append('%sWAL archiving on the new primary: %s' % ('ARCHIVING BROKEN: ' if check.startswith('FAILED') else '', check))
    for host, outcome in sorted((plan.get('pgbouncer') or {}).items()):
        state = 'points at the new primary' if outcome == 'ok' else outcome
        lines.append('%sPgBouncer on %s: %s' % ('PGBOUNCER NOT REPOINTED: ' if outcome != 'ok' else '', host, state))
    for note in plan.get('notes') or []:
        lines.append('note: %s' % note)
    if done and plan.get('elapsed_seconds') is not None:
        lines.append('elapsed: %s s' % plan['elapsed_seconds'])
    return lines


def pg_rejoin_plan(states, members, host, params=None):
    """rejoin.yml's plan (plugins/module_utils/pg_rejoin.py)."""
    try:
        return rejoin_plan(states, members, host, params)
    except ValueError as error:
        raise AnsibleFilterError('pg_rejoin_plan: %s' % error)


class FilterModule(object):
    """Shape data and words for the incident playbooks."""

    def filters(self):
        """Map Jinja filter names to functions."""
        return {
            'pg_prefer_addresses': pg_prefer_addresses,
            'pg_port_open': pg_port_open,
            'pg_hosts_where': pg_hosts_where,
            'pg_failover_summary': pg_failover_summary,
            'pg_rejoin_plan': pg_rejoin_plan,
        }
