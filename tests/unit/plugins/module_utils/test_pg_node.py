# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""pg_node: the pure parsers on recorded output, gather() with a fake runner, and gather() on real clusters.

The server tests make their own throwaway clusters (they crash them, which the shared
``postgresql_server`` must never be): a primary crashed after writing rows, whose WAL is then
damaged in each way a crash or a recycled segment leaves it; and a primary with a streaming
standby that is promoted and crashed before its first checkpoint.  The oracle of every WAL end
is PostgreSQL's own crash recovery on a copy of the data directory: where it writes its
end-of-recovery checkpoint, or which record it declares aborted (OVERWRITE_CONTRECORD).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from pg_server import ThrowawayServer, find_bindir
from ansible_collections.agent_ui.postgresql.plugins.module_utils import pg_node
from ansible_collections.agent_ui.postgresql.plugins.module_utils.pg_node import (
    NODE_KEYS, conninfo_host, controldata_facts, lsn_to_int, parse_controldata, parse_node_query, parse_waldump_end,
    parse_waldump_stop, record_end, running_facts, stopped_timeline, waldump_start,
)

# pg_controldata of PostgreSQL 15.x (Debian 12), a cluster stopped with pg_ctl -m immediate.
CONTROLDATA_15 = """\
pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7714408626570431828
Database cluster state:               in production
pg_control last modified:             Tue Dec  1 18:45:26 2026
Latest checkpoint location:           0/1500708
Latest checkpoint's REDO location:    0/1500708
Latest checkpoint's REDO WAL file:    000000010000000000000001
Latest checkpoint's TimeLineID:       1
Latest checkpoint's PrevTimeLineID:   1
Latest checkpoint's full_page_writes: on
Latest checkpoint's NextXID:          0:724
Latest checkpoint's NextOID:          13572
Latest checkpoint's NextMultiXactId:  1
Latest checkpoint's NextMultiOffset:  0
Latest checkpoint's oldestXID:        716
Latest checkpoint's oldestXID's DB:   1
Latest checkpoint's oldestActiveXID:  0
Latest checkpoint's oldestMultiXid:   1
Latest checkpoint's oldestMulti's DB: 1
Latest checkpoint's oldestCommitTsXid:0
Latest checkpoint's newestCommitTsXid:0
Time of latest checkpoint:            Tue Dec  1 18:45:26 2026
Fake LSN counter for unlogged rels:   0/3E8
Minimum recovery ending location:     0/0
Min recovery ending loc's timeline:   0
Backup start location:                0/0
Backup end location:                  0/0
End-of-backup record required:        no
wal_level setting:                    replica
wal_log_hints setting:                off
max_connections setting:              100
max_worker_processes setting:         8
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           64
track_commit_timestamp setting:       off
Maximum data alignment:               8
Database block size:                  8192
Blocks per segment of large relation: 131072
WAL block size:                       8192
Bytes per WAL segment:                16777216
Maximum length of identifiers:        64
Maximum columns in an index:          32
Maximum size of a TOAST chunk:        1996
Size of a large-object chunk:         2048
Date/time type storage:               64-bit integers
Float8 argument passing:              by value
Data page checksum version:           0
Mock authentication nonce:            734ae5a3e266de969ea6361d250d0b2590682f657ced2f838492db0325f261fe
"""

# pg_waldump -q stderr, recorded from PostgreSQL 15 by the server tests below (see test_waldump_*): each is
# (stderr, the LSN the valid WAL ends at or the page at which reading stopped, kind).
WALDUMP_15 = [
    ('pg_waldump: error: error in WAL record at 0/1566400: invalid record length at 0/1566428: wanted 24, got 0\n',
     '0/1566428', 'record'),
    ('pg_waldump: error: error in WAL record at 0/1566400: record with incorrect prev-link 0/15006C0 at 0/1566428\n',
     '0/1566428', 'record'),
    ('pg_waldump: error: error in WAL record at 0/1566400: invalid resource manager ID 100 at 0/1566428\n',
     '0/1566428', 'record'),
    ('pg_waldump: error: error in WAL record at 0/1566400: incorrect resource manager data checksum in record at '
     '0/1566428\n', '0/1566428', 'record'),
    ('pg_waldump: error: error in WAL record at 0/1563F70: invalid magic number 0000 in log segment '
     '000000010000000000000001, offset 5652480\n', '0/1564000', 'page'),
    ('pg_waldump: error: error in WAL record at 0/1563F70: unexpected pageaddr 0/564000 in log segment '
     '000000010000000000000001, offset 5652480\n', '0/1564000', 'page'),
    ('pg_waldump: error: error in WAL record at 0/1563F70: there is no contrecord flag at 0/1563FD0\n',
     '0/1563FD0', 'record'),
    ('pg_waldump: error: error in WAL record at 0/1563F70: invalid contrecord length 52 (expected 44) at 0/1563FD0\n',
     '0/1563FD0', 'record'),
    ('pg_waldump: error: could not find a valid record after 0/1566428\n', '0/1566428', 'start'),
]
# The same ends as PostgreSQL 16 and 17 word them (xlogreader.c's format strings: "expected at least", and the page
# errors name the page's LSN besides the segment and offset).
WALDUMP_16 = [
    ('pg_waldump: error: error in WAL record at 0/502EA30: invalid record length at 0/502EBC8: expected at least 24, '
     'got 0\n', '0/502EBC8', 'record'),
    ('pg_waldump: error: error in WAL record at 0/502EA30: invalid magic number 0000 in WAL segment '
     '000000010000000000000005, LSN 0/502E000, offset 188416\n', '0/502E000', 'page'),
    ('pg_waldump: error: error in WAL record at 0/502EA30: unexpected pageaddr 0/2030000 in WAL segment '
     '000000010000000000000005, LSN 0/5030000, offset 196608\n', '0/5030000', 'page'),
    ('pg_waldump: error: error in WAL record at 0/502EA30: invalid info bits 0004 in WAL segment '
     '000000020000000000000005, LSN 0/5030000, offset 196608\n', '0/5030000', 'page'),
    ('pg_waldump: error: error in WAL record at 0/502EA30: out-of-sequence timeline ID 1 (after 2) in WAL segment '
     '000000020000000000000005, LSN 0/5030000, offset 196608\n', '0/5030000', 'page'),
    ('pg_waldump: error: error in WAL record at 0/502EA30: record length 4294967295 at 0/502EBC8 too long\n',
     '0/502EBC8', 'record'),
]
# A missing segment (after a segment switch, the next one may not exist yet): recorded from PostgreSQL 15.
WALDUMP_MISSING = 'pg_waldump: error: could not find file "000000010000000000000002": No such file or directory\n'
# Errors that say nothing about where the WAL ends.
WALDUMP_UNKNOWN = [
    WALDUMP_MISSING,
    'pg_waldump: error: could not read file "000000010000000000000001": read 4096 of 8192\n',
    'pg_waldump: error: could not open directory "/var/lib/postgresql/15/main/pg_wal": Permission denied\n',
    '',
    None,
]


