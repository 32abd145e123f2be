# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Every filter of the collection is documented where ansible-doc reads it (plugins/filter/<name>.yml).

The documented return type is one of Ansible's, and the documented examples that need nothing but literals are run:
what the filter returns there has the documented type (with the documented elements and keys).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Mapping

import jinja2
import jinja2.meta
import jinja2.nodes
import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[4]
FILTER_DIR = REPO / 'plugins' / 'filter'
PREFIX = 'agent_ui.postgresql.'

# Every filter of the collection, written out: a filter added or removed without its documentation fails here.
EXPECTED_FILTERS = sorted([
    'pg_memory_budget', 'pg_tune',  # tuning.py
    'pg_topology', 'pg_failover_plan', 'pg_switchover_plan', 'pg_sync_standby_names', 'pg_lsn_diff',  # cluster.py
    'pg_member_endpoints', 'pg_member_addresses', 'pg_probe_states', 'pg_running_members',  # members.py
    'pg_prefer_addresses', 'pg_port_open', 'pg_hosts_where', 'pg_failover_summary', 'pg_rejoin_plan',  # incident.py
    'pgbackrest_conf', 'pgbackrest_archive_settings', 'pgbackrest_info', 'pgbackrest_restore_plan',  # pgbackrest.py
    'pgbouncer_pool_budget', 'pgbouncer_userlist', 'pgbouncer_databases', 'pgbouncer_step_outcomes',  # pgbouncer.py
    'web_password_hash',  # monitoring.py
])

# The types a plugin's RETURN may use (ansible-test validate-modules, return_schema for plugins), without the
# aliases it also accepts (boolean, integer, dictionary, string), and what a returned value of each is.
RETURN_TYPES = {
    'bool': lambda value: isinstance(value, bool),
    'int': lambda value: isinstance(value, int) and not isinstance(value, bool),
    'float': lambda value: isinstance(value, float),
    'str': lambda value: isinstance(value, str),
    'path': lambda value: isinstance(value, str),
    'list': lambda value: isinstance(value, list),
    'dict': lambda value: isinstance(value, Mapping),
    'raw': lambda value: True,
}

# The filters whose examples all need variables of a play (node states, groups): none of them can be run here.
NO_RUNNABLE_EXAMPLE = {'pg_topology', 'pg_failover_plan', 'pg_switchover_plan'}


def collection_filters():
    """Filter name -> function, from every FilterModule under plugins/filter."""
    found = {}
    for path in sorted(FILTER_DIR.glob('*.py')):
        if path.name == '__init__.py':
            continue
        module = importlib.import_module('ansible_collections.agent_ui.postgresql.plugins.filter.' + path.stem)
        found.update(module.FilterModule().filters())
    return found


FUNCTIONS = collection_filters()
FILTERS = sorted(FUNCTIONS)


def ansible_doc(*args):
    command = shutil.which('ansible-doc', path=os.path.dirname(sys.executable)) or shutil.which('ansible-doc')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / 'collections'), ANSIBLE_NOCOLOR='1')
    return subprocess.run([command] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(REPO),
                          universal_newlines=True, check=False)


@pytest.fixture(scope='module', name='docs')
def fixture_docs():
    """FQCN -> what ansible-doc reads for it, for every filter at once."""
    result = ansible_doc('-t', 'filter', '--json', *[PREFIX + name for name in FILTERS])
    assert result.returncode == 0, result.stderr
    assert 'missing documentation' not in result.stderr.lower(), result.stderr
    return json.loads(result.stdout)


def type_problems(value, spec, where, nullable=False):
    """What does not match the documented type of ``value`` (its elements and keys too); [] when it all matches."""
    if value is None and nullable:
        return []
    kind = spec.get('type')
    if kind not in RETURN_TYPES:
        return ['%s: type %r is not one of %s' % (where, kind, ', '.join(sorted(RETURN_TYPES)))]
    if not RETURN_TYPES[kind](value):
        return ['%s: documented as %s, got %s %r' % (where, kind, type(value).__name__, value)]
    contains = spec.get('contains') or {}
    problems = []
    if kind == 'list':
        element = {'type': spec['elements'], 'contains': contains} if spec.get('elements') else None
        for index, item in enumerate(value if element else ()):
            problems += type_problems(item, element, '%s[%d]' % (where, index))
    elif kind == 'dict' and contains:
        if set(value) != set(contains):
            problems.append('%s: documented keys %s, got %s' % (where, sorted(contains), sorted(value)))
        for key in sorted(set(value) & set(contains)):
            problems += type_problems(value[key], contains[key], '%s.%s' % (where, key), nullable=True)
    return problems


def walk_strings(data):
    if isinstance(data, str):
        yield data
    elif isinstance(data, (Mapping, list)):
        for value in (data.values() if isinstance(data, Mapping) else data):
            yield from walk_strings(value)


