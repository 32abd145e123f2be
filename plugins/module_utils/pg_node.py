# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Everything about one node's PostgreSQL in one fast look: the logic of ``pg_node_info``.

:func:`gather` runs, all at once in threads, one ``psql`` query over the local socket (only
when the socket exists), ``pg_controldata`` (only when the data directory holds a cluster),
``systemctl is-active`` and ``is-enabled``, and one ``pg_isready`` per peer; then, for a
stopped cluster and only when asked, ``pg_waldump`` to find where its valid WAL ends.  The
PostgreSQL tools run as the cluster's OS user through ``runuser``.  PostgreSQL being down,
half-made or not installed is reported, never raised: only a broken host (``runuser``
missing) raises :class:`NodeInfoError`.

The parsers (pg_controldata's output, pg_waldump's last words, a conninfo's host, the
query's JSON) are pure functions, unit-tested on the real tools' output.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import pwd
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

# The keys of the returned ``node``, always all of them (None when unknown), in this order.
NODE_KEYS = (
    'installed', 'data', 'placeholder', 'standby_signal', 'running', 'in_recovery', 'system_identifier', 'timeline',
    'cluster_state', 'checkpoint_lsn', 'redo_lsn', 'checkpoint_timeline', 'current_lsn', 'flush_lsn', 'receive_lsn',
    'replay_lsn', 'replay_pause_state', 'last_replay_timestamp', 'primary_conninfo_host', 'primary_slot_name',
    'synchronous_standby_names', 'wal_receiver', 'replication', 'slots', 'wal_end_lsn', 'service_active',
    'service_enabled', 'service_masked', 'peers_ready', 'server_version_num', 'wal_segment_size', 'addresses', 'errors',
)
WAL_RECEIVER_KEYS = ('status', 'sender_host', 'sender_port', 'received_tli', 'latest_end_lsn', 'slot_name')
REPLICATION_KEYS = ('application_name', 'client_addr', 'state', 'sync_state', 'sent_lsn', 'flush_lsn', 'replay_lsn')
SLOT_KEYS = ('slot_name', 'slot_type', 'active', 'restart_lsn', 'wal_status')

PLACEHOLDER_FILE = 'agent_ui_placeholder'
DEFAULT_WAL_SEGMENT_SIZE = 16 * 1024 * 1024
DEFAULT_WAL_BLOCK_SIZE = 8192
# Seconds a tool may take beyond the probe timeout before it is killed and reported.
TOOL_GRACE = 10
# pg_waldump reads every record from the checkpoint's REDO point: allow for a large max_wal_size.
WALDUMP_TIMEOUT = 120

# One query, one JSON object: everything the node can tell about itself over SQL.  Each value that
# only a primary (or only a standby) can compute sits behind the one pg_is_in_recovery() read.
NODE_QUERY = """
WITH r AS (SELECT pg_is_in_recovery() AS rec)
SELECT json_build_object(
  'server_version_num', current_setting('server_version_num')::int,
  'in_recovery', r.rec,
  'system_identifier', (SELECT system_identifier::text FROM pg_control_system()),
  'checkpoint_lsn', (SELECT checkpoint_lsn::text FROM pg_control_checkpoint()),
  'redo_lsn', (SELECT redo_lsn::text FROM pg_control_checkpoint()),
  'checkpoint_timeline', (SELECT timeline_id FROM pg_control_checkpoint()),
  'min_recovery_timeline', (SELECT min_recovery_end_timeline FROM pg_control_recovery()),
  'current_walfile', CASE WHEN NOT r.rec THEN pg_walfile_name(pg_current_wal_lsn()) END,
  'current_lsn', CASE WHEN NOT r.rec THEN pg_current_wal_lsn()::text END,
  'flush_lsn', CASE WHEN NOT r.rec THEN pg_current_wal_flush_lsn()::text END,
  'receive_lsn', pg_last_wal_receive_lsn()::text,
  'replay_lsn', pg_last_wal_replay_lsn()::text,
  'replay_pause_state', CASE WHEN r.rec THEN pg_get_wal_replay_pause_state() END,
  'last_replay_timestamp', pg_last_xact_replay_timestamp()::text,
  'primary_conninfo', current_setting('primary_conninfo'),
  'primary_slot_name', current_setting('primary_slot_name'),
  'synchronous_standby_names', current_setting('synchronous_standby_names'),
  'wal_receiver', (SELECT json_build_object('status', status, 'sender_host', sender_host, 'sender_port', sender_port,
                                            'received_tli', received_tli, 'latest_end_lsn', latest_end_lsn::text,
                                            'slot_name', slot_name)
                   FROM pg_stat_wal_receiver LIMIT 1),
  'replication', (SELECT coalesce(json_agg(json_build_object(
                      'application_name', application_name, 'client_addr', host(client_addr), 'state', state,
                      'sync_state', sync_state, 'sent_lsn', sent_lsn::text, 'flush_lsn', flush_lsn::text,
                      'replay_lsn', replay_lsn::text) ORDER BY application_name, pid), '[]'::json)
                  FROM pg_stat_replication),
  'slots', (SELECT coalesce(json_agg(json_build_object(
                'slot_name', slot_name, 'slot_type', slot_type, 'active', active, 'restart_lsn', restart_lsn::text,
                'wal_status', wal_status) ORDER BY slot_name), '[]'::json)
            FROM pg_replication_slots)
) FROM r
"""


class NodeInfoError(Exception):
    """The host cannot be examined at all (not PostgreSQL's state: that is reported)."""


def argument_spec():
    """The pg_node_info module's argument spec: the one place its options and defaults are written."""
    return dict(
        version=dict(type='int', required=True),
        cluster_name=dict(type='str', default='main'),
        data_dir=dict(type='path'),
        bin_dir=dict(type='path'),
        socket_dir=dict(type='path', default='/var/run/postgresql'),
        port=dict(type='int', default=5432),
        service=dict(type='str'),
        peers=dict(type='list', elements='dict', default=[], options=dict(
            name=dict(type='str', required=True),
            host=dict(type='str', required=True),
            port=dict(type='int', default=5432),
        )),
        probe_timeout=dict(type='int', default=2),
        wal_end=dict(type='bool', default=False),
        os_user=dict(type='str', default='postgres'),
    )


# What gather() uses for an option it is not given: the argument spec's defaults.
DEFAULTS = dict((name, option.get('default')) for name, option in argument_spec().items())


def resolve(params):
    """The options with the argument spec's defaults and the Debian postgresql-common paths filled in.

    ``data_dir``, ``bin_dir`` and ``service`` follow from ``version`` and ``cluster_name``.
    Two settings exist for the tests only: ``os_user=None`` runs the tools as the caller,
    and ``db_user`` is the role psql logs in as (else the OS user's name, as peer
    authentication maps it).
    """
    config = dict(DEFAULTS)
    config.update(params)
    version, cluster = config['version'], config['cluster_name']
    if not config.get('data_dir'):
        config['data_dir'] = '/var/lib/postgresql/%s/%s' % (version, cluster)
    if not config.get('bin_dir'):
        config['bin_dir'] = '/usr/lib/postgresql/%s/bin' % version
    if not config.get('service'):
        config['service'] = 'postgresql@%s-%s' % (version, cluster)
    config['peers'] = config.get('peers') or []
    if not config.get('db_user'):
        config['db_user'] = config['os_user'] or 'postgres'
    return config


# ---------------------------------------------------------------------------
# LSNs
# ---------------------------------------------------------------------------

_LSN = r'[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}'


def lsn_to_int(text):
    """``'0/16A6950'`` -> 23751000."""
    high, low = text.split('/')
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value):
    """An LSN as PostgreSQL 15-17 print it (``%X/%X``, no leading zeros)."""
    return '%X/%X' % (value >> 32, value & 0xFFFFFFFF)


