# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""pg_start_guard: a crashed primary never comes back as a primary by itself.

The postgresql role installs this file on every host and runs it as the postgres OS user,
as an ``ExecStartPre`` of the cluster's systemd unit::

    /usr/bin/python3 pg_start_guard.py --config /etc/postgresql/<v>/<cluster>/start_guard.json

* A node with ``standby.signal`` (or ``recovery.signal``) starts as a standby: allowed at
  once, without touching the network.
* Otherwise the node would start as a primary.  It reads its own system identifier and
  timeline with ``pg_controldata``, and asks every peer over a physical replication
  connection (``IDENTIFY_SYSTEM`` and ``SHOW in_hot_standby``, all peers at once).  Peers of
  another cluster (another system identifier) are ignored.  The start is refused when a
  peer of this cluster is a primary (two primaries must never run), or is a standby on a
  later timeline than this node's (this node was failed over, and the new primary may be
  down right now).  When no peer of the cluster answers, the start is allowed with a
  warning: the guard cannot tell an isolated node from a whole cluster restarting.

Every decision is written to stderr (journald keeps it), each line starting with
``pg_start_guard:``.  Exit 0 allows the start, 1 refuses it; a missing or invalid
configuration refuses it too, with a message saying so.  The replication password is only
in the passfile, which libpq reads: this script never reads it, and never prints it.

The script stands alone (python3, its standard library and python3-psycopg2): it shares no
code with the collection's module_utils, since it is copied to hosts by itself.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import re
import subprocess
import sys
import threading

PREFIX = 'pg_start_guard: '
SSLMODES = ('disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full')
REQUIRED = ('data_dir', 'bin_dir', 'self', 'peers', 'user', 'passfile', 'sslrootcert')
SIGNAL_FILES = ('standby.signal', 'recovery.signal')
# Seconds, beyond connect_timeout, that a peer's two commands may take before it counts as not answering.
QUERY_GRACE = 5


class GuardError(Exception):
    """The guard cannot decide (unreadable pg_control): the start is refused."""


class ConfigError(GuardError):
    """The configuration file is missing or invalid: the start is refused."""


def log(message):
    """Write each line of ``message`` to stderr, prefixed."""
    for line in str(message).splitlines() or ['']:
        sys.stderr.write(PREFIX + line + '\n')
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

def load_config(path):
    """The configuration file as a checked dict, with the defaults; raises GuardError on anything wrong."""
    try:
        with open(path) as handle:
            config = json.load(handle)
    except (IOError, OSError) as exc:
        raise ConfigError('cannot read the configuration %s: %s' % (path, exc.strerror or exc))
    except ValueError as exc:
        raise ConfigError('the configuration %s is not valid JSON: %s' % (path, exc))
    if not isinstance(config, dict):
        raise ConfigError('the configuration %s is not a JSON object' % path)
    problems = []
    for key in REQUIRED:
        if key not in config:
            problems.append('%s is missing' % key)
    for key in ('data_dir', 'bin_dir', 'self', 'user', 'passfile', 'sslrootcert'):
        if key in config and not (isinstance(config[key], str) and config[key]):
            problems.append('%s must be a non-empty string' % key)
    config.setdefault('connect_timeout', 2)
    config.setdefault('sslmode', 'verify-full')
    timeout = config['connect_timeout']
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        problems.append('connect_timeout must be a whole number of seconds, at least 1')
    if config['sslmode'] not in SSLMODES:
        problems.append('sslmode must be one of %s' % ', '.join(SSLMODES))
    peers = config.get('peers')
    if 'peers' in config and not isinstance(peers, list):
        problems.append('peers must be a list')
    for index, peer in enumerate(peers if isinstance(peers, list) else []):
        if not isinstance(peer, dict):
            problems.append('peers[%d] must be an object' % index)
            continue
        for key in ('name', 'host'):
            if not (isinstance(peer.get(key), str) and peer.get(key)):
                problems.append('peers[%d].%s must be a non-empty string' % (index, key))
        port = peer.setdefault('port', 5432)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            problems.append('peers[%d].port must be a port number' % index)
    if problems:
        raise ConfigError('the configuration %s is invalid: %s' % (path, '; '.join(problems)))
    return config


# ---------------------------------------------------------------------------
# This node
# ---------------------------------------------------------------------------

