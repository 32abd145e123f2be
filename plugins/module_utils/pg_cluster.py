# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The decisions of streaming-replication cluster management: topology, failover, switchover, sync proofs.

Every function here is pure: it reads the node states that the node probe returned (one dict per
inventory host name) and returns a plan as plain dicts, lists, strings and
ints.  Nothing here connects anywhere or changes anything; the playbooks carry the plans out.
The module imports nothing from Ansible, so unit tests load it as a plain module, and every
invalid input raises ValueError with a message that names the value.

A state key that is missing counts as None (or False for the flags).  The rules that decide
anything irreversible (promoting, fencing, bootstrapping) choose refusing over guessing, and
every message says what was found, what was not done and the next command.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import re
from collections.abc import Mapping

LSN_MAX = (1 << 64) - 1
DEFAULT_MAX_LAG_BYTES = 16 * 1024 * 1024  # one WAL segment of the default size
SYNC_METHODS = ('ANY', 'FIRST')
# params.sync of failover_plan: read the old primary's synchronous replication from the survivors' live settings.
LIVE_SYNC = 'live'
NOT_PAUSED = (None, 'not paused')  # pg_get_wal_replay_pause_state() values of a replica that replays
KEEP_ONE = ('Keep the one the application writes to, stop the other by hand (on it: systemctl stop postgresql), then make '
            'it a replica with rejoin.yml.')
PG_ISREADY_ALIVE = {0: 'accepting connections', 1: 'rejecting connections (it is starting up or shutting down)'}

_LSN_RE = re.compile(r'^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$')
_SPACE = ' \t\n\r\f\v'  # syncrep_scanner.l {space}
_ASCII_LOWER = {code: code + 32 for code in range(ord('A'), ord('Z') + 1)}
_FLAG_WORDS = {'true': True, 'yes': True, 'on': True, '1': True, 'false': False, 'no': False, 'off': False, '0': False}
_AMBIGUOUS = object()  # the members hold several clusters and none is the clear majority


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def _fold(name):
    """Fold ASCII letters to lower case, as PostgreSQL's pg_strcasecmp compares standby names."""
    return name.translate(_ASCII_LOWER)


def _and_list(items):
    """'a', 'a and b', 'a, b and c'."""
    items = [str(item) for item in items]
    if len(items) < 2:
        return ''.join(items)
    return '%s and %s' % (', '.join(items[:-1]), items[-1])


def _plural(count, word, plural=None):
    """'1 replica', '2 replicas'."""
    return '%d %s' % (count, word if count == 1 else (plural or word + 's'))