def normal_lsn(text):
    """pg_waldump's ``0/016A6928`` as the server prints it: ``0/16A6928``."""
    return format_lsn(lsn_to_int(text))


def segment_lsn(name, offset, wal_segment_size):
    """The LSN at ``offset`` of WAL segment file ``name`` (TTTTTTTTXXXXXXXXYYYYYYYY)."""
    return (int(name[8:16], 16) << 32) + int(name[16:24], 16) * wal_segment_size + int(offset)


# ---------------------------------------------------------------------------
# pg_controldata
# ---------------------------------------------------------------------------

def parse_controldata(text):
    """pg_controldata's output (run with LC_ALL=C) as a dict of its labels to their values.

    Each line is ``label: value``; labels themselves hold colons only inside words
    (``Latest checkpoint's NextXID``), so the split is on the first colon followed by
    blanks or the end of the line.  A few labels are run into their values without a blank
    (``Latest checkpoint's oldestCommitTsXid:0``): the first colon is used then.
    """
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        match = re.match(r'^(.*?):(?:\s+|$)(.*)$', line) or re.match(r'^([^:]*):(.*)$', line)
        if match:
            fields[match.group(1).strip()] = match.group(2).strip()
    return fields


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def controldata_facts(fields):
    """The facts pg_node_info uses, from :func:`parse_controldata`'s dict (None for what is missing)."""
    def lsn(label):
        value = fields.get(label)
        return normal_lsn(value) if value and re.match('^%s$' % _LSN, value) else None
    return {
        'system_identifier': fields.get('Database system identifier'),
        'cluster_state': fields.get('Database cluster state'),
        'checkpoint_lsn': lsn('Latest checkpoint location'),
        'redo_lsn': lsn("Latest checkpoint's REDO location"),
        'checkpoint_timeline': _int_or_none(fields.get("Latest checkpoint's TimeLineID")),
        'min_recovery_lsn': lsn('Minimum recovery ending location'),
        'min_recovery_timeline': _int_or_none(fields.get("Min recovery ending loc's timeline")),
        'wal_segment_size': _int_or_none(fields.get('Bytes per WAL segment')),
        'wal_block_size': _int_or_none(fields.get('WAL block size')),
    }


