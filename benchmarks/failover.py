# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Benchmark: failover.yml on the lab, with asynchronous and with synchronous replication.

Run from the checkout after ``make lab`` (the venv's python is used automatically when psycopg2 or PyYAML is missing)::

    python3 benchmarks/failover.py                   # 10 failovers in async mode, then 10 in sync mode
    python3 benchmarks/failover.py --runs 1          # smoke run: one of each
    python3 benchmarks/failover.py --modes sync --json out.json

A round, on the three-node lab cluster (inventories/lab):

1. Make sure the cluster is healthy: one primary, found from the live servers (``pg_is_in_recovery()``), never taken
   to be pg1; every other member a replica whose WAL receiver is streaming; the primary sees them all streaming; and
   ``synchronous_standby_names`` is empty (async) or set (sync) on every member.
2. Start the writer (tests/support/writer.py) and let it write for ``--warm-up`` seconds (2).
3. SIGKILL every postgres process on the primary (``pkill -KILL -u postgres`` in its container): a crash mid-stream,
   no shutdown checkpoint, no last WAL sent.  The kill time is read in the container right after pkill returns.
4. Run ``playbooks/failover.yml`` at once, with a report (``-e failover_report``).  Nothing detects the crash here:
   the time to write starts at the kill, so it is the playbook's reaction time plus the app's reconnect, not a
   monitoring delay.
5. Wait until the writer has an acknowledgement from the NEW primary.  Time to write = that ack's time minus the kill
   time.
6. Stop the writer and count the lost rows: sequence numbers the writer recorded as ``ack`` that the new primary
   does not hold.  ``unsafe`` acks (a cancelled wait for a synchronous standby) and inserts that raised are not
   promises, so they are never counted.  The playbook's own ``lost_bytes`` (WAL past the candidate) is printed next
   to it.
7. ``playbooks/rejoin.yml -e rejoin_host=<old primary>`` (pg_rewind), so the next round starts healthy.

Where the writer runs: on the controller, in the venv's python (psycopg2).  The lab containers share the
controller's kernel, so the writer's ``time.time()`` and the ``date`` the kill reads in the container are the same
clock (the script checks the offset at the start, within the ssh round trip), and the writer stays alive when any
container's postgres is killed, as an app host would.  It reaches the containers on the podman network
``agent-ui-lab`` by their IP addresses (from ``podman inspect``; the server certificates' SANs hold them, so
``sslmode=verify-full`` with the lab CA, inventories/lab/pki/ca.crt, works), with
``target_session_attrs=read-write`` over all three, as agent_ui_app (its lab password, from
inventories/lab/group_vars/postgresql.yml, goes into a 0600 PGPASSFILE in the run's log directory).
The probe table ``failover_probe`` in database agent_ui is created on the primary by postgres, with INSERT and
SELECT granted to agent_ui_app; every round writes its own range of sequence numbers (from the Unix time times 10**6)
and first deletes the rows of earlier rounds, and only those: another writer may share the table.

Sync mode: ``site.yml -e postgresql_replication_sync_count=1`` before the sync rounds (ANY 1 of the other members on
every node), and every playbook of those rounds gets the same extra var, as an inventory that sets it would give
them; ``-e postgresql_replication_sync_count=0`` afterwards, also when a round or the script fails (try/finally).

failover.yml's lock on the controller ($TMPDIR/agent-ui-postgresql-failover-postgresql.lock) is named after the
cluster's group only, so another cluster's failover.yml on this controller (molecule's cluster scenario) holds the
same one: before each kill the script waits until no run holds it (``--lock-timeout``); the kill stays racy with it.

A round that fails (a refusal, a timeout, no write on the new primary) is reported as failed with its reason, and the
script restores the cluster: it starts the killed server again when no primary runs, rejoins every member that does
not stream (pg_rewind, then a fresh copy with ``allow_reclone`` if pg_rewind cannot), runs site.yml, and goes on.
When the cluster cannot be made healthy it stops and prints what it has.

It prints, per mode: time to write and the playbook's wall time (min / median / max), lost rows (total and per
run), the reported lost_bytes, where the time to write goes (the median offset from the kill of the playbook's
first task, the promotion, the first write it made on the new primary, the writer's first ack and the repointed
replicas), the slowest tasks, and the target (median time to write <= 10 s) with met or missed, and a digest of
the files the playbooks run, saying so when they changed during the run.  It measures; it asserts no time.  Exit
status: 0, or 1 when a round failed, or 2 when the cluster could not be restored.  See benchmarks/README.md.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import datetime
import hashlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import converge  # noqa: E402  pylint: disable=wrong-import-position
from bench_python import VENV_PYTHON, ensure_modules  # noqa: E402  pylint: disable=wrong-import-position

WRITER = os.path.join(ROOT, 'tests', 'support', 'writer.py')
CA_CERT = os.path.join(ROOT, 'inventories', 'lab', 'pki', 'ca.crt')
TARGET_SECONDS = 10.0
NETWORK = 'agent-ui-lab'
DATABASE = 'agent_ui'
APP_USER = 'agent_ui_app'
TABLE = 'failover_probe'
PORT = 5432
# Each round writes its own range of sequence numbers, [base, base + SEQ_BLOCK), base = the Unix time * SEQ_BLOCK: far
# above what a writer started at 1 reaches, so the rounds' rows are told apart from any other writer's.
SEQ_BLOCK = 10 ** 6
OWN_SEQ_FLOOR = 10 ** 9 * SEQ_BLOCK
MODES = {'async': 0, 'sync': 1}  # mode -> postgresql_replication_sync_count

STATE_SQL = (
    "SELECT pg_is_in_recovery(), coalesce((SELECT status FROM pg_stat_wal_receiver), ''), "
    "(SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'), "
    "coalesce((SELECT string_agg(application_name || '=' || sync_state, ',' ORDER BY application_name) "
    "FROM pg_stat_replication), ''), current_setting('synchronous_standby_names')")
TABLE_SQL = ('CREATE TABLE IF NOT EXISTS %s (seq bigint PRIMARY KEY, at timestamptz DEFAULT now()); '
             'GRANT SELECT, INSERT ON %s TO %s' % (TABLE, TABLE, APP_USER))

# The playbook's milestones, as offsets from the kill: (key, label, task file, task name prefix, start or end).
EVENTS = (
    ('first_task', 'first task starts', None, None, 'start'),
    ('promote', 'promotion starts', 'promote.yml', 'Promote ', 'start'),
    ('writable', 'new primary writes (the playbook\'s own write)', 'promote.yml',
     'Wait until the new primary accepts writes', 'end'),
    ('first_ack', 'writer\'s first ack from the new primary', None, None, None),
    ('repointed', 'other replica streams on the new timeline', 'repoint.yml', 'Wait until each repointed replica', 'end'),
    ('exit', 'failover.yml exits', None, None, None),
)


class RoundFailed(Exception):
    """A round that could not be measured: the reason is reported, the cluster restored."""


class ClusterBroken(Exception):
    """The cluster could not be made healthy again: no further round is run."""


def ensure_python():
    """Re-run under the checkout's venv when this interpreter lacks psycopg2 or PyYAML."""
    problem = ensure_modules(__file__, ['psycopg2', 'yaml'])
    if problem:
        sys.exit('failover.py: ' + problem)


def log(message):
    print(message, flush=True)


def utc_epoch(text):
    return converge.parse_time(text).replace(tzinfo=datetime.timezone.utc).timestamp()


def task_times(report):
    """Every task the json callback recorded, in run order: name, file:line, start and end (Unix time)."""
    tasks = []
    for play in report.get('plays', []):
        for entry in play.get('tasks', []):
            task = entry['task']
            duration = task.get('duration', {})
            if 'end' not in duration:
                continue
            tasks.append({'name': task['name'], 'path': task.get('path') or '', 'start': utc_epoch(duration['start']),
                          'end': utc_epoch(duration['end'])})
    return tasks


def milestones(tasks, t_kill):
    """Offsets from the kill of the playbook's milestones (EVENTS) that its tasks mark."""
    found = {}
    if tasks:
        found['first_task'] = min(task['start'] for task in tasks) - t_kill
    for key, _label, path, prefix, edge in EVENTS:
        if path is None:
            continue
        for task in tasks:
            if os.path.basename(task['path'].rsplit(':', 1)[0]) == path and task['name'].startswith(prefix):
                found[key] = task[edge] - t_kill  # the first match: steps/repoint.yml also runs in rejoin.yml
                break
    return found


def read_writer_log(path):
    """The writer's lines: acks [(seq, time, host)], unsafe [(seq, time, host)], errors [(time, message)]."""
    acks, unsafe, errors = [], [], []
    if not os.path.exists(path):
        return acks, unsafe, errors
    with open(path) as handle:
        for line in handle:
            if not line.endswith('\n'):
                break  # being written
            fields = line.split(None, 3)
            if fields[0] in ('ack', 'unsafe') and len(fields) == 4:
                (acks if fields[0] == 'ack' else unsafe).append((int(fields[1]), float(fields[2]), fields[3].strip()))
            elif fields[0] == 'err':
                errors.append((float(fields[1]), fields[2] + (' ' + fields[3] if len(fields) > 3 else '')))
    return acks, unsafe, errors


def code_version():
    """The commit, and a digest of the files the playbooks run (playbooks/, roles/, plugins/, site.yml), as they are now."""
    digest = hashlib.sha256()
    for top in ('playbooks', 'roles', 'plugins', 'site.yml'):
        path = os.path.join(ROOT, top)
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(folder, name) for folder, dirs, names in os.walk(path)
            for name in names if '__pycache__' not in folder and not name.endswith('.pyc'))
        for name in files:
            digest.update(os.path.relpath(name, ROOT).encode())
            with open(name, 'rb') as handle:
                digest.update(handle.read())
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, universal_newlines=True, check=False).stdout.strip()
    return '%s, files %s' % (commit or 'no commit', digest.hexdigest()[:12])


