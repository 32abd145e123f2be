# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for plugins/module_utils/pgbouncer.py: the server connections the poolers may open."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.agent_ui.postgresql.plugins.module_utils.pgbouncer import (
    budget_message, databases_section, parse_userlist, pool_budget, render_userlist, scram_verifier, scram_verifies,
    step_outcomes,
)


def app(**changes):
    """The app's layout: one database, Strapi and Express through the pooler, the auth user for auth_query."""
    spec = {'max_connections': 100, 'superuser_reserved_connections': 3,
            'reserved': [{'name': 'monitoring', 'connections': 3}, {'name': 'administration', 'connections': 5}],
            'poolers': 1, 'default_pool_size': 20, 'reserve_pool_size': 5,
            'databases': [{'name': 'claude_agent_ui'}],
            'users': [{'name': 'strapi', 'pool_size': 20}, {'name': 'express', 'pool_size': 10}],
            'auth_user': 'pgbouncer_auth'}
    spec.update(changes)
    return spec


def test_each_pool_opens_its_size_and_the_reserve_and_the_auth_user_has_a_pool_too():
    budget = pool_budget(app())
    pools = dict(((p['database'], p['user']), p['connections']) for p in budget['pools'])
    assert pools == {('claude_agent_ui', 'strapi'): 25, ('claude_agent_ui', 'express'): 15,
                     ('claude_agent_ui', 'pgbouncer_auth'): 25}
    assert budget['per_pooler'] == 65 and budget['needed'] == 65
    assert budget['available'] == 100 - 3 - 3 - 5 == 89
    assert budget['fits'] and budget['free'] == 24


def test_two_poolers_need_twice_as_many_and_may_not_fit():
    budget = pool_budget(app(poolers=2))
    assert budget['needed'] == 130 and not budget['fits'] and budget['free'] == 89 - 130
    message = budget_message(budget)
    assert message.startswith('The pools do not fit: 2 PgBouncer hosts x 65 server connections each')
    assert '100 max_connections - 3 superuser_reserved_connections - 3 (monitoring) - 5 (administration) = 89' in message
    assert 'postgresql_max_connections' in message


def test_max_db_connections_caps_every_pool_of_the_database_together():
    budget = pool_budget(app(poolers=2, databases=[{'name': 'claude_agent_ui', 'max_db_connections': 40}]))
    assert budget['databases'] == {'claude_agent_ui': 40}
    assert budget['per_pooler'] == 40 and budget['needed'] == 80 and budget['fits']
    assert budget_message(budget).startswith('The pools fit: 2 PgBouncer hosts x 40 server connections each '
                                             '(claude_agent_ui: 40) = 80;')


def test_a_global_max_db_connections_applies_to_databases_without_their_own():
    budget = pool_budget(app(max_db_connections=30, databases=[{'name': 'a'}, {'name': 'b', 'max_db_connections': 10}]))
    assert budget['databases'] == {'a': 30, 'b': 10} and budget['per_pooler'] == 40


def test_max_user_connections_caps_a_user_across_databases_and_the_smaller_side_wins():
    spec = app(databases=[{'name': 'a'}, {'name': 'b'}],
               users=[{'name': 'strapi', 'pool_size': 20, 'max_user_connections': 10}, {'name': 'express', 'pool_size': 10}],
               auth_user=None)
    budget = pool_budget(spec)
    # Databases side: each database 25 + 15 = 40, so 80. Users side: strapi min(50, 10) + express 30 = 40.
    assert budget['per_pooler'] == 40


def test_reserved_connections_of_postgresql_16_count_and_walsenders_do_not():
    assert pool_budget(app(reserved_connections=4))['available'] == 85
    assert 'max_wal_senders' not in pool_budget(app())


def test_the_auth_user_listed_among_the_users_has_one_pool_per_database():
    budget = pool_budget(app(users=[{'name': 'pgbouncer_auth', 'pool_size': 2}], auth_user='pgbouncer_auth'))
    assert [(p['user'], p['connections']) for p in budget['pools']] == [('pgbouncer_auth', 7)]


def test_a_server_with_nothing_left_for_the_poolers_never_fits():
    budget = pool_budget(app(max_connections=10, reserved=[{'name': 'administration', 'connections': 7}],
                             databases=[{'name': 'claude_agent_ui', 'max_db_connections': 1}]))
    assert budget['available'] == 0 and not budget['fits']