def stopped_timeline(facts):
    """The timeline a stopped cluster is on: what its crash recovery would follow.

    pg_control's checkpoint timeline lags after a promotion until the next checkpoint ends;
    the promotion writes the new timeline into "Min recovery ending loc's timeline" so that
    crash recovery follows it, and PostgreSQL recovers to the larger of the two.
    """
    known = [tli for tli in (facts.get('checkpoint_timeline'), facts.get('min_recovery_timeline')) if tli]
    return max(known) if known else None


def waldump_start(facts):
    """(start LSN, timeline) for pg_waldump on a stopped cluster, or None when pg_control lacks them.

    From the checkpoint's REDO point on its timeline; but when the minimum recovery point is
    on a later timeline (a promotion not yet followed by a checkpoint, or a standby that
    followed one), from that point on that timeline: the segments of the later timeline
    start at the switch, so the REDO point may be in none of them.
    """
    redo, tli = facts.get('redo_lsn'), facts.get('checkpoint_timeline')
    min_lsn, min_tli = facts.get('min_recovery_lsn'), facts.get('min_recovery_timeline')
    if not redo or not tli:
        return None
    if min_lsn and min_tli and lsn_to_int(min_lsn) and (min_tli > tli or (min_tli == tli and lsn_to_int(min_lsn) > lsn_to_int(redo))):
        return min_lsn, min_tli
    return redo, tli


# ---------------------------------------------------------------------------
# pg_waldump
# ---------------------------------------------------------------------------

