# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for plugins/module_utils/pg_rejoin.py: timeline history files, WAL segment names, the rejoin plan.

The history files are written as PostgreSQL writes them (timeline.c writeTimeLineHistory: the parent's file, a
newline, then "<parent TLI>\\t<switchpoint>\\t<reason>\\n").  The segment names are checked against names worked out
by hand and, in the property test, against pg_node.segment_name (the name of the segment that holds one LSN), which
computes them another way.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest
from hypothesis import given, strategies as st

from ansible_collections.agent_ui.postgresql.plugins.module_utils.pg_cluster import format_lsn, parse_lsn
from ansible_collections.agent_ui.postgresql.plugins.module_utils.pg_node import segment_name
from ansible_collections.agent_ui.postgresql.plugins.module_utils.pg_rejoin import (
    DEFAULT_SEGMENT_SIZE, parse_timeline_history, rejoin_plan, wal_segments,
)

MB = 1024 * 1024
SYSID = '7340134298521411262'
OTHER_SYSID = '7340134298521499999'
MEMBERS = ['pg1', 'pg2', 'pg3']

# pg2 was promoted at 0/3000148 (timeline 1 -> 2), then pg3 at 0/5000060 (timeline 2 -> 3).
HISTORY_2 = '1\t0/3000148\tno recovery target specified\n'
HISTORY_3 = HISTORY_2 + '\n2\t0/5000060\tno recovery target specified\n'


# ---------------------------------------------------------------------------
# parse_timeline_history
# ---------------------------------------------------------------------------

def test_history_of_timeline_1_is_empty():
    assert parse_timeline_history('') == []
    assert parse_timeline_history(None) == []


def test_history_of_one_promotion():
    assert parse_timeline_history(HISTORY_2) == [(1, 0x3000148)]


def test_history_of_several_promotions_as_postgresql_writes_it():
    assert parse_timeline_history(HISTORY_3) == [(1, 0x3000148), (2, 0x5000060)]
    text = HISTORY_3 + '\n3\t1A/B0000028\tbefore 2026-12-01 18:45:26.455884+00\n\n4\t1A/C0000000\tat restore point "before_upgrade"\n'
    assert parse_timeline_history(text) == [(1, 0x3000148), (2, 0x5000060), (3, (0x1A << 32) | 0xB0000028), (4, (0x1A << 32) | 0xC0000000)]


def test_history_skips_comments_and_blank_lines_and_takes_any_white_space():
    text = ('# written by hand\n'
            '   \n'
            '  # an indented comment\n'
            '1 0/3000148 no recovery target specified\r\n'
            '  2   0/5000060\n'                      # no reason
            '3\t0/6000000\tafter transaction 1234\t(and more)\n')
    assert parse_timeline_history(text) == [(1, 0x3000148), (2, 0x5000060), (3, 0x6000000)]


def test_history_reads_lsns_in_either_case():
    assert parse_timeline_history('1\t0/3000abc\tx\n2\tff/FFFFFFFF\ty') == [(1, 0x3000ABC), (2, (0xFF << 32) | 0xFFFFFFFF)]


@pytest.mark.parametrize('line', [
    'one\t0/3000148\tno recovery target specified',
    '1',
    '1\tno recovery target specified',
    '1\t0/XYZ\tno recovery target specified',
    '1\t3000148\tno recovery target specified',
    '-1\t0/3000148\tno recovery target specified',
    '1.5\t0/3000148\tno recovery target specified',
])
def test_a_bad_line_raises_value_error_naming_it(line):
    with pytest.raises(ValueError) as caught:
        parse_timeline_history('# comment\n1\t0/1000000\tok\n%s\n' % line)
    assert str(caught.value) == 'timeline history line 3 is not "<timeline> <switchpoint> <reason>": %r' % line


# ---------------------------------------------------------------------------
# wal_segments
# ---------------------------------------------------------------------------

def test_one_segment_when_start_and_end_are_inside_it():
    assert wal_segments(1, 0x3000148, 0x3000200) == ['000000010000000000000003']
    assert wal_segments(1, 0x3000148, 0x3000149) == ['000000010000000000000003']


def test_every_segment_across_the_range():
    assert wal_segments(1, 0x3000148, 0x5000060) == ['000000010000000000000003', '000000010000000000000004',
                                                     '000000010000000000000005']