# ---------------------------------------------------------------------------
# Pure parsers
# ---------------------------------------------------------------------------

def test_parse_controldata_reads_every_line():
    fields = parse_controldata(CONTROLDATA_15)
    assert len(fields) == len(CONTROLDATA_15.splitlines())
    assert fields["Latest checkpoint's oldestCommitTsXid"] == '0'
    assert fields['pg_control last modified'] == 'Tue Dec  1 18:45:26 2026'
    assert fields["Latest checkpoint's NextXID"] == '0:724'


def test_controldata_facts():
    facts = controldata_facts(parse_controldata(CONTROLDATA_15))
    assert facts == {
        'system_identifier': '7714408626570431828', 'cluster_state': 'in production', 'checkpoint_lsn': '0/1500708',
        'redo_lsn': '0/1500708', 'checkpoint_timeline': 1, 'min_recovery_lsn': '0/0', 'min_recovery_timeline': 0,
        'wal_segment_size': 16777216, 'wal_block_size': 8192,
    }


def test_controldata_facts_of_nothing_are_unknown():
    assert set(controldata_facts({}).values()) == {None}


def promoted_facts(**changes):
    facts = controldata_facts(parse_controldata(CONTROLDATA_15))
    facts.update(changes)
    return facts


def test_stopped_timeline_follows_the_minimum_recovery_timeline():
    assert stopped_timeline(promoted_facts()) == 1
    assert stopped_timeline(promoted_facts(min_recovery_lsn='0/3000148', min_recovery_timeline=2)) == 2
    assert stopped_timeline(promoted_facts(checkpoint_timeline=3, min_recovery_timeline=2)) == 3
    assert stopped_timeline({}) is None


def test_waldump_start():
    assert waldump_start(promoted_facts()) == ('0/1500708', 1)
    # Promoted, not yet checkpointed: from the end-of-recovery record, on the new timeline.
    assert waldump_start(promoted_facts(min_recovery_lsn='0/3000148', min_recovery_timeline=2)) == ('0/3000148', 2)
    # A standby's minimum recovery point ahead of its restartpoint, same timeline: from the later point.
    assert waldump_start(promoted_facts(min_recovery_lsn='0/1600000', min_recovery_timeline=1)) == ('0/1600000', 1)
    assert waldump_start(promoted_facts(min_recovery_lsn='0/1400000', min_recovery_timeline=1)) == ('0/1500708', 1)
    assert waldump_start(promoted_facts(redo_lsn=None)) is None


@pytest.mark.parametrize('stderr, lsn, kind', WALDUMP_15 + WALDUMP_16)
def test_parse_waldump_end(stderr, lsn, kind):
    assert parse_waldump_end(stderr) == lsn
    stop = parse_waldump_stop(stderr)
    assert stop['kind'] == kind
    last = re.search(r'error in WAL record at (\S+):', stderr)
    assert stop['last_record'] == (last.group(1) if last else None)


@pytest.mark.parametrize('stderr', WALDUMP_UNKNOWN)
def test_parse_waldump_end_cannot_tell(stderr):
    assert parse_waldump_end(stderr) is None
    assert parse_waldump_stop(stderr) is None or stderr == WALDUMP_MISSING


def test_parse_waldump_stop_at_a_missing_segment():
    assert parse_waldump_stop(WALDUMP_MISSING) == {'lsn': '0/2000000', 'kind': 'missing', 'last_record': None}
    assert parse_waldump_stop(WALDUMP_MISSING, wal_segment_size=1 << 20)['lsn'] == '0/200000'


def test_parse_waldump_end_page_in_15_uses_the_segment_size():
    stderr = ('pg_waldump: error: error in WAL record at 0/3000060: invalid magic number 0000 in log segment '
              '000000010000000000000005, offset 8192\n')
    assert parse_waldump_end(stderr) == '0/5002000'
    assert parse_waldump_end(stderr, wal_segment_size=64 * 1024 * 1024) == '0/14002000'  # 5 x 64 MB + 8192


def test_parse_waldump_end_padded_lsns():
    assert parse_waldump_end('pg_waldump: error: error in WAL record at 0/01565510: invalid record length at '
                             '0/01565538: wanted 24, got 0') == '0/1565538'


LINE = ('rmgr: Heap        len (rec/tot):     92/    %d, tx:        725, lsn: %s, prev 0/015653F0, desc: INSERT off 119 '
        'flags 0x00, blkref #0: rel 1663/5/16384 blk 24')


@pytest.mark.parametrize('lsn, total, end', [
    ('0/01565450', 92, '0/15654B0'),            # in its page, 92 -> MAXALIGN 96
    ('0/01565510', 34, '0/1565538'),            # a commit: 34 -> 40
    ('0/01563FF8', 96, '0/1564070'),            # crosses into the next page: 8 bytes, then 24 of header, then 88
    ('0/01FFFFF8', 96, '0/2000080'),            # crosses into the next segment: its long header is 40 bytes
    ('0/01561000', 4096 + 100, '0/1562080'),     # from mid-page into the next: 4096, 24 of header, 100 -> 104
    ('0/01561000', 4096 + 8168 + 100, '0/1564080'),  # over three pages: two short headers
])
def test_record_end(lsn, total, end):
    assert record_end(LINE % (total, lsn)) == end


def test_record_end_of_a_switch_is_the_next_segment():
    line = ('rmgr: XLOG        len (rec/tot):     24/    24, tx:          0, lsn: 0/03000028, prev 0/03000000, '
            'desc: SWITCH ')
    assert record_end(line) == '0/4000000'
    assert record_end('pg_waldump: error: something else') is None
    assert record_end('') is None


@pytest.mark.parametrize('conninfo, host', [
    ("user=replicator password=secret host=pg1.example.com port=5432 sslmode=verify-full", 'pg1.example.com'),
    ("host = 10.0.0.1 port=5432", '10.0.0.1'),
    ("user=r password='it''s' host='pg 1' application_name=pg2", None),  # '' is not a libpq quote: unparsable
    (r"user=r password='a\'b host=x' host='pg\\one'", 'pg\\one'),
    ("passfile=/var/lib/postgresql/.pgpass host=/var/run/postgresql port=5433", '/var/run/postgresql'),
    ("hostaddr=192.0.2.7 port=5432", '192.0.2.7'),
    ("host=pg1,pg2 port=5432,5432", 'pg1,pg2'),
    ("postgresql://replicator:secret@pg1.example.com:5432/postgres?sslmode=verify-full", 'pg1.example.com'),
    ("postgres://[2001:db8::1]:5432", '2001:db8::1'),
    ("postgresql:///postgres?host=/var/run/postgresql", '/var/run/postgresql'),
    ("postgresql://pg1:5432,pg2:5433/postgres", 'pg1,pg2'),
    ("user=replicator port=5432", None),
    ("", None),
    (None, None),
])
def test_conninfo_host(conninfo, host):
    assert conninfo_host(conninfo) == host