@pytest.mark.parametrize('changes, message', [
    ({'max_connections': 0}, 'max_connections must be at least 1'),
    ({'max_connections': '1e3'}, 'max_connections must be a whole number'),
    ({'max_connections': True}, 'max_connections must be a whole number'),
    ({'default_pool_size': 2.5}, 'default_pool_size must be a whole number'),
    ({'poolers': 0}, 'poolers must be at least 1'),
    ({'databases': []}, 'no database is pooled'),
    ({'databases': [{'pool_size': 5}]}, 'each pooled database needs a name'),
    ({'databases': [{'name': 'a'}, {'name': 'a'}]}, 'the database a is listed twice'),
    ({'users': []}, 'at least one'),
    ({'users': [{'name': 'x'}, {'name': 'x'}]}, 'listed twice: x'),
    ({'reserved': [{'connections': 3}]}, 'each reserved entry needs a name'),
    ({'reserved': [{'name': 'm', 'connections': -1}]}, 'reserved m connections must be at least 0'),
    ({'databases': [{'name': 'a', 'max_db_connections': 'many'}]}, 'a max_db_connections must be a whole number'),
])
def test_bad_input_is_refused_with_the_name_of_what_is_wrong(changes, message):
    with pytest.raises(ValueError, match=message):
        pool_budget(app(**changes))


# --- the auth file ---------------------------------------------------------------------------------------------

SALT = b'0123456789abcdef'


def test_a_scram_secret_has_postgresqls_layout_and_verifies_only_its_password():
    secret = scram_verifier('s3cret', SALT)
    assert secret.startswith('SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$')
    assert scram_verifies(secret, 's3cret') and not scram_verifies(secret, 's3cre') and not scram_verifies(secret, '')
    assert not scram_verifies('md5abc', 's3cret') and not scram_verifies(None, 's3cret')
    assert not scram_verifies('SCRAM-SHA-256$4096:c2hvcnQ=$AAAA:AAAA', 's3cret')  # a salt of 5 bytes


