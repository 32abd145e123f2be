# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""roles/postgresql/files/pg_start_guard.py, imported by path: the decision, its parser, its config, main() end to end.

The network part (query_peer) and pg_controldata are monkeypatched, except in the last tests,
which run the guard's own pg_controldata call and its replication query against real clusters.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import REPO
from pg_server import ThrowawayServer, find_bindir

GUARD_PATH = REPO / 'roles' / 'postgresql' / 'files' / 'pg_start_guard.py'
SPEC = importlib.util.spec_from_file_location('pg_start_guard', str(GUARD_PATH))
guard = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(guard)

SYSID = '7714408626570431828'
OTHER = '7714408626570439999'
REJOIN = 'ansible-playbook playbooks/rejoin.yml -e rejoin_host=pg1'
OWN = {'standby_signal': False, 'system_identifier': SYSID, 'timeline': 3}


def peer(name, role='standby', timeline=3, sysid=SYSID):
    if role == 'down':
        return {'name': name, 'error': 'connection to server at "10.0.0.2", port 5432 failed: timeout expired'}
    return {'name': name, 'error': None, 'system_identifier': sysid, 'timeline': timeline, 'in_hot_standby': role == 'standby'}


# ---------------------------------------------------------------------------
# decide()
# ---------------------------------------------------------------------------

def test_a_standby_starts_at_once():
    allow, message = guard.decide({'standby_signal': True}, [peer('pg2', 'primary', 9)], 'pg1')
    assert allow is True and 'standby' in message


def test_a_peer_primary_refuses():
    allow, message = guard.decide(OWN, [peer('pg2', 'primary', 3), peer('pg3')], 'pg1')
    assert allow is False
    assert 'peer pg2 is a running primary of this cluster (timeline 3)' in message and 'two primaries' in message
    assert message.splitlines()[-1].endswith(REJOIN)


def test_a_peer_primary_on_an_older_timeline_still_refuses():
    assert guard.decide(OWN, [peer('pg2', 'primary', 1)], 'pg1')[0] is False


def test_a_standby_on_a_later_timeline_refuses():
    allow, message = guard.decide(OWN, [peer('pg2', 'down'), peer('pg3', 'standby', 4)], 'pg1')
    assert allow is False
    assert "peer pg3 is a standby on timeline 4, later than this node's timeline 3" in message
    assert 'failed over' in message and 'peer pg2 did not answer' in message
    assert REJOIN in message


def test_standbys_on_the_same_timeline_allow():
    allow, message = guard.decide(OWN, [peer('pg2'), peer('pg3', timeline=2)], 'pg1')
    assert allow is True and 'WARNING' not in message
    assert 'pg2: standby on timeline 3' in message and 'pg3: standby on timeline 2' in message


def test_another_cluster_is_ignored():
    allow, message = guard.decide(OWN, [peer('old', 'primary', 9, OTHER), peer('pg2')], 'pg1')
    assert allow is True
    assert "peer old ignored: its system identifier %s is not this cluster's (%s)" % (OTHER, SYSID) in message


def test_only_another_cluster_answering_is_no_check():
    allow, message = guard.decide(OWN, [peer('old', 'primary', 9, OTHER)], 'pg1')
    assert allow is True and 'WARNING' in message and 'cannot tell an isolated node' in message


def test_no_peer_answering_allows_with_a_warning():
    allow, message = guard.decide(OWN, [peer('pg2', 'down'), peer('pg3', 'down')], 'pg1')
    assert allow is True
    assert 'WARNING: allowed without a check' in message and 'cannot tell an isolated node from a whole cluster' in message
    assert message.count('did not answer') == 2
    assert guard.decide(OWN, [], 'pg1')[0] is True


