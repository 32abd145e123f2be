# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What the collection's filter plugins share: pure functions of module_utils made into filters.

It imports nothing of Ansible: each filter file passes its own AnsibleFilterError (Ansible's, or a stand-in when the
file is loaded without Ansible, as the unit tests do).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import functools


def as_filter(name, function, error_class):
    """``function`` as the filter ``name``: a ValueError becomes error_class('<name>: <message>')."""
    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ValueError as exc:
            raise error_class('%s: %s' % (name, exc)) from exc
    run.__name__ = name
    return run