# Errors about one record: the LSN given is where the record that could not be read starts, so
# the valid WAL ends exactly there.  (15: "wanted 24", 16+: "expected at least 24"; "invalid record
# offset" and "contrecord is requested" cannot happen past a valid record, but name a position too.)
_RECORD_ERRORS = [re.compile(pattern) for pattern in (
    r'invalid record length at (?P<lsn>%s)' % _LSN,
    r'record with invalid length at (?P<lsn>%s)' % _LSN,
    r'record length \d+ at (?P<lsn>%s) too long' % _LSN,
    r'invalid resource manager ID \d+ at (?P<lsn>%s)' % _LSN,
    r'record with incorrect prev-link %s at (?P<lsn>%s)' % (_LSN, _LSN),
    r'incorrect resource manager data checksum in record at (?P<lsn>%s)' % _LSN,
    r'there is no contrecord flag at (?P<lsn>%s)' % _LSN,
    r'invalid contrecord length \d+ \(expected -?\d+\) at (?P<lsn>%s)' % _LSN,
    r'invalid record offset at (?P<lsn>%s)' % _LSN,
    r'contrecord is requested by (?P<lsn>%s)' % _LSN,
)]
# Errors about a page header (a zeroed page, a recycled segment's old page): the page's address,
# "LSN X" since 16, segment and offset in 15.  The valid WAL ends at that page or inside the last
# record, when that record was to continue on the page (a torn multi-page record).
_PAGE_ERROR = re.compile(
    r'(?:invalid magic number [0-9A-Fa-f]+|invalid info bits [0-9A-Fa-f]+|unexpected pageaddr %s|'
    r'out-of-sequence timeline ID \d+ \(after \d+\)) in (?:log|WAL) segment (?P<segment>[0-9A-Fa-f]{24}),'
    r'(?: LSN (?P<lsn>%s),)? offset (?P<offset>\d+)' % (_LSN, _LSN))
_MISSING_SEGMENT = re.compile(r'could not find file "(?:[^"]*/)?(?P<segment>[0-9A-Fa-f]{24})"')
_LAST_RECORD = re.compile(r'error in WAL record at (?P<lsn>%s)' % _LSN)
_NO_RECORD = re.compile(r'could not find a valid record after (?P<lsn>%s)' % _LSN)
_RECORD_LINE = re.compile(r'len \(rec/tot\):\s*\d+/\s*(?P<total>\d+), tx:\s*\d+, lsn: (?P<lsn>%s),' % _LSN)


def parse_waldump_stop(stderr, wal_segment_size=DEFAULT_WAL_SEGMENT_SIZE):
    """Where and why ``pg_waldump -q`` stopped, from its stderr; None when it does not say.

    Returns a dict: ``lsn`` (text) where reading stopped; ``kind``: ``record`` (the record
    at ``lsn`` is not valid, so the valid WAL ends at ``lsn``), ``page`` (the page at ``lsn``
    is not valid: the WAL ends there, or earlier when the last record was to continue on that
    page), or ``start`` (no valid record at or after the start point, which is then the
    end), or ``missing`` (the segment file starting at ``lsn`` is not there: the WAL ends
    there, or inside the last record if it was to continue in that segment, or much earlier
    if the start itself was in a missing segment); and ``last_record``: the start of the
    last valid record read, when given.
    """
    text = stderr or ''
    last = _LAST_RECORD.search(text)
    last_record = normal_lsn(last.group('lsn')) if last else None
    for pattern in _RECORD_ERRORS:
        match = pattern.search(text)
        if match:
            return {'lsn': normal_lsn(match.group('lsn')), 'kind': 'record', 'last_record': last_record}
    match = _PAGE_ERROR.search(text)
    if match:
        if match.group('lsn'):
            lsn = normal_lsn(match.group('lsn'))
        else:
            lsn = format_lsn(segment_lsn(match.group('segment'), match.group('offset'), wal_segment_size))
        return {'lsn': lsn, 'kind': 'page', 'last_record': last_record}
    match = _NO_RECORD.search(text)
    if match:
        return {'lsn': normal_lsn(match.group('lsn')), 'kind': 'start', 'last_record': None}
    match = _MISSING_SEGMENT.search(text)
    if match:
        return {'lsn': format_lsn(segment_lsn(match.group('segment'), 0, wal_segment_size)), 'kind': 'missing',
                'last_record': None}
    return None


def parse_waldump_end(stderr, wal_segment_size=DEFAULT_WAL_SEGMENT_SIZE):
    """The LSN where valid WAL ends according to pg_waldump's stderr, or None when it cannot tell.

    A missing or unreadable segment file, or any other error, says nothing about where the
    WAL ends by itself: None (:func:`gather` looks further for a missing segment).  For a page error this is the page's address, an upper bound that
    :func:`gather` narrows with :func:`record_end` (see :func:`parse_waldump_stop`).
    """
    stop = parse_waldump_stop(stderr, wal_segment_size)
    return stop['lsn'] if stop and stop['kind'] != 'missing' else None


