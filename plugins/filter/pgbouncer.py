# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""PgBouncer filters: the pool budget against the server's free connections, the auth file, the [databases] section.

The logic lives in plugins/module_utils/pgbouncer.py (pure functions, unit-tested without Ansible); these filters
only call it and turn its ValueError into AnsibleFilterError, with the filter's name in front of the message.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.agent_ui.postgresql.plugins.module_utils import pgbouncer
from ansible_collections.agent_ui.postgresql.plugins.plugin_utils.filters import as_filter

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # Imported as a plain module, e.g. by unit tests without Ansible.
    class AnsibleFilterError(ValueError):
        """Stand-in for ansible.errors.AnsibleFilterError when Ansible is absent."""


def _budget(spec):
    budget = pgbouncer.pool_budget(spec)
    budget['message'] = pgbouncer.budget_message(budget)
    return budget


pgbouncer_pool_budget = as_filter('pgbouncer_pool_budget', _budget, AnsibleFilterError)
pgbouncer_userlist = as_filter('pgbouncer_userlist', pgbouncer.render_userlist, AnsibleFilterError)
pgbouncer_databases = as_filter('pgbouncer_databases', pgbouncer.databases_section, AnsibleFilterError)
pgbouncer_step_outcomes = as_filter('pgbouncer_step_outcomes', pgbouncer.step_outcomes, AnsibleFilterError)


class FilterModule(object):
    """PgBouncer filters, each documented in a file of its name next to this one."""

    def filters(self):
        """Map Jinja filter names to functions."""
        return {
            'pgbouncer_pool_budget': pgbouncer_pool_budget,
            'pgbouncer_userlist': pgbouncer_userlist,
            'pgbouncer_databases': pgbouncer_databases,
            'pgbouncer_step_outcomes': pgbouncer_step_outcomes,
        }