def test_conninfo_host_never_returns_the_password():
    for conninfo in ("host='sec ret' password='sec ret'", "password=secret"):
        assert 'secret' not in (conninfo_host(conninfo) or '')


PRIMARY_ROW = {
    'server_version_num': 150018, 'in_recovery': False, 'system_identifier': '7714408626570431828',
    'checkpoint_lsn': '0/3000060', 'redo_lsn': '0/3000028', 'checkpoint_timeline': 1, 'min_recovery_timeline': 0,
    'current_walfile': '000000020000000000000003', 'current_lsn': '0/3000148', 'flush_lsn': '0/3000148',
    'receive_lsn': None, 'replay_lsn': None, 'replay_pause_state': None, 'last_replay_timestamp': None,
    'primary_conninfo': "user=replicator password=hunter2 host=pg1 port=5432", 'primary_slot_name': '',
    'synchronous_standby_names': 'ANY 1 (pg2, pg3)', 'wal_receiver': None,
    'replication': [{'application_name': 'pg2', 'client_addr': '10.0.0.2', 'state': 'streaming', 'sync_state': 'quorum',
                     'sent_lsn': '0/3000148', 'flush_lsn': '0/3000148', 'replay_lsn': '0/3000148', 'extra': 1}],
    'slots': [{'slot_name': 'pg2', 'slot_type': 'physical', 'active': True, 'restart_lsn': '0/3000148',
               'wal_status': 'reserved'}],
}


def test_running_facts_of_a_primary():
    facts = running_facts(parse_node_query(json.dumps(PRIMARY_ROW)))
    assert facts['timeline'] == 2  # from the current WAL file, not pg_control's lagging checkpoint timeline
    assert facts['checkpoint_timeline'] == 1
    assert facts['primary_conninfo_host'] == 'pg1'
    assert 'hunter2' not in json.dumps(facts)
    assert facts['primary_slot_name'] is None
    assert facts['replication'] == [dict((k, v) for k, v in PRIMARY_ROW['replication'][0].items() if k != 'extra')]
    assert facts['slots'] == PRIMARY_ROW['slots']
    assert facts['running'] is True and facts['in_recovery'] is False
    assert set(facts) <= set(NODE_KEYS)


def test_running_facts_of_a_standby():
    row = dict(PRIMARY_ROW, in_recovery=True, current_walfile=None, current_lsn=None, flush_lsn=None, checkpoint_timeline=2,
               min_recovery_timeline=3, replication=[], slots=[], primary_slot_name='pg2',
               wal_receiver={'status': 'streaming', 'sender_host': 'pg1', 'sender_port': 5432, 'received_tli': 4,
                             'latest_end_lsn': '0/3000148', 'slot_name': 'pg2'})
    facts = running_facts(row)
    assert facts['timeline'] == 4
    assert facts['wal_receiver']['received_tli'] == 4
    assert facts['primary_slot_name'] == 'pg2'
    row['wal_receiver'] = None
    assert running_facts(row)['timeline'] == 3


@pytest.mark.parametrize('stdout', ['', '[]', 'null', 'not json', '"text"'])
def test_parse_node_query_refuses_what_is_not_an_object(stdout):
    with pytest.raises(ValueError):
        parse_node_query(stdout)


def test_the_node_query_is_one_statement():
    assert pg_node.NODE_QUERY.count(';') == 0
    # json_build_object takes at most 100 arguments.
    top = re.findall(r"^  '([a-z_]+)',", pg_node.NODE_QUERY, re.M)
    assert len(top) * 2 <= 100 and len(top) == len(set(top))


# ---------------------------------------------------------------------------
# gather() with a fake runner
# ---------------------------------------------------------------------------

class FakeRunner(pg_node.Runner):
    """Answers by the command's name; records every call.  ``delay`` seconds per pg_isready."""

    def __init__(self, answers=None, delay=0, runuser=True):
        super(FakeRunner, self).__init__()
        self.answers = answers or {}
        self.delay = delay
        self.runuser = runuser
        self.calls = []
        self.lock = threading.Lock()

    def available(self, name):
        if name == 'ip':  # only when a test answers it
            return 'ip' in self.answers
        return self.runuser if name == 'runuser' else True

    def __call__(self, argv, timeout, user=None):
        with self.lock:
            self.calls.append((list(argv), user))
        name = os.path.basename(argv[0])
        if name == 'systemctl':
            name = 'systemctl ' + argv[1]
        if name == 'pg_isready' and self.delay:
            time.sleep(self.delay)
        answer = self.answers.get(name, (0, '', ''))
        return answer(argv) if callable(answer) else answer

    def names(self):
        return sorted(os.path.basename(argv[0]) for argv, _user in self.calls)


@pytest.fixture
def node_dirs(tmp_path):
    """A fake installation: bin/postgres and pg_isready, a data directory with PG_VERSION, a socket file."""
    bin_dir, data_dir, socket_dir = tmp_path / 'bin', tmp_path / 'data', tmp_path / 'run'
    for path in (bin_dir, data_dir, socket_dir):
        path.mkdir()
    for name in ('postgres', 'pg_isready', 'psql', 'pg_controldata'):
        (bin_dir / name).write_text('')
    (data_dir / 'PG_VERSION').write_text('15\n')
    (data_dir / 'pg_wal').mkdir()
    (data_dir / 'pg_wal' / '000000010000000000000001').write_text('')
    (socket_dir / '.s.PGSQL.5432').write_text('')
    return {'version': 15, 'bin_dir': str(bin_dir), 'data_dir': str(data_dir), 'socket_dir': str(socket_dir),
            'os_user': 'root', 'service': 'postgresql@15-main'}


SERVICE = {'systemctl is-active': (3, 'inactive\n', ''), 'systemctl is-enabled': (0, 'enabled\n', '')}


