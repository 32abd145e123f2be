# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""PgBouncer: how many server connections the poolers can open, against what the server leaves free.

Pure functions, unit-tested without Ansible or PgBouncer. PgBouncer keeps one pool per (database, user) pair; each
pool opens at most its pool size plus the reserve pool. ``max_db_connections`` caps every pool of a database
together and ``max_user_connections`` every pool of a user; the auth user's pool (for ``auth_query``) is a pool like
the others. The server's side: ``max_connections`` less ``superuser_reserved_connections``, less
``reserved_connections`` (PostgreSQL 16 and later), less the connections the operator keeps for others (the
exporter, the incident playbooks, pg_rewind's source connection, direct administration). Since PostgreSQL 12,
walsenders have slots of their own (``max_wal_senders``) and are not counted here.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


def _count(value, what, minimum=0):
    if isinstance(value, bool):
        raise ValueError('%s must be a whole number, not %r' % (what, value))
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError('%s must be a whole number, not %r' % (what, value))
    if number != value and str(number) != str(value).strip():
        raise ValueError('%s must be a whole number, not %r' % (what, value))
    if number < minimum:
        raise ValueError('%s must be at least %d, not %d' % (what, minimum, number))
    return number


def _cap(value, what):
    """A PgBouncer limit where 0 means none."""
    number = _count(value or 0, what)
    return number if number > 0 else None


def _smaller(value, cap):
    return value if cap is None else min(value, cap)


def pool_budget(spec):
    """The server connections every PgBouncer host together may open, and whether the server has them.

    ``spec``: max_connections, superuser_reserved_connections (3), reserved_connections (0), reserved: [{name,
    connections}] (kept for others), poolers (how many PgBouncer hosts point at the server), default_pool_size (20),
    reserve_pool_size (0), max_db_connections (0: none), max_user_connections (0: none), databases: [{name, pool_size,
    reserve_pool_size, max_db_connections}], users: [{name, pool_size, max_user_connections}] (those that log in
    through PgBouncer), auth_user (its pools count too).

    Returns {available, per_pooler, poolers, needed, free, fits, pools: [{database, user, connections}],
    databases: {name: connections}, reserved: [...]}. A pool's own size and reserve bound it; the database and user
    caps bound their pools together. With both caps, per_pooler is the smaller of the two sums: an upper bound of
    what the pools can open at once, so the check errs on the safe side.
    """
    max_connections = _count(spec.get('max_connections'), 'max_connections', 1)
    superuser = _count(spec.get('superuser_reserved_connections', 3), 'superuser_reserved_connections')
    reserved_connections = _count(spec.get('reserved_connections', 0), 'reserved_connections')
    reserved = []
    for entry in spec.get('reserved') or []:
        if not isinstance(entry, dict) or not entry.get('name'):
            raise ValueError('each reserved entry needs a name and connections, not %r' % (entry,))
        reserved.append({'name': str(entry['name']),
                         'connections': _count(entry.get('connections'), 'reserved %s connections' % entry['name'])})
    poolers = _count(spec.get('poolers', 1), 'poolers', 1)
    default_pool = _count(spec.get('default_pool_size', 20), 'default_pool_size', 1)
    default_reserve = _count(spec.get('reserve_pool_size', 0), 'reserve_pool_size')
    default_db_cap = _cap(spec.get('max_db_connections'), 'max_db_connections')
    default_user_cap = _cap(spec.get('max_user_connections'), 'max_user_connections')

    databases = spec.get('databases') or []
    if not databases:
        raise ValueError('no database is pooled')
    users = [dict(user) for user in spec.get('users') or []]
    names = [user.get('name') for user in users]
    if not names or not all(names):
        raise ValueError('each pooled user needs a name, and there must be at least one')
    if len(set(names)) != len(names):
        raise ValueError('a pooled user is listed twice: %s' % ', '.join(sorted(set(n for n in names if names.count(n) > 1))))
    auth_user = spec.get('auth_user')
    if auth_user and auth_user not in names:
        users.append({'name': auth_user})

    pools = []
    by_database = {}
    by_user = dict((user['name'], 0) for user in users)
    db_caps = {}
    for database in databases:
        name = database.get('name')
        if not name:
            raise ValueError('each pooled database needs a name, not %r' % (database,))
        if name in by_database:
            raise ValueError('the database %s is listed twice' % name)
        size = _count(database.get('pool_size') or default_pool, '%s pool_size' % name, 1)
        reserve = _count(database.get('reserve_pool_size', default_reserve), '%s reserve_pool_size' % name)
        db_caps[name] = _cap(database.get('max_db_connections', default_db_cap), '%s max_db_connections' % name)
        by_database[name] = 0
        for user in users:
            user_size = _count(user.get('pool_size') or size, '%s pool_size' % user['name'], 1)
            connections = user_size + reserve
            pools.append({'database': name, 'user': user['name'], 'connections': connections})
            by_database[name] += connections
            by_user[user['name']] += connections

    db_side = sum(_smaller(total, db_caps[name]) for name, total in by_database.items())
    user_side = sum(_smaller(total, _cap(user.get('max_user_connections', default_user_cap),
                                         '%s max_user_connections' % user['name']))
                    for user, total in ((u, by_user[u['name']]) for u in users))
    per_pooler = min(db_side, user_side)
    available = max_connections - superuser - reserved_connections - sum(entry['connections'] for entry in reserved)
    needed = per_pooler * poolers
    return {
        'max_connections': max_connections,
        'superuser_reserved_connections': superuser,
        'reserved_connections': reserved_connections,
        'reserved': reserved,
        'available': available,
        'poolers': poolers,
        'per_pooler': per_pooler,
        'needed': needed,
        'free': available - needed,
        'fits': available > 0 and needed <= available,
        'pools': pools,
        'databases': dict((name, _smaller(total, db_caps[name])) for name, total in by_database.items()),
    }


def budget_message(budget):
    """One paragraph an operator can act on: the arithmetic of pool_budget(), whether it fits or not."""
    others = ''.join(' - %d (%s)' % (entry['connections'], entry['name']) for entry in budget['reserved'])
    server = '%d max_connections - %d superuser_reserved_connections%s%s = %d free for the poolers' % (
        budget['max_connections'], budget['superuser_reserved_connections'],
        (' - %d reserved_connections' % budget['reserved_connections']) if budget['reserved_connections'] else '',
        others, budget['available'])
    pools = ', '.join('%s: %d' % (name, count) for name, count in sorted(budget['databases'].items()))
    poolers = '%d PgBouncer host%s x %d server connections each (%s) = %d' % (
        budget['poolers'], '' if budget['poolers'] == 1 else 's', budget['per_pooler'], pools, budget['needed'])
    if budget['fits']:
        return 'The pools fit: %s; %s; %d to spare.' % (poolers, server, budget['free'])
    return ('The pools do not fit: %s, but the server has %s. Lower pool_size, reserve_pool_size or '
            'max_db_connections, or raise max_connections (postgresql_max_connections).' % (poolers, server))