def record_end(line, wal_block_size=DEFAULT_WAL_BLOCK_SIZE, wal_segment_size=DEFAULT_WAL_SEGMENT_SIZE):
    """The LSN right after the record of one ``pg_waldump`` line, or None if the line is not a record.

    The record's total length is laid from its start over the pages, skipping each page
    header it crosses (24 bytes, 40 at a segment's start), and the end is MAXALIGNed (8), as
    the WAL reader computes the next record's position.  A segment switch ends its segment.
    """
    match = _RECORD_LINE.search(line or '')
    if not match:
        return None
    position, remaining = lsn_to_int(match.group('lsn')), int(match.group('total'))
    if re.search(r'rmgr: XLOG\b.*desc: SWITCH', line):
        return format_lsn((position // wal_segment_size + 1) * wal_segment_size)
    while True:
        room = wal_block_size - position % wal_block_size
        if remaining <= room:
            position += remaining
            break
        remaining -= room
        position += room
        position += 40 if position % wal_segment_size == 0 else 24
    return format_lsn((position + 7) & ~7)


# ---------------------------------------------------------------------------
# SQL results
# ---------------------------------------------------------------------------

_CONNINFO_PAIR = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)*)")


def conninfo_host(conninfo):
    """The ``host`` (else ``hostaddr``) of a libpq connection string, key/value or URI form; None if absent.

    Quoted values lose their quotes and backslash escapes.  Nothing else of the string is
    returned: it may hold a password.
    """
    text = (conninfo or '').strip()
    if not text:
        return None
    if re.match(r'^postgres(?:ql)?://', text):
        return _uri_host(text)
    values, position = {}, 0
    while position < len(text):
        match = _CONNINFO_PAIR.match(text, position)
        if not match or match.end() == position:
            break
        value = match.group(2)
        if value.startswith("'"):
            value = value[1:-1]
        values.setdefault(match.group(1).lower(), re.sub(r'\\(.)', r'\1', value))
        position = match.end()
    return values.get('host') or values.get('hostaddr') or None


def _uri_host(uri):
    try:
        from urllib.parse import unquote, parse_qs
    except ImportError:  # pragma: no cover - Python 2 is not a target
        return None
    rest = uri.split('://', 1)[1]
    authority, _sep, tail = rest.partition('/')
    if '?' in authority:
        authority, _sep, query = authority.partition('?')
    else:
        query = tail.partition('?')[2]
    hosts = authority.rpartition('@')[2]
    names = []
    for host in hosts.split(','):
        if host.startswith('['):
            names.append(host[1:host.find(']')])
        else:
            names.append(host.rpartition(':')[0] if ':' in host else host)
    names = [unquote(name) for name in names if name]
    if names:
        return ','.join(names)
    params = parse_qs(query)
    for key in ('host', 'hostaddr'):
        if params.get(key):
            return params[key][0]
    return None


def walfile_timeline(name):
    """The timeline of a WAL file name: its first 8 hex digits."""
    return int(name[:8], 16) if name and re.match(r'^[0-9A-Fa-f]{24}$', name) else None


def parse_node_query(stdout):
    """The JSON object that :data:`NODE_QUERY` prints, as a dict; raises ValueError if it is not one."""
    value = json.loads(stdout.strip())
    if not isinstance(value, dict):
        raise ValueError('the node query returned %s, not an object' % type(value).__name__)
    return value