def test_gather_running_primary(node_dirs):
    runner = FakeRunner(dict(SERVICE, psql=(0, json.dumps(PRIMARY_ROW) + '\n', ''),
                             pg_controldata=(0, CONTROLDATA_15, '')))
    node = pg_node.gather(dict(node_dirs, wal_end=True), runner)
    assert list(node) == list(NODE_KEYS)
    assert node['running'] is True and node['installed'] is True and node['data'] is True
    assert node['timeline'] == 2 and node['system_identifier'] == PRIMARY_ROW['system_identifier']
    assert node['cluster_state'] == 'in production'
    assert node['wal_end_lsn'] is None  # only for a stopped cluster
    assert node['service_active'] == 'inactive' and node['service_enabled'] == 'enabled' and node['service_masked'] is False
    assert node['errors'] == []
    assert runner.names() == ['pg_controldata', 'psql', 'systemctl', 'systemctl']
    psql = [argv for argv, _user in runner.calls if argv[0].endswith('psql')][0]
    assert psql[:4] == [os.path.join(node_dirs['bin_dir'], 'psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1']
    assert all(user == 'root' for argv, user in runner.calls if not argv[0] == 'systemctl')


def test_gather_not_installed_runs_no_postgresql_tool(node_dirs):
    os.remove(os.path.join(node_dirs['bin_dir'], 'postgres'))
    shutil.rmtree(node_dirs['data_dir'])
    runner = FakeRunner({'systemctl is-active': (4, 'inactive\n', ''),
                         'systemctl is-enabled': (1, '', 'Failed to get unit file state: No such file or directory\n')},
                        runuser=False)
    node = pg_node.gather(dict(node_dirs, wal_end=True), runner)
    assert runner.names() == ['systemctl', 'systemctl']
    assert (node['installed'], node['data'], node['running'], node['placeholder'], node['standby_signal']) == (False, False, False, False, False)
    assert node['service_enabled'] is None and node['service_masked'] is None
    assert node['errors'] == ['systemctl is-enabled failed (1): Failed to get unit file state: No such file or directory']
    assert node['timeline'] is None and node['replication'] is None


def test_gather_down_without_socket_reads_pg_control(node_dirs):
    os.remove(os.path.join(node_dirs['socket_dir'], '.s.PGSQL.5432'))
    for name in ('standby.signal', pg_node.PLACEHOLDER_FILE):
        open(os.path.join(node_dirs['data_dir'], name), 'w').close()
    runner = FakeRunner(dict(SERVICE, pg_controldata=(0, CONTROLDATA_15.replace('in production', 'shut down in recovery'), '')))
    node = pg_node.gather(node_dirs, runner)
    assert runner.names() == ['pg_controldata', 'systemctl', 'systemctl']
    assert node['running'] is False and node['standby_signal'] is True and node['placeholder'] is True
    assert node['cluster_state'] == 'shut down in recovery'
    assert node['system_identifier'] == '7714408626570431828' and node['timeline'] == 1
    assert node['redo_lsn'] == '0/1500708' and node['checkpoint_lsn'] == '0/1500708'
    assert node['wal_end_lsn'] is None and node['errors'] == []


def test_gather_reports_what_fails(node_dirs):
    runner = FakeRunner(dict(SERVICE, psql=(2, '', 'psql: error: connection to server on socket "x" failed: Connection refused\n'),
                             pg_controldata=(1, '', 'pg_controldata: error: could not open file "global/pg_control"\n')))
    node = pg_node.gather(dict(node_dirs, wal_end=True), runner)
    assert node['running'] is False and node['timeline'] is None
    assert len(node['errors']) == 2
    assert node['errors'][0].startswith('pg_controldata failed (1): pg_controldata: error: could not open file')
    assert 'Connection refused' in node['errors'][1]


def test_gather_masked_service(node_dirs):
    runner = FakeRunner({'systemctl is-active': (3, 'inactive\n', ''), 'systemctl is-enabled': (1, 'masked\n', '')})
    assert pg_node.gather(node_dirs, runner)['service_masked'] is True


def test_gather_without_runuser_is_an_error(node_dirs):
    with pytest.raises(pg_node.NodeInfoError, match='runuser'):
        pg_node.gather(node_dirs, FakeRunner(SERVICE, runuser=False))


def test_gather_without_the_os_user_reports_it(node_dirs):
    runner = FakeRunner(SERVICE)
    node = pg_node.gather(dict(node_dirs, os_user='agent-ui-no-such-user'), runner)
    assert runner.names() == ['systemctl', 'systemctl']
    assert node['errors'] == ['the OS user agent-ui-no-such-user does not exist: PostgreSQL tools not run']


def test_peers_are_probed_concurrently(node_dirs):
    peers = [{'name': 'pg%d' % i, 'host': '192.0.2.%d' % i, 'port': 5432 + i} for i in range(1, 4)]
    runner = FakeRunner(dict(SERVICE, pg_isready=lambda argv: (0 if argv[argv.index('-h') + 1].endswith('.1') else 2, '', '')),
                        delay=1.0)
    started = time.monotonic()
    node = pg_node.gather(dict(node_dirs, peers=peers, probe_timeout=3), runner)
    assert time.monotonic() - started < 2.0  # three 1 s probes at once, not one after the other
    assert node['peers_ready'] == {'pg1': 0, 'pg2': 2, 'pg3': 2}
    probe = [argv for argv, _user in runner.calls if argv[0].endswith('pg_isready')]
    assert sorted(probe)[1][1:] == ['-q', '-h', '192.0.2.2', '-p', '5434', '-t', '3']


def test_peers_without_pg_isready(node_dirs, monkeypatch):
    os.remove(os.path.join(node_dirs['bin_dir'], 'pg_isready'))
    monkeypatch.setattr(pg_node.shutil, 'which', lambda name, **kwargs: None)
    node = pg_node.gather(dict(node_dirs, peers=[{'name': 'pg2', 'host': 'pg2', 'port': 5432}]), FakeRunner(SERVICE))
    assert node['peers_ready'] == {'pg2': None}
    assert any('pg_isready was not found' in error for error in node['errors'])


def test_wal_end_narrows_a_page_error_to_the_last_record(node_dirs):
    """A torn record: the page error names the page, the last valid record's end is the WAL end."""
    os.remove(os.path.join(node_dirs['socket_dir'], '.s.PGSQL.5432'))
    page_error = WALDUMP_15[4][0]
    assert '0/1563F70' in page_error

    def waldump(argv):
        # Each call names the segment of its start point: pg_waldump must not take the segment size from whichever
        # file it lists first (a preallocated segment of zeros fails it).
        if '-q' in argv:
            assert argv[argv.index('-s') + 1] == '0/1500708' and argv[argv.index('-t') + 1] == '1'
            assert argv[-2:] == ['000000010000000000000001', '000000010000000000000001']
            return 1, '', page_error
        assert argv[argv.index('-s') + 1] == '0/1563F70' and argv[argv.index('-n') + 1] == '1'
        assert argv[-2:] == ['000000010000000000000001', '000000010000000000000001']
        return 0, LINE % (92, '0/01563F70') + '\n', ''
    runner = FakeRunner(dict(SERVICE, pg_controldata=(0, CONTROLDATA_15, ''), pg_waldump=waldump))
    node = pg_node.gather(dict(node_dirs, wal_end=True), runner)
    assert node['wal_end_lsn'] == '0/1563FD0' and node['errors'] == []
    assert pg_node.gather(dict(node_dirs, wal_end=False), runner)['wal_end_lsn'] is None


def test_wal_end_unknown_is_an_error(node_dirs):
    os.remove(os.path.join(node_dirs['socket_dir'], '.s.PGSQL.5432'))
    runner = FakeRunner(dict(SERVICE, pg_controldata=(0, CONTROLDATA_15, ''), pg_waldump=(1, '', WALDUMP_UNKNOWN[1])))
    node = pg_node.gather(dict(node_dirs, wal_end=True), runner)
    assert node['wal_end_lsn'] is None
    assert node['errors'] == ['pg_waldump from 0/1500708 on timeline 1 did not say where the WAL ends (1): ' + WALDUMP_UNKNOWN[1].strip()]


@pytest.mark.parametrize('listing, end, error', [
    # The segment before the missing one ends with a segment switch: the WAL ends at the segment's start.
    ('rmgr: XLOG        len (rec/tot):     24/    24, tx:          0, lsn: 0/01FFE0A0, prev 0/01FFE068, desc: SWITCH \n',
     '0/2000000', False),
    # It ends with a record that was to continue in the missing segment: the WAL ends before that record.
    (LINE % (92, '0/01FFFF00') + '\n', '0/1FFFF60', False),
    # No record listed: the segment's start is only an upper bound.
    ('', '0/2000000', True),
])
def test_wal_end_at_a_missing_segment(node_dirs, listing, end, error):
    os.remove(os.path.join(node_dirs['socket_dir'], '.s.PGSQL.5432'))

    def waldump(argv):
        assert argv[argv.index('-e') + 1] == '0/2000000'  # never past the last segment file
        if '-q' in argv:
            return 0, '', ''
        assert argv[argv.index('-s') + 1] == '0/1500708' and '-n' not in argv  # the start, in the segment before
        return 0, listing, ''
    runner = FakeRunner(dict(SERVICE, pg_controldata=(0, CONTROLDATA_15, ''), pg_waldump=waldump))
    node = pg_node.gather(dict(node_dirs, wal_end=True), runner)
    assert node['wal_end_lsn'] == end
    assert bool(node['errors']) == error, node['errors']


def test_wal_end_when_the_start_segment_is_missing(node_dirs):
    os.remove(os.path.join(node_dirs['socket_dir'], '.s.PGSQL.5432'))
    os.rename(os.path.join(node_dirs['data_dir'], 'pg_wal', '000000010000000000000001'),
              os.path.join(node_dirs['data_dir'], 'pg_wal', '000000010000000000000002'))
    runner = FakeRunner(dict(SERVICE, pg_controldata=(0, CONTROLDATA_15, '')))
    node = pg_node.gather(dict(node_dirs, wal_end=True), runner)
    assert node['wal_end_lsn'] is None and 'pg_waldump' not in runner.names()
    assert node['errors'] == ['the WAL segment 000000010000000000000001 of the start point 0/1500708 is missing: WAL end unknown']


def test_resolve_defaults():
    config = pg_node.resolve({'version': 16, 'cluster_name': 'app'})
    assert config['data_dir'] == '/var/lib/postgresql/16/app' and config['bin_dir'] == '/usr/lib/postgresql/16/bin'
    assert config['service'] == 'postgresql@16-app' and config['socket_dir'] == '/var/run/postgresql'
    assert config['db_user'] == 'postgres'


def test_runner_reports_a_missing_command_and_a_timeout():
    runner = pg_node.Runner()
    rc, _out, err = runner(['/nonexistent/agent-ui-tool'], 5)
    assert rc is None and 'cannot run /nonexistent/agent-ui-tool' in err
    rc, _out, err = runner(['sleep', '5'], 0.2)
    assert rc is None and 'did not finish within' in err
    rc, out, _err = runner(['sh', '-c', 'echo $LC_ALL ${PGHOST:-none}'], 5)
    assert (rc, out) == (0, 'C none\n')


# ---------------------------------------------------------------------------
# Real clusters
# ---------------------------------------------------------------------------

BINDIR = find_bindir()


def needs_server(test):
    """Marked ``server`` (these tests start their own clusters), skipped without server binaries."""
    return pytest.mark.server(pytest.mark.skipif(BINDIR is None, reason='no PostgreSQL server binaries (initdb) found')(test))


RUN_USER = 'nobody' if os.geteuid() == 0 else None
SETTINGS = [('fsync', 'off'), ('shared_buffers', "'16MB'"), ('max_connections', '10'), ('restart_after_crash', 'off')]
PAGE = 8192
SEGMENT = 16 * 1024 * 1024


def as_run_user(argv):
    return ['runuser', '-u', RUN_USER, '--'] + list(argv) if RUN_USER else list(argv)


def tool(name, *args):
    proc = subprocess.run(as_run_user([os.path.join(BINDIR, name)] + list(args)), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, cwd='/', env=dict(os.environ, LC_ALL='C'), check=False)
    return proc


def workdir():
    """A directory the cluster's OS user owns (tmp_path is root's 0700)."""
    path = tempfile.mkdtemp(prefix='agent-ui-pgnode-')
    os.chmod(path, 0o755)
    if RUN_USER:
        subprocess.check_call(['chown', RUN_USER, path])
    return path


def node_params(data_dir, socket_dir, **extra):
    params = {'version': 15, 'data_dir': data_dir, 'bin_dir': BINDIR, 'socket_dir': socket_dir, 'port': 5432,
              'os_user': RUN_USER, 'db_user': 'postgres'}
    params.update(extra)
    return params


def copy_data(data_dir):
    """A copy of a stopped cluster's data directory, owned as the original."""
    base = workdir()
    subprocess.check_call(['cp', '-a', data_dir, os.path.join(base, 'data')])
    return base, os.path.join(base, 'data')


def start(data_dir, socket_dir, log):
    proc = tool('pg_ctl', '-D', data_dir, '-l', log, '-w', '-t', '60', '-o', "-k %s -c listen_addresses=''" % socket_dir, 'start')
    assert proc.returncode == 0, proc.stdout + proc.stderr + open(log).read()


def stop(data_dir, mode='fast'):
    proc = tool('pg_ctl', '-D', data_dir, '-m', mode, '-w', 'stop')
    assert proc.returncode == 0, proc.stdout + proc.stderr


def sql(socket_dir, query):
    import psycopg2
    conn = psycopg2.connect(host=socket_dir, port=5432, user='postgres', dbname='postgres')
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(query)
        return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def recovery_oracle(data_dir):
    """Crash recovery of a copy, by PostgreSQL itself: where it ended the WAL (the redo of its end-of-recovery
    checkpoint) and, for a torn record, the record it declared aborted (its OVERWRITE_CONTRECORD record)."""
    base, copy = copy_data(data_dir)
    try:
        start(copy, base, os.path.join(base, 'log'))
        (redo, walfile), = sql(base, 'SELECT redo_lsn::text, pg_walfile_name(redo_lsn) FROM pg_control_checkpoint()')
        stop(copy)
        listing = tool('pg_waldump', '-p', os.path.join(copy, 'pg_wal'), '-t', str(int(walfile[:8], 16)), '-r', 'XLOG',
                       '-s', pg_node.format_lsn(lsn_to_int(redo) - lsn_to_int(redo) % PAGE - 2 * PAGE), '-e', redo).stdout
        aborted = re.search(r'OVERWRITE_CONTRECORD lsn ([0-9A-F]+/[0-9A-F]+)', listing)
        return {'redo': redo, 'aborted': aborted.group(1) if aborted else None, 'timeline': int(walfile[:8], 16)}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def segment_path(data_dir, lsn, tli=1):
    return os.path.join(data_dir, 'pg_wal', '%08X%08X%08X' % (tli, lsn >> 32, (lsn & 0xFFFFFFFF) // SEGMENT))


def write_wal(data_dir, lsn, data):
    with open(segment_path(data_dir, lsn), 'r+b') as handle:
        handle.seek(lsn % SEGMENT)
        handle.write(data)


def read_wal(data_dir, lsn, size):
    with open(segment_path(data_dir, lsn), 'rb') as handle:
        handle.seek(lsn % SEGMENT)
        return handle.read(size)


def records(data_dir, start_lsn, tli=1):
    """(start, start of the next) of every record pg_waldump lists from ``start_lsn``, as integers."""
    out = tool('pg_waldump', '-p', os.path.join(data_dir, 'pg_wal'), '-t', str(tli), '-s', start_lsn).stdout
    starts = [lsn_to_int(lsn) for lsn in re.findall(r', lsn: ([0-9A-F]+/[0-9A-F]+), prev', out)]
    return list(zip(starts, starts[1:]))


@pytest.fixture(scope='module')
def crashed_primary():
    """A primary that wrote rows and was stopped with -m immediate: its data directory and pg_control's facts."""
    if BINDIR is None:
        pytest.skip('no PostgreSQL server binaries (initdb) found')
    server = ThrowawayServer(BINDIR, SETTINGS, run_user=RUN_USER or 'nobody', prefix='agent-ui-pgnode-', stop_mode='immediate')
    server.start()
    try:
        server.query('postgres', 'CREATE TABLE t (a int, b text)')
        server.query('postgres', "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 3000) g")
        # End in the first half of a page, so the stale-bytes tests have room after the end.
        for _attempt in range(500):
            (offset,), = server.query('postgres', "SELECT (pg_current_wal_insert_lsn() - '0/0') %% %d" % PAGE)[0:1]
            if 1000 < int(offset) < 4000:
                break
            server.query('postgres', "INSERT INTO t VALUES (0, 'x')")
        stop(server.data, 'immediate')
        server.started = False
        facts = controldata_facts(parse_controldata(tool('pg_controldata', server.data).stdout))
        yield server, facts
    finally:
        server.stop()


@pytest.fixture
def damaged(crashed_primary):
    """A copy of the crashed primary's data directory, to damage; removed after the test."""
    server, facts = crashed_primary
    base, data = copy_data(server.data)
    yield data, facts
    shutil.rmtree(base, ignore_errors=True)


def gather_stopped(data_dir):
    node = pg_node.gather(node_params(data_dir, os.path.dirname(data_dir), wal_end=True, service='agent-ui-no-such.service'))
    assert node['running'] is False
    return node


def header_size(lsn):
    return 40 if lsn % SEGMENT == 0 else 24


def assert_recovery_ends_at(data_dir, end):
    """PostgreSQL's crash recovery ends its WAL at ``end`` (its checkpoint follows, past a page header at a page start)."""
    redo = lsn_to_int(recovery_oracle(data_dir)['redo'])
    end = lsn_to_int(end)
    assert redo == end or (end % PAGE == 0 and redo == end + header_size(end)), (pg_node.format_lsn(redo), pg_node.format_lsn(end))


@needs_server
def test_waldump_end_of_a_crash(damaged):
    data, facts = damaged
    proc = tool('pg_waldump', '-q', '-p', os.path.join(data, 'pg_wal'), '-s', facts['redo_lsn'], '-t', '1')
    assert proc.returncode == 1 and proc.stdout == ''
    assert re.match(r'^pg_waldump: error: error in WAL record at \S+: invalid record length at \S+: '
                    r'(wanted|expected at least) 24, got 0$', proc.stderr.strip()), proc.stderr
    end = parse_waldump_end(proc.stderr)
    assert gather_stopped(data)['wal_end_lsn'] == end
    assert_recovery_ends_at(data, end)
    # From the end itself there is no record left to find.
    proc = tool('pg_waldump', '-q', '-p', os.path.join(data, 'pg_wal'), '-s', end, '-t', '1')
    assert parse_waldump_stop(proc.stderr) == {'lsn': end, 'kind': 'start', 'last_record': None}, proc.stderr


def end_of_crash(data, facts):
    proc = tool('pg_waldump', '-q', '-p', os.path.join(data, 'pg_wal'), '-s', facts['redo_lsn'], '-t', '1')
    return lsn_to_int(parse_waldump_end(proc.stderr))


@needs_server
@pytest.mark.parametrize('damage, message', [
    ('prev-link', 'record with incorrect prev-link'),
    ('rmgr', 'invalid resource manager ID 100'),
    ('checksum', 'incorrect resource manager data checksum'),
])
def test_waldump_end_of_stale_bytes(damaged, damage, message):
    """Bytes left past the end (a recycled segment's old records): the WAL still ends where recovery ends it."""
    data, facts = damaged
    end = end_of_crash(data, facts)
    _before, last = records(data, facts['redo_lsn'])[-1]  # the last record's start
    assert end % PAGE + 200 < PAGE and last // PAGE == end // PAGE, 'the last record should sit inside one page'
    old = read_wal(data, lsn_to_int(facts['redo_lsn']), 24)  # the header of the checkpoint record at the REDO point
    if damage == 'prev-link':
        stale = old
    elif damage == 'rmgr':
        stale = old[:17] + bytes([100]) + old[18:]  # neither built in (< 22) nor custom (128-255)
    else:  # the last record again, its prev-link made right: only its checksum can tell
        stale = read_wal(data, last, end - last)
        stale = stale[:8] + struct.pack('<Q', last) + stale[16:]
    write_wal(data, end, stale)
    proc = tool('pg_waldump', '-q', '-p', os.path.join(data, 'pg_wal'), '-s', facts['redo_lsn'], '-t', '1')
    assert message in proc.stderr, proc.stderr
    assert parse_waldump_stop(proc.stderr)['kind'] == 'record'
    assert lsn_to_int(parse_waldump_end(proc.stderr)) == end
    assert lsn_to_int(gather_stopped(data)['wal_end_lsn']) == end
    assert_recovery_ends_at(data, pg_node.format_lsn(end))


def torn_record(data, facts):
    """The last record that runs from one page into the next: (its start, the next page's address)."""
    crossing = [(first, second) for first, second in records(data, facts['redo_lsn'])
                if first // PAGE != second // PAGE and second % PAGE > 24 + 8]
    first, _second = crossing[-1]
    return first, (first // PAGE + 1) * PAGE


@needs_server
@pytest.mark.parametrize('damage, message, kind', [
    ('zeroed', 'invalid magic number 0000', 'page'),
    ('recycled', 'unexpected pageaddr', 'page'),
    ('no contrecord', 'there is no contrecord flag', 'record'),
    ('contrecord length', 'invalid contrecord length', 'record'),
])
def test_waldump_end_of_a_torn_record(damaged, damage, message, kind):
    """The crash wrote the first page of a record but not the next: valid WAL ends where that record starts."""
    data, facts = damaged
    torn, page = torn_record(data, facts)
    header = read_wal(data, page, 24)
    magic, info, tli, pageaddr, rem_len = struct.unpack('<HHIQI', header[:20])
    assert pageaddr == page and info & 1, 'the next page holds the rest of the record'
    write_wal(data, page, bytes(SEGMENT - page % SEGMENT))  # nothing from that page on reached the disk
    if damage == 'recycled':
        write_wal(data, page, struct.pack('<HHIQI', magic, info, tli, page - SEGMENT, rem_len))
    elif damage == 'no contrecord':
        write_wal(data, page, struct.pack('<HHIQI', magic, info & ~1, tli, pageaddr, rem_len))
    elif damage == 'contrecord length':
        write_wal(data, page, struct.pack('<HHIQI', magic, info, tli, pageaddr, rem_len + 8))
    proc = tool('pg_waldump', '-q', '-p', os.path.join(data, 'pg_wal'), '-s', facts['redo_lsn'], '-t', '1')
    assert message in proc.stderr, proc.stderr
    stop_at = parse_waldump_stop(proc.stderr)
    assert stop_at['kind'] == kind
    assert lsn_to_int(stop_at['lsn']) == (page if kind == 'page' else torn)
    node = gather_stopped(data)
    assert lsn_to_int(node['wal_end_lsn']) == torn, node
    assert all('pg_waldump' not in error for error in node['errors']), node['errors']
    oracle = recovery_oracle(data)
    assert oracle['aborted'] is not None and lsn_to_int(oracle['aborted']) == torn, oracle
    assert lsn_to_int(oracle['redo']) > page


@needs_server
def test_waldump_end_after_a_segment_switch():
    """pg_switch_wal() then a crash: the WAL ends at the next segment's start (the switch record fills its segment)."""
    server = ThrowawayServer(BINDIR, SETTINGS, run_user=RUN_USER or 'nobody', prefix='agent-ui-pgnode-', stop_mode='immediate')
    server.start()
    try:
        server.query('postgres', 'CREATE TABLE t AS SELECT 1 AS a')
        (switched,), = server.query('postgres', 'SELECT pg_switch_wal()::text')
        stop(server.data, 'immediate')
        server.started = False
        node = gather_stopped(server.data)
        next_segment = (lsn_to_int(switched) // SEGMENT + 1) * SEGMENT
        # The next segment is not created yet (or is zeroed): either way the switch record's end is the WAL's end.
        assert lsn_to_int(node['wal_end_lsn']) == next_segment, node
        assert node['errors'] == [error for error in node['errors'] if error.startswith('systemctl')]
        assert_recovery_ends_at(server.data, node['wal_end_lsn'])
    finally:
        server.stop()


@needs_server
def test_waldump_end_with_recycled_and_zeroed_segments_in_pg_wal():
    """A primary's pg_wal holds segments past the one being written (recycled at checkpoints, or zero-filled), as on
    any busy server. The WAL end is still found: pg_waldump is told its first and last segment files, so it neither
    reads the segment size from a file of zeros nor refuses an end point outside the first file."""
    server = ThrowawayServer(BINDIR, SETTINGS, run_user=RUN_USER or 'nobody', prefix='agent-ui-pgnode-', stop_mode='immediate')
    server.start()
    try:
        server.query('postgres', 'CREATE TABLE t (a int)')
        server.query('postgres', 'CHECKPOINT')
        server.query('postgres', 'INSERT INTO t SELECT generate_series(1, 1000)')
        (written,), = server.query('postgres', 'SELECT pg_current_wal_insert_lsn()::text')
        stop(server.data, 'immediate')
        server.started = False
        pg_wal = os.path.join(server.data, 'pg_wal')
        current = pg_node.segment_name(written, 1, SEGMENT)
        owner = os.stat(os.path.join(pg_wal, current))
        # Future segments: two of zeros, as preallocated, named after the current one.
        for step in (3, 7):
            name = '%s%08X' % (current[:16], int(current[16:], 16) + step)
            with open(os.path.join(pg_wal, name), 'wb') as handle:
                handle.truncate(SEGMENT)
            os.chown(os.path.join(pg_wal, name), owner.st_uid, owner.st_gid)
        node = gather_stopped(server.data)
        assert node['wal_end_lsn'] is not None, node['errors']
        assert lsn_to_int(node['wal_end_lsn']) >= lsn_to_int(written), node
        assert_recovery_ends_at(server.data, node['wal_end_lsn'])
    finally:
        server.stop()


def checkpointer_pid(socket_dir):
    (pid,), = sql(socket_dir, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
    return pid


def wait_stopped(data_dir, seconds=30):
    deadline = time.monotonic() + seconds
    while os.path.exists(os.path.join(data_dir, 'postmaster.pid')):
        assert time.monotonic() < deadline, 'the server did not stop'
        time.sleep(0.05)


@pytest.fixture(scope='module')
def replication_pair():
    """A primary and a standby streaming from it through a slot, both on Unix sockets only."""
    if BINDIR is None:
        pytest.skip('no PostgreSQL server binaries (initdb) found')
    primary = ThrowawayServer(BINDIR, SETTINGS, run_user=RUN_USER or 'nobody', prefix='agent-ui-pgnode-', stop_mode='immediate')
    primary.start()
    base = workdir()
    standby = os.path.join(base, 'data')
    try:
        proc = tool('pg_basebackup', '-D', standby, '-h', primary.socket_dir, '-p', '5432', '-U', 'postgres', '-R',
                    '-X', 'stream', '-C', '-S', 'pg2', '-c', 'fast')
        assert proc.returncode == 0, proc.stderr
        with open(os.path.join(standby, 'postgresql.auto.conf'), 'a') as handle:
            handle.write("primary_conninfo = 'user=postgres password=''not-shown'' host=%s port=5432 application_name=pg2'\n"
                         % primary.socket_dir)
        start(standby, base, os.path.join(base, 'log'))
        deadline = time.monotonic() + 30
        while not primary.query('postgres', "SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'"):
            assert time.monotonic() < deadline, 'the standby did not stream'
            time.sleep(0.1)
        yield primary, standby, base
    finally:
        if os.path.exists(os.path.join(standby, 'postmaster.pid')):
            tool('pg_ctl', '-D', standby, '-m', 'immediate', '-w', 'stop')
        shutil.rmtree(base, ignore_errors=True)
        primary.stop()


@needs_server
def test_gather_live_primary_and_standby(replication_pair):
    primary, standby, base = replication_pair
    primary.query('postgres', 'CREATE TABLE IF NOT EXISTS t (a int)')
    node = pg_node.gather(node_params(primary.data, primary.socket_dir, wal_end=True))
    assert list(node) == list(NODE_KEYS)
    assert node['running'] is True and node['in_recovery'] is False and node['timeline'] == 1
    assert node['server_version_num'] >= 150000
    assert node['current_lsn'] and node['flush_lsn'] and node['receive_lsn'] is None
    assert [(r['application_name'], r['state']) for r in node['replication']] == [('pg2', 'streaming')]
    assert [(s['slot_name'], s['slot_type'], s['active']) for s in node['slots']] == [('pg2', 'physical', True)]
    assert node['wal_end_lsn'] is None and node['cluster_state'] == 'in production'
    (sysid,), = primary.query('postgres', 'SELECT system_identifier::text FROM pg_control_system()')
    assert node['system_identifier'] == sysid

    replica = pg_node.gather(node_params(standby, base))
    assert replica['running'] is True and replica['in_recovery'] is True and replica['standby_signal'] is True
    assert replica['system_identifier'] == sysid and replica['timeline'] == 1
    assert replica['cluster_state'] == 'in archive recovery'
    assert replica['primary_conninfo_host'] == primary.socket_dir and replica['primary_slot_name'] == 'pg2'
    assert 'not-shown' not in json.dumps(replica)
    assert replica['wal_receiver']['status'] == 'streaming' and replica['wal_receiver']['slot_name'] == 'pg2'
    assert replica['wal_receiver']['sender_host'] == primary.socket_dir and replica['wal_receiver']['received_tli'] == 1
    assert replica['replay_pause_state'] == 'not paused' and replica['receive_lsn'] and replica['replay_lsn']
    assert replica['current_lsn'] is None and replica['replication'] == []


@needs_server
def test_gather_promoted_then_crashed_before_its_checkpoint(replication_pair):
    """The timeline after a promotion: from the WAL file while running, from pg_control's minimum recovery
    timeline once crashed (its checkpoint timeline still says 1), and the WAL end on the new timeline."""
    primary, standby, base = replication_pair
    primary.query('postgres', 'CREATE TABLE IF NOT EXISTS t (a int)')
    primary.query('postgres', 'INSERT INTO t SELECT generate_series(1, 100)')
    os.kill(checkpointer_pid(base), signal.SIGSTOP)  # no checkpoint after the promotion
    proc = tool('pg_ctl', '-D', standby, '-w', 'promote')
    assert proc.returncode == 0, proc.stderr
    sql(base, 'INSERT INTO t SELECT generate_series(1, 100)')
    running = pg_node.gather(node_params(standby, base))
    assert running['in_recovery'] is False and running['timeline'] == 2 and running['checkpoint_timeline'] == 1
    (current,), = sql(base, 'SELECT pg_current_wal_lsn()::text')
    os.kill(checkpointer_pid(base), signal.SIGKILL)  # restart_after_crash=off: the postmaster ends everything
    wait_stopped(standby)

    node = pg_node.gather(node_params(standby, base, wal_end=True))
    assert node['running'] is False and node['checkpoint_timeline'] == 1 and node['timeline'] == 2
    assert lsn_to_int(node['wal_end_lsn']) >= lsn_to_int(current)
    oracle = recovery_oracle(standby)
    assert oracle['timeline'] == 2
    assert_recovery_ends_at(standby, node['wal_end_lsn'])


@needs_server
def test_a_missing_segment_after_the_last_one_costs_pg_waldump_no_wait(crashed_primary):
    """pg_waldump retries a missing segment for 5 s: gather() never lets it reach one."""
    server, facts = crashed_primary
    started = time.monotonic()
    proc = tool('pg_waldump', '-q', '-p', os.path.join(server.data, 'pg_wal'), '-s', '0/9000000', '-t', '1')
    assert time.monotonic() - started > 4 and WALDUMP_MISSING.replace('2"', '9"') == proc.stderr
    started = time.monotonic()
    assert gather_stopped(server.data)['wal_end_lsn'] and time.monotonic() - started < 2


IP_ADDR = """\
2: eth0    inet 10.89.0.7/24 brd 10.89.0.255 scope global eth0\\       valid_lft forever preferred_lft forever
3: eth1    inet 192.168.5.2/16 brd 192.168.255.255 scope global eth1\\       valid_lft forever preferred_lft forever
"""


def test_parse_ip_addresses():
    assert pg_node.parse_ip_addresses(IP_ADDR) == ['10.89.0.7', '192.168.5.2']
    assert pg_node.parse_ip_addresses('') == []


def test_gather_reports_the_hosts_addresses_and_segment_size(node_dirs):
    runner = FakeRunner(dict(SERVICE, ip=(0, IP_ADDR, ''), psql=(0, json.dumps(PRIMARY_ROW) + '\n', ''),
                             pg_controldata=(0, CONTROLDATA_15, '')))
    node = pg_node.gather(dict(node_dirs), runner)
    assert node['addresses'] == ['10.89.0.7', '192.168.5.2']
    assert node['wal_segment_size'] == 16 * 1024 * 1024
