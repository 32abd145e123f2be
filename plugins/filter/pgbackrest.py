# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""pgBackRest filters: the configuration file of a host, the archive settings of PostgreSQL, ``info`` read.

The logic lives in plugins/module_utils/pgbackrest.py (pure functions, unit-tested without Ansible); these filters
only call it and turn its ValueError into AnsibleFilterError, with the filter's name in front of the message.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.agent_ui.postgresql.plugins.module_utils import pgbackrest
from ansible_collections.agent_ui.postgresql.plugins.plugin_utils.filters import as_filter

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # Imported as a plain module, e.g. by unit tests without Ansible.
    class AnsibleFilterError(ValueError):
        """Stand-in for ansible.errors.AnsibleFilterError when Ansible is absent."""


def _filter(name, function):
    """``function`` as the filter ``name``; its ValueError becomes AnsibleFilterError('<name>: <message>')."""
    return as_filter(name, function, AnsibleFilterError)


def _conf(spec, header=None):
    return pgbackrest.render_ini(pgbackrest.config_sections(spec), header)


pgbackrest_conf = _filter('pgbackrest_conf', _conf)
pgbackrest_archive_settings = _filter('pgbackrest_archive_settings', pgbackrest.archive_settings)
pgbackrest_info = _filter('pgbackrest_info', pgbackrest.info_summary)
pgbackrest_restore_plan = _filter('pgbackrest_restore_plan', pgbackrest.restore_plan)


class FilterModule(object):
    """pgBackRest filters, documented in pgbackrest_conf.yml, pgbackrest_archive_settings.yml, pgbackrest_info.yml and
    pgbackrest_restore_plan.yml next to this file."""

    def filters(self):
        """Map Jinja filter names to functions."""
        return {
            'pgbackrest_conf': pgbackrest_conf,
            'pgbackrest_archive_settings': pgbackrest_archive_settings,
            'pgbackrest_info': pgbackrest_info,
            'pgbackrest_restore_plan': pgbackrest_restore_plan,
        }