def _flag(value, name):
    """A yes/no parameter: a bool, None (False) or the words Ansible accepts for booleans (-e force=true)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _FLAG_WORDS:
        return _FLAG_WORDS[value.strip().lower()]
    raise ValueError('%s must be true or false, got %r' % (name, value))


def _count(value, name, minimum=0):
    """A whole number >= minimum: an int or a digit string (extra vars arrive as strings)."""
    number = value
    if isinstance(value, str) and re.match(r'^\s*-?\d+\s*$', value):
        number = int(value)
    if not isinstance(number, int) or isinstance(number, bool) or number < minimum:
        raise ValueError('%s must be a whole number >= %d, got %r' % (name, minimum, value))
    return number


def _mapping(value, name):
    """Fail unless ``value`` is a dict."""
    if not isinstance(value, Mapping):
        raise ValueError('%s must be a dict, got %s' % (name, type(value).__name__))
    return value


def _members(members):
    """The ordered inventory names of the cluster, checked."""
    if isinstance(members, (str, bytes, Mapping)) or not isinstance(members, (list, tuple)):
        raise ValueError('members must be a list of inventory host names, got %s' % type(members).__name__)
    seen = set()
    for member in members:
        if not isinstance(member, str) or not member:
            raise ValueError('members must hold inventory host names (non-empty strings), got %r' % (member,))
        if member in seen:
            raise ValueError('members names %s twice' % member)
        seen.add(member)
    return list(members)


def _view(states, members):
    """{member: its state}, with {} (unreachable) for a member that has no state."""
    states = _mapping(states, 'states')
    view = {}
    for member in members:
        state = states.get(member)
        if state is not None and not isinstance(state, Mapping):
            raise ValueError('states[%r] must be a dict (the node probe result), got %s' % (member, type(state).__name__))
        view[member] = state or {}
    return view


def _reachable(state):
    return bool(state.get('reachable'))


def _running(state):
    return _reachable(state) and bool(state.get('running'))


def _is_primary(state):
    """Reachable, running and not in recovery (a missing in_recovery counts as False: a primary).

    The role's placeholder (a cluster of its own, made for a replica still to be built) is never a primary,
    even while it runs: it holds nothing of the cluster.
    """
    return _running(state) and not state.get('in_recovery') and not state.get('placeholder')


def _is_replica(state):
    """Reachable, running and in recovery (never the placeholder)."""
    return _running(state) and bool(state.get('in_recovery')) and not state.get('placeholder')


def _real_data(state):
    """The data directory holds a cluster that was used (not the role's placeholder)."""
    return _reachable(state) and bool(state.get('data')) and not state.get('placeholder')


def _paused(state):
    return state.get('replay_pause_state') not in NOT_PAUSED


def _streaming(state):
    receiver = state.get('wal_receiver')
    return isinstance(receiver, Mapping) and receiver.get('status') == 'streaming'


def _sysid(state):
    """The system identifier as text (pg_controldata prints it, pg_control_system() returns a bigint)."""
    value = state.get('system_identifier')
    return None if value is None or value == '' else str(value)


def _primaries(view, members):
    return [member for member in members if _is_primary(view[member])]


def _state_lsn(host, state, key):
    """An LSN of a state as an int, or None; a malformed one fails naming the host and the key."""
    value = state.get(key)
    if value is None or value == '':
        return None
    try:
        return _lsn_value(value)
    except ValueError as exc:
        raise ValueError('%s: %s: %s' % (host, key, exc)) from exc


def _position(host, state):
    try:
        return node_position(state)
    except ValueError as exc:
        raise ValueError('%s: %s' % (host, exc)) from exc


def _peer_code(value):
    """A pg_isready exit code from peers_ready (an int or a digit string), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


# ---------------------------------------------------------------------------
# LSNs
# ---------------------------------------------------------------------------

def parse_lsn(text):
    """'0/502EBC8' -> (0 << 32) | 0x502EBC8, as PostgreSQL's pg_lsn input reads it.

    Two groups of 1 to 8 hex digits (either case) around a '/'; surrounding white space is ignored.
    """
    if not isinstance(text, str):
        raise ValueError('an LSN is text like 0/502EBC8, got %r (%s)' % (text, type(text).__name__))
    match = _LSN_RE.match(text.strip())
    if not match:
        raise ValueError('%r is not an LSN: expected two groups of 1 to 8 hex digits around a slash, like 0/502EBC8' % (text,))
    high, low = match.groups()
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(number):
    """An LSN as PostgreSQL prints it (%X/%X): 84077512 -> '0/502EBC8'."""
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= LSN_MAX:
        raise ValueError('an LSN is a whole number from 0 to 2^64-1, got %r' % (number,))
    return '%X/%X' % (number >> 32, number & 0xFFFFFFFF)


def _lsn_value(value):
    """An LSN given as text or as an int."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= LSN_MAX:
            raise ValueError('an LSN is a whole number from 0 to 2^64-1, got %r' % (value,))
        return value
    return parse_lsn(value)


def lsn_diff(left, right):
    """left - right in bytes, like pg_wal_lsn_diff(); None when either is None.  Each is LSN text or an int."""
    if left is None or right is None:
        return None
    return _lsn_value(left) - _lsn_value(right)


def node_position(state):
    """How far a node's WAL goes, as an int LSN, or None when it is not running.

    A running replica: the greater of pg_last_wal_receive_lsn() and pg_last_wal_replay_lsn()
    (either may be None).  A running primary: pg_current_wal_lsn().
    """
    state = state or {}
    if not state.get('running'):
        return None
    if state.get('in_recovery'):
        positions = [_lsn_value(state[key]) for key in ('receive_lsn', 'replay_lsn') if state.get(key) not in (None, '')]
        return max(positions) if positions else None
    current = state.get('current_lsn')
    return None if current in (None, '') else _lsn_value(current)


# ---------------------------------------------------------------------------
# synchronous_standby_names
# ---------------------------------------------------------------------------

def _sync_error(text, message, token=None):
    where = 'at end of input' if token is None else 'at or near %r' % (token[2],)
    return ValueError('synchronous_standby_names %r: %s %s' % (text, message, where))


def _is_ident_start(char):
    """syncrep_scanner.l ident_start: [A-Za-z\\200-\\377_], here any non-ASCII character."""
    if char.isascii():
        return char.isalpha() or char == '_'
    return True


def _is_ident_char(char):
    return _is_ident_start(char) or (char.isascii() and char.isdigit()) or char == '$'


def _sync_tokens(text):
    """Tokens of syncrep_scanner.l: (kind, value, source text); kind is NAME, NUM, ANY, FIRST or a punctuation mark."""
    tokens = []
    index = 0
    while index < len(text):
        char = text[index]
        if char in _SPACE:
            index += 1
        elif char == '"':
            parts, scan = [], index + 1
            while True:
                end = text.find('"', scan)
                if end < 0:
                    raise _sync_error(text, 'unterminated quoted name', ('', '', text[index:]))
                parts.append(text[scan:end])
                if text.startswith('""', end):
                    parts.append('"')
                    scan = end + 2
                    continue
                break
            tokens.append(('NAME', ''.join(parts), text[index:end + 1]))
            index = end + 1
        elif _is_ident_start(char):
            end = index + 1
            while end < len(text) and _is_ident_char(text[end]):
                end += 1
            word = text[index:end]
            keyword = _fold(word).upper()
            if word.isascii() and keyword in SYNC_METHODS:
                tokens.append((keyword, keyword, word))
            else:
                tokens.append(('NAME', _fold(word), word))
            index = end
        elif char.isascii() and char.isdigit():
            end = index + 1
            while end < len(text) and text[end].isascii() and text[end].isdigit():
                end += 1
            tokens.append(('NUM', text[index:end], text[index:end]))
            index = end
        elif char in '*,()':
            tokens.append(('NAME' if char == '*' else char, char, char))
            index += 1
        else:
            raise _sync_error(text, 'syntax error', ('', '', char))
    return tokens


def _sync_name_list(text, tokens, index):
    """standby_list: standby_name (',' standby_name)*, where standby_name is NAME or NUM; returns (names, next index)."""
    names = []
    while True:
        if index >= len(tokens) or tokens[index][0] not in ('NAME', 'NUM'):
            raise _sync_error(text, 'syntax error', tokens[index] if index < len(tokens) else None)
        names.append(tokens[index][1])
        index += 1
        if index < len(tokens) and tokens[index][0] == ',':
            index += 1
            continue
        return names, index


def _expect(text, tokens, index, kind):
    if index >= len(tokens) or tokens[index][0] != kind:
        raise _sync_error(text, 'syntax error', tokens[index] if index < len(tokens) else None)
    return index + 1


def parse_sync_standby_names(text):
    """Parse synchronous_standby_names with PostgreSQL's grammar (syncrep_gram.y).

    '' or None -> None (asynchronous).  'ANY 2 (a, b, c)', 'FIRST 1 (a, "b-2")', '2 (a, b)' (FIRST 2),
    'a, b' (FIRST 1) and '*' (any standby) -> {'method': 'ANY'|'FIRST', 'num': int, 'names': [...]}.
    ANY and FIRST are case-insensitive and must be double-quoted to be used as names; unquoted names
    are folded to lower case (PostgreSQL compares them with application_name case-insensitively),
    quoted ones are kept as written, with "" for a quote inside.  A syntax error, a count of 0 or a
    count larger than the list (unless the list holds '*') raises ValueError.
    """
    if text is None or text == '':
        return None
    if not isinstance(text, str):
        raise ValueError('synchronous_standby_names must be text, got %r' % (text,))
    tokens = _sync_tokens(text)
    method, num = 'FIRST', 1
    if tokens and tokens[0][0] in SYNC_METHODS:  # ANY NUM '(' standby_list ')' | FIRST NUM '(' standby_list ')'
        method = tokens[0][0]
        _expect(text, tokens, 1, 'NUM')
        num, start = int(tokens[1][1]), 2
    elif len(tokens) > 1 and tokens[0][0] == 'NUM' and tokens[1][0] == '(':  # NUM '(' standby_list ')'
        num, start = int(tokens[0][1]), 1
    else:  # standby_list
        start = None
    if start is None:
        names, index = _sync_name_list(text, tokens, 0)
    else:
        names, index = _sync_name_list(text, tokens, _expect(text, tokens, start, '('))
        index = _expect(text, tokens, index, ')')
    if index < len(tokens):
        raise _sync_error(text, 'syntax error', tokens[index])
    if num <= 0:
        raise ValueError('synchronous_standby_names %r: the number of synchronous standbys (%d) must be greater than zero' % (text, num))
    if num > len(names) and '*' not in names:
        raise ValueError('synchronous_standby_names %r asks for %d synchronous standbys but lists only %d: every commit would wait forever'
                         % (text, num, len(names)))
    return {'method': method, 'num': num, 'names': names}


def _sync_method(method):
    if not isinstance(method, str) or method.strip().upper() not in SYNC_METHODS:
        raise ValueError('method must be ANY or FIRST, got %r' % (method,))
    return method.strip().upper()


def _quote_name(name):
    return '"%s"' % name.replace('"', '""')


def render_sync_standby_names(method, num, names):
    """The synchronous_standby_names value for ``method`` ('ANY' or 'FIRST'), ``num`` and ``names``.

    Every name is double-quoted, so it keeps its case and may be a keyword: 'ANY 1 ("pg2", "pg3")'.
    """
    method = _sync_method(method)
    num = _count(num, 'num', 1)
    if isinstance(names, (str, bytes, Mapping)) or not isinstance(names, (list, tuple)) or not names:
        raise ValueError('names must be a non-empty list of standby names, got %r' % (names,))
    for name in names:
        if not isinstance(name, str) or not name or '\0' in name:
            raise ValueError('a standby name must be non-empty text without NUL characters, got %r' % (name,))
    if num > len(names) and '*' not in names:
        raise ValueError('num is %d but only %s listed (%s): every commit would wait forever'
                         % (num, _plural(len(names), 'standby is', 'standbys are'), _and_list(names)))
    return '%s %d (%s)' % (method, num, ', '.join(_quote_name(name) for name in names))


def sync_standby_names_for(host, members, num=1, method='ANY'):
    """The synchronous_standby_names that ``host`` renders for itself: every other member, in order.

    Each node lists all the others, so the setting is still right on whichever node is the primary
    after a failover.  ``num`` 0 gives '' (asynchronous).
    """
    members = _members(members)
    method = _sync_method(method)
    num = _count(num, 'num', 0)
    others = [member for member in members if member != host]
    if num == 0:
        return ''
    if num > len(others):
        raise ValueError('num is %d but %s has only %s (%s): every commit would wait forever; lower num or add members'
                         % (num, host, _plural(len(others), 'other member'), _and_list(others) or 'none'))
    return render_sync_standby_names(method, num, others)


def _check_sync(sync):
    """A parsed synchronous_standby_names dict (or its text, parsed here), or None."""
    if sync is None or isinstance(sync, str):
        return parse_sync_standby_names(sync)
    sync = _mapping(sync, 'sync')
    for key in ('method', 'num', 'names'):
        if key not in sync:
            raise ValueError('sync must be the output of parse_sync_standby_names (method, num, names); it has no %r' % key)
    names = sync['names']
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
        raise ValueError('sync.names must be a list of standby names, got %r' % (names,))
    return {'method': _sync_method(sync['method']), 'num': _count(sync['num'], 'sync.num', 1), 'names': list(names)}


def _describe_sync(sync):
    return "synchronous_standby_names '%s'" % render_sync_standby_names(sync['method'], sync['num'], sync['names'])


def acked_commits_provable(sync, lost, old_primary=None):
    """Whether every acknowledged commit is provably on a surviving node: (bool, one sentence for the operator).

    With synchronous_commit=on, the primary acknowledged a commit only after ``num`` of the listed
    standbys had flushed it, under ANY and under FIRST alike.  So the commit is on a survivor iff
    fewer than ``num`` of the listed names are in ``lost`` (the old primary and every member that does
    not survive).  For '*', every member except ``old_primary`` counts as listed (if ``old_primary``
    is not given, every lost name counts).  Names are compared case-insensitively, as PostgreSQL does.
    """
    sync = _check_sync(sync)
    if sync is None:
        return False, ('asynchronous replication (synchronous_standby_names is empty): the old primary acknowledged commits '
                       'without waiting for any standby, so the newest acknowledged commits may be lost.')
    if isinstance(lost, (str, bytes, Mapping)):
        raise ValueError('lost must be a list of member names, got %r' % (lost,))
    lost_by_fold = {}
    for name in lost:
        lost_by_fold.setdefault(_fold(str(name)), str(name))
    listed = set(_fold(name) for name in sync['names'] if name != '*')
    if '*' in sync['names']:
        listed.update(fold for fold in lost_by_fold if old_primary is None or fold != _fold(old_primary))
    lost_listed = sorted(lost_by_fold[fold] for fold in listed if fold in lost_by_fold)
    num = sync['num']
    gone = 'none of them is lost' if not lost_listed else '%d of them %s lost (%s)' % (
        len(lost_listed), 'is' if len(lost_listed) == 1 else 'are', _and_list(lost_listed))
    if len(lost_listed) < num:
        return True, ('%s: every acknowledged commit was flushed by at least %d of the listed standbys and %s, '
                      'so a surviving replica has every acknowledged commit.' % (_describe_sync(sync), num, gone))
    return False, ('%s cannot prove that every acknowledged commit survived: each was flushed by at least %d of the listed '
                   'standbys and %s, so a commit may exist only there.' % (_describe_sync(sync), num, gone))


# ---------------------------------------------------------------------------
# Ranking
# ---------------------------------------------------------------------------

def _cluster_sysid(view, members, prefer=None):
    """The system identifier of the cluster: the running primary's, else ``prefer``'s, else the majority's.

    None when no member reports one; _AMBIGUOUS when several clusters tie for the majority.
    """
    primaries = _primaries(view, members)
    if len(primaries) == 1:
        return _sysid(view[primaries[0]])
    if prefer in view and _real_data(view[prefer]) and _sysid(view[prefer]) is not None:
        return _sysid(view[prefer])
    counts = collections.Counter(_sysid(view[member]) for member in members
                                 if _real_data(view[member]) and _sysid(view[member]) is not None)
    if not counts:
        return None
    ranked = counts.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return _AMBIGUOUS
    return ranked[0][0]


def _not_candidate(state, sysid):
    """Why a node cannot be promoted, or None when it can; the reason reads after '<host> is '."""
    if not _reachable(state):
        return 'unreachable: Ansible could not connect to it'
    if state.get('placeholder'):
        return 'a placeholder for a replica still to be built (it holds no data of the cluster)'
    if not state.get('running'):
        if state.get('data') and not state.get('placeholder'):
            return 'not running (a stopped replica, standby.signal)' if state.get('standby_signal') else 'not running'
        return 'not running and holds no data'
    if not state.get('in_recovery'):
        return 'not in recovery: it runs as a primary'
    if sysid is _AMBIGUOUS:
        return 'in one of several clusters (system identifier %s), none of them the majority' % _sysid(state)
    if _sysid(state) != sysid:
        return 'in another cluster (system identifier %s, cluster %s)' % (_sysid(state), sysid)
    return None


def _rank(view, hosts, exclude, sysid):
    """(ranking, skipped) over ``hosts``: see rank_candidates."""
    ranking, skipped = [], []
    for host in hosts:
        if host in exclude:
            continue
        state = view[host]
        why = _not_candidate(state, sysid)
        position = _position(host, state) if why is None else None
        if why is None and position is None:
            why = 'at an unknown WAL position (it reports no receive or replay LSN)'
        if why is not None:
            skipped.append({'host': host, 'why': why})
            continue
        ranking.append({'host': host, 'position': position, 'lsn': format_lsn(position), 'paused': _paused(state),
                        'streaming': _streaming(state)})
    ranking.sort(key=lambda entry: (-entry['position'], entry['paused'], entry['host']))
    return ranking, skipped


def rank_candidates(states, exclude=(), system_identifier=None):
    """The replicas that could be promoted, best first.

    Only reachable, running nodes in recovery with a known position (see node_position) whose system
    identifier is the cluster's: ``system_identifier`` if given, else the running primary's when exactly
    one runs, else the one most nodes with data hold (a tie between two clusters leaves no candidate).
    Ordered by position descending, then paused replicas last, then by host name.  Each entry:
    {host, position (int), lsn (text), paused (bool), streaming (bool)}.
    """
    states = _mapping(states, 'states')
    hosts = sorted(str(host) for host in states)
    view = _view(states, hosts)
    exclude = set([exclude] if isinstance(exclude, str) else exclude or ())
    sysid = _cluster_sysid(view, hosts) if system_identifier is None else str(system_identifier)
    return _rank(view, hosts, exclude, sysid)[0]


# ---------------------------------------------------------------------------
# Topology (site.yml)
# ---------------------------------------------------------------------------

def _unreachable_why(host):
    return ('unreachable: Ansible could not connect to %s, so site.yml leaves it alone; fix the connection and re-run site.yml'
            % host)


def _two_primaries(primaries, tail):
    return ('two primaries: %s %s run as primaries (not in recovery), so writes may be split between them. %s'
            % (_and_list(primaries), 'both' if len(primaries) == 2 else 'all', tail))


def _down_summary(view, members):
    """'pg1 (stopped, no standby.signal), pg3 (unreachable)' for the members that hold data or are unknown but do not run."""
    parts = []
    for member in members:
        state = view[member]
        if not _reachable(state):
            parts.append('%s (unreachable)' % member)
        elif _real_data(state) and not state.get('running'):
            parts.append('%s (stopped, %s%s)' % (member, 'standby.signal' if state.get('standby_signal') else 'no standby.signal',
                                                 ', %s' % state['cluster_state'] if state.get('cluster_state') else ''))
    return ', '.join(parts)


def _classify(member, state, primary, sysid, result):
    """Put a reachable non-primary member into result's replicas, build, excluded or errors."""
    other = _sysid(state)
    if state.get('placeholder'):
        result['build'].append(member)
    elif state.get('running'):
        if other == sysid:
            result['replicas'].append(member)
            follows = state.get('primary_host')
            if follows and follows != primary:
                result['notes'].append('%s replicates from %s, not from the primary %s.' % (member, follows, primary))
        else:
            result['errors'].append(
                '%s runs as a replica of another cluster (system identifier %s, cluster %s): it is not a replica of %s, and '
                'site.yml will not overwrite it. If its data is not needed, stop it (on it: systemctl stop postgresql), move the '
                'data directory away and re-run site.yml to build it as a replica of %s.' % (member, other, sysid, primary, primary))
    elif not state.get('data'):
        result['build'].append(member)
    elif other is None:
        result['errors'].append(
            '%s has a data directory but its system identifier could not be read (pg_controldata): it may hold another cluster. '
            'Look at it on the host; move the data away if it is not needed, then re-run site.yml.' % member)
    elif other != sysid:
        result['errors'].append(
            "%s holds another cluster's data (system identifier %s, cluster %s): site.yml will not overwrite it. If that data "
            "is not needed, move the data directory away on %s and re-run site.yml to build it as a replica of %s."
            % (member, other, sysid, member, primary))
    elif state.get('standby_signal'):
        result['replicas'].append(member)
    else:
        result['excluded'].append({'host': member, 'why': (
            'former primary: run rejoin.yml to make it a replica of %s. It holds this cluster\'s data but is stopped without '
            'standby.signal, so it may have diverged; site.yml neither starts nor rewrites it.' % primary)})


def cluster_topology(states, members, bootstrap_primary):
    """The live topology of a replicated cluster, for site.yml: reality wins over the inventory.

    Returns {primary, bootstrap, replicas, build, excluded: [{host, why}], errors, notes, system_identifier}.
    ``errors`` non-empty means site.yml must stop; ``members`` order is kept in replicas and build.
    """
    members = _members(members)
    view = _view(states, members)
    result = {'primary': None, 'bootstrap': False, 'replicas': [], 'build': [], 'excluded': [], 'errors': [], 'notes': [],
              'system_identifier': None}
    reachable = [member for member in members if _reachable(view[member])]
    for member in members:
        if member not in reachable:
            result['excluded'].append({'host': member, 'why': _unreachable_why(member)})
    primaries = _primaries(view, members)

    if len(primaries) > 1:
        result['errors'].append(_two_primaries(primaries, KEEP_ONE))
        return result

    if not primaries:
        with_data = [member for member in reachable if _real_data(view[member])]
        if with_data:
            replicas = [member for member in members if _is_replica(view[member])]
            result['errors'].append(
                'no primary is running: %s%s. site.yml starts nothing, since the wrong choice would fork the cluster. If the primary '
                'is only stopped, start it by hand (on it: systemctl start postgresql); if it is lost, promote the best replica '
                'with failover.yml.' % (_down_summary(view, members) or 'no member runs as a primary',
                                        '; running replicas: %s' % _and_list(replicas) if replicas else ''))
            return result
        if not bootstrap_primary:
            result['errors'].append(
                'no member holds data yet and postgresql_replication_bootstrap_primary is empty: set it to the member that '
                'creates the cluster (one of %s) and re-run site.yml.' % _and_list(members))
        elif bootstrap_primary not in members:
            result['errors'].append(
                'postgresql_replication_bootstrap_primary is %r, which is not a member (%s): set it to one of them and re-run '
                'site.yml.' % (bootstrap_primary, _and_list(members)))
        elif bootstrap_primary not in reachable:
            result['errors'].append(
                'no member holds data yet and the bootstrap primary %s is unreachable: it cannot create the cluster. Fix the '
                'connection to %s (or choose another postgresql_replication_bootstrap_primary) and re-run site.yml.'
                % (bootstrap_primary, bootstrap_primary))
        if result['errors']:
            return result
        result['primary'] = bootstrap_primary
        result['bootstrap'] = True
        result['build'] = [member for member in reachable if member != bootstrap_primary]
        unknown = [member for member in members if member not in reachable]
        if unknown:
            result['notes'].append(
                'bootstrapping a new cluster on %s while %s %s unreachable: if %s holds this cluster\'s data, stop this run now.'
                % (bootstrap_primary, _and_list(unknown), 'is' if len(unknown) == 1 else 'are', 'it' if len(unknown) == 1 else 'one'))
        return result

    primary = primaries[0]
    sysid = _sysid(view[primary])
    result['primary'] = primary
    result['system_identifier'] = sysid
    if bootstrap_primary and bootstrap_primary != primary:
        result['notes'].append(
            '%s is the running primary, not %s (postgresql_replication_bootstrap_primary): reality wins, and the inventory\'s '
            'bootstrap choice is ignored.' % (primary, bootstrap_primary))
    if sysid is None:
        result['errors'].append(
            'the system identifier of the primary %s could not be read, so no member can be checked against it: look at the '
            'node probe\'s output for %s and re-run site.yml.' % (primary, primary))
        return result
    for member in reachable:
        if member != primary:
            _classify(member, view[member], primary, sysid, result)
    return result


# ---------------------------------------------------------------------------
# Failover
# ---------------------------------------------------------------------------

def _old_primary(view, members):
    """The primary that is gone: the member most running replicas follow (ties by name), else the only
    stopped member with data and no standby.signal; None when neither tells."""
    votes = collections.Counter()
    for member in members:
        state = view[member]
        follows = state.get('primary_host')
        if _is_replica(state) and follows in view and not _is_replica(view[follows]):
            votes[follows] += 1
    if votes:
        most = max(votes.values())
        return sorted(host for host, count in votes.items() if count == most)[0]
    stopped = [member for member in members if _former_primary(view[member])]
    return stopped[0] if len(stopped) == 1 else None


def _former_primary(state):
    """Reachable, stopped, with data and without standby.signal: it would start as a primary."""
    return _real_data(state) and not state.get('running') and not state.get('standby_signal')


def _alive_evidence(view, members, port_open, suspects, streaming):
    """What says that a member which is not a verified running replica may still be up: [(suspect or None, fragment)].

    ``suspects`` are checked with the controller's port test and every running member's pg_isready;
    with ``streaming``, a replica whose WAL receiver streams is evidence too (it streams from someone).
    """
    found = []
    for host in suspects:
        if port_open.get(host) is True:
            found.append((host, "the controller reaches %s's PostgreSQL port (it is open)" % host))
    for member in members:
        peers = view[member].get('peers_ready') if _running(view[member]) else None
        if not isinstance(peers, Mapping):
            continue
        for host in suspects:
            code = _peer_code(peers.get(host)) if host != member else None
            if code in PG_ISREADY_ALIVE:
                found.append((host, '%s sees %s %s (pg_isready exit %d)%s' % (
                    member, host, PG_ISREADY_ALIVE[code], code, ': wait and re-run' if code == 1 else '')))
    for member in members if streaming else ():
        state = view[member]
        if _is_replica(state) and _streaming(state):
            sender = state['wal_receiver'].get('sender_host') or 'its primary'
            found.append((None, '%s is still streaming WAL from %s (its WAL receiver is streaming)' % (member, sender)))
    return found


def _empty_failover_plan():
    return {'action': 'refuse', 'reason': '', 'old_primary': None, 'old_primary_down': False, 'fence': [], 'candidate': None,
            'candidate_lsn': None, 'ranking': [], 'repoint': [], 'skipped': [], 'sync_provable': None, 'sync_reason': '',
            'lost_bytes': None, 'lost_estimate': '', 'system_identifier': None, 'notes': []}


def _estimate_unknown(view, old, ranking):
    """lost_estimate when the old primary's WAL end is not known: what the replicas tell."""
    head = ('unknown: the old primary is not known' if old is None else
            'unknown: %s is unreachable (or its WAL end could not be read)' % old)
    if not ranking:
        return head + '.'
    best, worst = ranking[0], ranking[-1]
    stamp = view[best['host']].get('last_replay_timestamp')
    parts = ['%s last replayed a transaction at %s' % (best['host'], stamp) if stamp else
             '%s reports no last replay time' % best['host']]
    if len(ranking) > 1:
        parts.append('the replicas are %d bytes apart (%s at %s, %s at %s)' % (
            best['position'] - worst['position'], best['host'], best['lsn'], worst['host'], worst['lsn']))
    else:
        parts.append('it is the only running replica')
    return '%s; %s.' % (head, '; '.join(parts))


def _lost(plan, view, old, candidate, before_fencing):
    """Fill lost_bytes and lost_estimate: the old primary's WAL end (or, before fencing, its current LSN) minus the candidate's."""
    key = 'current_lsn' if before_fencing else 'wal_end_lsn'
    end = _state_lsn(old, view[old], key) if old in view and _reachable(view[old]) else None
    if end is None:
        plan['lost_estimate'] = _estimate_unknown(view, old, plan['ranking'])
        return
    lost = max(0, end - candidate['position'])
    plan['lost_bytes'] = lost
    when = ' before fencing' if before_fencing else ''
    where = '%s was at %s' % (old, format_lsn(end)) if before_fencing else "%s's WAL ends at %s" % (old, format_lsn(end))
    if lost:
        plan['lost_estimate'] = 'exact%s: %s and %s is at %s, so %d bytes of WAL are only on %s.' % (
            when, where, candidate['host'], candidate['lsn'], lost, old)
    else:
        plan['lost_estimate'] = 'exact%s: none, %s and %s is at %s.' % (when, where, candidate['host'], candidate['lsn'])


def _refuse(plan, reason):
    """A refusal.  The playbooks add 'Nothing was changed.' when they print it."""
    plan['action'] = 'refuse'
    plan['reason'] = reason
    return plan


def _failover_params(params):
    params = _mapping(params if params is not None else {}, 'params')
    port_open = _mapping(params.get('controller_port_open') or {}, 'params.controller_port_open')
    sync = params.get('sync')
    return (port_open, _flag(params.get('force'), 'params.force'), _flag(params.get('allow_data_loss'), 'params.allow_data_loss'),
            LIVE_SYNC if sync == LIVE_SYNC else _check_sync(sync))


def live_sync(states, members, old_primary=None):
    """The old primary's synchronous replication, as the surviving members' own settings show it.

    Every node of the collection renders synchronous_standby_names as '<method> <num> (every other member)', so the
    old primary waited for <num> of the members other than itself: that is ``names: ['*']`` with the old primary left
    out.  The method and num come from the running members' live settings, never from the inventory; when they differ,
    the largest num wins (the strictest proof). Empty everywhere: None (asynchronous).
    """
    view = _view(states, members)
    found = []
    for member in members:
        state = view[member]
        if member == old_primary or not (_reachable(state) and _running(state)):
            continue
        parsed = parse_sync_standby_names(state.get('synchronous_standby_names') or '')
        if parsed is not None:
            found.append(parsed)
    if not found:
        return None
    strictest = max(found, key=lambda parsed: (parsed['num'], parsed['method'] == 'FIRST'))
    return {'method': strictest['method'], 'num': strictest['num'], 'names': ['*']}


def _alive_refusal(view, evidence, force):
    unreachable = sorted(set(host for host, _text in evidence if host is not None and not _reachable(view[host])))
    if force and unreachable:
        step = ('-e force=true cannot help: Ansible cannot reach %s to fence it. Fix the connection (or power it off) and '
                're-run failover.yml.' % _and_list(unreachable))
    else:
        step = ('Find out why first: if the old primary is healthy, no failover is needed; if it is not, stop it (on it: '
                'systemctl stop postgresql) and re-run failover.yml.')
    return 'a node may still be up: %s. Promoting now could make two primaries. %s' % ('; '.join(text for _host, text in evidence), step)


def failover_plan(states, members, params=None):
    """Plan a failover: whether to promote, which replica, whom to fence and repoint, and what may be lost.

    ``params``: {controller_port_open: {host: bool}, force: bool, allow_data_loss: bool,
    sync: the old primary's parsed synchronous_standby_names (or its text, or None)}.
    The plan refuses rather than risk two primaries or promote a replica that is not the most advanced;
    the same input always gives the same plan.
    """
    members = _members(members)
    view = _view(states, members)
    port_open, force, allow_data_loss, sync = _failover_params(params)
    plan = _empty_failover_plan()
    live = sync == LIVE_SYNC
    primaries = _primaries(view, members)
    refusal = None

    if len(primaries) == 1:
        old = primaries[0]
        sysid = _sysid(view[old])
        plan.update(old_primary=old, old_primary_down=False, fence=[old] if force else [])
    else:
        old = None if primaries else _old_primary(view, members)
        sysid = _cluster_sysid(view, members, prefer=old)
        plan.update(old_primary=old, old_primary_down=not primaries)
    plan['system_identifier'] = None if sysid is _AMBIGUOUS else sysid
    ranking, skipped = _rank(view, members, set(primaries) | {old}, sysid)
    plan.update(ranking=ranking, skipped=skipped)
    candidate = ranking[0] if ranking else {}
    if candidate:
        others = set(entry['host'] for entry in ranking[1:])
        plan.update(candidate=candidate['host'], candidate_lsn=candidate['lsn'], repoint=[member for member in members if member in others])

    # Whatever is not a verified running replica may be a primary in hiding, except the role's placeholder, whose
    # server (if it runs) is what its port answers with.
    suspects = [member for member in members if not _is_replica(view[member]) and member not in primaries
                and not (_reachable(view[member]) and view[member].get('placeholder'))]
    evidence = _alive_evidence(view, members, port_open, suspects, streaming=not primaries)
    if len(primaries) > 1:
        refusal = _two_primaries(primaries, 'failover.yml cannot choose between them. ' + KEEP_ONE)
    elif primaries and not force:
        refusal = ('%s is a running primary: a failover is not needed; -e force=true fences it first (stops and masks it)%s.'
                   % (old, ', then promotes %s' % candidate['host'] if candidate else ''))
    elif evidence:
        refusal = ('no primary runs where Ansible can see it, but ' if not primaries else 'besides %s, ' % old) + \
            _alive_refusal(view, evidence, force)
    elif not primaries:
        # Stop and mask every stopped member that would start as a primary of this cluster, the old primary first.
        fence = [member for member in members if member != old and _former_primary(view[member]) and _sysid(view[member]) == sysid]
        plan['fence'] = ([old] if old and _reachable(view[old]) else []) + fence
    if refusal is None and sysid is _AMBIGUOUS:
        refusal = ('the members hold different clusters and none is the majority (%s): failover.yml cannot tell which one to '
                   'keep. Compare the system identifiers and re-run failover.yml once only one cluster remains.'
                   % ', '.join('%s: %s' % (member, _sysid(view[member])) for member in members
                               if _real_data(view[member]) and _sysid(view[member]) is not None))
    if refusal is None and not candidate:
        refusal = 'no running replica to promote: %s.' % (
            '; '.join('%s is %s' % (entry['host'], entry['why']) for entry in plan['skipped']) or 'the cluster has no other member')

    if live:
        sync = live_sync(states, members, old)
    if sync is None:
        plan['sync_reason'] = acked_commits_provable(None, ())[1]
    else:
        # Lost: every member that is not a candidate, and every listed name that is not a member (nothing of it can be read).
        ranked = set(entry['host'] for entry in plan['ranking'])
        lost = [member for member in members if member not in ranked]
        lost += [name for name in sync['names'] if name != '*' and all(_fold(name) != _fold(member) for member in members)]
        plan['sync_provable'], plan['sync_reason'] = acked_commits_provable(sync, lost, old)
        if refusal is None and not plan['sync_provable'] and not allow_data_loss:
            refusal = plan['sync_reason'] + ' -e allow_data_loss=true accepts the loss.'

    if candidate and old is not None:
        _lost(plan, view, old, candidate, before_fencing=bool(primaries))
    else:
        plan['lost_estimate'] = _estimate_unknown(view, old, plan['ranking'])
    if refusal is not None:
        return _refuse(plan, refusal)
    return _promote(plan, allow_data_loss, bool(primaries))


def _promote(plan, allow_data_loss, fencing_a_primary):
    """Fill action, reason and notes of a plan that promotes."""
    old, candidate = plan['old_primary'], plan['ranking'][0]
    if fencing_a_primary:
        why = '%s is a running primary and -e force=true was given' % old
    else:
        why = 'no primary is running and nothing answers for %s' % (old or 'the old primary (not known)')
    count = len(plan['ranking'])
    rank = 'the most advanced of %d running replicas' % count if count > 1 else 'the only running replica'
    steps = ['promote %s (at %s, %s)' % (candidate['host'], candidate['lsn'], rank)]
    if plan['fence']:
        steps.insert(0, 'fence %s (stop and mask)' % _and_list(plan['fence']))
    if old and old not in plan['fence']:
        plan['notes'].append('%s cannot be fenced (Ansible cannot reach it): make sure it stays down, and rejoin it with '
                             'rejoin.yml when it is back.' % old)
    if plan['repoint']:
        steps.append('repoint %s to it' % _and_list(plan['repoint']))
    if candidate['paused']:
        plan['notes'].append('%s has its replay paused: promotion ends the pause and replays the rest of its WAL first.'
                             % candidate['host'])
    if fencing_a_primary:
        plan['notes'].append('the ranking was measured before fencing %s: probe again after the fence and plan again.' % old)
    if plan['sync_provable'] is None:
        loss = ' Replication was asynchronous: the newest commits may be lost.'
    elif plan['sync_provable']:
        loss = ' Every acknowledged commit is on a survivor.'
    else:
        loss = ' Acknowledged commits may be lost (accepted by -e allow_data_loss=true).' if allow_data_loss else ''
    plan['action'] = 'promote'
    plan['reason'] = '%s: %s.%s' % (why, ', then '.join(steps), loss)
    return plan


# ---------------------------------------------------------------------------
# Switchover
# ---------------------------------------------------------------------------

def _target_problem(state, sysid, primary):
    """Why a replica cannot take over in a switchover, or None."""
    why = _not_candidate(state, sysid)
    if why is not None:
        return why
    if not _streaming(state):
        return 'not streaming from %s (its WAL receiver is not streaming)' % primary
    if _paused(state):
        return "paused (replay_pause_state '%s'): resume its replay first (SELECT pg_wal_replay_resume())" % state.get('replay_pause_state')
    return None


def switchover_plan(states, members, params=None):
    """Plan a switchover: the running primary hands over to a caught-up streaming replica.

    ``params``: {target: member or None (the best replica), max_lag_bytes: int (default one 16 MB segment)}.
    Returns {action: 'switchover'|'refuse'|'none', reason, old_primary, target, lag_bytes, repoint}.
    """
    members = _members(members)
    view = _view(states, members)
    params = _mapping(params if params is not None else {}, 'params')
    target = params.get('target') or None
    if target is not None and not isinstance(target, str):
        raise ValueError('params.target must be a member name or empty, got %r' % (target,))
    max_lag = params.get('max_lag_bytes')
    max_lag = _count(DEFAULT_MAX_LAG_BYTES if max_lag in (None, '') else max_lag, 'params.max_lag_bytes', 0)
    plan = {'action': 'refuse', 'reason': '', 'old_primary': None, 'target': target, 'lag_bytes': None, 'repoint': []}
    primaries = _primaries(view, members)
    if len(primaries) > 1:
        return _refuse(plan, _two_primaries(primaries, 'A switchover needs exactly one. ' + KEEP_ONE))
    if not primaries:
        return _refuse(plan, 'no running primary that Ansible can reach%s: a switchover needs one. If the primary is lost, use '
                       'failover.yml.' % (' (%s)' % _down_summary(view, members) if _down_summary(view, members) else ''))
    primary = primaries[0]
    sysid = _sysid(view[primary])
    plan['old_primary'] = primary
    if target == primary:
        plan.update(action='none', reason='%s is already the primary: nothing to do.' % primary)
        return plan
    if target is None:
        ranking, _skipped = _rank(view, members, {primary}, sysid)
        ready = [entry['host'] for entry in ranking if _target_problem(view[entry['host']], sysid, primary) is None]
        if not ready:
            problems = ['%s is %s' % (member, _target_problem(view[member], sysid, primary)) for member in members if member != primary]
            return _refuse(plan, 'no replica can take over: %s.' % ('; '.join(problems) or 'the cluster has no other member'))
        target = ready[0]
        plan['target'] = target
    elif target not in members:
        return _refuse(plan, 'target %s is not a member (%s).' % (target, _and_list(members)))
    problem = _target_problem(view[target], sysid, primary)
    if problem is not None:
        return _refuse(plan, 'target %s cannot take over: it is %s.' % (target, problem))
    lag = lsn_diff(_state_lsn(primary, view[primary], 'current_lsn'), _state_lsn(target, view[target], 'replay_lsn'))
    if lag is None:
        return _refuse(plan, 'the lag of %s cannot be measured (no current LSN on %s or no replay LSN on %s); probe again.'
                       % (target, primary, target))
    plan['lag_bytes'] = lag
    if lag > max_lag:
        return _refuse(plan, '%s is %d bytes behind %s (replayed %s, primary at %s), more than max_lag_bytes %d. Wait for it '
                       'to catch up (or raise -e max_lag_bytes) and re-run switchover.yml.'
                       % (target, lag, primary, view[target].get('replay_lsn'), view[primary].get('current_lsn'), max_lag))
    plan['repoint'] = [member for member in members if member not in (primary, target) and _is_replica(view[member])
                       and _sysid(view[member]) == sysid]
    left = [member for member in members if not _reachable(view[member])]
    plan['action'] = 'switchover'
    plan['reason'] = ('%s hands over to %s (%d bytes behind, at most %d allowed)%s%s.' % (
        primary, target, lag, max_lag, ', then repoint %s to %s' % (_and_list(plan['repoint']), target) if plan['repoint'] else '',
        '; %s %s unreachable and %s following %s until rejoin.yml' % (
            _and_list(left), 'is' if len(left) == 1 else 'are', 'keeps' if len(left) == 1 else 'keep', primary)
        if left else ''))
    return plan