def jinja_environment():
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters.update((PREFIX + name, function) for name, function in FUNCTIONS.items())
    return env


def runnable_examples(examples, name):
    """(expression, value) of every ``{{ ... | agent_ui.postgresql.<name>(...) }}`` in ``examples`` that needs no variable.

    Only whole templates whose outermost filter is ``name``; an example that needs a variable, or a filter that only
    Ansible has (bool...), is not runnable here.
    """
    env = jinja_environment()
    found = []
    for text in walk_strings(yaml.safe_load(examples)):
        text = text.strip()
        if not (text.startswith('{{') and text.endswith('}}') and text.count('{{') == 1):
            continue
        try:
            tree = env.parse(text)
        except jinja2.TemplateSyntaxError as exc:
            raise AssertionError('example of %s is not valid Jinja: %s\n%s' % (name, exc, text))
        outer = tree.body[0].nodes[0] if len(tree.body) == 1 and len(tree.body[0].nodes) == 1 else None
        if not isinstance(outer, jinja2.nodes.Filter) or outer.name != PREFIX + name:
            continue
        try:
            if jinja2.meta.find_undeclared_variables(tree):
                continue
            expression = env.compile_expression(text[2:-2], undefined_to_none=False)
        except jinja2.TemplateAssertionError:  # a filter that only Ansible has
            continue
        found.append((text, expression()))
    return found


def test_there_are_filters():
    assert FILTERS == EXPECTED_FILTERS


@pytest.mark.parametrize('name', FILTERS)
def test_every_filter_has_documentation(name, docs):
    fqcn = PREFIX + name
    doc = docs[fqcn]
    assert doc['doc']['name'] == name
    assert doc['doc']['short_description'] and doc['doc']['description']
    assert doc['doc']['options']['_input']['required'] is True
    assert doc['examples'] and fqcn in doc['examples']


@pytest.mark.parametrize('name', FILTERS)
def test_the_return_type_is_one_of_ansibles(name, docs):
    returned = docs[PREFIX + name]['return']['_value']
    assert returned['type'] in RETURN_TYPES
    if 'sample' in returned:
        assert type_problems(returned['sample'], returned, 'sample') == []


@pytest.mark.parametrize('name', FILTERS)
def test_the_examples_return_the_documented_type(name, docs):
    doc = docs[PREFIX + name]
    examples = runnable_examples(doc['examples'], name)
    if name in NO_RUNNABLE_EXAMPLE and not examples:
        pytest.skip('no example of %s can run without a play' % name)
    assert examples, 'no example of %s runs with literals alone: add one' % name
    for text, value in examples:
        assert type_problems(value, doc['return']['_value'], '_value') == [], text


def test_the_type_check_can_fail():
    spec = {'type': 'list', 'elements': 'dict', 'contains': {'name': {'type': 'str'}, 'port': {'type': 'int'}}}
    assert type_problems([{'name': 'pg1', 'port': 5432}], spec, 'v') == []
    assert type_problems({'name': 'pg1'}, spec, 'v') == ["v: documented as list, got dict {'name': 'pg1'}"]
    assert type_problems([{'name': 'pg1', 'port': '5432'}], spec, 'v') == ["v[0].port: documented as int, got str '5432'"]
    assert type_problems([{'name': 'pg1'}], spec, 'v') == ["v[0]: documented keys ['name', 'port'], got ['name']"]
    assert type_problems(True, {'type': 'int'}, 'v') == ['v: documented as int, got bool True']
    assert type_problems(1, {'type': 'integer'}, 'v') == ["v: type 'integer' is not one of bool, dict, float, int, list, path, raw, str"]


def test_an_example_that_needs_a_play_is_not_run():
    examples = """
    - ansible.builtin.debug:
        msg: "{{ '0/3000000' | agent_ui.postgresql.pg_lsn_diff('0/2000000') }}"
    - ansible.builtin.debug:
        msg: "{{ primary_lsn | agent_ui.postgresql.pg_lsn_diff('0/2000000') }}"
    - ansible.builtin.debug:
        msg: "{{ '0/3000000' | agent_ui.postgresql.pg_lsn_diff('0/2000000') | bool }}"
    - ansible.builtin.debug:
        msg: "{{ '0/3000000' | agent_ui.postgresql.pg_lsn_diff('0/2000000') | string }}"
    """
    assert runnable_examples(examples, 'pg_lsn_diff') == [("{{ '0/3000000' | agent_ui.postgresql.pg_lsn_diff('0/2000000') }}", 16777216)]


def test_every_doc_file_is_a_filter():
    documented = sorted(path.stem for path in FILTER_DIR.glob('*.yml'))
    assert documented == FILTERS


def test_the_filter_list_names_every_filter():
    result = ansible_doc('-t', 'filter', '--list', '--json', 'agent_ui.postgresql')
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)) == [PREFIX + name for name in FILTERS]