def test_a_peer_that_is_up_but_cannot_be_asked_refuses():
    """A member whose address changed is refused by the others' pg_hba.conf: they are up, and one may be a primary."""
    refused = dict(peer('pg2', 'down'), error='FATAL: pg_hba.conf rejects replication connection', up=True)
    allow, message = guard.decide(OWN, [refused, peer('pg3', 'down')], 'pg1')
    assert allow is False
    assert 'REFUSED: peer pg2 runs but the guard could not ask it' in message and 'pg3 did not answer' in message
    assert 'rejoin.yml -e rejoin_host=pg1' in message
    # The same peer with nothing on its port is down: alone, the node may start (with the warning).
    assert guard.decide(OWN, [dict(refused, up=False), peer('pg3', 'down')], 'pg1')[0] is True


def test_a_peer_that_fails_the_query_is_probed_with_pg_isready(tmp_path, monkeypatch):
    config = guard.load_config(write_config(tmp_path, base_config(tmp_path)))

    def refused(config, item):
        raise RuntimeError('FATAL: refused')
    monkeypatch.setattr(guard, 'query_peer', refused)
    probed = []
    monkeypatch.setattr(guard, 'peer_is_up', lambda config, item: probed.append(item['name']) or item['name'] == 'pg2')
    results = dict((result['name'], result) for result in guard.query_peers(config))
    assert sorted(probed) == sorted(results) and results['pg2']['up'] is True
    assert all(result['up'] is False for name, result in results.items() if name != 'pg2')


def test_peer_is_up_reads_pg_isready(tmp_path):
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    script = bindir / 'pg_isready'
    config = {'bin_dir': str(bindir), 'connect_timeout': 1}
    for code, up in ((0, True), (1, True), (2, False), (3, False)):
        script.write_text('#!/bin/sh\nexit %d\n' % code)
        script.chmod(0o755)
        assert guard.peer_is_up(config, {'host': 'pg2', 'port': 5432}) is up
    script.unlink()
    assert guard.peer_is_up(config, {'host': 'pg2', 'port': 5432}) is False


ROLES = ['down', 'standby-same', 'standby-older', 'standby-later', 'primary', 'foreign-primary', 'foreign-later']


def make(name, kind):
    return {'down': lambda: peer(name, 'down'), 'standby-same': lambda: peer(name), 'standby-older': lambda: peer(name, timeline=2),
            'standby-later': lambda: peer(name, timeline=4), 'primary': lambda: peer(name, 'primary'),
            'foreign-primary': lambda: peer(name, 'primary', 3, OTHER),
            'foreign-later': lambda: peer(name, 'standby', 7, OTHER)}[kind]()


@pytest.mark.parametrize('kinds', list(itertools.product(ROLES, repeat=2)), ids='-'.join)
def test_every_mix_of_two_peers(kinds):
    """The rule, written independently: refuse iff a same-cluster peer is a primary or a standby on a later timeline."""
    peers = [make('pg%d' % (index + 2), kind) for index, kind in enumerate(kinds)]
    allow, message = guard.decide(OWN, peers, 'pg1')
    assert allow is not any(kind in ('primary', 'standby-later') for kind in kinds)
    same_answered = any(kind.startswith('standby') or kind == 'primary' for kind in kinds)
    assert ('WARNING' in message) is (allow and not same_answered)
    assert (REJOIN in message) is (not allow or 'WARNING' in message)
    for kind, item in zip(kinds, peers):
        if kind.startswith('foreign'):
            assert 'peer %s ignored' % item['name'] in message


# ---------------------------------------------------------------------------
# pg_controldata
# ---------------------------------------------------------------------------

CONTROLDATA = """pg_control version number:            1300
Database system identifier:           7714408626570431828
Database cluster state:               shut down
Latest checkpoint location:           0/3000060
Latest checkpoint's TimeLineID:       2
Latest checkpoint's oldestCommitTsXid:0
Minimum recovery ending location:     0/0
Min recovery ending loc's timeline:   0
"""


def test_parse_controldata():
    fields = guard.parse_controldata(CONTROLDATA)
    assert fields['Database system identifier'] == SYSID and fields["Latest checkpoint's oldestCommitTsXid"] == '0'
    assert guard.own_state(fields) == {'standby_signal': False, 'system_identifier': SYSID, 'timeline': 2}


