# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The app mapping (migration_app.py) against the schema it loads into, read live from pg_constraint.

The enum domains (model, transport, status) and the score's range are written in the module and in the
app_schema role's CHECK constraints.  A migration that adds a model name without the module (or the other
way round) would leave the module refusing rows the schema accepts; these tests catch that.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import decimal
import re

import yaml

import app_sqlite
from ansible_collections.agent_ui.postgresql.plugins.module_utils import migration_app
from ansible_collections.agent_ui.postgresql.plugins.modules import sqlite_to_postgresql

_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_IN_LIST = re.compile(r'= ANY \(\(?ARRAY\[(.*)\]')
_LOW = re.compile(r'>= \(?(-?[0-9.]+)\)?')
_HIGH = re.compile(r'<= \(?(-?[0-9.]+)\)?')


def schema_domains(server, db):
    """{(table, column): allowed values or (low, high)} from the app schema's one-column CHECK constraints."""
    rows = server.query(db, "SELECT c.conrelid::regclass::text, a.attname, pg_get_constraintdef(c.oid) "
                            "FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
                            "WHERE c.contype = 'c' AND c.connamespace = 'public'::regnamespace AND cardinality(c.conkey) = 1")
    domains = {}
    for table, column, definition in rows:
        listed = _IN_LIST.search(definition)
        low, high = _LOW.search(definition), _HIGH.search(definition)
        if listed:
            domains[(table, column)] = frozenset(value.replace("''", "'") for value in _LITERAL.findall(listed.group(1)))
        elif low and high:
            domains[(table, column)] = (decimal.Decimal(low.group(1)), decimal.Decimal(high.group(1)))
        else:
            domains[(table, column)] = definition  # a kind of CHECK the module does not model: the comparison fails
    return domains


def mapping_domains():
    domains = {}
    for spec in migration_app.app_specs():
        for col in spec.columns:
            if col.allowed is not None:
                domains[(spec.name, col.name)] = frozenset(col.allowed)
            if col.bounds is not None:
                domains[(spec.name, col.name)] = tuple(decimal.Decimal(bound) for bound in col.bounds)
    return domains


def test_the_mapping_domains_are_the_schema_checks(postgresql_server, app_db):
    found = schema_domains(postgresql_server, app_db)
    assert len(found) == 4  # model, transport, status, experience_score
    assert mapping_domains() == found


def test_the_generator_uses_the_mapping_domains():
    assert (app_sqlite.MODELS, app_sqlite.TRANSPORTS, app_sqlite.STATUSES) == (
        migration_app.MODELS, migration_app.TRANSPORTS, migration_app.STATUSES)


def test_the_module_documentation_lists_the_mapping_models():
    text = ' '.join(yaml.safe_load(sqlite_to_postgresql.DOCUMENTATION)['options']['model_map']['description'])
    assert tuple(re.findall(r'C\(([^)]+)\)', text.split('allowed list')[1])) == migration_app.MODELS