def test_postgresql_accepts_our_secret_and_we_recognise_its_own(postgresql_server):
    """PostgreSQL makes a secret with a random salt; ours with that salt must be the same bytes, and PostgreSQL
    must take ours as a SCRAM secret, not as a password to hash."""
    role = 'scram_probe_%d' % id(postgresql_server)
    postgresql_server.query('postgres', "SET password_encryption = 'scram-sha-256'; CREATE ROLE %s PASSWORD 'pw-1'" % role)
    try:
        theirs = postgresql_server.query('postgres', "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))[0][0]
        assert scram_verifies(theirs, 'pw-1') and not scram_verifies(theirs, 'pw-2')
        ours = scram_verifier('pw-2', SALT)
        postgresql_server.query('postgres', "ALTER ROLE %s PASSWORD '%s'" % (role, ours))
        stored = postgresql_server.query('postgres', "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))[0][0]
        assert stored == ours
    finally:
        postgresql_server.query('postgres', 'DROP ROLE %s' % role)


ENTRIES = [{'name': 'pgbouncer_admin', 'password': 'admin-pw'}, {'name': 'pgbouncer_stats', 'password': 'stats-pw'},
           {'name': 'pgbouncer_auth', 'password': 'auth "pw"', 'secret': 'plain'}]
SALTS = {'pgbouncer_admin': 'salt-for-admin-0001', 'pgbouncer_stats': 'salt-for-stats-0001'}


def test_the_auth_file_holds_scram_secrets_and_the_auth_users_password_quoted():
    text = render_userlist(ENTRIES, '', SALTS)
    found = parse_userlist(text)
    assert list(found) == ['pgbouncer_admin', 'pgbouncer_stats', 'pgbouncer_auth']
    assert scram_verifies(found['pgbouncer_admin'], 'admin-pw') and scram_verifies(found['pgbouncer_stats'], 'stats-pw')
    assert found['pgbouncer_auth'] == 'auth "pw"' and '"auth ""pw"""' in text
    assert 'admin-pw' not in text and 'stats-pw' not in text


def test_a_second_run_keeps_the_secrets_that_still_match_and_renews_a_changed_one():
    first = render_userlist(ENTRIES, '', SALTS)
    assert render_userlist(ENTRIES, first, {'pgbouncer_admin': 'another-salt-00002', 'pgbouncer_stats': 'x' * 20}) == first
    changed = [dict(ENTRIES[0], password='new-admin-pw')] + ENTRIES[1:]
    second = parse_userlist(render_userlist(changed, first, {'pgbouncer_admin': 'another-salt-00002'}))
    assert scram_verifies(second['pgbouncer_admin'], 'new-admin-pw')
    assert second['pgbouncer_stats'] == parse_userlist(first)['pgbouncer_stats']


@pytest.mark.parametrize('entries, salts, message', [
    ([{'name': 'a', 'password': ''}], {'a': 'x' * 16}, 'a has no password'),
    ([{'name': 'a', 'password': 'p'}], {}, 'needs a new SCRAM secret'),
    ([{'name': 'a', 'password': 'p'}], {'a': 'short'}, 'needs a new SCRAM secret'),
    ([{'name': 'a', 'password': 'p', 'secret': 'md5'}], {'a': 'x' * 16}, 'scram or plain'),
    ([{'name': 'a', 'password': 'p', 'secret': 'plain'}, {'name': 'a', 'password': 'q', 'secret': 'plain'}], {}, 'twice'),
    ([{'name': 'a\nb', 'password': 'p', 'secret': 'plain'}], {}, 'one line'),
    ([{'name': 'a', 'password': 'p\nq', 'secret': 'plain'}], {}, "one line of text, not '<hidden>'"),
])
def test_a_bad_auth_file_entry_is_refused_without_showing_a_password(entries, salts, message):
    with pytest.raises(ValueError, match=message):
        render_userlist(entries, '', salts)


# --- [databases] -----------------------------------------------------------------------------------------------

def test_each_database_points_at_the_primary_with_no_user_and_its_own_limits():
    text = databases_section([{'name': 'claude_agent_ui', 'pool_size': 20, 'max_db_connections': 40},
                              {'name': 'reports', 'dbname': 'claude_agent_ui', 'pool_mode': 'session'}],
                             'mol-cluster-pg2', 5432)
    assert text.splitlines() == [
        '[databases]',
        'claude_agent_ui = host=mol-cluster-pg2 port=5432 dbname=claude_agent_ui pool_size=20 max_db_connections=40',
        'reports = host=mol-cluster-pg2 port=5432 dbname=claude_agent_ui pool_mode=session']
    assert 'user=' not in text and 'password' not in text


@pytest.mark.parametrize('databases, host, message', [
    ([], 'pg1', 'no database is pooled'),
    ([{'name': 'a'}], 'pg1 host=evil', 'host name or address'),
    ([{'name': 'a'}], '', 'host name or address'),
    ([{'name': 'a b'}], 'pg1', 'pooled database name'),
    ([{'name': 'a'}, {'name': 'a'}], 'pg1', 'listed twice'),
    ([{'name': 'a', 'dbname': 'x user=postgres'}], 'pg1', 'not a plain name'),
    ([{'name': 'a', 'pool_mode': 'none'}], 'pg1', 'pool_mode must be one of'),
    ([{'name': 'a', 'pool_size': 'lots'}], 'pg1', 'a pool_size must be a whole number'),
])
def test_a_bad_database_entry_is_refused(databases, host, message):
    with pytest.raises(ValueError, match=message):
        databases_section(databases, host)


# --- the incident playbooks' step ------------------------------------------------------------------------------

def test_each_pgbouncer_host_gets_the_first_failure_of_the_step_or_ok():
    recorded = [{'item': 'p1', 'content': 'e30='}, {'item': 'p2', 'unreachable': True, 'msg': 'ssh: timed out'},
                {'item': 'p3', 'failed': True, 'msg': 'file not found'}, {'item': 'p4', 'content': 'e30='}]
    written = [{'item': recorded[0], 'changed': True}, {'item': recorded[3], 'failed': True, 'msg': 'disk full'}]
    console = [{'item': recorded[0], 'rc': 0}, {'item': recorded[3], 'skipped': True}]
    outcome = step_outcomes(['p1', 'p2', 'p3', 'p4', 'p5'], recorded, written, console)
    assert outcome == {'p1': 'ok', 'p2': 'FAILED: unreachable: ssh: timed out', 'p3': 'FAILED: file not found',
                       'p4': 'FAILED: disk full', 'p5': 'ok'}


def test_a_console_error_is_its_last_line_and_a_missing_record_is_named():
    recorded = [{'item': 'p1', 'content': 'e30='}, {'item': 'p2'}]
    console = [{'item': recorded[0], 'rc': 1, 'stderr_lines': ['psql: error: connection to server on socket failed', '']}]
    outcome = step_outcomes(['p1', 'p2'], recorded, [], console)
    assert outcome['p1'] == 'FAILED: psql: error: connection to server on socket failed'
    assert outcome['p2'].startswith('FAILED: nothing recorded by the pgbouncer role')