def test_own_timeline_after_a_promotion_before_its_checkpoint():
    fields = guard.parse_controldata(CONTROLDATA.replace("loc's timeline:   0", "loc's timeline:   3"))
    assert guard.own_state(fields)['timeline'] == 3


@pytest.mark.parametrize('text', ['', 'garbage', CONTROLDATA.replace(SYSID, ''),
                                  CONTROLDATA.replace("TimeLineID:       2", "TimeLineID:       x").replace("timeline:   0", "")])
def test_own_state_needs_sysid_and_timeline(text):
    with pytest.raises(guard.GuardError):
        guard.own_state(guard.parse_controldata(text))


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

def base_config(data_dir):
    return {'data_dir': str(data_dir), 'bin_dir': '/usr/lib/postgresql/17/bin', 'self': 'pg1',
            'peers': [{'name': 'pg1', 'host': '10.0.0.1', 'port': 5432}, {'name': 'pg2', 'host': '10.0.0.2', 'port': 5432},
                      {'name': 'pg3', 'host': '10.0.0.3'}],
            'user': 'replicator', 'passfile': '/var/lib/postgresql/.pgpass', 'sslrootcert': '/etc/ssl/ca.pem'}


def write_config(tmp_path, config):
    path = tmp_path / 'start_guard.json'
    path.write_text(json.dumps(config) if not isinstance(config, str) else config)
    return str(path)


def test_load_config_defaults(tmp_path):
    config = guard.load_config(write_config(tmp_path, base_config(tmp_path)))
    assert config['connect_timeout'] == 2 and config['sslmode'] == 'verify-full' and config['peers'][2]['port'] == 5432


@pytest.mark.parametrize('change, words', [
    (lambda c: c.pop('peers'), 'peers is missing'),
    (lambda c: c.pop('self'), 'self is missing'),
    (lambda c: c.update(user=''), 'user must be a non-empty string'),
    (lambda c: c.update(peers={'pg2': 'x'}), 'peers must be a list'),
    (lambda c: c['peers'].append('pg4'), 'peers[3] must be an object'),
    (lambda c: c['peers'][1].pop('host'), 'peers[1].host must be a non-empty string'),
    (lambda c: c['peers'][1].update(port='5432'), 'peers[1].port must be a port number'),
    (lambda c: c.update(connect_timeout=0), 'connect_timeout must be'),
    (lambda c: c.update(connect_timeout=True), 'connect_timeout must be'),
    (lambda c: c.update(sslmode='verify'), 'sslmode must be one of'),
])
def test_invalid_config(tmp_path, change, words):
    config = base_config(tmp_path)
    change(config)
    with pytest.raises(guard.ConfigError, match='is invalid: .*' + words.replace('[', r'\[').replace(']', r'\]')):
        guard.load_config(write_config(tmp_path, config))


@pytest.mark.parametrize('content, words', [
    (None, 'cannot read the configuration'),
    ('{"data_dir": ', 'is not valid JSON'),
    ('[1, 2]', 'is not a JSON object'),
])
def test_unreadable_config(tmp_path, content, words):
    path = str(tmp_path / 'missing.json') if content is None else write_config(tmp_path, content)
    with pytest.raises(guard.ConfigError, match=words):
        guard.load_config(path)


# ---------------------------------------------------------------------------
# main() end to end, the network monkeypatched
# ---------------------------------------------------------------------------

@pytest.fixture
def fake_host(monkeypatch, tmp_path):
    """pg_controldata answers CONTROLDATA; each peer answers what ``answers`` holds for its name (an exception is raised)."""
    answers = {}
    asked = []

    def query_peer(config, item):
        asked.append(item['name'])
        answer = answers[item['name']]
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)
    monkeypatch.setattr(guard, 'query_peer', query_peer)
    monkeypatch.setattr(guard, 'read_controldata', lambda config: guard.parse_controldata(CONTROLDATA))
    return answers, asked