def running_facts(row):
    """The node keys that a running server's query answers (see :data:`NODE_QUERY`)."""
    in_recovery = bool(row.get('in_recovery'))
    receiver = row.get('wal_receiver')
    if in_recovery:
        known = [tli for tli in (row.get('checkpoint_timeline'), row.get('min_recovery_timeline'),
                                 (receiver or {}).get('received_tli')) if tli]
        timeline = max(known) if known else None
    else:
        timeline = walfile_timeline(row.get('current_walfile')) or row.get('checkpoint_timeline')
    return {
        'running': True,
        'in_recovery': in_recovery,
        'system_identifier': row.get('system_identifier'),
        'timeline': timeline,
        'checkpoint_lsn': row.get('checkpoint_lsn'),
        'redo_lsn': row.get('redo_lsn'),
        'checkpoint_timeline': row.get('checkpoint_timeline'),
        'current_lsn': row.get('current_lsn'),
        'flush_lsn': row.get('flush_lsn'),
        'receive_lsn': row.get('receive_lsn'),
        'replay_lsn': row.get('replay_lsn'),
        'replay_pause_state': row.get('replay_pause_state'),
        'last_replay_timestamp': row.get('last_replay_timestamp'),
        'primary_conninfo_host': conninfo_host(row.get('primary_conninfo')),
        'primary_slot_name': row.get('primary_slot_name') or None,
        'synchronous_standby_names': row.get('synchronous_standby_names'),
        'wal_receiver': dict((key, receiver.get(key)) for key in WAL_RECEIVER_KEYS) if receiver else None,
        'replication': [dict((key, item.get(key)) for key in REPLICATION_KEYS) for item in row.get('replication') or []],
        'slots': [dict((key, item.get(key)) for key in SLOT_KEYS) for item in row.get('slots') or []],
        'server_version_num': row.get('server_version_num'),
    }


def empty_node():
    """Every node key, unknown; the lists that are never unknown, empty."""
    node = dict.fromkeys(NODE_KEYS)
    node.update(errors=[], peers_ready={})
    return node


def _first_line(text):
    for line in (text or '').splitlines():
        if line.strip():
            return line.strip()
    return ''


# ---------------------------------------------------------------------------
# Running the tools
# ---------------------------------------------------------------------------

class Runner(object):
    """Runs a command, optionally as another OS user through runuser; returns (rc, stdout, stderr).

    A command that cannot be started or overruns its timeout returns rc None and the reason
    as stderr.  The environment is fixed: C locale (the parsers read English messages) and no
    PG* variable of the caller's.
    """

    def __init__(self, env=None):
        self.env = {'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LC_ALL': 'C', 'LANG': 'C'}
        self.env.update(env or {})

    def available(self, name):
        """Whether ``name`` is a command on this runner's PATH."""
        return shutil.which(name, path=self.env['PATH']) is not None

    def __call__(self, argv, timeout, user=None):
        if user is not None:
            argv = ['runuser', '-u', user, '--'] + list(argv)
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env, cwd='/',
                                  timeout=timeout, universal_newlines=True, check=False)
        except subprocess.TimeoutExpired:
            return None, '', '%s did not finish within %d s' % (os.path.basename(argv[0]) if user is None else argv[4], timeout)
        except OSError as exc:
            return None, '', 'cannot run %s: %s' % (argv[0], exc)
        return proc.returncode, proc.stdout, proc.stderr


def _isready_binary(bin_dir):
    own = os.path.join(bin_dir, 'pg_isready')
    return own if os.path.isfile(own) else shutil.which('pg_isready')