def parse_controldata(text):
    """pg_controldata's output (C locale) as a dict of label to value."""
    fields = {}
    for line in text.splitlines():
        label, sep, value = line.partition(':')
        if sep:
            fields[label.strip()] = value.strip()
    return fields


def own_state(fields):
    """This node's system identifier and timeline from pg_controldata's fields; raises GuardError if absent.

    The timeline is the larger of the checkpoint's and the minimum recovery point's: a
    promotion records its new timeline in the latter at once, and the checkpoint's follows
    only when the next checkpoint ends, so a node promoted and then crashed before that
    checkpoint is on the new timeline (its crash recovery follows it).
    """
    sysid = fields.get('Database system identifier', '')
    timelines = []
    for label in ("Latest checkpoint's TimeLineID", "Min recovery ending loc's timeline"):
        value = fields.get(label, '')
        if re.match(r'^[0-9]+$', value):
            timelines.append(int(value))
    if not re.match(r'^[0-9]+$', sysid) or not timelines or max(timelines) < 1:
        raise GuardError('pg_controldata did not give the system identifier and timeline')
    return {'standby_signal': False, 'system_identifier': sysid, 'timeline': max(timelines)}


def read_controldata(config):
    """Run ``<bin_dir>/pg_controldata <data_dir>`` and return its fields; raises GuardError if it fails."""
    argv = [os.path.join(config['bin_dir'], 'pg_controldata'), config['data_dir']]
    env = dict(os.environ, LC_ALL='C', LANG='C')
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GuardError('cannot run %s: %s' % (argv[0], exc))
    if proc.returncode != 0:
        raise GuardError('%s failed (%d): %s' % (argv[0], proc.returncode, proc.stderr.strip()))
    return parse_controldata(proc.stdout)


def signal_file(data_dir):
    """The standby.signal or recovery.signal in ``data_dir``, or None."""
    for name in SIGNAL_FILES:
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path
    return None


# ---------------------------------------------------------------------------
# The peers
# ---------------------------------------------------------------------------

def query_peer(config, peer):
    """Ask one peer over a physical replication connection: {system_identifier, timeline, in_hot_standby}.

    Raises any error (psycopg2's, or ImportError); :func:`query_peers` records it.
    """
    import psycopg2  # python3-psycopg2 on the hosts; imported here so that the decision can be tested without it
    conn = psycopg2.connect(host=peer['host'], port=peer['port'], user=config['user'], dbname='replication',
                            replication='true', sslmode=config['sslmode'], sslrootcert=config['sslrootcert'],
                            passfile=config['passfile'], connect_timeout=config['connect_timeout'],
                            application_name='pg_start_guard')
    try:
        conn.autocommit = True  # otherwise psycopg2 sends BEGIN, which a walsender refuses
        cur = conn.cursor()
        cur.execute('IDENTIFY_SYSTEM')
        systemid, timeline = cur.fetchone()[:2]
        cur.execute('SHOW in_hot_standby')
        hot_standby = cur.fetchone()[0]
    finally:
        conn.close()
    return {'system_identifier': str(systemid), 'timeline': int(timeline), 'in_hot_standby': hot_standby == 'on'}


def peer_is_up(config, peer):
    """Whether a server answers on the peer's port at all (pg_isready: accepting, or starting up / shutting down).

    A peer that refuses the guard's login (pg_hba.conf, a password) is up all the same, and may be a primary.
    """
    command = [os.path.join(config['bin_dir'], 'pg_isready'), '-q', '-h', str(peer['host']), '-p', str(peer['port']),
               '-t', str(config['connect_timeout'])]
    try:
        return subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=config['connect_timeout'] + QUERY_GRACE, check=False).returncode in (0, 1)
    except (OSError, subprocess.SubprocessError):
        return False


def query_peers(config):
    """Every peer but this node, asked at once: a list of dicts with name, error (None if it answered) and its state.

    A peer that did not answer the query but whose port answers pg_isready gets ``up: True``.
    """
    peers = [peer for peer in config['peers'] if peer['name'] != config['self']]
    results = [{'name': peer['name'], 'error': 'no answer within %d s' % (config['connect_timeout'] + QUERY_GRACE)}
               for peer in peers]

    def ask(index, peer):
        try:
            state = query_peer(config, peer)
        except Exception as exc:  # any failure is a peer that did not answer; the reason is logged
            results[index] = {'name': peer['name'], 'error': (' '.join(str(exc).split()) or type(exc).__name__),
                              'up': peer_is_up(config, peer)}
        else:
            state.update(name=peer['name'], error=None)
            results[index] = state
    threads = [threading.Thread(target=ask, args=(index, peer)) for index, peer in enumerate(peers)]
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join(config['connect_timeout'] + QUERY_GRACE)
    return [dict(result) for result in results]


