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

import base64
import binascii
import hashlib
import hmac
import re


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


# --- The auth file ------------------------------------------------------------------------------------------------
# PgBouncer authenticates the accounts of its auth file itself: the admin and stats users, with SCRAM secrets (a
# client that logs in with SCRAM is checked against them), and the auth user, whose password must be in clear: PgBouncer
# logs in to the server as that user for auth_query, and cannot do so from a SCRAM secret (PgBouncer issue #774).
SCRAM_ITERATIONS = 4096


def scram_verifier(password, salt, iterations=SCRAM_ITERATIONS):
    """PostgreSQL's SCRAM-SHA-256 secret of ``password`` with ``salt`` (bytes), as pg_authid and PgBouncer store it."""
    if not isinstance(password, str) or password == '':
        raise ValueError('a SCRAM secret needs a password')
    if not isinstance(salt, bytes) or len(salt) < 16:
        raise ValueError('a SCRAM salt must be at least 16 bytes')
    salted = hashlib.pbkdf2_hmac('sha256', password.encode('utf-8'), salt, int(iterations))
    client_key = hmac.new(salted, b'Client Key', hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b'Server Key', hashlib.sha256).digest()
    return 'SCRAM-SHA-256$%d:%s$%s:%s' % (int(iterations), _b64(salt), _b64(stored_key), _b64(server_key))


def scram_verifies(verifier, password):
    """Whether ``verifier`` (a SCRAM-SHA-256 secret) is that of ``password``; False for anything else."""
    match = _SCRAM.match(verifier or '')
    if not match or not password:
        return False
    try:
        iterations, salt = int(match.group(1)), base64.b64decode(match.group(2), validate=True)
    except (ValueError, binascii.Error):
        return False
    if len(salt) < 16:
        return False
    return hmac.compare_digest(scram_verifier(password, salt, iterations), verifier)


def _b64(data):
    return base64.b64encode(data).decode('ascii')


def _quoted(text, what):
    if not isinstance(text, str) or text == '' or any(c in text for c in '\r\n\0'):
        raise ValueError('%s must be one line of text, not %r' % (what, '<hidden>' if 'password' in what else text))
    return '"%s"' % text.replace('"', '""')


def parse_userlist(text):
    """{user: secret} of an auth file's lines ("user" "secret"); lines that do not parse are left out."""
    found = {}
    for line in (text or '').splitlines():
        match = _USERLIST_LINE.match(line.strip())
        if match:
            found[match.group(1).replace('""', '"')] = match.group(2).replace('""', '"')
    return found


def render_userlist(entries, current='', salts=None):
    """The auth file for ``entries`` [{name, password, secret: scram | plain}], in order.

    A SCRAM entry keeps the secret of ``current`` (the file as it is) when that secret is still the password's, so
    that a second run writes the same file; otherwise it gets a new secret salted with ``salts[name]`` (random text
    the caller draws each run: this function stays pure). A plain entry is the password itself.
    """
    existing = parse_userlist(current)
    salts = salts or {}
    lines = []
    seen = set()
    for entry in entries or []:
        name = entry.get('name')
        _quoted(name, 'an auth file user name')
        if name in seen:
            raise ValueError('the auth file lists %s twice' % name)
        seen.add(name)
        password = entry.get('password')
        if not isinstance(password, str) or password == '':
            raise ValueError('the auth file entry %s has no password' % name)
        kind = entry.get('secret', 'scram')
        if kind == 'plain':
            secret = password
        elif kind == 'scram':
            secret = existing.get(name)
            if not scram_verifies(secret, password):
                salt = salts.get(name)
                if not salt or len(str(salt).encode('utf-8')) < 16:
                    raise ValueError('the auth file entry %s needs a new SCRAM secret, and no salt of 16 or more bytes '
                                     'was given' % name)
                secret = scram_verifier(password, str(salt).encode('utf-8'))
        else:
            raise ValueError('the auth file entry %s: secret must be scram or plain, not %r' % (name, kind))
        lines.append('%s %s' % (_quoted(name, 'an auth file user name'), _quoted(secret, 'an auth file password')))
    return '\n'.join(lines) + '\n' if lines else ''