def gather(params, runner=None):
    """The ``node`` dict of :data:`NODE_KEYS` for the node ``params`` describe (see :func:`resolve`)."""
    config = resolve(params)
    runner = runner or Runner({'PGCONNECT_TIMEOUT': str(config['probe_timeout']),
                               'PGOPTIONS': '-c statement_timeout=10s',
                               'PGAPPNAME': 'agent_ui.postgresql.pg_node_info'})
    data_dir, bin_dir, user = config['data_dir'], config['bin_dir'], config['os_user']
    node = empty_node()
    errors = node['errors']
    node['installed'] = os.path.isfile(os.path.join(bin_dir, 'postgres'))
    node['data'] = os.path.isfile(os.path.join(data_dir, 'PG_VERSION'))
    node['placeholder'] = os.path.exists(os.path.join(data_dir, PLACEHOLDER_FILE))
    node['standby_signal'] = os.path.exists(os.path.join(data_dir, 'standby.signal'))
    node['running'] = False

    use_tools = node['installed']
    if use_tools and user is not None:
        if not runner.available('runuser'):
            raise NodeInfoError('runuser is missing: pg_node_info runs the PostgreSQL tools as %s through it '
                                '(util-linux)' % user)
        try:
            pwd.getpwnam(user)
        except KeyError:
            errors.append('the OS user %s does not exist: PostgreSQL tools not run' % user)
            use_tools = False
    socket = os.path.join(config['socket_dir'], '.s.PGSQL.%d' % config['port'])
    timeout = config['probe_timeout'] + TOOL_GRACE

    jobs = {}
    if use_tools and os.path.exists(socket):
        jobs['psql'] = ([os.path.join(bin_dir, 'psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1', '-h', config['socket_dir'],
                         '-p', str(config['port']), '-U', config['db_user'], '-d', 'postgres', '-c', NODE_QUERY], user)
    if use_tools and node['data']:
        jobs['controldata'] = ([os.path.join(bin_dir, 'pg_controldata'), data_dir], user)
    jobs['is-active'] = (['systemctl', 'is-active', config['service']], None)
    if runner.available('ip'):
        jobs['addresses'] = (['ip', '-o', '-4', 'addr', 'show', 'scope', 'global'], None)
    jobs['is-enabled'] = (['systemctl', 'is-enabled', config['service']], None)
    isready = _isready_binary(bin_dir) if config['peers'] else None
    for peer in config['peers']:
        if isready:
            jobs['peer ' + peer['name']] = ([isready, '-q', '-h', peer['host'], '-p', str(peer.get('port') or 5432),
                                             '-t', str(config['probe_timeout'])], user if use_tools else None)
        else:
            node['peers_ready'][peer['name']] = None
    if config['peers'] and not isready:
        errors.append('pg_isready was not found (%s, PATH): peers not probed' % bin_dir)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = dict((name, pool.submit(runner, argv, timeout, user=as_user)) for name, (argv, as_user) in jobs.items())
        results = dict((name, future.result()) for name, future in futures.items())

    _service(node, results)
    if 'addresses' in results and results['addresses'][0] == 0:
        node['addresses'] = parse_ip_addresses(results['addresses'][1])
    for peer in config['peers']:
        if 'peer ' + peer['name'] in results:
            node['peers_ready'][peer['name']] = results['peer ' + peer['name']][0]

    facts = {}
    if 'controldata' in results:
        rc, out, err = results['controldata']
        if rc == 0:
            facts = controldata_facts(parse_controldata(out))
        else:
            errors.append('pg_controldata failed (%s): %s' % (rc, _first_line(err) or _first_line(out)))

    if 'psql' in results:
        rc, out, err = results['psql']
        if rc == 0:
            try:
                node.update(running_facts(parse_node_query(out)))
            except ValueError as exc:
                errors.append('the node query returned no JSON object: %s' % exc)
        else:
            errors.append('psql over %s failed (%s): %s' % (socket, rc, _first_line(err)))

    for key in ('cluster_state', 'checkpoint_lsn', 'redo_lsn', 'checkpoint_timeline', 'wal_segment_size'):
        if facts.get(key) is not None:
            node[key] = facts[key]
    if not node['running'] and facts:
        node['system_identifier'] = facts.get('system_identifier')
        node['timeline'] = stopped_timeline(facts)
        if config['wal_end']:
            node['wal_end_lsn'] = wal_end(config, facts, runner, errors)
    return node


def parse_ip_addresses(text):
    """The IPv4 addresses of ``ip -o -4 addr show scope global``, in order (the host's own, for the controller's probe)."""
    found = []
    for line in text.splitlines():
        match = re.search(r'\binet\s+([0-9.]+)/', line)
        if match and match.group(1) not in found:
            found.append(match.group(1))
    return found


def _service(node, results):
    rc, out, err = results['is-active']
    node['service_active'] = out.strip() or None
    if node['service_active'] is None:
        node['errors'].append('systemctl is-active failed (%s): %s' % (rc, _first_line(err)))
    rc, out, err = results['is-enabled']
    node['service_enabled'] = out.strip() or None
    if node['service_enabled'] is None:
        node['errors'].append('systemctl is-enabled failed (%s): %s' % (rc, _first_line(err)))
    else:
        node['service_masked'] = node['service_enabled'].startswith('masked')


def segment_name(lsn, timeline, wal_segment_size):
    """The name of the WAL segment file that holds ``lsn`` (text) on ``timeline``."""
    value = lsn_to_int(lsn)
    return '%08X%08X%08X' % (timeline, value >> 32, (value & 0xFFFFFFFF) // wal_segment_size)


def wal_end(config, facts, runner, errors):
    """The end of the valid WAL of a stopped cluster (text LSN), or None with the reason in ``errors``.

    pg_waldump waits 5 s for a segment file that is not there (it retries, for files still
    being copied), so it is never asked to read past the last segment file of the timeline:
    ``-e`` stops it at that file's end.  Reaching it without an error means the WAL runs to
    that segment's end; the segment's records then tell where the last one ends.
    """
    start = waldump_start(facts)
    if start is None:
        errors.append('pg_controldata gave no REDO location or timeline: WAL end not searched')
        return None
    segment_size = facts.get('wal_segment_size') or DEFAULT_WAL_SEGMENT_SIZE
    block_size = facts.get('wal_block_size') or DEFAULT_WAL_BLOCK_SIZE
    pg_wal = os.path.join(config['data_dir'], 'pg_wal')
    prefix = '%08X' % start[1]
    try:
        segments = sorted(name for name in os.listdir(pg_wal) if re.match('^%s[0-9A-F]{16}$' % prefix, name))
    except OSError as exc:
        errors.append('cannot list %s: %s: WAL end unknown' % (pg_wal, exc))
        return None
    if segment_name(start[0], start[1], segment_size) not in segments:
        errors.append('the WAL segment %s of the start point %s is missing: WAL end unknown'
                      % (segment_name(start[0], start[1], segment_size), start[0]))
        return None
    last_end = format_lsn(segment_lsn(segments[-1], 0, segment_size) + segment_size)
    base = [os.path.join(config['bin_dir'], 'pg_waldump'), '-p', pg_wal, '-t', str(start[1])]

    def segments_of(first_lsn, last_segment=segments[-1]):
        # The first and last segment files, named on the command line: without them, pg_waldump takes the segment size
        # from whichever file of pg_wal it lists first, and a preallocated segment of zeros fails it ("invalid WAL
        # segment size ... (0 bytes)"). An -e must then lie inside the last one, or at its very end.
        return [segment_name(first_lsn, start[1], segment_size), last_segment]
    rc, _out, err = runner(base + ['-q', '-s', start[0], '-e', last_end] + segments_of(start[0]), WALDUMP_TIMEOUT,
                           user=config['os_user'])
    stop = parse_waldump_stop(err, segment_size)
    if stop is None and rc == 0 and not (err or '').strip():
        stop = {'lsn': last_end, 'kind': 'missing', 'last_record': None}
    if stop is None:
        errors.append('pg_waldump from %s on timeline %d did not say where the WAL ends (%s): %s'
                      % (start[0], start[1], rc, _first_line(err)))
        return None
    if stop['kind'] in ('record', 'start'):
        return stop['lsn']
    bound = lsn_to_int(stop['lsn'])
    if stop['kind'] == 'missing':
        # The records of the segment before the missing one (after a switch, its tail is empty pages); the last of
        # them ends the valid WAL.
        first = format_lsn(max(bound - segment_size, lsn_to_int(start[0])))
        rc, out, err = runner(base + ['-s', first, '-e', stop['lsn']]
                              + segments_of(first, segment_name(format_lsn(bound - 1), start[1], segment_size)),
                              WALDUMP_TIMEOUT, user=config['os_user'])
    elif stop['last_record']:
        # A bad page: the WAL ends there, or inside the last valid record if that one ran into the page.
        rc, out, err = runner(base + ['-n', '1', '-s', stop['last_record']] + segments_of(stop['last_record']),
                              WALDUMP_TIMEOUT, user=config['os_user'])
    else:
        return stop['lsn']
    lines = [line for line in out.splitlines() if _RECORD_LINE.search(line)]
    end = record_end(lines[-1], block_size, segment_size) if lines else None
    if end is None or lsn_to_int(end) > bound:
        errors.append('pg_waldump showed no valid record before %s (%s: %s): the WAL end given is that upper bound'
                      % (stop['lsn'], rc, _first_line(err)))
        return stop['lsn']
    return end
