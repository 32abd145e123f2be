# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The app_schema role's privileges query, exactly as the role sends it, on the role's migrations in a live server.

The oracle is the privilege matrix written out here from the role's variables (which role may do what on which
relation), not the query: after the statements the query returns are run, every relation's ACL and the default
privileges must equal it, and the query must then return nothing.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import itertools
import json
import os
import pathlib

import pytest
import yaml

from conftest import APP_SCHEMA_MIGRATIONS

REPO = pathlib.Path(__file__).resolve().parents[3]
ROLE = REPO / 'roles' / 'app_schema'
LEDGER = ROLE / 'files' / 'schema_migrations.sql'
_NAMES = itertools.count(1)


def _task_query():
    tasks = yaml.safe_load((ROLE / 'tasks' / 'privileges.yml').read_text())
    return tasks[0]['community.postgresql.postgresql_query']['query']


def _role_vars():
    return yaml.safe_load((ROLE / 'vars' / 'main.yml').read_text())


@pytest.fixture
def owned_app_db(postgresql_server):
    """A database whose app schema (the migrations and the ledger) belongs to a NOLOGIN owner, and the app roles.

    Role names are unique per test (roles are cluster-wide); returns (database, names by role variable).
    """
    suffix = '%d_%d' % (os.getpid(), next(_NAMES))
    names = dict((var, '%s_%s' % (default, suffix)) for var, default in (
        ('app_schema_owner', 'owner'), ('app_schema_strapi_user', 'strapi'), ('app_schema_express_user', 'express'),
        ('app_schema_readonly_user', 'readonly')))
    db = postgresql_server.create_database('privs')
    conn = postgresql_server.connect(db)
    try:
        cur = conn.cursor()
        for var, name in names.items():
            cur.execute('CREATE ROLE %s %s' % (name, 'NOLOGIN' if var == 'app_schema_owner' else 'LOGIN'))
        cur.execute('GRANT CREATE, USAGE ON SCHEMA public TO %s' % names['app_schema_owner'])
        cur.execute('SET ROLE %s' % names['app_schema_owner'])
        cur.execute(LEDGER.read_text())
        for migration in APP_SCHEMA_MIGRATIONS:
            cur.execute(migration.read_text())
        cur.execute('RESET ROLE')
        conn.commit()
    finally:
        conn.close()
    yield db, names
    postgresql_server.drop_database(db)
    conn = postgresql_server.connect('postgres')
    try:
        conn.autocommit = True
        for name in names.values():
            conn.cursor().execute('DROP ROLE IF EXISTS %s' % name)
    finally:
        conn.close()


def _spec(names):
    """The named argument the role builds, from the role's own variables with the test's role names."""
    role_vars = _role_vars()

    def render(value):
        for var, name in names.items():
            value = value.replace('{{ %s }}' % var, name)
        return value

    grants = [{'role': render(g['role']), 'tables': g['tables'], 'writer': g['writer']}
              for g in role_vars['__app_schema_grants']]
    return grants, {'schema': 'public', 'owner': names['app_schema_owner'], 'strapi': names['app_schema_strapi_user'],
                    'grants': grants, 'sequence_privs': role_vars['__app_schema_sequence_privs'],
                    'private': role_vars['__app_schema_private_tables'],
                    'hidden': role_vars['__app_schema_readonly_hidden_tables']}


def _statements(server, db, spec):
    conn = server.connect(db)
    try:
        cur = conn.cursor()
        cur.execute(_task_query(), {'spec': json.dumps(spec)})
        return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def _apply(server, db, statements):
    conn = server.connect(db)
    try:
        for statement in statements:
            conn.cursor().execute(statement)
        conn.commit()
    finally:
        conn.close()