def show_bytes(value):
    return 'unknown' if value is None else str(value)


def spread(values):
    """'min / median / max' of seconds, or a dash."""
    if not values:
        return '-'
    return '%.1f / %.1f / %.1f' % (min(values), statistics.median(values), max(values))


def one_line(text, limit=300):
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


class Playbook(object):
    """One ansible-playbook run: wall seconds, rc, the json callback's report, its tasks and errors."""

    def __init__(self, name, rc, wall, started, stdout, stderr, timed_out):
        self.name, self.rc, self.wall, self.started, self.timed_out = name, rc, wall, started, timed_out
        self.report, self.summary, self.tasks = None, None, []
        try:
            self.report = json.loads(stdout[stdout.index('{'):])
            self.summary = converge.summarise(self.report)
            self.tasks = task_times(self.report)
        except ValueError:
            pass
        self.stderr = stderr

    @property
    def ok(self):
        return self.rc == 0 and not self.timed_out

    def reason(self):
        """Why it failed, in one line: its first error message (a refusal says FAILOVER REFUSED), or its rc."""
        if self.timed_out:
            return '%s timed out after %.0f s' % (self.name, self.wall)
        errors = self.summary['errors'] if self.summary else []
        refusals = [error for error in errors if 'REFUSED' in error or 'STOPPED' in error]
        detail = (refusals or errors or [self.stderr.strip().splitlines()[-1] if self.stderr.strip() else 'no output'])[0]
        return '%s exited %d: %s' % (self.name, self.rc, one_line(detail))