def test_an_end_on_a_segment_boundary_is_not_in_the_next_segment():
    assert wal_segments(1, 0x3000148, 0x4000000) == ['000000010000000000000003']
    assert wal_segments(1, 0x3000000, 0x4000000) == ['000000010000000000000003']
    assert wal_segments(1, 0x4000000, 0x4000001) == ['000000010000000000000004']
    assert wal_segments(1, 0x3FFFFFF, 0x4000001) == ['000000010000000000000003', '000000010000000000000004']


def test_the_segment_number_wraps_into_the_next_log_id():
    # 0x100000000 bytes per log id: 256 segments of 16 MB, numbered 00 to FF.
    assert wal_segments(2, 0xFF000000, 0x100000010) == ['0000000200000000000000FF', '000000020000000100000000']
    assert wal_segments(2, (0x1A << 32) | 0xFFFFFF00, (0x1B << 32) | 0x01000001) == [
        '000000020000001A000000FF', '000000020000001B00000000', '000000020000001B00000001']


def test_timelines_are_written_in_hex():
    assert wal_segments(10, 0x3000148, 0x3000149) == ['0000000A0000000000000003']
    assert wal_segments(0x1F, 0x3000148, 0x3000149) == ['0000001F0000000000000003']


@pytest.mark.parametrize('size, start, end, names', [
    (MB, 0xFFF00000, 0x100000001, ['000000010000000000000FFF', '000000010000000100000000']),  # 4096 segments per log id
    (MB, 0x3000148, 0x3200000, ['000000010000000000000030', '000000010000000000000031']),
    (64 * MB, 0x3000148, 0x3FFFFFF, ['000000010000000000000000']),
    (64 * MB, 0x3000148, 0x5000060, ['000000010000000000000000', '000000010000000000000001']),
    (64 * MB, 0xFC000000, 0x100000000, ['00000001000000000000003F']),  # 64 segments per log id
    (64 * MB, 0xFC000000, 0x100000001, ['00000001000000000000003F', '000000010000000100000000']),
    (1024 * MB, (1 << 32) | 0x40000000, (1 << 32) | 0x80000000, ['000000010000000100000001']),
    (1024 * MB, 0xC0000000, (1 << 32) | 0x00000001, ['000000010000000000000003', '000000010000000100000000']),
])
def test_other_segment_sizes(size, start, end, names):
    assert wal_segments(1, start, end, size) == names


@pytest.mark.parametrize('start, end', [(0x5000060, 0x3000148), (0x3000148, 0x3000148), (0, 0)])
def test_no_segment_when_end_is_not_after_start(start, end):
    assert wal_segments(1, start, end) == []


@pytest.mark.parametrize('size', [0, -16 * MB, 3 * MB, 16 * MB + 1, 512 * 1024, 2048 * MB, 1 << 33, True, 16.0 * MB, '16777216'])
def test_a_segment_size_postgresql_cannot_have_is_refused(size):
    with pytest.raises(ValueError, match='^the WAL segment size must be a power of two from 1MB to 1GB'):
        wal_segments(1, 0, 1, size)


def test_the_default_segment_size():
    assert DEFAULT_SEGMENT_SIZE == 16 * MB
    assert wal_segments(1, 0, 16 * MB + 1) == wal_segments(1, 0, 16 * MB + 1, 16 * MB)


@given(timeline=st.integers(1, 0xFFFFFFFF), size_log=st.integers(20, 30), start=st.integers(0, (1 << 40)),
       length=st.integers(1, 40 * 1024 * MB), fraction=st.floats(0, 1))
