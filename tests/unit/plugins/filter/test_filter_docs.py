# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Every filter of the collection is documented where ansible-doc reads it (plugins/filter/<name>.yml)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[4]
FILTER_DIR = REPO / 'plugins' / 'filter'


def collection_filters():
    """Filter name -> function, from every FilterModule under plugins/filter."""
    found = {}
    for path in sorted(FILTER_DIR.glob('*.py')):
        if path.name == '__init__.py':
            continue
        module = importlib.import_module('ansible_collections.agent_ui.postgresql.plugins.filter.' + path.stem)
        found.update(module.FilterModule().filters())
    return found


FILTERS = sorted(collection_filters())


def ansible_doc(*args):
    command = shutil.which('ansible-doc', path=os.path.dirname(sys.executable)) or shutil.which('ansible-doc')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / 'collections'), ANSIBLE_NOCOLOR='1')
    return subprocess.run([command] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(REPO),
                          universal_newlines=True, check=False)


def test_there_are_filters():
    assert FILTERS == ['pg_memory_budget', 'pg_tune']


@pytest.mark.parametrize('name', FILTERS)
def test_every_filter_has_documentation(name):
    fqcn = 'agent_ui.postgresql.' + name
    result = ansible_doc('-t', 'filter', '--json', fqcn)
    assert result.returncode == 0, result.stderr
    assert 'missing documentation' not in result.stderr.lower(), result.stderr
    doc = json.loads(result.stdout)[fqcn]
    assert doc['doc']['name'] == name
    assert doc['doc']['short_description'] and doc['doc']['description']
    assert doc['doc']['options']['_input']['required'] is True
    assert doc['examples'] and fqcn in doc['examples']
    assert doc['return']['_value']['type'] == 'dict'


def test_every_doc_file_is_a_filter():
    documented = sorted(path.stem for path in FILTER_DIR.glob('*.yml'))
    assert documented == FILTERS


def test_the_filter_list_names_every_filter():
    result = ansible_doc('-t', 'filter', '--list', '--json', 'agent_ui.postgresql')
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)) == ['agent_ui.postgresql.' + name for name in FILTERS]