def _held(server, db, names):
    """{(relation or 'DEFAULT TABLES'/'DEFAULT SEQUENCES', role): set of privileges} for the app roles."""
    app_roles = [names[var] for var in ('app_schema_strapi_user', 'app_schema_express_user', 'app_schema_readonly_user')]
    rows = server.query(db, """
        SELECT c.relname, r.rolname, e.privilege_type
        FROM pg_class c, aclexplode(c.relacl) e JOIN pg_roles r ON r.oid = e.grantee
        WHERE c.relnamespace = 'public'::regnamespace AND r.rolname = ANY (%(roles)s)
        UNION ALL
        SELECT 'DEFAULT ' || CASE a.defaclobjtype WHEN 'r' THEN 'TABLES' ELSE 'SEQUENCES' END, r.rolname, e.privilege_type
        FROM pg_default_acl a, aclexplode(a.defaclacl) e JOIN pg_roles r ON r.oid = e.grantee
        WHERE r.rolname = ANY (%(roles)s)""", {'roles': app_roles})
    held = {}
    for relation, role, privilege in rows:
        held.setdefault((relation, role), set()).add(privilege)
    return held


def _wanted(server, db, names, grants):
    """The privilege matrix, written out from the role's variables: what each app role must hold, and nothing more."""
    role_vars = _role_vars()
    private, hidden = set(role_vars['__app_schema_private_tables']), set(role_vars['__app_schema_readonly_hidden_tables'])
    strapi = names['app_schema_strapi_user']
    sequence_privs = set(role_vars['__app_schema_sequence_privs'].split(','))
    wanted = {('DEFAULT SEQUENCES', strapi): sequence_privs}
    for grant in grants:
        wanted[('DEFAULT TABLES', grant['role'])] = set(grant['tables'].split(','))
    for relname, relkind in server.query(db, "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                                             " AND relkind IN ('r', 'v', 'm', 'S')"):
        if relkind == 'S':
            # Every sequence of the app schema is a table's id: <table>_id_seq.
            if relname[:-len('_id_seq')] not in private:
                wanted[(relname, strapi)] = sequence_privs
            continue
        for grant in grants:
            if relkind == 'm':
                wanted[(relname, grant['role'])] = {'SELECT'}
            elif relname not in (private if grant['writer'] else hidden):
                wanted[(relname, grant['role'])] = set(grant['tables'].split(','))
    return wanted


def test_a_fresh_schema_gets_exactly_the_matrix(postgresql_server, owned_app_db):
    db, names = owned_app_db
    grants, spec = _spec(names)
    statements = _statements(postgresql_server, db, spec)
    assert statements
    _apply(postgresql_server, db, statements)
    assert _held(postgresql_server, db, names) == _wanted(postgresql_server, db, names, grants)
    assert _statements(postgresql_server, db, spec) == []


def test_drift_is_found_and_only_the_drift_is_fixed(postgresql_server, owned_app_db):
    db, names = owned_app_db
    grants, spec = _spec(names)
    _apply(postgresql_server, db, _statements(postgresql_server, db, spec))
    owner, strapi = names['app_schema_owner'], names['app_schema_strapi_user']
    express, readonly = names['app_schema_express_user'], names['app_schema_readonly_user']
    _apply(postgresql_server, db, [
        'REVOKE INSERT ON agents FROM %s' % express,
        'GRANT DELETE ON audit_log TO %s' % express,
        'GRANT SELECT ON users TO %s' % readonly,
        'REVOKE SELECT ON agent_statistics FROM %s' % readonly,
        'REVOKE ALL ON SEQUENCE tasks_id_seq FROM %s' % strapi,
        'GRANT USAGE ON SEQUENCE audit_log_id_seq TO %s' % strapi,
        'ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA public REVOKE DELETE ON TABLES FROM %s' % (owner, strapi),
    ])
    statements = _statements(postgresql_server, db, spec)
    assert sorted(statements) == sorted([
        'ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA public GRANT DELETE ON TABLES TO %s' % (owner, strapi),
        'GRANT INSERT ON TABLE public.agents TO %s' % express,
        'GRANT SELECT ON TABLE public.agent_statistics TO %s' % readonly,
        'GRANT SELECT, UPDATE, USAGE ON SEQUENCE public.tasks_id_seq TO %s' % strapi,
        'REVOKE ALL ON TABLE public.audit_log FROM %s' % express,
        'REVOKE ALL ON TABLE public.users FROM %s' % readonly,
        'REVOKE ALL ON SEQUENCE public.audit_log_id_seq FROM %s' % strapi,
    ])
    _apply(postgresql_server, db, statements)
    assert _held(postgresql_server, db, names) == _wanted(postgresql_server, db, names, grants)
    assert _statements(postgresql_server, db, spec) == []