def test_the_segments_are_the_ones_that_hold_each_byte(timeline, size_log, start, length, fraction):
    """Oracle: pg_node.segment_name of the first byte and of every segment boundary before the end."""
    size = 1 << size_log
    end = start + max(1, min(length, int(50 * size * fraction) + 1))
    boundaries = [start] + list(range((start // size + 1) * size, end, size))
    expected = [segment_name(format_lsn(position), timeline, size) for position in boundaries]
    assert wal_segments(timeline, start, end, size) == expected
    assert segment_name(format_lsn(end - 1), timeline, size) == expected[-1]


# ---------------------------------------------------------------------------
# rejoin_plan: states as pg_probe_states returns them
# ---------------------------------------------------------------------------

def node(**extra):
    state = dict(reachable=True, installed=True, data=True, placeholder=False, system_identifier=SYSID, standby_signal=False,
                 wal_receiver=None, wal_segment_size=16 * MB, service_masked=False)
    state.update(extra)
    return state


def primary(timeline=2, lsn='0/7000000', **extra):
    return node(running=True, in_recovery=False, timeline=timeline, current_lsn=lsn, **extra)


def replica(timeline=2, lsn='0/6000000', streaming_tli=None, **extra):
    receiver = None
    if streaming_tli is not None:
        receiver = {'status': 'streaming', 'sender_host': 'pg2', 'sender_port': 5432, 'received_tli': streaming_tli,
                    'latest_end_lsn': lsn, 'slot_name': 'pg3'}
    return node(running=True, in_recovery=True, standby_signal=True, timeline=timeline, receive_lsn=lsn, replay_lsn=lsn,
                wal_receiver=receiver, primary_host='pg2', **extra)


def stopped(timeline=1, wal_end='0/5000060', **extra):
    extra.setdefault('checkpoint_timeline', timeline)
    return node(running=False, timeline=timeline, wal_end_lsn=wal_end, **extra)


UNREACHABLE = {'reachable': False}


def plan_for(states, host='pg1', history=HISTORY_2, allow_reclone=False, members=None):
    return rejoin_plan(states, members or MEMBERS, host, {'history': history, 'allow_reclone': allow_reclone})


def assert_refused(plan, *words):
    assert plan['action'] == 'refuse', plan
    for word in words:
        assert word in plan['reason'], plan['reason']


# The host not in the cluster, not reachable, or no single other primary to follow: refused.

def test_a_host_that_is_not_a_member():
    plan = plan_for({'pg1': stopped(), 'pg2': primary()}, host='pg9')
    assert_refused(plan, 'pg9 is not a member of the cluster (pg1, pg2, pg3).')
    assert plan['host'] == 'pg9' and plan['primary'] is None


@pytest.mark.parametrize('state', [UNREACHABLE, None, {}])
def test_an_unreachable_host(state):
    states = {'pg2': primary(), 'pg3': replica()}
    if state is not None:
        states['pg1'] = state
    assert_refused(plan_for(states), 'pg1 cannot be reached: bring the host back first.')


def test_the_host_is_the_only_primary():
    plan = plan_for({'pg1': primary(), 'pg2': replica(streaming_tli=2), 'pg3': stopped()})
    assert_refused(plan, 'pg1 is the primary of the cluster', 'switchover.yml')


@pytest.mark.parametrize('others', [
    {'pg2': stopped(timeline=2), 'pg3': UNREACHABLE},
    {'pg2': replica(), 'pg3': replica()},
    {'pg2': dict(primary(), reachable=False), 'pg3': {}},
    {'pg2': primary(placeholder=True), 'pg3': stopped()},  # the role's placeholder runs, but holds nothing of the cluster
])
def test_no_other_primary(others):
    states = dict(others, pg1=stopped())
    assert_refused(plan_for(states), 'no live primary to rejoin', 'Run failover.yml first.')


def test_a_running_placeholder_host_with_no_primary_is_not_the_primary():
    assert_refused(plan_for({'pg1': primary(placeholder=True), 'pg2': stopped()}), 'no live primary to rejoin')


def test_two_other_primaries():
    plan = plan_for({'pg1': stopped(), 'pg2': primary(), 'pg3': primary(timeline=3)})
    assert_refused(plan, 'pg2, pg3 are all running as primaries', 'stop the others by hand')


def test_a_running_placeholder_next_to_the_primary_is_not_a_second_primary():
    plan = plan_for({'pg1': stopped(), 'pg2': primary(), 'pg3': primary(timeline=1, lsn='0/1000000', placeholder=True)})
    assert plan['action'] == 'rewind' and plan['primary'] == 'pg2'


# No data, another cluster: only a fresh copy, with allow_reclone.

@pytest.mark.parametrize('host_state', [stopped(data=False, system_identifier=None), stopped(placeholder=True),
                                        primary(timeline=1, placeholder=True)])
def test_a_host_with_no_data(host_state):
    states = {'pg1': host_state, 'pg2': primary()}
    plan = plan_for(states)
    assert_refused(plan, 'pg1 holds no data (site.yml builds new replicas).',
                   'Run again with -e allow_reclone=true to replace its data with a fresh copy of pg2.')
    assert plan['primary'] == 'pg2' and plan['primary_timeline'] == 2
    recloned = plan_for(states, allow_reclone=True)
    assert recloned['action'] == 'reclone'
    assert recloned['reason'] == 'pg1 holds no data (site.yml builds new replicas); allow_reclone: pg_basebackup copies pg2 anew.'


def test_a_host_of_another_cluster():
    states = {'pg1': stopped(system_identifier=OTHER_SYSID), 'pg2': primary(), 'pg3': replica()}
    reason = 'pg1 holds another cluster (system identifier %s, the primary has %s)' % (OTHER_SYSID, SYSID)
    assert_refused(plan_for(states), reason + '. Run again with -e allow_reclone=true')
    recloned = plan_for(states, allow_reclone=True)
    assert recloned['action'] == 'reclone' and recloned['reason'].startswith(reason + '; allow_reclone')


@pytest.mark.parametrize('flag, action', [(True, 'reclone'), ('true', 'reclone'), ('yes', 'reclone'), (False, 'refuse'),
                                          ('false', 'refuse'), ('no', 'refuse'), (None, 'refuse')])
def test_allow_reclone_reads_the_words_of_extra_vars(flag, action):
    plan = rejoin_plan({'pg1': stopped(data=False), 'pg2': primary()}, MEMBERS, 'pg1', {'allow_reclone': flag})
    assert plan['action'] == action


# Already following the primary: nothing to do.

def test_a_standby_that_streams_on_the_primarys_timeline():
    plan = plan_for({'pg1': replica(timeline=2, streaming_tli=2), 'pg2': primary()})
    assert plan['action'] == 'none'
    assert plan['reason'] == 'pg1 already streams from the primary on timeline 2.'
    assert plan['host_running'] is True and plan['host_timeline'] == 2


@pytest.mark.parametrize('receiver', [
    {'status': 'streaming', 'received_tli': 1},   # still on the old timeline
    {'status': 'waiting', 'received_tli': 2},
    {'status': 'stopping', 'received_tli': 2},
])
def test_a_standby_that_does_not_stream_on_the_primarys_timeline_is_rewound(receiver):
    plan = plan_for({'pg1': dict(replica(timeline=2, lsn='0/6000000'), wal_receiver=receiver), 'pg2': primary()})
    assert plan['action'] == 'rewind' and plan['host_running'] is True


# On the primary's timeline: it only has to follow it again; unless it is ahead of it.

def test_same_timeline_lagging_stopped():
    plan = plan_for({'pg1': stopped(timeline=2, wal_end='0/6000000', standby_signal=True), 'pg2': primary(lsn='0/7000000')})
    assert plan == {'action': 'rewind', 'reason': "pg1 is on the primary's timeline 2: it only needs to follow it again.",
                    'host': 'pg1', 'primary': 'pg2', 'primary_timeline': 2, 'host_timeline': 2, 'fork_lsn': None,
                    'host_end_lsn': '0/6000000', 'diverged_bytes': 0, 'diverged_segments': [], 'host_running': False}


def test_same_timeline_lagging_running_replica():
    plan = plan_for({'pg1': replica(timeline=2, lsn='0/6000000'), 'pg2': primary(lsn='0/7000000')})
    assert plan['action'] == 'rewind' and plan['diverged_bytes'] == 0 and plan['host_running'] is True
    assert plan['host_end_lsn'] == '0/6000000'


def test_same_timeline_level_with_the_primary():
    plan = plan_for({'pg1': stopped(timeline=2, wal_end='0/7000000'), 'pg2': primary(lsn='0/7000000')})
    assert plan['action'] == 'rewind' and plan['diverged_bytes'] == 0


def test_same_timeline_ahead_of_the_primary_has_forked():
    states = {'pg1': stopped(timeline=2, wal_end='0/7000100'), 'pg2': primary(lsn='0/7000000')}
    reason = ("pg1's WAL goes to 0/7000100 on timeline 2, past the primary's 0/7000000: the histories forked on one timeline, "
              "where pg_rewind finds nothing to rewind")
    plan = plan_for(states)
    assert_refused(plan, reason + '. Run again with -e allow_reclone=true')
    assert plan['diverged_bytes'] is None
    assert plan_for(states, allow_reclone=True)['action'] == 'reclone'


def test_the_position_of_a_running_replica_is_its_furthest_lsn():
    ahead = dict(replica(timeline=2), receive_lsn='0/7000200', replay_lsn='0/6000000')
    assert plan_for({'pg1': ahead, 'pg2': primary(lsn='0/7000000')})['host_end_lsn'] == '0/7000200'
    replay_only = dict(replica(timeline=2), receive_lsn=None, replay_lsn='0/6000000')
    assert plan_for({'pg1': replay_only, 'pg2': primary()})['host_end_lsn'] == '0/6000000'
    neither = dict(replica(timeline=2), receive_lsn=None, replay_lsn='')
    plan = plan_for({'pg1': neither, 'pg2': primary()})
    assert plan['action'] == 'rewind' and plan['host_end_lsn'] is None


# On another timeline.

def test_a_timeline_that_is_not_in_the_primarys_history():
    plan = plan_for({'pg1': stopped(timeline=3, wal_end='0/8000000'), 'pg2': primary(timeline=2)})
    assert plan['action'] == 'rewind' and plan['diverged_bytes'] is None and plan['fork_lsn'] is None
    assert plan['reason'] == "timeline 3 of pg1 is not in the primary's history: pg_rewind finds the common point."
    assert plan['host_end_lsn'] == '0/8000000' and plan['diverged_segments'] == []


def test_no_history_on_the_primary():
    plan = plan_for({'pg1': stopped(timeline=1), 'pg2': primary(timeline=2)}, history='')
    assert plan['action'] == 'rewind' and plan['diverged_bytes'] is None


def test_a_host_whose_timeline_is_unknown():
    plan = plan_for({'pg1': stopped(timeline=None, checkpoint_timeline=None), 'pg2': primary()})
    assert plan['action'] == 'rewind' and plan['diverged_bytes'] is None and plan['host_timeline'] is None


def test_diverged_with_exact_bytes_and_segments():
    plan = plan_for({'pg1': stopped(timeline=1, wal_end='0/5000060'), 'pg2': primary(timeline=2), 'pg3': replica(streaming_tli=2)})
    assert plan == {
        'action': 'rewind', 'host': 'pg1', 'primary': 'pg2', 'primary_timeline': 2, 'host_timeline': 1,
        'reason': "pg1 forked from the primary's history at 0/3000148 on timeline 1; it holds 33554200 bytes past it.",
        'fork_lsn': '0/3000148', 'host_end_lsn': '0/5000060', 'diverged_bytes': 0x5000060 - 0x3000148,
        'diverged_segments': ['000000010000000000000003', '000000010000000000000004', '000000010000000000000005'],
        'host_running': False}
    assert plan['diverged_bytes'] == 33554200


def test_diverged_from_a_middle_timeline():
    plan = plan_for({'pg1': stopped(timeline=2, wal_end='0/5000100'), 'pg2': primary(timeline=3)}, history=HISTORY_3)
    assert (plan['fork_lsn'], plan['diverged_bytes'], plan['diverged_segments']) == ('0/5000060', 0xA0, ['000000020000000000000005'])


def test_the_timeline_of_the_last_checkpoint_when_the_timeline_is_unknown():
    plan = plan_for({'pg1': stopped(timeline=None, checkpoint_timeline=1, wal_end='0/3000200'), 'pg2': primary()})
    assert plan['host_timeline'] == 1 and plan['diverged_bytes'] == 0xB8
    assert plan['diverged_segments'] == ['000000010000000000000003']


def test_diverged_segments_follow_the_hosts_segment_size():
    plan = plan_for({'pg1': stopped(wal_end='0/9000000', wal_segment_size=64 * MB), 'pg2': primary()})
    assert plan['diverged_segments'] == ['000000010000000000000000', '000000010000000000000001', '000000010000000000000002']
    plan = plan_for({'pg1': stopped(wal_end='0/3000200', wal_segment_size=None), 'pg2': primary()})
    assert plan['diverged_segments'] == ['000000010000000000000003']


def test_a_host_that_never_got_past_the_fork_diverged_by_nothing():
    plan = plan_for({'pg1': stopped(timeline=1, wal_end='0/2000000'), 'pg2': primary()})
    assert plan['action'] == 'rewind' and plan['fork_lsn'] == '0/3000148'
    assert plan['diverged_bytes'] == 0 and plan['diverged_segments'] == []
    plan = plan_for({'pg1': stopped(timeline=1, wal_end='0/3000148'), 'pg2': primary()})
    assert plan['diverged_bytes'] == 0 and plan['diverged_segments'] == []


def test_a_host_whose_wal_end_is_unknown():
    plan = plan_for({'pg1': stopped(timeline=1, wal_end=None), 'pg2': primary()})
    assert plan['action'] == 'rewind' and plan['fork_lsn'] == '0/3000148'
    assert plan['diverged_bytes'] is None and plan['diverged_segments'] == [] and plan['host_end_lsn'] is None
    assert plan['reason'] == "pg1 forked from the primary's history at 0/3000148 on timeline 1; it holds an unknown number of bytes past it."


# Split brain: the host still runs as a primary next to the live one.

def test_split_brain_the_host_runs_as_a_primary_on_its_old_timeline():
    plan = plan_for({'pg1': primary(timeline=1, lsn='0/6000000'), 'pg2': primary(timeline=2), 'pg3': replica(streaming_tli=2)})
    assert plan['action'] == 'rewind' and plan['primary'] == 'pg2' and plan['host_running'] is True
    assert plan['fork_lsn'] == '0/3000148' and plan['host_end_lsn'] == '0/6000000'
    assert plan['diverged_bytes'] == 0x6000000 - 0x3000148
    assert plan['diverged_segments'] == ['000000010000000000000003', '000000010000000000000004', '000000010000000000000005']


def test_split_brain_on_the_same_timeline_needs_a_fresh_copy():
    """Two replicas promoted from timeline 1 are both on timeline 2: pg_rewind would see nothing to rewind."""
    states = {'pg1': primary(timeline=2, lsn='0/6000000'), 'pg2': primary(timeline=2, lsn='0/7000000')}
    plan = plan_for(states)
    assert_refused(plan, 'pg1 runs as a primary on timeline 2, as pg2 does: the histories forked on one timeline')
    assert plan['host_running'] is True
    assert plan_for(states, allow_reclone=True)['action'] == 'reclone'


# Invalid input.

@pytest.mark.parametrize('states, members, params, message', [
    ([], MEMBERS, None, 'states must be a dict of member name to node state'),
    ({'pg1': stopped(), 'pg2': primary()}, 'pg1,pg2', None, 'members must be a list of inventory host names'),
    ({'pg1': stopped(), 'pg2': primary()}, ['pg1', 'pg2', 'pg1'], None, 'members names pg1 twice'),
    ({'pg1': [], 'pg2': primary()}, MEMBERS, None, "states['pg1'] must be a dict"),
    ({'pg1': stopped(), 'pg2': primary()}, MEMBERS, 'allow_reclone', 'params must be a dict'),
    ({'pg1': stopped(), 'pg2': primary()}, MEMBERS, {'allow_reclone': 'perhaps'}, 'params.allow_reclone must be true or false'),
    ({'pg1': stopped(), 'pg2': primary()}, MEMBERS, {'history': 'x'}, 'timeline history line 1 is not'),
    ({'pg1': stopped(wal_end='nowhere'), 'pg2': primary()}, MEMBERS, {'history': HISTORY_2}, "'nowhere' is not an LSN"),
    ({'pg1': stopped(wal_segment_size=1000), 'pg2': primary()}, MEMBERS, {'history': HISTORY_2}, 'the WAL segment size must be'),
])
def test_invalid_input_raises_value_error(states, members, params, message):
    with pytest.raises(ValueError) as caught:
        rejoin_plan(states, members, 'pg1', params)
    assert str(caught.value).startswith(message)


def test_the_plan_does_not_change_the_states():
    states = {'pg1': stopped(), 'pg2': primary(), 'pg3': replica()}
    before = repr(states)
    plan_for(states)
    assert repr(states) == before


def test_the_lsns_of_the_plan_are_postgresqls():
    plan = plan_for({'pg1': stopped(timeline=1, wal_end='0/5000060'), 'pg2': primary()})
    assert parse_lsn(plan['host_end_lsn']) - parse_lsn(plan['fork_lsn']) == plan['diverged_bytes']


@pytest.mark.parametrize('primary_lsn, replica_lsn', [
    ('0/8342000', '0/8342018'),  # a page boundary: the standby counts the 24-byte page header that follows
    ('0/9000000', '0/9000028'),  # a segment boundary: the long header, 40 bytes
])
def test_a_standby_one_page_header_past_its_idle_primary_has_not_forked(primary_lsn, replica_lsn):
    """Seen on the lab: a rewound standby at 0/8342018 next to its idle primary at 0/8342000 is level with it."""
    plan = plan_for({'pg1': dict(replica(timeline=2), receive_lsn=replica_lsn, replay_lsn=replica_lsn),
                     'pg2': primary(lsn=primary_lsn)})
    assert plan['action'] == 'rewind' and plan['diverged_bytes'] == 0, plan


def test_a_standby_past_its_primary_within_a_page_has_forked():
    plan = plan_for({'pg1': dict(replica(timeline=2), receive_lsn='0/8342018', replay_lsn='0/8342018'),
                     'pg2': primary(lsn='0/8341F00')})
    assert plan['action'] == 'refuse' and 'forked on one timeline' in plan['reason'], plan
