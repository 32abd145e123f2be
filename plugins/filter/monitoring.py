# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Monitoring filters: the scrape user's bcrypt hash for the web config files of the exporters and Prometheus.

The logic lives in plugins/module_utils/monitoring.py (pure functions, unit-tested without Ansible).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.agent_ui.postgresql.plugins.module_utils import monitoring
from ansible_collections.agent_ui.postgresql.plugins.plugin_utils.filters import as_filter

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # Imported as a plain module, e.g. by unit tests without Ansible.
    class AnsibleFilterError(ValueError):
        """Stand-in for ansible.errors.AnsibleFilterError when Ansible is absent."""


web_password_hash = as_filter('web_password_hash', monitoring.bcrypt_hash, AnsibleFilterError)


class FilterModule(object):
    """Monitoring filters, each documented in a file of its name next to this one."""

    def filters(self):
        """Map Jinja filter names to functions."""
        return {'web_password_hash': web_password_hash}