def run_main(tmp_path, capsys, config=None):
    path = write_config(tmp_path, config if config is not None else base_config(tmp_path))
    code = guard.main(['--config', path])
    err = capsys.readouterr().err
    assert err and all(line.startswith('pg_start_guard: ') for line in err.splitlines()), err
    return code, err


def standby(timeline):
    return {'system_identifier': SYSID, 'timeline': timeline, 'in_hot_standby': True}


def test_main_allows_with_standbys_on_the_same_timeline(tmp_path, capsys, fake_host):
    answers, asked = fake_host
    answers.update(pg2=standby(2), pg3=standby(2))
    code, err = run_main(tmp_path, capsys)
    assert code == 0 and sorted(asked) == ['pg2', 'pg3']  # never itself
    assert 'pg1 would start as a primary: system identifier %s, timeline 2; asking 2 peer(s)' % SYSID in err
    assert 'allowed: pg1 starts as a primary on timeline 2' in err


def test_main_refuses_next_to_a_primary(tmp_path, capsys, fake_host):
    answers, _asked = fake_host
    answers.update(pg2=dict(standby(2), in_hot_standby=False), pg3=RuntimeError('timeout expired'))
    code, err = run_main(tmp_path, capsys)
    assert code == 1
    assert 'REFUSED: peer pg2 is a running primary' in err and 'peer pg3 did not answer: timeout expired' in err
    assert err.strip().endswith(REJOIN)


def test_main_refuses_after_a_failover(tmp_path, capsys, fake_host):
    answers, _asked = fake_host
    answers.update(pg2=RuntimeError('could not connect'), pg3=standby(3))
    code, err = run_main(tmp_path, capsys)
    assert code == 1 and 'peer pg3 is a standby on timeline 3, later than this node\'s timeline 2' in err


def test_main_warns_when_alone(tmp_path, capsys, fake_host):
    answers, _asked = fake_host
    answers.update(pg2=RuntimeError('no route to host'), pg3=ImportError('No module named psycopg2'))
    code, err = run_main(tmp_path, capsys)
    assert code == 0 and 'WARNING: allowed without a check' in err and 'No module named psycopg2' in err


@pytest.mark.parametrize('name', ['standby.signal', 'recovery.signal'])
def test_main_standby_needs_no_network(tmp_path, capsys, fake_host, monkeypatch, name):
    monkeypatch.setattr(guard, 'read_controldata', lambda config: pytest.fail('pg_controldata run for a standby'))
    (tmp_path / name).write_text('')
    code, err = run_main(tmp_path, capsys)
    assert code == 0 and 'starts as a standby' in err and fake_host[1] == []


def test_main_refuses_on_a_bad_config(tmp_path, capsys, fake_host):
    config = base_config(tmp_path)
    del config['user']
    code, err = run_main(tmp_path, capsys, config)
    assert code == 1 and 'REFUSED: the configuration' in err and 'user is missing' in err and 're-run site.yml' in err
    code, err = run_main(tmp_path, capsys, '')
    assert code == 1 and 'is not valid JSON' in err
    assert fake_host[1] == []


def test_main_refuses_when_pg_controldata_fails(tmp_path, capsys, monkeypatch):
    config = dict(base_config(tmp_path), bin_dir=str(tmp_path / 'no-bin'))
    code, err = run_main(tmp_path, capsys, config)
    assert code == 1 and 'REFUSED: cannot run' in err and 'pg_controldata' in err


