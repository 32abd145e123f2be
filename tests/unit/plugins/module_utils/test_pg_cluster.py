# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for plugins/module_utils/pg_cluster.py: LSNs, synchronous_standby_names, topology, failover, switchover.

The states are built by the helpers below the way the node probe reports them.  The property tests take their
oracles from elsewhere than the code under test: brute force over every set of standbys that could have
acknowledged a commit, the ranking rule written out again, and PostgreSQL's own notation for LSNs.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.util
import itertools
import re
import sys

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.agent_ui.postgresql.plugins.module_utils import pg_cluster

SYSID = '7340134298521411262'
OTHER_SYSID = '7340134298521499999'
MEMBERS = ['pg1', 'pg2', 'pg3']
FOUR = ['pg1', 'pg2', 'pg3', 'pg4']


# ---------------------------------------------------------------------------
# States, as the node probe reports them
# ---------------------------------------------------------------------------

def primary(lsn='0/5000000', **extra):
    state = dict(reachable=True, installed=True, data=True, placeholder=False, running=True, in_recovery=False,
                 system_identifier=SYSID, timeline=1, cluster_state='in production', standby_signal=False, current_lsn=lsn,
                 synchronous_standby_names='', wal_receiver=None, peers_ready={}, service_masked=False)
    state.update(extra)
    return state


def replica(lsn='0/5000000', receive=None, replay=None, follows='pg1', streaming=False, paused=None, **extra):
    """A running replica; ``lsn`` sets both receive and replay unless they are given."""
    state = dict(reachable=True, installed=True, data=True, placeholder=False, running=True, in_recovery=True,
                 system_identifier=SYSID, timeline=1, cluster_state='in archive recovery', standby_signal=True,
                 receive_lsn=receive if receive is not None else lsn, replay_lsn=replay if replay is not None else lsn,
                 replay_pause_state=paused or 'not paused', last_replay_timestamp='2025-01-02 03:04:05+00', primary_host=follows,
                 wal_receiver={'status': 'streaming', 'sender_host': '10.0.0.1', 'received_tli': 1, 'latest_end_lsn': lsn}
                 if streaming else None, peers_ready={}, service_masked=False)
    state.update(extra)
    return state


def stopped(standby_signal=False, wal_end=None, **extra):
    """A reachable member with the cluster's data whose server does not run."""
    state = dict(reachable=True, installed=True, data=True, placeholder=False, running=False, in_recovery=None,
                 system_identifier=SYSID, timeline=1, cluster_state='shut down in recovery' if standby_signal else 'in production',
                 standby_signal=standby_signal, wal_end_lsn=wal_end, peers_ready={}, service_masked=False)
    state.update(extra)
    return state


def empty(**extra):
    """Installed, no data directory yet."""
    state = dict(reachable=True, installed=True, data=False, placeholder=False, running=False, peers_ready={})
    state.update(extra)
    return state


def placeholder(**extra):
    """The role's placeholder: a cluster of its own (another system identifier), never used."""
    state = stopped(placeholder=True, system_identifier='6999999999999999999')
    state.update(extra)
    return state


def down():
    return {'reachable': False}


def lsn_int(text):
    return pg_cluster.parse_lsn(text)


# ---------------------------------------------------------------------------
# LSNs
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('text, expected', [
    ('0/502EBC8', 0x502EBC8),
    ('0/502ebc8', 0x502EBC8),
    ('16/B374D848', (0x16 << 32) | 0xB374D848),
    ('FFFFFFFF/FFFFFFFF', (1 << 64) - 1),
    ('0/0', 0),
    (' 1/0\n', 1 << 32),
])
def test_parse_lsn(text, expected):
    assert pg_cluster.parse_lsn(text) == expected


@pytest.mark.parametrize('text', ['', '0502EBC8', '0/', '/1', '1/2/3', '0/123456789', '123456789/0', 'G/0', '0x1/0', '-1/0',
                                  '0 /1', 5, None, b'0/1'])
def test_parse_lsn_rejects(text):
    with pytest.raises(ValueError, match='LSN'):
        pg_cluster.parse_lsn(text)


@pytest.mark.parametrize('number, expected', [(0x502EBC8, '0/502EBC8'), (0, '0/0'), ((1 << 64) - 1, 'FFFFFFFF/FFFFFFFF'),
                                              ((0x16 << 32) | 0xB374D848, '16/B374D848'), (1 << 32, '1/0')])
def test_format_lsn(number, expected):
    assert pg_cluster.format_lsn(number) == expected


@pytest.mark.parametrize('number', [-1, 1 << 64, True, '0/1', 1.0, None])
def test_format_lsn_rejects(number):
    with pytest.raises(ValueError, match='whole number from 0 to 2\\^64-1'):
        pg_cluster.format_lsn(number)


@pytest.mark.parametrize('left, right, expected', [
    ('0/3000000', '0/2000000', 16777216),
    ('0/2000000', '0/3000000', -16777216),
    ('1/0', '0/FFFFFFFF', 1),
    (0x3000000, '0/2000000', 16777216),
    (None, '0/1', None),
    ('0/1', None, None),
])
def test_lsn_diff(left, right, expected):
    assert pg_cluster.lsn_diff(left, right) == expected


def test_lsn_diff_rejects_a_bad_lsn():
    with pytest.raises(ValueError, match="'0/XYZ' is not an LSN"):
        pg_cluster.lsn_diff('0/XYZ', '0/1')


@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.booleans())
def test_lsn_text_round_trip(high, low, upper):
    """PostgreSQL's %X/%X, written here with Python's own hex formatting: parse reads it, format writes it back."""
    text = ('%X/%X' if upper else '%x/%x') % (high, low)
    number = pg_cluster.parse_lsn(text)
    assert number == high * 2 ** 32 + low
    assert pg_cluster.format_lsn(number) == text.upper()


@given(st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1))
def test_lsn_diff_is_subtraction(left, right):
    assert pg_cluster.lsn_diff(pg_cluster.format_lsn(left), pg_cluster.format_lsn(right)) == left - right


# ---------------------------------------------------------------------------
# node_position
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('state, expected', [
    (replica(receive='0/5000000', replay='0/4000000'), '0/5000000'),
    (replica(receive='0/4000000', replay='0/5000000'), '0/5000000'),
    (dict(replica(), receive_lsn=None, replay_lsn='0/4000000'), '0/4000000'),
    (dict(replica(), receive_lsn='0/4000000', replay_lsn=None), '0/4000000'),
    (dict(replica(), receive_lsn=None, replay_lsn=None), None),
    (primary('0/7000000', receive_lsn='0/9000000'), '0/7000000'),
    (dict(primary(), in_recovery=None), '0/5000000'),
    (dict(primary(), current_lsn=None), None),
    (stopped(wal_end='0/9000000'), None),
    (down(), None),
    (None, None),
])
def test_node_position(state, expected):
    assert pg_cluster.node_position(state) == (None if expected is None else lsn_int(expected))


def test_a_malformed_lsn_in_a_state_names_the_host():
    states = {'pg1': primary(), 'pg2': replica(receive='0/nonsense')}
    with pytest.raises(ValueError, match="^pg2: '0/nonsense' is not an LSN"):
        pg_cluster.rank_candidates(states)


# ---------------------------------------------------------------------------
# synchronous_standby_names: parse and render
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('text, method, num, names', [
    ('ANY 2 (a, b, c)', 'ANY', 2, ['a', 'b', 'c']),
    ('FIRST 1 (a, "b-2")', 'FIRST', 1, ['a', 'b-2']),
    ('2 (a, b)', 'FIRST', 2, ['a', 'b']),
    ('a, b', 'FIRST', 1, ['a', 'b']),
    ('a', 'FIRST', 1, ['a']),
    ('*', 'FIRST', 1, ['*']),
    ('any 1 (*)', 'ANY', 1, ['*']),
    ('ANY 3 (*)', 'ANY', 3, ['*']),
    ('FIRST 2 (pg2, *)', 'FIRST', 2, ['pg2', '*']),
    ('aNy 1 (PG2, Pg3)', 'ANY', 1, ['pg2', 'pg3']),
    ('fIrSt 1 ("PG2", pg3)', 'FIRST', 1, ['PG2', 'pg3']),
    ('"any", "First"', 'FIRST', 1, ['any', 'First']),
    ('any1, first_2, $x', None, None, None),  # '$' cannot start a name: a syntax error (see the rejects)
    ('"a""b", "c,d", "(e)"', 'FIRST', 1, ['a"b', 'c,d', '(e)']),
    ('1, 2', 'FIRST', 1, ['1', '2']),
    ('2', 'FIRST', 1, ['2']),
    ('ANY 1 (1, 2)', 'ANY', 1, ['1', '2']),
    (' \tANY\n1\r(\fa ,\vb ) ', 'ANY', 1, ['a', 'b']),
    ('any1, first_2, x$y, _z9', 'FIRST', 1, ['any1', 'first_2', 'x$y', '_z9']),
    ('pg-2', None, None, None),
    ('"pg-2", "ünïcode", ñame', 'FIRST', 1, ['pg-2', 'ünïcode', 'ñame']),
    ('""', 'FIRST', 1, ['']),
])
def test_parse_sync_standby_names(text, method, num, names):
    if method is None:
        with pytest.raises(ValueError, match='syntax error'):
            pg_cluster.parse_sync_standby_names(text)
    else:
        assert pg_cluster.parse_sync_standby_names(text) == {'method': method, 'num': num, 'names': names}


