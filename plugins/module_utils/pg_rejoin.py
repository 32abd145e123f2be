# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The decision of rejoin.yml: how a member that left the cluster becomes a replica of the live primary again.

Pure: it reads the node states of the probe (see pg_cluster.py) and the primary's timeline history file, and returns a
plan.  It finds where the member's history forked from the primary's, how much WAL the member wrote past that point
(WAL no replica received: what the failover lost), and which WAL segment files hold it, so that the playbook can save
them before pg_rewind throws them away.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from collections.abc import Mapping

from ansible_collections.agent_ui.postgresql.plugins.module_utils.pg_cluster import _flag, _mapping, _members, _view, format_lsn, parse_lsn

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
SEGMENT_SIZE_RANGE = (1024 * 1024, 1024 * 1024 * 1024)  # PostgreSQL's WalSegMinSize and WalSegMaxSize


def parse_timeline_history(text):
    """[(timeline, switchpoint LSN int)] from a timeline history file (pg_wal/<TLI>.history).

    Each line is "<parent timeline> <switchpoint> <reason>", tab separated; the parent timeline ended at the switchpoint.
    Blank lines and lines starting with # are skipped, as PostgreSQL does.
    """
    entries = []
    for number, line in enumerate((text or '').splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith('#'):
            continue
        fields = stripped.split(None, 2)
        try:
            if len(fields) < 2 or not fields[0].isdigit():
                raise ValueError(line)
            entries.append((int(fields[0]), parse_lsn(fields[1])))
        except ValueError:
            raise ValueError('timeline history line %d is not "<timeline> <switchpoint> <reason>": %r' % (number, line)) from None
    return entries


def wal_segments(timeline, start, end, segment_size=DEFAULT_SEGMENT_SIZE):
    """Names of the WAL segment files of ``timeline`` that hold the bytes [start, end) (ints); [] when end <= start."""
    low, high = SEGMENT_SIZE_RANGE
    if not isinstance(segment_size, int) or isinstance(segment_size, bool) or not low <= segment_size <= high \
            or segment_size & (segment_size - 1):
        raise ValueError('the WAL segment size must be a power of two from 1MB to 1GB, as in PostgreSQL, got %r' % (segment_size,))
    if end <= start:
        return []
    per_id = 0x100000000 // segment_size
    first, last = start // segment_size, (end - 1) // segment_size
    return ['%08X%08X%08X' % (timeline, segno // per_id, segno % per_id) for segno in range(first, last + 1)]


def _lsn(value):
    return None if value in (None, '') else parse_lsn(value)


def _live_primary(state):
    """Reachable, running and not in recovery; never the role's placeholder, which holds nothing of the cluster."""
    return bool(state.get('reachable') and state.get('running') and state.get('in_recovery') is False and not state.get('placeholder'))


def _position(state):
    """Where a member's WAL ends: the WAL end read from pg_wal when it is down, else its current position."""
    if not state.get('running'):
        return _lsn(state.get('wal_end_lsn'))
    if state.get('in_recovery'):
        known = [lsn for lsn in (_lsn(state.get('receive_lsn')), _lsn(state.get('replay_lsn'))) if lsn is not None]
        return max(known) if known else None
    return _lsn(state.get('current_lsn'))


def _page_header(lsn, state):
    """Bytes a standby's position may stand past its primary's: at a page boundary the primary reports the boundary,
    its standby the end of the page header that follows (24 bytes; 40 at the start of a segment)."""
    segment_size = int(state.get('wal_segment_size') or DEFAULT_SEGMENT_SIZE)
    if lsn % segment_size == 0:
        return 40
    return 24 if lsn % 8192 == 0 else 0


def rejoin_plan(states, members, host, params=None):
    """Plan bringing ``host`` back as a replica of the live primary.

    params: ``history`` (the text of the primary's current timeline history file, '' on timeline 1) and
    ``allow_reclone``.  Returns {action: 'rewind' | 'reclone' | 'none' | 'refuse', reason, host, primary,
    primary_timeline, host_timeline, fork_lsn, host_end_lsn, diverged_bytes, diverged_segments, host_running}.
    """
    params = _mapping(params if params is not None else {}, 'params')
    if not isinstance(states, Mapping):
        raise ValueError('states must be a dict of member name to node state')
    members = _members(members)
    states = _view(states, members)
    allow_reclone = _flag(params.get('allow_reclone'), 'params.allow_reclone')
    plan = {'action': 'refuse', 'reason': '', 'host': host, 'primary': None, 'primary_timeline': None, 'host_timeline': None,
            'fork_lsn': None, 'host_end_lsn': None, 'diverged_bytes': 0, 'diverged_segments': [], 'host_running': False}

    def refuse(reason):
        plan.update(action='refuse', reason=reason)
        return plan

    if host not in members:
        return refuse('%s is not a member of the cluster (%s).' % (host, ', '.join(members)))
    state = states[host]
    if not state.get('reachable'):
        return refuse('%s cannot be reached: bring the host back first.' % host)
    primaries = [m for m in members if m != host and _live_primary(states[m])]
    if _live_primary(state) and not primaries:
        return refuse('%s is the primary of the cluster; to make another member the primary, use switchover.yml.' % host)
    if not primaries:
        return refuse('no live primary to rejoin: no other member runs as a primary. Run failover.yml first.')
    if len(primaries) > 1:
        return refuse('%s are all running as primaries: keep the one the application writes to, stop the others by hand '
                      '(systemctl stop postgresql), then rejoin them one by one.' % ', '.join(primaries))
    primary = primaries[0]
    primary_state = states[primary]
    plan.update(primary=primary, primary_timeline=primary_state.get('timeline'), host_running=bool(state.get('running')))

    def reclone(why):
        if allow_reclone:
            plan.update(action='reclone', reason='%s; allow_reclone: pg_basebackup copies %s anew.' % (why, primary))
            return plan
        return refuse('%s. Run again with -e allow_reclone=true to replace its data with a fresh copy of %s.' % (why, primary))

    if not state.get('data') or state.get('placeholder'):
        return reclone('%s holds no data (site.yml builds new replicas)' % host)
    if state.get('system_identifier') != primary_state.get('system_identifier'):
        return reclone('%s holds another cluster (system identifier %s, the primary has %s)'
                       % (host, state.get('system_identifier'), primary_state.get('system_identifier')))

    timeline = state.get('timeline') or state.get('checkpoint_timeline')
    plan['host_timeline'] = timeline
    receiver = state.get('wal_receiver') or {}
    if state.get('running') and state.get('in_recovery') and receiver.get('status') == 'streaming' \
            and receiver.get('received_tli') == primary_state.get('timeline'):
        plan.update(action='none', reason='%s already streams from the primary on timeline %s.' % (host, primary_state.get('timeline')))
        return plan

    end = _position(state)
    plan['host_end_lsn'] = None if end is None else format_lsn(end)
    history = dict(parse_timeline_history(params.get('history')))
    if timeline is not None and timeline == primary_state.get('timeline'):
        # One timeline has one history: a follower is never ahead of its primary, and a second primary on the same
        # timeline forked from it where pg_rewind cannot see it (it finds nothing to rewind), so only a fresh copy is safe.
        primary_end = _position(primary_state)
        if _live_primary(state):
            forked = '%s runs as a primary on timeline %s, as %s does' % (host, timeline, primary)
        elif end is not None and primary_end is not None and end > primary_end + _page_header(primary_end, state):
            forked = '%s\'s WAL goes to %s on timeline %s, past the primary\'s %s' % (host, format_lsn(end), timeline, format_lsn(primary_end))
        else:
            forked = None
        if forked:
            plan['diverged_bytes'] = None
            return reclone('%s: the histories forked on one timeline, where pg_rewind finds nothing to rewind' % forked)
        plan.update(action='rewind', reason='%s is on the primary\'s timeline %s: it only needs to follow it again.' % (host, timeline))
        return plan
    if timeline not in history:
        plan.update(action='rewind', diverged_bytes=None,
                    reason='timeline %s of %s is not in the primary\'s history: pg_rewind finds the common point.' % (timeline, host))
        return plan
    fork = history[timeline]
    plan['fork_lsn'] = format_lsn(fork)
    diverged = 0 if end is None else max(0, end - fork)
    plan['diverged_bytes'] = diverged if end is not None else None
    segment_size = int(state.get('wal_segment_size') or DEFAULT_SEGMENT_SIZE)
    plan['diverged_segments'] = wal_segments(timeline, fork, end, segment_size) if end is not None else []
    plan.update(action='rewind', reason='%s forked from the primary\'s history at %s on timeline %s; it holds %s bytes past it.'
                % (host, format_lsn(fork), timeline, 'an unknown number of' if end is None else diverged))
    return plan