def test_the_passfile_is_never_read(tmp_path, capsys, fake_host, monkeypatch):
    """The guard passes the passfile's path to libpq; it never opens it, so it can never print it."""
    answers, _asked = fake_host
    answers.update(pg2=standby(2), pg3=standby(2))
    passfile = tmp_path / 'pgpass'
    passfile.write_text('*:*:*:replicator:s3cret-password\n')
    config = dict(base_config(tmp_path), passfile=str(passfile))
    real_open = open
    opened = []
    monkeypatch.setattr('builtins.open', lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    code, err = run_main(tmp_path, capsys, config)
    assert code == 0 and str(passfile) not in opened and 's3cret' not in err


def test_peers_are_asked_at_once(tmp_path, monkeypatch):
    def slow(config, item):
        time.sleep(1)
        return standby(2)
    monkeypatch.setattr(guard, 'query_peer', slow)
    config = guard.load_config(write_config(tmp_path, dict(base_config(tmp_path), peers=[
        {'name': 'pg%d' % i, 'host': '10.0.0.%d' % i} for i in range(2, 6)])))
    started = time.monotonic()
    results = guard.query_peers(config)
    assert time.monotonic() - started < 2
    assert [result['name'] for result in results] == ['pg2', 'pg3', 'pg4', 'pg5']
    assert all(result['error'] is None and result['timeline'] == 2 for result in results)


def test_a_peer_that_hangs_counts_as_not_answering(tmp_path, monkeypatch):
    monkeypatch.setattr(guard, 'QUERY_GRACE', 0)
    monkeypatch.setattr(guard, 'query_peer', lambda config, item: time.sleep(5))
    config = guard.load_config(write_config(tmp_path, dict(base_config(tmp_path), connect_timeout=1)))
    started = time.monotonic()
    results = guard.query_peers(config)
    assert time.monotonic() - started < 3
    assert [result['error'] for result in results] == ['no answer within 1 s'] * 2


# ---------------------------------------------------------------------------
# Against real clusters: the guard's own pg_controldata call and replication query
# ---------------------------------------------------------------------------

BINDIR = find_bindir()
RUN_USER = 'nobody' if os.geteuid() == 0 else None


@pytest.fixture(scope='module')
def live_primary():
    if BINDIR is None:
        pytest.skip('no PostgreSQL server binaries (initdb) found')
    server = ThrowawayServer(BINDIR, [('fsync', 'off'), ('shared_buffers', "'16MB'")], run_user=RUN_USER or 'nobody',
                             prefix='agent-ui-guard-')
    server.start()
    yield server
    server.stop()


@pytest.mark.server
def test_query_peer_against_a_live_primary(live_primary):
    """IDENTIFY_SYSTEM and SHOW in_hot_standby over a physical replication connection (Unix socket, no TLS)."""
    (sysid,), = live_primary.query('postgres', 'SELECT system_identifier::text FROM pg_control_system()')
    config = {'user': 'postgres', 'sslmode': 'disable', 'sslrootcert': '/nonexistent/ca.pem',
              'passfile': '/nonexistent/pgpass', 'connect_timeout': 2}
    state = guard.query_peer(config, {'name': 'pg2', 'host': live_primary.socket_dir, 'port': live_primary.port})
    assert state == {'system_identifier': sysid, 'timeline': 1, 'in_hot_standby': False}


@pytest.mark.server
def test_main_against_a_live_cluster(live_primary, tmp_path, capsys):
    """A copy of the running primary's data directory would start next to it: refused, for real."""
    base = tempfile.mkdtemp(prefix='agent-ui-guard-')
    try:
        os.chmod(base, 0o755)
        live_primary.query('postgres', 'CHECKPOINT')
        copy = os.path.join(base, 'data')
        subprocess.check_call(['cp', '-a', live_primary.data, copy])
        config = {'data_dir': copy, 'bin_dir': BINDIR, 'self': 'pg1', 'user': 'postgres', 'passfile': '/nonexistent/pgpass',
                  'sslrootcert': '/nonexistent/ca.pem', 'sslmode': 'disable',
                  'peers': [{'name': 'pg2', 'host': live_primary.socket_dir, 'port': live_primary.port},
                            {'name': 'pg3', 'host': '/nonexistent-socket-dir', 'port': 5432}]}
        code, err = run_main(tmp_path, capsys, config)
        assert code == 1 and 'REFUSED: peer pg2 is a running primary of this cluster (timeline 1)' in err, err
        assert 'peer pg3 did not answer' in err and REJOIN in err
    finally:
        shutil.rmtree(base, ignore_errors=True)
