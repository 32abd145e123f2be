# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for plugins/module_utils/pgbouncer.py: the server connections the poolers may open."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.agent_ui.postgresql.plugins.module_utils.pgbouncer import budget_message, pool_budget


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