# ---------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------

def decide(own, peers, self_name='this node'):
    """(allow, message): may this node start?

    ``own``: {standby_signal, system_identifier, timeline}.  ``peers``: dicts of name, error
    (None when the peer answered), up (it did not answer the query, but a server answers on its port),
    system_identifier, timeline and in_hot_standby.  A peer that is up but could not be asked may be a primary:
    the start is refused (fail closed), as it is next to a primary.
    """
    if own.get('standby_signal'):
        return True, 'allowed: %s starts as a standby (signal file present); no check needed' % self_name
    rejoin = 'ansible-playbook playbooks/rejoin.yml -e rejoin_host=%s' % self_name
    lines = []
    answered = [peer for peer in peers if peer.get('error') is None]
    unknown = [peer for peer in peers if peer.get('error') is not None and peer.get('up')]
    for peer in peers:
        if peer.get('error') is not None:
            lines.append('peer %s did not answer%s: %s' % (peer['name'], ' (but a server runs on its port)' if peer.get('up') else '',
                                                           peer['error']))
    same = []
    for peer in answered:
        if peer['system_identifier'] != own['system_identifier']:
            lines.append('peer %s ignored: its system identifier %s is not this cluster\'s (%s)'
                         % (peer['name'], peer['system_identifier'], own['system_identifier']))
        else:
            same.append(peer)
    primaries = [peer for peer in same if not peer['in_hot_standby']]
    later = [peer for peer in same if peer['in_hot_standby'] and peer['timeline'] > own['timeline']]
    if primaries or later or unknown:
        for peer in unknown:
            lines.append('REFUSED: peer %s runs but the guard could not ask it (see above): it may be a primary. Let the '
                         'guard in (pg_hba.conf lists each member\'s address: after an address change, run site.yml) and '
                         'start again' % peer['name'])
        for peer in primaries:
            lines.append('REFUSED: peer %s is a running primary of this cluster (timeline %d); two primaries must never '
                         'run' % (peer['name'], peer['timeline']))
        for peer in later:
            lines.append('REFUSED: peer %s is a standby on timeline %d, later than this node\'s timeline %d: this node '
                         'was failed over, and the new primary may be down right now' % (peer['name'], peer['timeline'],
                                                                                         own['timeline']))
        lines.append('%s must not start as a primary. To make it a replica of the current primary, run: %s'
                     % (self_name, rejoin))
        return False, '\n'.join(lines)
    if not same:
        lines.append('WARNING: allowed without a check: no peer of this cluster answered, and the guard cannot tell an '
                     'isolated node from a whole cluster restarting. If another node was promoted meanwhile, stop this '
                     'one and run: %s' % rejoin)
        return True, '\n'.join(lines)
    lines.append('allowed: %s starts as a primary on timeline %d; no peer of this cluster is a primary or on a later '
                 'timeline (%s)' % (self_name, own['timeline'], ', '.join('%s: standby on timeline %d' % (peer['name'], peer['timeline'])
                                                                          for peer in same)))
    return True, '\n'.join(lines)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(prog='pg_start_guard.py', description='Refuse to start a PostgreSQL cluster as a '
                                     'second primary, or as a primary that was failed over.')
    parser.add_argument('--config', required=True, help='JSON configuration written by the postgresql role')
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        signal = signal_file(config['data_dir'])
        if signal:
            own = {'standby_signal': True}
        else:
            own = own_state(read_controldata(config))
            log('%s would start as a primary: system identifier %s, timeline %d; asking %d peer(s)'
                % (config['self'], own['system_identifier'], own['timeline'],
                   len([peer for peer in config['peers'] if peer['name'] != config['self']])))
        allow, message = decide(own, [] if signal else query_peers(config), config['self'])
    except ConfigError as exc:
        log('REFUSED: %s. Without its configuration the guard cannot decide, so the start is refused; the postgresql '
            'role writes it: re-run site.yml' % exc)
        return 1
    except GuardError as exc:
        log('REFUSED: %s. The guard cannot decide, so the start is refused' % exc)
        return 1
    log(message)
    return 0 if allow else 1


if __name__ == '__main__':
    sys.exit(main())