@pytest.mark.parametrize('text', [None, ''])
def test_empty_sync_standby_names_is_asynchronous(text):
    assert pg_cluster.parse_sync_standby_names(text) is None


@pytest.mark.parametrize('text, message', [
    ('ANY', 'syntax error at end of input'),
    ('ANY (a)', "syntax error at or near '('"),
    ('ANY 1 a', "syntax error at or near 'a'"),
    ('FIRST 1 (a', 'syntax error at end of input'),
    ('FIRST 1 (a))', "syntax error at or near ')'"),
    ('(a)', "syntax error at or near '('"),
    ('a b', "syntax error at or near 'b'"),
    ('a,', 'syntax error at end of input'),
    (',a', "syntax error at or near ','"),
    ('first', 'syntax error at end of input'),
    ('any, b', "syntax error at or near ','"),
    ('a, ANY', "syntax error at or near 'ANY'"),
    ('1 (a) b', "syntax error at or near 'b'"),
    ('ANY 1 ()', "syntax error at or near ')'"),
    ('pg-2', "syntax error at or near '-'"),
    ('a; b', "syntax error at or near ';'"),
    (' ', 'syntax error at end of input'),
    ('"abc', "unterminated quoted name at or near '\"abc'"),
    ('a, "b""', "unterminated quoted name"),
    ('0 (a)', 'the number of synchronous standbys (0) must be greater than zero'),
    ('ANY 0 (a)', 'the number of synchronous standbys (0) must be greater than zero'),
    ('ANY 3 (a, b)', 'asks for 3 synchronous standbys but lists only 2'),
    ('2 (a)', 'asks for 2 synchronous standbys but lists only 1'),
])
def test_parse_sync_standby_names_rejects(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        pg_cluster.parse_sync_standby_names(text)


def test_parse_sync_standby_names_error_names_the_value():
    with pytest.raises(ValueError, match="^synchronous_standby_names 'a b': syntax error at or near 'b'$"):
        pg_cluster.parse_sync_standby_names('a b')


@pytest.mark.parametrize('method, num, names, expected', [
    ('ANY', 1, ['pg2', 'pg3'], 'ANY 1 ("pg2", "pg3")'),
    ('first', 2, ['pg2', 'pg3'], 'FIRST 2 ("pg2", "pg3")'),
    (' Any ', '1', ['a"b'], 'ANY 1 ("a""b")'),
    ('ANY', 4, ['*'], 'ANY 4 ("*")'),
    ('FIRST', 1, ['ANY', 'Pg2'], 'FIRST 1 ("ANY", "Pg2")'),
])
def test_render_sync_standby_names(method, num, names, expected):
    assert pg_cluster.render_sync_standby_names(method, num, names) == expected


@pytest.mark.parametrize('method, num, names, message', [
    ('SOME', 1, ['a'], "method must be ANY or FIRST, got 'SOME'"),
    (None, 1, ['a'], 'method must be ANY or FIRST'),
    ('ANY', 0, ['a'], 'num must be a whole number >= 1, got 0'),
    ('ANY', True, ['a'], 'num must be a whole number >= 1, got True'),
    ('ANY', 3, ['a', 'b'], 'num is 3 but only 2 standbys are listed \\(a and b\\)'),
    ('ANY', 1, [], 'names must be a non-empty list'),
    ('ANY', 1, 'pg2', 'names must be a non-empty list'),
    ('ANY', 1, [''], 'a standby name must be non-empty text'),
    ('ANY', 1, ['a\0b'], 'without NUL'),
    ('ANY', 1, [2], 'a standby name must be non-empty text'),
])
def test_render_sync_standby_names_rejects(method, num, names, message):
    with pytest.raises(ValueError, match=message):
        pg_cluster.render_sync_standby_names(method, num, names)


NAMES = st.lists(st.text(alphabet=st.characters(blacklist_characters='\0', blacklist_categories=('Cs',)), min_size=1, max_size=8),
                 min_size=1, max_size=6)


@given(method=st.sampled_from(['ANY', 'FIRST']), names=NAMES, data=st.data())
def test_render_then_parse_round_trip(method, names, data):
    num = data.draw(st.integers(1, len(names)))
    assert pg_cluster.parse_sync_standby_names(pg_cluster.render_sync_standby_names(method, num, names)) == {
        'method': method, 'num': num, 'names': names}


IDENTIFIER = st.from_regex(r'\A[A-Za-z_][A-Za-z0-9_$]{0,10}\Z').filter(lambda name: name.lower() not in ('any', 'first'))


@given(names=st.lists(IDENTIFIER, min_size=1, max_size=5), spaces=st.sampled_from(['', ' ', '\n\t ']))
def test_unquoted_names_are_folded_to_lower_case(names, spaces):
    text = (',' + spaces).join(names)
    assert pg_cluster.parse_sync_standby_names(text) == {'method': 'FIRST', 'num': 1, 'names': [name.lower() for name in names]}


# ---------------------------------------------------------------------------
# sync_standby_names_for
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('host, num, method, expected', [
    ('pg1', 1, 'ANY', 'ANY 1 ("pg2", "pg3")'),
    ('pg2', 1, 'ANY', 'ANY 1 ("pg1", "pg3")'),
    ('pg3', 2, 'FIRST', 'FIRST 2 ("pg1", "pg2")'),
    ('pg1', '2', 'any', 'ANY 2 ("pg2", "pg3")'),
    ('pg1', 0, 'ANY', ''),
    ('pg9', 3, 'ANY', 'ANY 3 ("pg1", "pg2", "pg3")'),
])
def test_sync_standby_names_for(host, num, method, expected):
    assert pg_cluster.sync_standby_names_for(host, MEMBERS, num, method) == expected


def test_sync_standby_names_for_defaults_to_any_1():
    assert pg_cluster.sync_standby_names_for('pg2', ['pg3', 'pg1', 'pg2']) == 'ANY 1 ("pg3", "pg1")'


@pytest.mark.parametrize('host, members, num, message', [
    ('pg1', MEMBERS, 3, 'num is 3 but pg1 has only 2 other members \\(pg2 and pg3\\): every commit would wait forever'),
    ('pg1', ['pg1'], 1, 'num is 1 but pg1 has only 0 other members \\(none\\)'),
    ('pg1', MEMBERS, -1, 'num must be a whole number >= 0, got -1'),
    ('pg1', MEMBERS, 'two', "num must be a whole number >= 0, got 'two'"),
    ('pg1', 'pg1,pg2', 1, 'members must be a list of inventory host names, got str'),
    ('pg1', ['pg1', 'pg1'], 1, 'members names pg1 twice'),
])
def test_sync_standby_names_for_rejects(host, members, num, message):
    with pytest.raises(ValueError, match=message):
        pg_cluster.sync_standby_names_for(host, members, num)


@given(members=st.lists(IDENTIFIER, min_size=2, max_size=6, unique=True), data=st.data())
def test_each_member_lists_every_other_member(members, data):
    host = data.draw(st.sampled_from(members))
    num = data.draw(st.integers(1, len(members) - 1))
    parsed = pg_cluster.parse_sync_standby_names(pg_cluster.sync_standby_names_for(host, members, num))
    assert parsed == {'method': 'ANY', 'num': num, 'names': [member for member in members if member != host]}


# ---------------------------------------------------------------------------
# acked_commits_provable
# ---------------------------------------------------------------------------

def sync(text):
    return pg_cluster.parse_sync_standby_names(text)


def test_asynchronous_replication_proves_nothing():
    provable, reason = pg_cluster.acked_commits_provable(None, ['pg1'])
    assert provable is False
    assert reason.startswith('asynchronous replication')
    assert 'may be lost' in reason


@pytest.mark.parametrize('text, lost, expected', [
    ('ANY 1 (pg2, pg3)', ['pg1'], True),
    ('ANY 1 (pg2, pg3)', ['pg1', 'pg2'], False),
    ('ANY 2 (pg2, pg3, pg4)', ['pg1', 'pg2'], True),
    ('ANY 2 (pg2, pg3, pg4)', ['pg1', 'pg2', 'pg4'], False),
    # FIRST waits for the first num connected standbys in list order, but they are still listed ones: the same rule.
    ('FIRST 1 (pg2, pg3)', ['pg1', 'pg3'], False),
    ('FIRST 1 (pg2, pg3)', ['pg1', 'pg2'], False),
    ('FIRST 2 (pg2, pg3, pg4)', ['pg1', 'pg2'], True),
    ('FIRST 2 (pg2, pg3, pg4)', ['pg1', 'pg3', 'pg4'], False),
    ('pg2, pg3', ['pg1'], True),
    ('pg2', ['pg1', 'pg2'], False),
    ('ANY 1 ("PG2", pg3)', ['pg1', 'pg2'], False),  # PostgreSQL compares the names case-insensitively
    ('ANY 1 (pg2, pg3)', ['PG1', 'Pg2'], False),
    ('ANY 1 (pg2, pg2)', ['pg1', 'pg2'], False),
])
def test_acked_commits_provable(text, lost, expected):
    assert pg_cluster.acked_commits_provable(sync(text), lost, 'pg1')[0] is expected


def test_a_lost_sync_standby_is_named():
    provable, reason = pg_cluster.acked_commits_provable(sync('ANY 1 (pg2, pg3)'), ['pg1', 'pg2'], 'pg1')
    assert not provable
    assert reason == ("synchronous_standby_names 'ANY 1 (\"pg2\", \"pg3\")' cannot prove that every acknowledged commit survived: "
                      "each was flushed by at least 1 of the listed standbys and 1 of them is lost (pg2), so a commit may exist "
                      "only there.")


def test_a_provable_reason_says_so():
    provable, reason = pg_cluster.acked_commits_provable(sync('ANY 2 (pg2, pg3, pg4)'), ['pg1', 'pg3'], 'pg1')
    assert provable
    assert '1 of them is lost (pg3)' in reason and 'a surviving replica has every acknowledged commit' in reason


@pytest.mark.parametrize('num, lost, old, expected', [
    (1, ['pg1'], 'pg1', True),  # only the old primary is lost: it never acknowledged its own commits
    (1, ['pg1', 'pg3'], 'pg1', False),
    (2, ['pg1', 'pg3'], 'pg1', True),
    (2, ['pg1', 'pg3', 'pg4'], 'pg1', False),
    (1, ['pg1'], None, False),  # the old primary not known: every lost name counts
])
def test_star_lists_every_member_but_the_old_primary(num, lost, old, expected):
    star = {'method': 'ANY', 'num': num, 'names': ['*']}
    assert pg_cluster.acked_commits_provable(star, lost, old)[0] is expected


def test_sync_may_be_given_as_text():
    assert pg_cluster.acked_commits_provable('ANY 1 (pg2, pg3)', ['pg1'])[0] is True


@pytest.mark.parametrize('bad, message', [
    ({'method': 'ANY', 'num': 1}, "it has no 'names'"),
    ({'method': 'SOME', 'num': 1, 'names': ['a']}, 'method must be ANY or FIRST'),
    ({'method': 'ANY', 'num': 0, 'names': ['a']}, 'sync.num must be a whole number >= 1'),
    ({'method': 'ANY', 'num': 1, 'names': 'a'}, 'sync.names must be a list'),
    (['ANY'], 'sync must be a dict'),
])
def test_acked_commits_provable_rejects(bad, message):
    with pytest.raises(ValueError, match=message):
        pg_cluster.acked_commits_provable(bad, ['pg1'])


def brute_force_provable(method_names, num, survivors):
    """Every set of ``num`` listed standbys that could have flushed a commit holds a survivor."""
    return all(set(ackers) & set(survivors) for ackers in itertools.combinations(sorted(set(method_names)), num))


@given(members=st.lists(st.sampled_from(['pg1', 'pg2', 'pg3', 'pg4', 'pg5', 'pg6']), min_size=2, max_size=6, unique=True),
       method=st.sampled_from(['ANY', 'FIRST']), star=st.booleans(), data=st.data())
def test_provable_matches_brute_force(members, method, star, data):
    old = members[0]
    standbys = members[1:]
    listed = ['*'] if star else data.draw(st.lists(st.sampled_from(standbys), min_size=1, max_size=len(standbys), unique=True))
    candidates = standbys if star else listed
    num = data.draw(st.integers(1, len(candidates)))
    lost = [old] + data.draw(st.lists(st.sampled_from(standbys), max_size=len(standbys), unique=True))
    survivors = [member for member in members if member not in lost]
    provable, reason = pg_cluster.acked_commits_provable({'method': method, 'num': num, 'names': listed}, lost, old)
    assert provable is brute_force_provable(candidates, num, survivors)
    assert reason


# ---------------------------------------------------------------------------
# rank_candidates
# ---------------------------------------------------------------------------

def hosts(ranking):
    return [entry['host'] for entry in ranking]


def test_rank_by_position_then_pause_then_name():
    states = {'pg1': down(), 'pg2': replica('0/4000000'), 'pg3': replica('0/5000000', paused='paused'),
              'pg4': replica('0/5000000'), 'pg5': replica('0/5000000'), 'pg6': replica('0/3000000', paused='pause requested')}
    ranking = pg_cluster.rank_candidates(states)
    assert hosts(ranking) == ['pg4', 'pg5', 'pg3', 'pg2', 'pg6']
    assert ranking[0] == {'host': 'pg4', 'position': lsn_int('0/5000000'), 'lsn': '0/5000000', 'paused': False, 'streaming': False}
    assert [entry['paused'] for entry in ranking] == [False, False, True, False, True]


def test_a_paused_replica_with_an_equal_lsn_is_not_first():
    states = {'pg2': replica('0/5000000', paused='paused'), 'pg3': replica('0/5000000')}
    assert hosts(pg_cluster.rank_candidates(states)) == ['pg3', 'pg2']


def test_a_paused_replica_strictly_ahead_is_first():
    states = {'pg2': replica('0/5000001', paused='paused'), 'pg3': replica('0/5000000')}
    assert hosts(pg_cluster.rank_candidates(states)) == ['pg2', 'pg3']


def test_equal_replicas_rank_by_name():
    assert hosts(pg_cluster.rank_candidates({'pg3': replica(), 'pg10': replica(), 'pg2': replica()})) == ['pg10', 'pg2', 'pg3']


def test_position_is_the_greater_of_receive_and_replay():
    states = {'pg2': replica(receive='0/6000000', replay='0/1000000'), 'pg3': replica(receive='0/5000000', replay='0/5FFFFFF')}
    ranking = pg_cluster.rank_candidates(states)
    assert hosts(ranking) == ['pg2', 'pg3']
    assert ranking[1]['lsn'] == '0/5FFFFFF'


def test_only_running_replicas_of_the_cluster_rank():
    states = {'pg1': primary('0/9000000'), 'pg2': replica(), 'pg3': replica(system_identifier=OTHER_SYSID), 'pg4': down(),
              'pg5': stopped(standby_signal=True), 'pg6': dict(replica(), receive_lsn=None, replay_lsn=None),
              'pg7': placeholder(running=True, in_recovery=True), 'pg8': empty()}
    assert hosts(pg_cluster.rank_candidates(states)) == ['pg2']


def test_rank_excludes_and_reports_streaming():
    states = {'pg2': replica('0/6000000'), 'pg3': replica(streaming=True)}
    ranking = pg_cluster.rank_candidates(states, exclude=['pg2'])
    assert hosts(ranking) == ['pg3'] and ranking[0]['streaming'] is True
    assert hosts(pg_cluster.rank_candidates(states, exclude='pg3')) == ['pg2']


def test_without_a_primary_the_majority_holds_the_cluster():
    states = {'pg1': down(), 'pg2': replica('0/4000000'), 'pg3': replica('0/4000000'),
              'pg4': replica('0/9000000', system_identifier=OTHER_SYSID)}
    assert hosts(pg_cluster.rank_candidates(states)) == ['pg2', 'pg3']
    assert hosts(pg_cluster.rank_candidates(states, system_identifier=OTHER_SYSID)) == ['pg4']


def test_two_clusters_with_no_majority_leave_no_candidate():
    states = {'pg2': replica('0/4000000'), 'pg3': replica('0/9000000', system_identifier=OTHER_SYSID)}
    assert pg_cluster.rank_candidates(states) == []


def test_the_running_primary_decides_the_cluster():
    states = {'pg1': primary(system_identifier=OTHER_SYSID), 'pg2': replica(), 'pg3': replica(),
              'pg4': replica(system_identifier=OTHER_SYSID)}
    assert hosts(pg_cluster.rank_candidates(states)) == ['pg4']


def test_system_identifiers_compare_as_text():
    states = {'pg1': primary(system_identifier=int(SYSID)), 'pg2': replica()}
    assert hosts(pg_cluster.rank_candidates(states)) == ['pg2']


# ---------------------------------------------------------------------------
# cluster_topology
# ---------------------------------------------------------------------------

def topology(states, members=None, bootstrap='pg1'):
    return pg_cluster.cluster_topology(states, members or sorted(states), bootstrap)


def test_healthy_cluster():
    result = topology({'pg1': primary(), 'pg2': replica(), 'pg3': stopped(standby_signal=True)})
    assert result == {'primary': 'pg1', 'bootstrap': False, 'replicas': ['pg2', 'pg3'], 'build': [], 'excluded': [], 'errors': [],
                      'notes': [], 'system_identifier': SYSID}


def test_two_primaries_are_an_error():
    result = topology({'pg1': primary(), 'pg2': primary(), 'pg3': replica()})
    assert result['primary'] is None
    assert result['replicas'] == [] and result['build'] == []
    assert len(result['errors']) == 1
    assert result['errors'][0].startswith('two primaries: pg1 and pg2 both run as primaries')
    assert 'rejoin.yml' in result['errors'][0]


def test_three_primaries_are_named():
    result = topology({'pg1': primary(), 'pg2': primary(), 'pg3': primary()})
    assert result['errors'][0].startswith('two primaries: pg1, pg2 and pg3 all run as primaries')


def test_stale_inventory_reality_wins():
    """The inventory still names pg1 as the bootstrap primary, but pg2 was promoted by a failover."""
    result = topology({'pg1': stopped(standby_signal=True), 'pg2': primary(), 'pg3': replica(follows='pg2')}, bootstrap='pg1')
    assert result['primary'] == 'pg2'
    assert result['bootstrap'] is False
    assert result['replicas'] == ['pg1', 'pg3']
    assert result['errors'] == []
    assert result['notes'] == ["pg2 is the running primary, not pg1 (postgresql_replication_bootstrap_primary): reality wins, and "
                               "the inventory's bootstrap choice is ignored."]


@pytest.mark.parametrize('bootstrap', ['pg1', '', None])
def test_no_note_when_the_inventory_agrees(bootstrap):
    assert topology({'pg1': primary(), 'pg2': replica()}, bootstrap=bootstrap)['notes'] == []


def test_bootstrap_when_no_member_has_data():
    result = topology({'pg1': empty(), 'pg2': empty(), 'pg3': placeholder()}, members=['pg1', 'pg3', 'pg2'], bootstrap='pg2')
    assert result == {'primary': 'pg2', 'bootstrap': True, 'replicas': [], 'build': ['pg1', 'pg3'], 'excluded': [], 'errors': [],
                      'notes': [], 'system_identifier': None}


def test_bootstrap_with_a_running_placeholder():
    """A placeholder server that runs is not a primary: it holds nothing of the cluster."""
    result = topology({'pg1': placeholder(running=True, in_recovery=False), 'pg2': placeholder(running=True, in_recovery=False)})
    assert result['bootstrap'] is True and result['primary'] == 'pg1' and result['build'] == ['pg2']
    assert result['errors'] == []


def test_bootstrap_leaves_unreachable_members_out_and_warns():
    result = topology({'pg1': empty(), 'pg2': empty(), 'pg3': down()})
    assert result['bootstrap'] is True and result['build'] == ['pg2']
    assert [entry['host'] for entry in result['excluded']] == ['pg3']
    assert result['notes'] == ["bootstrapping a new cluster on pg1 while pg3 is unreachable: if it holds this cluster's data, "
                               "stop this run now."]


@pytest.mark.parametrize('bootstrap, states, message', [
    ('', {'pg1': empty(), 'pg2': empty()}, 'postgresql_replication_bootstrap_primary is empty: set it to the member'),
    (None, {'pg1': empty(), 'pg2': empty()}, 'postgresql_replication_bootstrap_primary is empty'),
    ('pg9', {'pg1': empty(), 'pg2': empty()}, "postgresql_replication_bootstrap_primary is 'pg9', which is not a member"),
    ('pg1', {'pg1': down(), 'pg2': empty()}, 'the bootstrap primary pg1 is unreachable: it cannot create the cluster'),
])
def test_bootstrap_errors(bootstrap, states, message):
    result = topology(states, bootstrap=bootstrap)
    assert result['primary'] is None and result['bootstrap'] is False and result['build'] == []
    assert len(result['errors']) == 1 and message in result['errors'][0]


def test_data_without_a_running_primary_is_an_error():
    result = topology({'pg1': stopped(cluster_state='in production'), 'pg2': replica(), 'pg3': down()})
    assert result['primary'] is None and result['bootstrap'] is False
    assert len(result['errors']) == 1
    error = result['errors'][0]
    assert error.startswith('no primary is running: pg1 (stopped, no standby.signal, in production), pg3 (unreachable); '
                            'running replicas: pg2.')
    assert 'failover.yml' in error and 'start it by hand' in error


def test_a_placeholder_is_not_data():
    result = topology({'pg1': placeholder(), 'pg2': empty()})
    assert result['bootstrap'] is True


def test_former_primary_is_excluded():
    result = topology({'pg1': stopped(), 'pg2': primary(), 'pg3': replica(follows='pg2')}, bootstrap='pg2')
    assert result['primary'] == 'pg2' and result['replicas'] == ['pg3'] and result['build'] == []
    assert [entry['host'] for entry in result['excluded']] == ['pg1']
    assert result['excluded'][0]['why'].startswith('former primary: run rejoin.yml to make it a replica of pg2.')
    assert 'neither starts nor rewrites it' in result['excluded'][0]['why']
    assert result['errors'] == []


def test_foreign_data_is_an_error():
    result = topology({'pg1': primary(), 'pg2': stopped(system_identifier=OTHER_SYSID, standby_signal=True), 'pg3': replica()})
    assert result['replicas'] == ['pg3']
    assert result['errors'] == [
        "pg2 holds another cluster's data (system identifier %s, cluster %s): site.yml will not overwrite it. If that data is "
        "not needed, move the data directory away on pg2 and re-run site.yml to build it as a replica of pg1." % (OTHER_SYSID, SYSID)]


def test_a_running_replica_of_another_cluster_is_an_error():
    result = topology({'pg1': primary(), 'pg2': replica(system_identifier=OTHER_SYSID)})
    assert result['replicas'] == []
    assert result['errors'][0].startswith('pg2 runs as a replica of another cluster (system identifier %s, cluster %s)'
                                          % (OTHER_SYSID, SYSID))


def test_unreadable_system_identifier_is_an_error():
    result = topology({'pg1': primary(), 'pg2': stopped(system_identifier=None, standby_signal=True)})
    assert 'its system identifier could not be read' in result['errors'][0]
    assert result['replicas'] == []


def test_unreadable_primary_system_identifier_is_an_error():
    result = topology({'pg1': primary(system_identifier=None), 'pg2': replica(system_identifier=None)})
    assert result['primary'] == 'pg1'
    assert result['errors'][0].startswith('the system identifier of the primary pg1 could not be read')
    assert result['replicas'] == []


def test_unreachable_members_are_excluded_with_the_reason():
    result = topology({'pg1': primary(), 'pg2': down()}, members=['pg1', 'pg2', 'pg3'])
    assert result['excluded'] == [
        {'host': 'pg2', 'why': 'unreachable: Ansible could not connect to pg2, so site.yml leaves it alone; fix the connection '
                               'and re-run site.yml'},
        {'host': 'pg3', 'why': 'unreachable: Ansible could not connect to pg3, so site.yml leaves it alone; fix the connection '
                               'and re-run site.yml'}]
    assert result['errors'] == []


def test_member_order_is_kept():
    states = {'pg1': primary(), 'pg2': replica(), 'pg3': empty(), 'pg4': replica(), 'pg5': placeholder(), 'pg6': stopped(standby_signal=True)}
    result = topology(states, members=['pg6', 'pg5', 'pg4', 'pg3', 'pg2', 'pg1'])
    assert result['replicas'] == ['pg6', 'pg4', 'pg2']
    assert result['build'] == ['pg5', 'pg3']


def test_a_replica_following_another_host_is_noted():
    result = topology({'pg1': primary(), 'pg2': replica(follows='10.9.9.9')})
    assert result['replicas'] == ['pg2']
    assert result['notes'] == ['pg2 replicates from 10.9.9.9, not from the primary pg1.']


def test_members_outside_the_list_are_ignored():
    result = topology({'pg1': primary(), 'pg2': replica(), 'other': primary()}, members=['pg1', 'pg2'])
    assert result['primary'] == 'pg1' and result['errors'] == []


@pytest.mark.parametrize('states, members, message', [
    (['pg1'], MEMBERS, 'states must be a dict, got list'),
    ({'pg1': 'up'}, MEMBERS, "states\\['pg1'\\] must be a dict"),
    ({}, 'pg1', 'members must be a list of inventory host names, got str'),
    ({}, ['pg1', 'pg1'], 'members names pg1 twice'),
    ({}, ['pg1', ''], 'members must hold inventory host names'),
])
def test_topology_rejects_bad_input(states, members, message):
    with pytest.raises(ValueError, match=message):
        pg_cluster.cluster_topology(states, members, 'pg1')


# ---------------------------------------------------------------------------
# failover_plan
# ---------------------------------------------------------------------------

def failover(states, members=None, **params):
    return pg_cluster.failover_plan(states, members or sorted(states), params)


def test_failover_with_a_healthy_primary_is_refused():
    plan = failover({'pg1': primary(), 'pg2': replica(streaming=True), 'pg3': replica('0/4000000', streaming=True)})
    assert plan['action'] == 'refuse'
    assert plan['reason'] == ('pg1 is a running primary: a failover is not needed; -e force=true fences it first (stops and masks '
                              'it), then promotes pg2.')
    assert plan['fence'] == [] and plan['old_primary'] == 'pg1' and plan['old_primary_down'] is False


def test_force_fences_the_running_primary():
    plan = failover({'pg1': primary('0/5000100'), 'pg2': replica(streaming=True), 'pg3': replica('0/4000000', streaming=True)},
                    force=True)
    assert plan['action'] == 'promote'
    assert plan['old_primary'] == 'pg1' and plan['old_primary_down'] is False
    assert plan['fence'] == ['pg1'] and plan['candidate'] == 'pg2' and plan['repoint'] == ['pg3']
    assert plan['lost_bytes'] == 0x100
    assert plan['lost_estimate'].startswith('exact before fencing: pg1 was at 0/5000100 and pg2 is at 0/5000000')
    assert any('measured before fencing' in note for note in plan['notes'])


@pytest.mark.parametrize('force', ['true', 'yes', 'True', ' on '])
def test_force_accepts_the_words_of_extra_vars(force):
    assert failover({'pg1': primary(), 'pg2': replica()}, force=force)['action'] == 'promote'


@pytest.mark.parametrize('force', ['false', 'no', '0', None, False])
def test_no_force_words(force):
    assert failover({'pg1': primary(), 'pg2': replica()}, force=force)['action'] == 'refuse'


def test_force_must_be_a_boolean():
    with pytest.raises(ValueError, match="params.force must be true or false, got 'maybe'"):
        failover({'pg1': primary()}, force='maybe')


def test_two_primaries_are_refused_even_with_force():
    plan = failover({'pg1': primary(), 'pg2': primary(), 'pg3': replica()}, force=True)
    assert plan['action'] == 'refuse' and plan['fence'] == []
    assert plan['reason'].startswith('two primaries: pg1 and pg2 both run as primaries')


def test_unreachable_primary_with_force_is_refused():
    """pg1 answers on its port but Ansible cannot reach it: it cannot be fenced, so force does not help."""
    plan = failover({'pg1': down(), 'pg2': replica(), 'pg3': replica()}, force=True, controller_port_open={'pg1': True})
    assert plan['action'] == 'refuse'
    assert "the controller reaches pg1's PostgreSQL port (it is open)" in plan['reason']
    assert '-e force=true cannot help: Ansible cannot reach pg1 to fence it' in plan['reason']


def test_primary_port_open_from_the_controller_is_refused():
    plan = failover({'pg1': down(), 'pg2': replica(), 'pg3': replica()}, controller_port_open={'pg1': True, 'pg2': True, 'pg3': True})
    assert plan['action'] == 'refuse'
    assert plan['reason'].startswith("no primary runs where Ansible can see it, but a node may still be up: the controller reaches "
                                     "pg1's PostgreSQL port (it is open). Promoting now could make two primaries.")
    assert 'pg2' not in plan['reason'].partition('Promoting')[0]  # a running replica's own open port is no evidence


def test_pg_isready_accepting_from_a_replica_is_refused():
    plan = failover({'pg1': down(), 'pg2': replica(peers_ready={'pg1': 0, 'pg3': 0}), 'pg3': replica()})
    assert plan['action'] == 'refuse'
    assert 'pg2 sees pg1 accepting connections (pg_isready exit 0)' in plan['reason']


def test_pg_isready_rejecting_from_a_replica_is_refused():
    plan = failover({'pg1': down(), 'pg2': replica(), 'pg3': replica(peers_ready={'pg1': 1})})
    assert plan['action'] == 'refuse'
    assert ('pg3 sees pg1 rejecting connections (it is starting up or shutting down) (pg_isready exit 1): wait and re-run'
            in plan['reason'])


@pytest.mark.parametrize('code', [2, 3, None, '2'])
def test_pg_isready_no_response_is_no_evidence(code):
    plan = failover({'pg1': down(), 'pg2': replica(peers_ready={'pg1': code}), 'pg3': replica(peers_ready={'pg1': code})})
    assert plan['action'] == 'promote'


def test_pg_isready_as_text_counts():
    assert failover({'pg1': down(), 'pg2': replica(peers_ready={'pg1': '0'})})['action'] == 'refuse'


def test_a_streaming_wal_receiver_is_refused():
    plan = failover({'pg1': down(), 'pg2': replica(), 'pg3': replica(streaming=True)})
    assert plan['action'] == 'refuse'
    assert 'pg3 is still streaming WAL from 10.0.0.1 (its WAL receiver is streaming)' in plan['reason']


def test_every_piece_of_evidence_is_listed():
    plan = failover({'pg1': down(), 'pg2': replica(streaming=True, peers_ready={'pg1': 0})}, controller_port_open={'pg1': True})
    assert plan['reason'].count('; ') >= 2


def test_a_stopped_reachable_old_primary_is_fenced_and_its_wal_end_gives_the_exact_loss():
    plan = failover({'pg1': stopped(wal_end='0/5000100'), 'pg2': replica('0/5000000'), 'pg3': replica('0/4000000')})
    assert plan['action'] == 'promote'
    assert plan['old_primary'] == 'pg1' and plan['old_primary_down'] is True
    assert plan['fence'] == ['pg1'] and plan['candidate'] == 'pg2' and plan['candidate_lsn'] == '0/5000000'
    assert plan['repoint'] == ['pg3']
    assert plan['lost_bytes'] == 256
    assert plan['lost_estimate'] == "exact: pg1's WAL ends at 0/5000100 and pg2 is at 0/5000000, so 256 bytes of WAL are only on pg1."
    assert plan['reason'].startswith('no primary is running and nothing answers for pg1: fence pg1 (stop and mask), then promote '
                                     'pg2 (at 0/5000000, the most advanced of 2 running replicas), then repoint pg3 to it.')


@pytest.mark.parametrize('wal_end', ['0/5000000', '0/4000000'])
def test_nothing_lost_when_the_candidate_has_all_the_wal(wal_end):
    plan = failover({'pg1': stopped(wal_end=wal_end), 'pg2': replica('0/5000000')})
    assert plan['lost_bytes'] == 0
    assert plan['lost_estimate'].startswith('exact: none')


def test_unreachable_old_primary_gives_an_estimate():
    plan = failover({'pg1': down(), 'pg2': replica('0/5000000'), 'pg3': replica('0/4FFFF00')})
    assert plan['action'] == 'promote' and plan['fence'] == [] and plan['old_primary'] == 'pg1'
    assert plan['lost_bytes'] is None
    assert plan['lost_estimate'] == ('unknown: pg1 is unreachable (or its WAL end could not be read); pg2 last replayed a '
                                     'transaction at 2025-01-02 03:04:05+00; the replicas are 256 bytes apart (pg2 at 0/5000000, '
                                     'pg3 at 0/4FFFF00).')
    assert any('pg1 cannot be fenced' in note for note in plan['notes'])


def test_unknown_wal_end_of_a_reachable_old_primary():
    plan = failover({'pg1': stopped(), 'pg2': replica()})
    assert plan['fence'] == ['pg1'] and plan['lost_bytes'] is None
    assert plan['lost_estimate'].startswith('unknown: pg1 is unreachable (or its WAL end could not be read); pg2 last replayed')
    assert 'it is the only running replica' in plan['lost_estimate']


def test_old_primary_is_the_one_most_replicas_follow():
    states = {'pg1': down(), 'pg2': down(), 'pg3': replica(follows='pg2'), 'pg4': replica(follows='pg2'), 'pg5': replica(follows='pg1')}
    assert failover(states)['old_primary'] == 'pg2'


def test_old_primary_tie_is_broken_by_name():
    states = {'pg1': down(), 'pg2': down(), 'pg3': replica(follows='pg2'), 'pg4': replica(follows='pg1')}
    assert failover(states)['old_primary'] == 'pg1'


def test_old_primary_ignores_hosts_outside_the_cluster_and_cascades():
    states = {'pg1': stopped(), 'pg2': replica(follows='10.0.0.9'), 'pg3': replica(follows='pg2')}
    assert failover(states)['old_primary'] == 'pg1'


def test_unknown_old_primary_still_fails_over_when_all_is_quiet():
    plan = failover({'pg1': down(), 'pg2': replica(follows=None), 'pg3': replica('0/4000000', follows=None)})
    assert plan['old_primary'] is None and plan['old_primary_down'] is True
    assert plan['action'] == 'promote' and plan['candidate'] == 'pg2'
    assert plan['lost_estimate'].startswith('unknown: the old primary is not known')


def test_every_stopped_would_be_primary_is_fenced():
    states = {'pg1': stopped(), 'pg2': stopped(), 'pg3': replica(follows=None), 'pg4': stopped(system_identifier=OTHER_SYSID)}
    plan = failover(states)
    assert plan['old_primary'] is None
    assert plan['fence'] == ['pg1', 'pg2']


def test_failover_skips_a_paused_replica_at_an_equal_lsn():
    plan = failover({'pg1': down(), 'pg2': replica(paused='paused'), 'pg3': replica()})
    assert plan['candidate'] == 'pg3' and plan['repoint'] == ['pg2']


def test_failover_promotes_a_paused_replica_strictly_ahead():
    plan = failover({'pg1': down(), 'pg2': replica('0/5000008', paused='paused'), 'pg3': replica()})
    assert plan['candidate'] == 'pg2'
    assert any('pg2 has its replay paused' in note for note in plan['notes'])


def test_failover_tie_is_broken_by_name_whatever_the_order():
    forward = {'pg1': down(), 'pg2': replica(), 'pg3': replica()}
    backward = dict(reversed(list(forward.items())))
    plans = [pg_cluster.failover_plan(states, members, {}) for states in (forward, backward)
             for members in (['pg1', 'pg2', 'pg3'], ['pg3', 'pg2', 'pg1'])]
    assert all(plan['candidate'] == 'pg2' for plan in plans)
    assert plans[0] == plans[1]


def test_no_running_replica_is_refused_with_the_reasons():
    plan = failover({'pg1': down(), 'pg2': stopped(standby_signal=True), 'pg3': replica(system_identifier=OTHER_SYSID),
                     'pg4': stopped(standby_signal=True), 'pg5': down()})
    assert plan['action'] == 'refuse' and plan['candidate'] is None and plan['old_primary'] == 'pg1'
    assert plan['reason'].startswith('no running replica to promote: pg2 is not running (a stopped replica, standby.signal); '
                                     'pg3 is in another cluster')
    assert plan['skipped'] == [
        {'host': 'pg2', 'why': 'not running (a stopped replica, standby.signal)'},
        {'host': 'pg3', 'why': 'in another cluster (system identifier %s, cluster %s)' % (OTHER_SYSID, SYSID)},
        {'host': 'pg4', 'why': 'not running (a stopped replica, standby.signal)'},
        {'host': 'pg5', 'why': 'unreachable: Ansible could not connect to it'}]


def test_two_clusters_with_no_majority_are_refused():
    plan = failover({'pg2': replica(), 'pg3': replica(system_identifier=OTHER_SYSID)})
    assert plan['action'] == 'refuse'
    assert plan['reason'].startswith('the members hold different clusters and none is the majority')
    assert plan['system_identifier'] is None


SYNC_23 = {'method': 'ANY', 'num': 1, 'names': ['pg2', 'pg3']}


def test_sync_standby_lost_with_the_primary_is_refused():
    """ANY 1 (pg2, pg3): pg2 went down with pg1, so a commit may have been acknowledged by pg2 alone."""
    states = {'pg1': down(), 'pg2': down(), 'pg3': replica()}
    plan = failover(states, sync=SYNC_23)
    assert plan['action'] == 'refuse' and plan['sync_provable'] is False
    assert '1 of them is lost (pg2)' in plan['reason']
    assert plan['reason'].endswith('-e allow_data_loss=true accepts the loss.')
    allowed = failover(states, sync=SYNC_23, allow_data_loss=True)
    assert allowed['action'] == 'promote' and allowed['candidate'] == 'pg3' and allowed['sync_provable'] is False
    assert 'accepted by -e allow_data_loss=true' in allowed['reason']


def test_sync_provable_when_only_the_primary_is_lost():
    plan = failover({'pg1': down(), 'pg2': replica(), 'pg3': replica('0/4000000')}, sync=SYNC_23)
    assert plan['action'] == 'promote' and plan['sync_provable'] is True
    assert plan['reason'].endswith('Every acknowledged commit is on a survivor.')


def test_sync_first_semantics():
    states = {'pg1': down(), 'pg2': down(), 'pg3': replica(), 'pg4': replica()}
    assert failover(states, sync=sync('FIRST 2 (pg2, pg3, pg4)'))['action'] == 'promote'
    assert failover(states, sync=sync('FIRST 1 (pg2, pg3, pg4)'))['action'] == 'refuse'


def test_sync_star_as_failover_yml_passes_it():
    star = {'method': 'any', 'num': 1, 'names': ['*']}
    assert failover({'pg1': down(), 'pg2': replica(), 'pg3': replica()}, sync=star)['sync_provable'] is True
    assert failover({'pg1': down(), 'pg2': down(), 'pg3': replica()}, sync=star)['action'] == 'refuse'
    two = dict(star, num=2)
    assert failover({'pg1': down(), 'pg2': down(), 'pg3': replica(), 'pg4': replica()}, sync=two)['action'] == 'promote'


def test_a_stopped_sync_standby_counts_as_lost():
    """pg2 survives but does not run: its WAL cannot be promoted or read, so it is lost for the proof."""
    plan = failover({'pg1': down(), 'pg2': stopped(standby_signal=True), 'pg3': replica()}, sync=SYNC_23)
    assert plan['action'] == 'refuse'


def test_a_listed_name_outside_the_cluster_counts_as_lost():
    plan = failover({'pg1': down(), 'pg2': replica()}, sync=sync('ANY 1 (pg2, backup9)'))
    assert plan['action'] == 'refuse' and 'lost (backup9)' in plan['reason']


def test_sync_as_text():
    assert failover({'pg1': down(), 'pg2': replica(), 'pg3': replica()}, sync='ANY 1 (pg2, pg3)')['sync_provable'] is True


def test_asynchronous_failover_says_it_may_lose():
    plan = failover({'pg1': down(), 'pg2': replica()})
    assert plan['sync_provable'] is None
    assert plan['sync_reason'].startswith('asynchronous replication')
    assert plan['reason'].endswith('Replication was asynchronous: the newest commits may be lost.')


def test_a_running_placeholder_is_neither_a_primary_nor_a_suspect():
    states = {'pg1': down(), 'pg2': replica(), 'pg3': placeholder(running=True, in_recovery=False)}
    plan = failover(states, controller_port_open={'pg3': True})
    assert plan['action'] == 'promote' and plan['candidate'] == 'pg2'
    assert plan['skipped'] == [{'host': 'pg3', 'why': 'a placeholder for a replica still to be built (it holds no data of the cluster)'}]


def test_an_unreachable_member_answering_is_refused():
    """pg3 cannot be reached by Ansible, but its port answers: it may be a primary that nobody follows."""
    plan = failover({'pg1': stopped(), 'pg2': replica(), 'pg3': down()}, controller_port_open={'pg3': True})
    assert plan['action'] == 'refuse' and 'pg3' in plan['reason']


def test_force_names_only_the_unreachable_members_that_answer():
    plan = failover({'pg1': down(), 'pg2': replica(), 'pg3': down(), 'pg4': down()}, force=True, controller_port_open={'pg3': True})
    assert 'Ansible cannot reach pg3 to fence it' in plan['reason']


def test_force_refuses_when_another_member_answers():
    plan = failover({'pg1': primary(), 'pg2': replica(streaming=True), 'pg3': down()}, force=True, controller_port_open={'pg3': True})
    assert plan['action'] == 'refuse'
    assert plan['reason'].startswith("besides pg1, a node may still be up: the controller reaches pg3's PostgreSQL port")
    assert 'cannot reach pg3 to fence it' in plan['reason']


@pytest.mark.parametrize('params, message', [
    ({'controller_port_open': ['pg1']}, 'params.controller_port_open must be a dict'),
    ({'allow_data_loss': 'perhaps'}, 'params.allow_data_loss must be true or false'),
    ({'sync': 'ANY 9 (a)'}, 'asks for 9 synchronous standbys'),
    ({'sync': ['pg2']}, 'sync must be a dict'),
])
def test_failover_rejects_bad_params(params, message):
    with pytest.raises(ValueError, match=message):
        pg_cluster.failover_plan({'pg1': down()}, ['pg1'], params)


def test_failover_params_may_be_empty():
    assert pg_cluster.failover_plan({'pg1': down(), 'pg2': replica()}, ['pg1', 'pg2'])['action'] == 'promote'
    assert pg_cluster.failover_plan({'pg1': down(), 'pg2': replica()}, ['pg1', 'pg2'], None)['candidate'] == 'pg2'


def test_failover_plan_keys():
    assert set(failover({'pg1': down(), 'pg2': replica()})) == {
        'action', 'reason', 'old_primary', 'old_primary_down', 'fence', 'candidate', 'candidate_lsn', 'ranking', 'repoint', 'skipped',
        'sync_provable', 'sync_reason', 'lost_bytes', 'lost_estimate', 'system_identifier', 'notes'}


# Random clusters for the property tests: every member is one of these kinds of state.
LSNS = st.integers(0x3000000, 0x3000000 + 64).map(pg_cluster.format_lsn)


@st.composite
def member_state(draw, allow_primary=True):
    kinds = ['replica', 'replica', 'down', 'stopped', 'standby', 'empty', 'foreign'] + (['primary'] if allow_primary else [])
    kind = draw(st.sampled_from(kinds))
    if kind == 'primary':
        return primary(draw(LSNS))
    if kind in ('replica', 'foreign'):
        receive, replay = draw(st.one_of(st.none(), LSNS)), draw(st.one_of(st.none(), LSNS))
        return replica(receive=receive or '', replay=replay or '', paused=draw(st.sampled_from([None, 'paused', 'pause requested'])),
                       follows=draw(st.sampled_from(['pg1', 'pg2', None])), streaming=False,
                       system_identifier=OTHER_SYSID if kind == 'foreign' else SYSID,
                       peers_ready=draw(st.dictionaries(st.sampled_from(FOUR), st.sampled_from([2, 3]), max_size=2)))
    if kind == 'down':
        return down()
    if kind == 'empty':
        return empty()
    return stopped(standby_signal=kind == 'standby', wal_end=draw(st.one_of(st.none(), LSNS)))


CLUSTERS = st.fixed_dictionaries({member: member_state() for member in FOUR})
QUIET_CLUSTERS = st.fixed_dictionaries({member: member_state(allow_primary=False) for member in FOUR})


def oracle_candidate(states, sysid):
    """The rule written out again: the highest GREATEST(receive, replay) among running replicas of cluster ``sysid``,
    replicas that replay before paused ones, then the smallest name."""
    eligible = {}
    for host, state in states.items():
        if state.get('reachable') and state.get('running') and state.get('in_recovery') and state['system_identifier'] == sysid:
            values = [int(text.replace('/', ''), 16) if text.startswith('0/') else None for text in (state['receive_lsn'], state['replay_lsn'])
                      if text]
            if values:
                eligible[host] = (max(values), state['replay_pause_state'] != 'not paused')
    if not eligible:
        return None
    best = max(position for position, _paused in eligible.values())
    at_best = sorted((paused, host) for host, (position, paused) in eligible.items() if position == best)
    return at_best[0][1]


def majority_is_ours(states):
    counts = {}
    for state in states.values():
        if state.get('reachable') and state.get('data') and not state.get('placeholder'):
            counts[state['system_identifier']] = counts.get(state['system_identifier'], 0) + 1
    return counts.get(SYSID, 0) > counts.get(OTHER_SYSID, 0)


@settings(max_examples=300)
@given(states=QUIET_CLUSTERS, force=st.booleans(), allow=st.booleans(), sync_text=st.sampled_from([None, 'ANY 1 (pg2, pg3)', '*']))
def test_the_candidate_is_always_the_most_advanced_eligible_replica(states, force, allow, sync_text):
    plan = failover(states, force=force, allow_data_loss=allow, sync=sync_text)
    if majority_is_ours(states):
        assert plan['system_identifier'] == SYSID
    # The cluster is the old primary's when it can be read, else the majority's, else none (a tie, or nobody has data).
    assert plan['candidate'] == oracle_candidate(states, plan['system_identifier'])
    if plan['action'] == 'promote':
        assert plan['candidate'] is not None
        assert plan['candidate'] not in plan['fence'] + plan['repoint']


@settings(max_examples=300)
@given(states=CLUSTERS, allow=st.booleans(), ports=st.dictionaries(st.sampled_from(FOUR), st.booleans()))
def test_never_promotes_beside_a_running_primary_without_force(states, allow, ports):
    plan = failover(states, allow_data_loss=allow, controller_port_open=ports)
    running_primary = any(state.get('running') and not state.get('in_recovery') for state in states.values())
    if running_primary:
        assert plan['action'] == 'refuse'
    if plan['action'] == 'promote':
        # Every member that is not a running replica is fenced, or unreachable with nothing answering for it.
        for host, state in states.items():
            if not (state.get('running') and state.get('in_recovery')):
                assert host in plan['fence'] or not state.get('reachable') or not state.get('data') \
                    or state.get('standby_signal') or state.get('system_identifier') != plan['system_identifier']
                assert ports.get(host) is not True


@given(states=CLUSTERS, ports=st.dictionaries(st.sampled_from(FOUR), st.booleans()), force=st.booleans())
def test_failover_is_deterministic(states, ports, force):
    members = list(FOUR)
    plan = pg_cluster.failover_plan(states, members, {'controller_port_open': ports, 'force': force})
    shuffled = dict(reversed(list(states.items())))
    assert pg_cluster.failover_plan(shuffled, members, {'controller_port_open': dict(reversed(list(ports.items()))), 'force': force}) == plan
    assert pg_cluster.failover_plan(states, members, {'controller_port_open': ports, 'force': force}) == plan


# ---------------------------------------------------------------------------
# switchover_plan
# ---------------------------------------------------------------------------

def switchover(states, members=None, **params):
    return pg_cluster.switchover_plan(states, members or sorted(states), params)


def healthy(**replicas):
    states = {'pg1': primary('0/5000000'), 'pg2': replica('0/4FFFF00', streaming=True), 'pg3': replica('0/5000000', streaming=True)}
    states.update(replicas)
    return states


def test_switchover_picks_the_best_streaming_replica():
    plan = switchover(healthy(), max_lag_bytes=0)
    assert plan == {'action': 'switchover', 'old_primary': 'pg1', 'target': 'pg3', 'lag_bytes': 0, 'repoint': ['pg2'],
                    'reason': 'pg1 hands over to pg3 (0 bytes behind, at most 0 allowed), then repoint pg2 to pg3.'}


def test_switchover_auto_target_skips_replicas_that_cannot_take_over():
    states = healthy(pg3=replica('0/5000000', streaming=True, paused='paused'), pg4=replica('0/5000000'))
    plan = switchover(states, max_lag_bytes=1024)
    assert plan['action'] == 'switchover' and plan['target'] == 'pg2' and plan['lag_bytes'] == 256
    assert plan['repoint'] == ['pg3', 'pg4']


def test_switchover_to_a_named_target():
    plan = switchover(healthy(), target='pg2', max_lag_bytes=256)
    assert plan['action'] == 'switchover' and plan['target'] == 'pg2' and plan['lag_bytes'] == 256 and plan['repoint'] == ['pg3']


def test_switchover_lag_is_refused():
    plan = switchover(healthy(), target='pg2', max_lag_bytes=255)
    assert plan['action'] == 'refuse' and plan['lag_bytes'] == 256
    assert plan['reason'] == ('pg2 is 256 bytes behind pg1 (replayed 0/4FFFF00, primary at 0/5000000), more than max_lag_bytes 255. '
                              'Wait for it to catch up (or raise -e max_lag_bytes) and re-run switchover.yml.')


def test_switchover_lag_uses_replay_not_receive():
    plan = switchover(healthy(pg2=replica(receive='0/5000000', replay='0/4000000', streaming=True)), target='pg2', max_lag_bytes=1024)
    assert plan['action'] == 'refuse' and plan['lag_bytes'] == 0x1000000


def test_switchover_to_the_primary_does_nothing():
    plan = switchover(healthy(), target='pg1')
    assert plan['action'] == 'none' and plan['reason'] == 'pg1 is already the primary: nothing to do.'


@pytest.mark.parametrize('target_state, message', [
    (replica(), 'not streaming from pg1'),
    (replica(streaming=True, paused='paused'), "paused (replay_pause_state 'paused'): resume its replay first"),
    (replica(streaming=True, paused='pause requested'), "paused (replay_pause_state 'pause requested')"),
    (replica(streaming=True, system_identifier=OTHER_SYSID), 'in another cluster'),
    (down(), 'unreachable'),
    (stopped(standby_signal=True), 'not running'),
    (placeholder(), 'a placeholder'),
])
def test_switchover_target_must_be_ready(target_state, message):
    plan = switchover(healthy(pg2=target_state), target='pg2', max_lag_bytes=1 << 40)
    assert plan['action'] == 'refuse'
    assert plan['reason'].startswith('target pg2 cannot take over: it is ')
    assert message in plan['reason']


def test_switchover_target_must_be_a_member():
    plan = switchover(healthy(), target='pg9')
    assert plan['action'] == 'refuse' and plan['reason'] == 'target pg9 is not a member (pg1, pg2 and pg3).'


def test_switchover_needs_a_primary():
    plan = switchover({'pg1': stopped(), 'pg2': replica(streaming=True)})
    assert plan['action'] == 'refuse' and 'failover.yml' in plan['reason']
    assert plan['reason'].startswith('no running primary that Ansible can reach (pg1 (stopped, no standby.signal, in production))')


def test_switchover_refuses_two_primaries():
    plan = switchover({'pg1': primary(), 'pg2': primary(), 'pg3': replica(streaming=True)})
    assert plan['action'] == 'refuse' and plan['reason'].startswith('two primaries: pg1 and pg2')


def test_switchover_with_no_ready_replica():
    plan = switchover({'pg1': primary(), 'pg2': replica(), 'pg3': down()})
    assert plan['action'] == 'refuse'
    assert plan['reason'] == ('no replica can take over: pg2 is not streaming from pg1 (its WAL receiver is not streaming); pg3 is '
                              'unreachable: Ansible could not connect to it.')


def test_switchover_names_members_it_cannot_repoint():
    plan = switchover(healthy(pg4=down()), max_lag_bytes=0)
    assert plan['action'] == 'switchover'
    assert plan['reason'].endswith('; pg4 is unreachable and keeps following pg1 until rejoin.yml.')


def test_switchover_max_lag_default_and_text():
    assert switchover(healthy(), target='pg2')['action'] == 'switchover'  # 256 bytes, within one 16 MB segment
    assert switchover(healthy(), target='pg2', max_lag_bytes='255')['action'] == 'refuse'
    with pytest.raises(ValueError, match='params.max_lag_bytes must be a whole number >= 0, got -1'):
        switchover(healthy(), max_lag_bytes=-1)


def test_switchover_unknown_lag_is_refused():
    plan = switchover(healthy(pg1=primary(current_lsn=None)), target='pg2')
    assert plan['action'] == 'refuse' and 'cannot be measured' in plan['reason']


# ---------------------------------------------------------------------------
# The module stands alone
# ---------------------------------------------------------------------------

def test_imports_without_ansible(monkeypatch):
    monkeypatch.setitem(sys.modules, 'ansible', None)
    spec = importlib.util.spec_from_file_location('agent_ui_postgresql_pg_cluster', pg_cluster.__file__)
    plain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plain)
    assert plain.lsn_diff('0/3000000', '0/2000000') == 16777216