# --- [databases] --------------------------------------------------------------------------------------------------
_DB_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_$-]*$')
_DB_OPTIONS = ('pool_size', 'reserve_pool_size', 'max_db_connections', 'pool_mode', 'min_pool_size')


def databases_section(databases, host, port=5432):
    """The [databases] section that sends each pooled database to ``host`` (the primary): no user= (SCRAM
    pass-through needs the client's own login) and no password. Used by the role and by failover.yml's repoint."""
    if not host or not isinstance(host, str) or any(c in host for c in ' \'"=\n'):
        raise ValueError('the primary host must be a host name or address, not %r' % (host,))
    port = _count(port, 'the primary port', 1)
    lines = ['[databases]']
    seen = set()
    for database in databases or []:
        name = database.get('name')
        if not name or not _DB_NAME.match(name):
            raise ValueError('a pooled database name must be letters, digits, "_", "$" or "-", not %r' % (name,))
        if name in seen:
            raise ValueError('the database %s is listed twice' % name)
        seen.add(name)
        dbname = database.get('dbname') or name
        if not _DB_NAME.match(dbname):
            raise ValueError('the dbname of %s is not a plain name: %r' % (name, dbname))
        parts = ['host=%s' % host, 'port=%d' % port, 'dbname=%s' % dbname]
        for key in _DB_OPTIONS:
            if database.get(key) not in (None, ''):
                value = database[key]
                if key == 'pool_mode':
                    if value not in POOL_MODES:
                        raise ValueError('%s pool_mode must be one of %s, not %r' % (name, ', '.join(POOL_MODES), value))
                else:
                    value = _count(value, '%s %s' % (name, key))
                parts.append('%s=%s' % (key, value))
        lines.append('%s = %s' % (name, ' '.join(parts)))
    if len(lines) == 1:
        raise ValueError('no database is pooled')
    return '\n'.join(lines) + '\n'


POOL_MODES = ('session', 'transaction', 'statement')
_SCRAM = re.compile(r'^SCRAM-SHA-256\$([0-9]+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$')
_USERLIST_LINE = re.compile(r'^"((?:[^"]|"")+)"\s+"((?:[^"]|"")*)"')


# --- The incident playbooks' step -----------------------------------------------------------------------------------
def _failure(result):
    """Why one loop result of a delegated task failed, in one line; None when it did not."""
    if not isinstance(result, dict):
        return 'no result'
    if result.get('unreachable'):
        return 'unreachable: %s' % (result.get('msg') or 'no answer')
    if result.get('skipped'):
        return None
    if result.get('failed') or result.get('rc') not in (None, 0):
        lines = [line for line in (result.get('stderr_lines') or []) + (result.get('stdout_lines') or []) if line.strip()]
        return (lines[-1] if lines else result.get('msg') or 'failed (rc %s)' % result.get('rc')).strip()
    return None


def step_outcomes(hosts, recorded, written=None, console=None):
    """{host: 'ok' | 'FAILED: why'} of steps/pgbouncer.yml: the first failure of each host, in the order the step
    ran (reading what the role recorded, writing [databases], the console commands).

    ``recorded``: the slurp loop's results (item: host); ``written`` and ``console``: the later loops' results, whose
    item is the slurp result (item.item: host).
    """
    outcome = dict((host, 'ok') for host in hosts or [])
    for result in recorded or []:
        host = result.get('item')
        why = _failure(result)
        if why is None and 'content' not in result:
            why = 'nothing recorded by the pgbouncer role (/etc/pgbouncer/agent-ui-pgbouncer.json)'
        if host in outcome and why and outcome[host] == 'ok':
            outcome[host] = 'FAILED: %s' % why
    for results in (written or [], console or []):
        for result in results:
            item = result.get('item') if isinstance(result, dict) else None
            host = item.get('item') if isinstance(item, dict) else item
            why = _failure(result)
            if host in outcome and why and outcome[host] == 'ok':
                outcome[host] = 'FAILED: %s' % why
    return outcome