class Writer(object):
    """tests/support/writer.py on the controller, against every lab member (target_session_attrs=read-write)."""

    def __init__(self, lab, out, base, interval):
        self.lab, self.out, self.base = lab, out, base
        self.stop_file = out + '.stop'
        env = dict(os.environ, PGPASSFILE=lab.passfile)
        argv = [VENV_PYTHON if os.path.exists(VENV_PYTHON) else sys.executable, WRITER, '--dsn', lab.dsn(), '--out', out,
                '--stop', self.stop_file, '--start', str(base), '--interval', str(interval), '--table', TABLE]
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(out + '.stderr', 'w'), start_new_session=True)

    def read(self):
        return read_writer_log(self.out)

    def stop(self):
        if self.proc.poll() is not None:
            return
        open(self.stop_file, 'w').close()
        for sig, wait in ((None, 5), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if sig is not None:
                try:
                    os.killpg(self.proc.pid, sig)
                except OSError:
                    pass
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


class Lab(object):
    """The lab cluster: its members, their containers and addresses, ssh and psql, health, the playbooks."""

    def __init__(self, args, env, logdir):
        import yaml
        self.args, self.env, self.logdir = args, env, logdir
        with open(os.path.join(args.inventory, 'hosts.yml')) as handle:
            hosts = yaml.safe_load(handle)['all']['children']['postgresql']['hosts']
        self.hosts = list(hosts)
        self.container = dict((name, (hosts[name] or {}).get('ansible_host', name)) for name in self.hosts)
        self.ip = {}
        for name in self.hosts:
            out = subprocess.run(['podman', 'inspect', '--format',
                                  '{{(index .NetworkSettings.Networks "%s").IPAddress}}' % NETWORK, self.container[name]],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                                 check=False)
            if out.returncode != 0 or not out.stdout.strip():
                raise ClusterBroken('podman inspect %s: %s' % (self.container[name], one_line(out.stderr)))
            self.ip[name] = out.stdout.strip()
        self.by_ip = dict((ip, name) for name, ip in self.ip.items())
        with open(os.path.join(args.inventory, 'group_vars', 'postgresql.yml')) as handle:
            users = yaml.safe_load(handle)['postgresql_users']
        password = [user['password'] for user in users if user['name'] == APP_USER][0]
        self.passfile = os.path.join(logdir, 'pgpass')
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as handle:
            handle.write('*:*:%s:%s:%s\n' % (DATABASE, APP_USER, password.replace('\\', '\\\\').replace(':', '\\:')))
        self.ssh_config = os.path.join(env['LAB_CACHE_DIR'], 'lab-ssh', 'config')
        # Master connections of our own (a short path: a socket's name is limited to about 100 bytes).
        self.control_dir = subprocess.run(['mktemp', '-d', '/tmp/fo-ssh-XXXXXX'], stdout=subprocess.PIPE,
                                          universal_newlines=True, check=True).stdout.strip()
        self.mode = None
        self.playbook_count = 0

    def dsn(self):
        """The app's connection string: every member by address, the primary found by libpq; no password."""
        return ('host=%s port=%d dbname=%s user=%s sslmode=verify-full sslrootcert=%s target_session_attrs=read-write '
                'connect_timeout=2 application_name=failover-bench' % (
                    ','.join(self.ip[host] for host in self.hosts), PORT, DATABASE, APP_USER, CA_CERT))

    # --- ssh and psql --------------------------------------------------------------------------------------------

    def ssh(self, host, command, timeout=30):
        """(rc, stdout, stderr) of a shell command on a member's container, as root."""
        argv = ['ssh', '-F', self.ssh_config, '-o', 'ControlMaster=auto', '-o',
                'ControlPath=%s/%%C' % self.control_dir, '-o', 'ControlPersist=300', '-o', 'ConnectTimeout=10',
                self.container[host], command]
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  universal_newlines=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return 255, '', 'ssh %s timed out after %d s' % (host, timeout)
        return proc.returncode, proc.stdout, proc.stderr

    def psql(self, host, sql, database='postgres', timeout=30):
        command = 'runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -F "|" -d %s -c %s' % (
            shlex.quote(database), shlex.quote(sql))
        return self.ssh(host, command, timeout=timeout)

    def close(self):
        for socket in os.listdir(self.control_dir):
            subprocess.run(['ssh', '-o', 'ControlPath=' + os.path.join(self.control_dir, socket), '-O', 'exit', 'lab'],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        subprocess.run(['rm', '-rf', self.control_dir], check=False)

    def clock_offset(self):
        """The largest |container clock - controller clock| seen, and the ssh round trip that bounds the reading."""
        worst, rtt = 0.0, 0.0
        for host in self.hosts:
            readings = []
            for _attempt in range(3):  # the first one also opens the master connection
                before = time.time()
                rc, out, _err = self.ssh(host, 'date +%s.%N')
                after = time.time()
                if rc == 0:
                    readings.append((after - before, float(out.strip()) - (before + after) / 2))
            if readings:
                best = min(readings)
                rtt, worst = max(rtt, best[0]), max(worst, abs(best[1]))
        return worst, rtt

    # --- the cluster's state ---------------------------------------------------------------------------------------

    def states(self):
        states = {}
        for host in self.hosts:
            rc, out, err = self.psql(host, STATE_SQL, timeout=15)
            if rc != 0:
                states[host] = {'up': False, 'error': one_line(err or out, 160)}
                continue
            fields = out.strip().split('|')
            states[host] = {'up': True, 'in_recovery': fields[0] == 't', 'receiver': fields[1],
                            'streaming': int(fields[2]), 'senders': fields[3], 'sync_names': fields[4]}
        return states

    @staticmethod
    def describe(states):
        parts = []
        for host, state in sorted(states.items()):
            if not state['up']:
                parts.append('%s down (%s)' % (host, state['error']))
            elif state['in_recovery']:
                parts.append('%s replica (%s)' % (host, state['receiver'] or 'no WAL receiver'))
            else:
                parts.append('%s primary (%s; synchronous_standby_names %r)' % (
                    host, state['senders'] or 'no standby', state['sync_names']))
        return '; '.join(parts)

    def health(self, mode, states=None):
        """(primary, None) when the cluster is healthy in ``mode``, else (None, why)."""
        states = states or self.states()
        primaries = [host for host, state in states.items() if state['up'] and not state['in_recovery']]
        if len(primaries) != 1:
            return None, '%d primaries: %s' % (len(primaries), self.describe(states))
        primary = primaries[0]
        bad = [host for host, state in states.items()
               if host != primary and not (state['up'] and state['receiver'] == 'streaming')]
        if bad or states[primary]['streaming'] != len(self.hosts) - 1:
            return None, 'not every replica streams: %s' % self.describe(states)
        wrong = [host for host, state in states.items() if (state['sync_names'] != '') != (mode == 'sync')]
        if wrong:
            return None, 'not in %s mode: %s' % (mode, self.describe(states))
        return primary, None

    def wait_healthy(self, mode, timeout):
        deadline = time.monotonic() + timeout
        while True:
            primary, why = self.health(mode)
            if primary or time.monotonic() > deadline:
                return primary, why
            time.sleep(1)

    def current_mode(self):
        states = self.states()
        return 'sync' if any(state.get('sync_names') for state in states.values() if state['up']) else 'async'

    # --- playbooks -----------------------------------------------------------------------------------------------

    def playbook(self, path, extra, timeout, label):
        """Run a playbook with the json callback; its stdout and stderr are kept in the log directory."""
        self.playbook_count += 1
        argv = ['ansible-playbook', '-i', self.args.inventory, os.path.join(ROOT, path), '-e', json.dumps(extra)]
        started = time.time()
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True, start_new_session=True)
        timed_out = False
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                stdout, stderr = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                stdout, stderr = proc.communicate()
        wall = time.time() - started
        stem = os.path.join(self.logdir, '%03d-%s' % (self.playbook_count, label))
        with open(stem + '.json', 'w') as handle:
            handle.write(stdout)
        with open(stem + '.stderr', 'w') as handle:
            handle.write(stderr)
        return Playbook(os.path.basename(path), proc.returncode, wall, started, stdout, stderr, timed_out)

    def site(self, mode):
        """site.yml in ``mode``; raises ClusterBroken when it fails or the cluster is not healthy after it."""
        run = self.playbook('site.yml', {'postgresql_replication_sync_count': MODES[mode]}, self.args.site_timeout,
                            'site-%s' % mode)
        if not run.ok:
            raise ClusterBroken(run.reason())
        primary, why = self.wait_healthy(mode, 60)
        if primary is None:
            raise ClusterBroken('after site.yml in %s mode: %s' % (mode, why))
        self.mode = mode
        return run

    def ensure_mode(self, mode):
        if self.mode is None:
            self.mode = self.current_mode()
        if self.mode != mode:
            log('  switching the cluster to %s replication (site.yml -e postgresql_replication_sync_count=%d)' % (
                mode, MODES[mode]))
            run = self.site(mode)
            log('  site.yml: %.1f s' % run.wall)

    def controller_lock(self):
        """failover.yml's lock on this controller: $TMPDIR (else /tmp), named after the cluster's group only."""
        return os.path.join(self.env.get('TMPDIR', '/tmp'), 'agent-ui-postgresql-failover-postgresql.lock')

    def wait_controller_lock(self, timeout):
        """Seconds waited until no failover.yml on this controller holds its lock. Another cluster's run (molecule's
        cluster scenario, whose group is also `postgresql`) takes the same directory and would make ours refuse."""
        start = time.monotonic()
        while os.path.exists(self.controller_lock()) and time.monotonic() - start < timeout:
            time.sleep(1)
        return time.monotonic() - start

    def remove_failover_locks(self):
        """failover.yml's locks, after this script killed a run of it (no other run is going: this script started it)."""
        subprocess.run(['rmdir', self.controller_lock()], stderr=subprocess.DEVNULL, check=False)
        for host in self.hosts:
            self.ssh(host, 'rmdir /run/agent-ui-postgresql-failover.lock 2>/dev/null; true')

    def restore(self, mode, killed):
        """Make the cluster healthy in ``mode`` again after a failed round; raises ClusterBroken."""
        log('    restoring the cluster: %s' % self.describe(self.states()))
        states = self.states()
        primaries = [host for host, state in states.items() if state['up'] and not state['in_recovery']]
        if not primaries and killed:
            # Nothing was promoted (a refusal changes nothing): the killed server comes back as the primary. The start
            # guard refuses it if another member is a primary.
            rc, out, err = self.ssh(killed, 'systemctl unmask %s && systemctl start %s' % (
                self.args.service, self.args.service), timeout=120)
            log('    started %s again: rc %d %s' % (killed, rc, one_line(out + err, 200)))
            time.sleep(2)
            states = self.states()
            primaries = [host for host, state in states.items() if state['up'] and not state['in_recovery']]
        if len(primaries) != 1:
            raise ClusterBroken('cannot restore: %s' % self.describe(states))
        extra = {'postgresql_replication_sync_count': MODES[mode]}
        for host in self.hosts:
            state = states[host]
            if host == primaries[0] or (state['up'] and state['receiver'] == 'streaming'):
                continue
            run = self.playbook('playbooks/rejoin.yml', dict(extra, rejoin_host=host), self.args.playbook_timeout,
                                'restore-rejoin-%s' % host)
            log('    rejoin.yml %s: %s (%.1f s)' % (host, 'ok' if run.ok else run.reason(), run.wall))
            if not run.ok:
                run = self.playbook('playbooks/rejoin.yml', dict(extra, rejoin_host=host, allow_reclone=True),
                                    self.args.playbook_timeout, 'restore-reclone-%s' % host)
                log('    rejoin.yml %s with allow_reclone: %s (%.1f s)' % (
                    host, 'ok' if run.ok else run.reason(), run.wall))
        run = self.site(mode)
        log('    site.yml: %.1f s; healthy again' % run.wall)


def run_round(lab, args, mode, number, result):
    """One failover; fills ``result`` and raises RoundFailed when it cannot be measured."""
    primary, why = lab.wait_healthy(mode, 90)
    if primary is None:
        raise RoundFailed('not healthy before the round: %s' % why)
    result['old_primary'] = primary
    extra = {'postgresql_replication_sync_count': MODES[mode]}
    # Only this script's own rows go (other writers, e.g. a failover test's, may share the table).
    rc, out, err = lab.psql(primary, 'DELETE FROM %s WHERE seq >= %d' % (TABLE, OWN_SEQ_FLOOR), database=DATABASE)
    if rc != 0:
        raise RoundFailed('clearing %s on %s: %s' % (TABLE, primary, one_line(err)))
    base = int(time.time()) * SEQ_BLOCK
    stem = os.path.join(lab.logdir, '%s-%02d' % (mode, number))
    # Not while another failover.yml on this controller holds the lock: ours would refuse after the kill.
    result['lock_wait'] = lab.wait_controller_lock(args.lock_timeout)
    if result['lock_wait'] >= 1:
        log('    waited %.0f s for %s (another failover.yml on this controller)' % (
            result['lock_wait'], lab.controller_lock()))
    writer = Writer(lab, stem + '-writer.log', base, args.interval)
    try:
        time.sleep(args.warm_up)
        acks, _unsafe, errors = writer.read()
        if not [ack for ack in acks if ack[2] == lab.ip[primary]]:
            raise RoundFailed('the writer had no ack from %s after %.1f s: %s' % (
                primary, args.warm_up, one_line(errors[-1][1] if errors else open(writer.out + '.stderr').read())))
        result['acks_before_kill'] = len(acks)

        # The crash: every postgres process at once. The time is read in the container, right after pkill.
        rc, out, err = lab.ssh(primary, 'pkill -KILL -u postgres; rc=$?; date +%s.%N; exit $rc')
        if rc != 0:
            raise RoundFailed('pkill on %s: rc %d %s' % (primary, rc, one_line(err)))
        t_kill = float(out.strip().splitlines()[-1])
        result['killed'] = True

        report_path = stem + '-failover-report.json'
        run = lab.playbook('playbooks/failover.yml', dict(extra, failover_report=report_path), args.playbook_timeout,
                           '%s-%02d-failover' % (mode, number))
        result['failover_wall'] = run.wall
        result['events'] = milestones(run.tasks, t_kill)
        result['events']['exit'] = run.started + run.wall - t_kill
        result['slowest'] = converge.slowest([{'key': task['path'] or task['name'], 'name': task['name'],
                                               'seconds': task['end'] - task['start']} for task in run.tasks], 10 ** 6)
        if run.timed_out:
            lab.remove_failover_locks()
        if not run.ok:
            raise RoundFailed(run.reason())
        with open(report_path) as handle:
            report = json.load(handle)
        new = report.get('new_primary')
        result.update(new_primary=new, timeline=report.get('timeline'), lost_bytes=report.get('lost_bytes'),
                      lost_estimate=report.get('lost_estimate'), report_elapsed=report.get('elapsed_seconds'))
        if report.get('old_primary') != primary or new not in lab.hosts or new == primary:
            raise RoundFailed('the report names old_primary %r and new_primary %r; %s was killed' % (
                report.get('old_primary'), new, primary))

        # The app's view: the first write the new primary acknowledged.
        deadline = time.time() + args.write_timeout
        first = None
        while first is None:
            acks, unsafe, errors = writer.read()
            first = next((ack for ack in acks if ack[2] == lab.ip[new] and ack[1] >= t_kill), None)
            if first is None:
                if time.time() > deadline:
                    raise RoundFailed('no ack from the new primary %s within %.0f s of failover.yml\'s end; last error: %s' % (
                        new, args.write_timeout, one_line(errors[-1][1] if errors else 'none')))
                time.sleep(0.1)
        result['time_to_write'] = first[1] - t_kill
        result['events']['first_ack'] = first[1] - t_kill
        time.sleep(0.5)  # a few more writes on the new primary
    finally:
        writer.stop()

    acks, unsafe, errors = writer.read()
    import psycopg2
    conn = psycopg2.connect(host=lab.ip[new], port=PORT, dbname=DATABASE, user=APP_USER, passfile=lab.passfile,
                            sslmode='verify-full', sslrootcert=CA_CERT, connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            cursor.execute('SELECT seq FROM %s WHERE seq >= %%s AND seq < %%s' % TABLE, (base, base + SEQ_BLOCK))
            present = set(row[0] for row in cursor.fetchall())
    finally:
        conn.close()
    lost = sorted(set(ack[0] for ack in acks) - present)
    result.update(acks=len(acks), unsafe=len(unsafe), errors=len(errors), lost_rows=len(lost), lost_seqs=lost[:50],
                  last_ack_old=max([ack[1] for ack in acks if ack[2] == lab.ip[primary]]) - t_kill)
    result['status'] = 'ok'

    # The next round starts healthy: the old primary becomes a replica of the new one.
    run = lab.playbook('playbooks/rejoin.yml', dict(extra, rejoin_host=primary, rejoin_report=stem + '-rejoin-report.json'),
                       args.playbook_timeout, '%s-%02d-rejoin' % (mode, number))
    result['rejoin_wall'] = run.wall
    if not run.ok:
        result['rejoin_failed'] = run.reason()


def mode_stats(results, mode):
    ok = [res for res in results if res['mode'] == mode and res['status'] == 'ok']
    return {
        'runs': len([res for res in results if res['mode'] == mode]),
        'ok': ok,
        'ttw': [res['time_to_write'] for res in ok],
        'wall': [res['failover_wall'] for res in ok],
        'lost': [res['lost_rows'] for res in ok],
        'lost_bytes': [res['lost_bytes'] for res in ok],
    }


def report(results, modes, load_start, load_end, args):
    lines = ['', '## failover.py: %d run(s) per mode, %s, on %s' % (
        args.runs, ', '.join(modes), os.path.relpath(args.inventory, ROOT)), '']
    lines.append('load average (1/5/15 min) at the start %s, at the end %s; %d CPUs shared by the controller and the '
                 'three lab hosts' % ('/'.join('%.2f' % value for value in load_start),
                                      '/'.join('%.2f' % value for value in load_end), os.cpu_count() or 0))
    lines.append('')
    lines.append('| mode | runs ok | time to write, s (min / median / max) | failover.yml wall, s (min / median / max) '
                 '| lost rows: total (per run) | lost_bytes reported (per run) |')
    lines.append('| --- | --- | --- | --- | --- | --- |')
    verdicts = []
    for mode in modes:
        stats = mode_stats(results, mode)
        lines.append('| %s | %d / %d | %s | %s | %s | %s |' % (
            mode, len(stats['ok']), stats['runs'], spread(stats['ttw']), spread(stats['wall']),
            '%d (%s)' % (sum(stats['lost']), ', '.join(str(value) for value in stats['lost'])) if stats['ok'] else '-',
            ', '.join(show_bytes(value) for value in stats['lost_bytes']) or '-'))
        if stats['ttw']:
            median = statistics.median(stats['ttw'])
            verdicts.append('%s %.1f s %s' % (mode, median, 'met' if median <= TARGET_SECONDS else 'missed'))
        else:
            verdicts.append('%s: no successful run' % mode)
    lines.append('')
    lines.append('target: median time to write <= %.0f s: %s' % (TARGET_SECONDS, '; '.join(verdicts)))
    lines.append('')
    lines.append('Where the time to write goes: median seconds from the kill (successful runs)')
    lines.append('')
    lines.append('| mode | %s |' % ' | '.join(label for _key, label, _path, _prefix, _edge in EVENTS))
    lines.append('|%s' % (' --- |' * (len(EVENTS) + 1)))
    for mode in modes:
        ok = mode_stats(results, mode)['ok']
        cells = []
        for key, _label, _path, _prefix, _edge in EVENTS:
            values = [res['events'][key] for res in ok if key in res.get('events', {})]
            cells.append('%.1f' % statistics.median(values) if values else '-')
        lines.append('| %s | %s |' % (mode, ' | '.join(cells)))
    for mode in modes:
        ok = mode_stats(results, mode)['ok']
        if not ok:
            continue
        middle = sorted(ok, key=lambda res: res['time_to_write'])[len(ok) // 2]
        lines.append('')
        lines.append('%s: the slowest tasks of failover.yml in the median run (round %d, %s -> %s):' % (
            mode, middle['round'], middle['old_primary'], middle['new_primary']))
        for task in middle['slowest'][:args.top]:
            lines.append('  %6.2f s  %s' % (task['seconds'], task['name']))
    lines.append('')
    lines.append('Rounds:')
    for res in results:
        if res['status'] == 'ok':
            lines.append('  %s %2d: %s -> %s (timeline %s), time to write %.1f s, failover.yml %.1f s (report %.1f s), '
                         'lost %d rows, lost_bytes %s, %d acks, %d unsafe, %d errors; last ack from the old primary '
                         '%.2f s before the kill; rejoin %s' % (
                             res['mode'], res['round'], res['old_primary'], res['new_primary'], res['timeline'],
                             res['time_to_write'], res['failover_wall'], res['report_elapsed'] or float('nan'),
                             res['lost_rows'], show_bytes(res['lost_bytes']), res['acks'], res['unsafe'], res['errors'],
                             -res['last_ack_old'],
                             ('%.1f s' % res['rejoin_wall']) if 'rejoin_failed' not in res else
                             'FAILED: ' + res['rejoin_failed'])
                         + ('; waited %.0f s for the controller lock first' % res['lock_wait']
                            if res.get('lock_wait', 0) >= 1 else ''))
        else:
            lines.append('  %s %2d: FAILED: %s' % (res['mode'], res['round'], res['reason']))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('--runs', type=int, default=10, help='failovers per mode (default 10)')
    parser.add_argument('--modes', default='async,sync', help='comma-separated, of async and sync (default async,sync)')
    parser.add_argument('--warm-up', type=float, default=2.0, help='seconds the writer writes before the kill (2)')
    parser.add_argument('--interval', type=float, default=0.01, help='the writer\'s seconds between inserts (0.01)')
    parser.add_argument('--write-timeout', type=float, default=60.0,
                        help='seconds after failover.yml\'s end to wait for an ack from the new primary (60)')
    parser.add_argument('--playbook-timeout', type=float, default=300.0, help='failover.yml and rejoin.yml (300 s)')
    parser.add_argument('--lock-timeout', type=float, default=600.0,
                        help='seconds to wait, before a kill, for another failover.yml on this controller to release '
                        'its lock (600)')
    parser.add_argument('--site-timeout', type=float, default=900.0, help='site.yml (900 s)')
    parser.add_argument('--service', default='postgresql@17-main', help='the server\'s systemd unit on the lab hosts')
    parser.add_argument('--top', type=int, default=10, help='how many of the slowest tasks to list (10)')
    parser.add_argument('--inventory', default=os.path.join(ROOT, 'inventories', 'lab'))
    parser.add_argument('--log-dir', help='where the playbooks\' output, reports and writer logs go '
                        '(default .cache/bench/failover-<time>)')
    parser.add_argument('--json', metavar='FILE', help='also write every round to FILE')
    args = parser.parse_args(argv)
    modes = [mode.strip() for mode in args.modes.split(',') if mode.strip()]
    if not modes or set(modes) - set(MODES):
        parser.error('--modes takes async and/or sync')
    ensure_python()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    env = converge.environment()
    converge.check_lab(env)
    logdir = args.log_dir or os.path.join(ROOT, '.cache', 'bench', 'failover-%s' % time.strftime('%Y%m%d-%H%M%S'))
    os.makedirs(logdir, exist_ok=True)
    load_start = os.getloadavg()
    code_start = code_version()
    log('failover.py: %d failover(s) per mode (%s) on %s; load average at start %.2f; logs in %s' % (
        args.runs, ', '.join(modes), os.path.relpath(args.inventory, ROOT), load_start[0], os.path.relpath(logdir, ROOT)))

    results, broken, lab = [], None, None
    try:
        lab = Lab(args, env, logdir)
        offset, rtt = lab.clock_offset()
        log('  members %s; the writer runs on the controller; clock offset container - controller %.3f s '
            '(ssh round trip %.3f s)' % (', '.join('%s=%s' % (host, lab.ip[host]) for host in lab.hosts), offset, rtt))
        primary, why = lab.health('sync' if lab.current_mode() == 'sync' else 'async')
        if primary is None:
            log('  the cluster is not healthy: %s' % why)
            lab.restore(modes[0], None)
            primary, why = lab.health(modes[0])
        rc, _out, err = lab.psql(primary, TABLE_SQL, database=DATABASE)
        if rc != 0:
            raise ClusterBroken('creating %s on %s: %s' % (TABLE, primary, one_line(err)))
        for mode in modes:
            lab.ensure_mode(mode)
            for number in range(1, args.runs + 1):
                result = {'mode': mode, 'round': number, 'status': 'failed', 'killed': False}
                try:
                    run_round(lab, args, mode, number, result)
                except RoundFailed as error:
                    result['reason'] = str(error)
                    log('  %s %2d: FAILED: %s' % (mode, number, error))
                    results.append(result)
                    lab.restore(mode, result.get('old_primary') if result['killed'] else None)
                    continue
                results.append(result)
                log('  %s %2d: %s -> %s, time to write %.1f s, failover.yml %.1f s, lost %d rows (lost_bytes %s), '
                    'rejoin %s' % (mode, number, result['old_primary'], result['new_primary'], result['time_to_write'],
                                   result['failover_wall'], result['lost_rows'], show_bytes(result['lost_bytes']),
                                   result.get('rejoin_failed') or '%.1f s' % result['rejoin_wall']))
                if 'rejoin_failed' in result:
                    lab.restore(mode, None)
    except ClusterBroken as error:
        broken = str(error)
        log('failover.py: the cluster could not be made healthy: %s' % broken)
    finally:
        if lab is not None:
            try:
                if lab.mode != 'async' and (lab.mode is not None or lab.current_mode() != 'async'):
                    log('  switching the cluster back to async replication (site.yml '
                        '-e postgresql_replication_sync_count=0)')
                    lab.site('async')
            except ClusterBroken as error:
                log('failover.py: switching back to async failed: %s' % error)
                broken = broken or str(error)
            lab.close()
    load_end = os.getloadavg()
    code_end = code_version()
    print(report(results, modes, load_start, load_end, args))
    print('')
    print('code: %s%s' % (code_start, '' if code_end == code_start else
                          '; CHANGED during the run, to %s: the rounds ran different playbooks' % code_end))
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump({'runs': results, 'load_start': load_start, 'load_end': load_end, 'broken': broken,
                       'code_start': code_start, 'code_end': code_end},
                      handle, indent=1, sort_keys=True)
    if broken:
        return 2
    return 1 if any(res['status'] != 'ok' for res in results) else 0


if __name__ == '__main__':
    sys.exit(main())