# --- 'live': the old primary's synchronous replication read from the survivors' own settings -----------------------

def _live_states(pg2_sync, pg3_sync, pg3_running=True):
    base = {'reachable': True, 'data': True, 'system_identifier': '42', 'timeline': 1}
    return {
        'pg1': dict(base, running=False, standby_signal=False, wal_end_lsn='0/3000100'),
        'pg2': dict(base, running=True, in_recovery=True, receive_lsn='0/3000100', replay_lsn='0/3000100',
                    replay_pause_state='not paused', primary_host='pg1', synchronous_standby_names=pg2_sync,
                    peers_ready={'pg1': 2}),
        'pg3': dict(base, running=pg3_running, in_recovery=True if pg3_running else None, receive_lsn='0/3000000',
                    replay_lsn='0/3000000', replay_pause_state='not paused', primary_host='pg1',
                    synchronous_standby_names=pg3_sync, peers_ready={'pg1': 2}),
    }


def test_live_sync_reads_the_method_and_count_from_the_survivors():
    states = _live_states('ANY 1 ("pg1", "pg3")', 'ANY 1 ("pg1", "pg2")')
    assert pg_cluster.live_sync(states, ['pg1', 'pg2', 'pg3'], 'pg1') == {'method': 'ANY', 'num': 1, 'names': ['*']}
    assert pg_cluster.live_sync(_live_states('', ''), ['pg1', 'pg2', 'pg3'], 'pg1') is None
    # The strictest setting wins when the survivors disagree.
    states = _live_states('ANY 1 ("pg1", "pg3")', 'FIRST 2 ("pg1", "pg2")')
    assert pg_cluster.live_sync(states, ['pg1', 'pg2', 'pg3'], 'pg1') == {'method': 'FIRST', 'num': 2, 'names': ['*']}


