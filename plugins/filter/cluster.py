# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Streaming-replication filters: topology, failover and switchover plans, synchronous_standby_names, LSN arithmetic.

The decisions live in plugins/module_utils/pg_cluster.py (pure functions, unit-tested without
Ansible); these filters only call them and turn their ValueError into AnsibleFilterError, with the
filter's name in front of the message.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.agent_ui.postgresql.plugins.module_utils import pg_cluster
from ansible_collections.agent_ui.postgresql.plugins.plugin_utils.filters import as_filter

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # Imported as a plain module, e.g. by unit tests without Ansible.
    class AnsibleFilterError(ValueError):
        """Stand-in for ansible.errors.AnsibleFilterError when Ansible is absent."""


def _filter(name, function):
    """``function`` as the filter ``name``; its ValueError becomes AnsibleFilterError('<name>: <message>')."""
    return as_filter(name, function, AnsibleFilterError)


pg_topology = _filter('pg_topology', pg_cluster.cluster_topology)
pg_failover_plan = _filter('pg_failover_plan', pg_cluster.failover_plan)
pg_switchover_plan = _filter('pg_switchover_plan', pg_cluster.switchover_plan)
pg_sync_standby_names = _filter('pg_sync_standby_names', pg_cluster.sync_standby_names_for)
pg_lsn_diff = _filter('pg_lsn_diff', pg_cluster.lsn_diff)


class FilterModule(object):
    """Replication filters, documented in pg_topology.yml, pg_failover_plan.yml, pg_switchover_plan.yml,
    pg_sync_standby_names.yml and pg_lsn_diff.yml next to this file."""

    def filters(self):
        """Map Jinja filter names to functions."""
        return {
            'pg_topology': pg_topology,
            'pg_failover_plan': pg_failover_plan,
            'pg_switchover_plan': pg_switchover_plan,
            'pg_sync_standby_names': pg_sync_standby_names,
            'pg_lsn_diff': pg_lsn_diff,
        }