def test_failover_with_live_sync_proves_when_only_the_primary_is_lost():
    plan = pg_cluster.failover_plan(_live_states('ANY 1 ("pg1", "pg3")', 'ANY 1 ("pg1", "pg2")'), ['pg1', 'pg2', 'pg3'],
                                    {'controller_port_open': {'pg1': False}, 'sync': 'live'})
    assert plan['action'] == 'promote' and plan['candidate'] == 'pg2' and plan['sync_provable'] is True, plan


def test_failover_with_live_sync_refuses_when_the_other_standby_died_too():
    states = _live_states('ANY 1 ("pg1", "pg3")', '', pg3_running=False)
    plan = pg_cluster.failover_plan(states, ['pg1', 'pg2', 'pg3'], {'controller_port_open': {'pg1': False, 'pg3': False},
                                                                    'sync': 'live'})
    assert plan['action'] == 'refuse' and plan['sync_provable'] is False and 'allow_data_loss' in plan['reason'], plan


def test_failover_with_live_sync_and_no_setting_is_asynchronous():
    plan = pg_cluster.failover_plan(_live_states('', ''), ['pg1', 'pg2', 'pg3'], {'controller_port_open': {}, 'sync': 'live'})
    assert plan['action'] == 'promote' and plan['sync_provable'] is None and 'asynchronous' in plan['sync_reason'], plan
