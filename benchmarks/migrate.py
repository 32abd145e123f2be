# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Benchmark: the sqlite_to_postgresql module against pgloader, row-by-row INSERT and ``psql \\copy``.

Run from the checkout (the venv's python is used automatically when psycopg2 is missing)::

    python3 benchmarks/migrate.py                 # 1,000,000 tasks + 10,000 agents/skills/servers
    python3 benchmarks/migrate.py --quick         # smoke run: 100,000 tasks + 1,000 of each entity
    python3 benchmarks/migrate.py --tasks 200000 --entities 2000 --methods module,copy
    python3 benchmarks/migrate.py --profile       # cProfile of the module only (per thread)

One run generates (or reuses from ``.cache/bench/``) an app-shaped SQLite file with
``tests/support/app_sqlite.py``, starts a throwaway PostgreSQL (Unix socket only, in a temporary
directory, stopped at exit) and loads the same file into a fresh database per method, each method
in its own process so that its peak RSS is its own (``os.wait4`` ``ru_maxrss``):

1. ``module``: ``migration_load.run()``, the logic behind ``agent_ui.postgresql.sqlite_to_postgresql``
   (row checks, COPY in one transaction, identities, ANALYZE, per-row checksum validation, FK
   orphan check), into the app schema (the app_schema role's migrations).  Also run on the same
   database shape ten times smaller, to show whether its memory stays flat.
2. ``pgloader``: the Debian package, SQLite -> PostgreSQL with its own schema creation.  Its
   SQLite timestamp cast rejects epoch seconds and milliseconds, so a small Lisp transform
   (written next to the load file) converts every timestamp form the app stores; pgloader does
   no validation.
3. ``rbr``: the design document's approach in Python: one ``INSERT`` per row (psycopg2), a commit
   per table, into the app schema; timed on a sample of ``--rbr-limit`` tasks.
4. ``copy``: the physical limit, ``psql \\copy`` of CSV files exported in advance (not timed)
   into the app schema, in one transaction, identities set afterwards; no checks, no validation.

It prints one table (rows, seconds, rows/s, peak RSS) with the ratios and the targets of issue 3
(module >= 1.5x pgloader, >= 0.5x \\copy, peak RSS < 150 MB and flat over a tenfold size).  It exits
0 when a target is missed (the table says so) and non-zero only on a real error: a method failed
or loaded another number of rows than the source holds.  See benchmarks/README.md.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, 'collections')
# The support package the unit tests use: the throwaway server, the app schema, the generated app data.
sys.path.insert(0, os.path.join(ROOT, 'tests', 'support'))
import app_data  # noqa: E402  pylint: disable=wrong-import-position
from pg_server import ServerError, ThrowawayServer, find_bindir  # noqa: E402  pylint: disable=wrong-import-position
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_python import ensure_modules  # noqa: E402  pylint: disable=wrong-import-position
DEFAULT_CACHE = os.path.join(ROOT, '.cache', 'bench')
GNU_TIME = '/usr/bin/time'
MB = 1024.0

# The same server settings for every method (written to postgresql.conf before the first start).
# Durability is production-like: fsync, full_page_writes and synchronous_commit stay on.
# autovacuum is off so that a vacuum of one method's tables never runs during the next method;
# a CHECKPOINT (and os.sync) precedes every timed run.
SERVER_SETTINGS = (
    ('listen_addresses', "''"),
    ('max_connections', '20'),
    ('shared_buffers', '512MB'),
    ('work_mem', '32MB'),
    ('maintenance_work_mem', '256MB'),
    ('wal_level', 'replica'),
    ('fsync', 'on'),
    ('full_page_writes', 'on'),
    ('synchronous_commit', 'on'),
    ('max_wal_size', '4GB'),
    ('min_wal_size', '1GB'),
    ('checkpoint_timeout', '30min'),
    ('autovacuum', 'off'),
    ('timezone', "'UTC'"),
)

# The app tables in load order (parents first); their columns are read from the source file (app_data), and source
# and target column names are the same in the app mapping (plugins/module_utils/migration_app.py).
TABLE_NAMES = app_data.TABLES
# What a NULL source value loads as where the target column has a default (as the module's fix-free
# path and the design document's migrator do).
NULL_DEFAULTS = {'tools': '[]', 'disallowed_tools': '[]', 'allowed_tools': '[]', 'args': '[]', 'env': '{}',
                 'enabled': True, 'disabled': False, 'model': 'sonnet', 'transport': 'stdio', 'status': 'pending',
                 'experience_score': 0}
BOOLEANS = ('enabled', 'disabled')
TIMESTAMPS = ('created_at', 'updated_at')
EPOCH_MS_THRESHOLD = 100000000000
EPOCH = datetime.datetime(1970, 1, 1)
PLAIN_TS = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?$')
EXPORT_VERSION = 3  # 3: columns in the source file's order (app_data.table_columns)
METHODS = ('module', 'pgloader', 'pgloader_app', 'rbr', 'copy')

PGLOADER_LISP = """\
;;; agent_ui.postgresql benchmark: the app's SQLite timestamps (text, epoch seconds as integer or
;;; real, epoch milliseconds) as text PostgreSQL reads as timestamptz.  pgloader's own
;;; sqlite-timestamp-to-timestamp rejects the epoch forms.
(in-package #:pgloader.transforms)

(defun agent-ui-epoch-ms-text (ms)
  (multiple-value-bind (secs millis) (floor ms 1000)
    (multiple-value-bind (s mi h d mo y) (decode-universal-time (+ secs 2208988800) 0)
      (format nil "~4,'0d-~2,'0d-~2,'0d ~2,'0d:~2,'0d:~2,'0d.~3,'0d+00" y mo d h mi s millis))))

(defun agent-ui-timestamp (value)
  (cond ((null value) nil)
        ((integerp value) (agent-ui-epoch-ms-text (if (>= (abs value) 100000000000) value (* value 1000))))
        ((realp value) (agent-ui-epoch-ms-text (round (* value 1000))))
        (t value)))

;;; The app's 0/1/NULL booleans for the app schema's NOT NULL boolean columns (NULL -> the default).
(defun agent-ui-true-if-null (value)
  (if (or (eql value 0) (equal value "0")) "f" "t"))

(defun agent-ui-false-if-null (value)
  (if (or (null value) (eql value 0) (equal value "0")) "f" "t"))
"""

# pgloader creating its own schema from the SQLite one (the comparison the targets refer to).
PGLOADER_LOAD = """\
LOAD DATABASE
     FROM sqlite://{src}
     INTO postgresql://{user}@unix:{socket}:{port}/{db}
 WITH include drop, create tables, create indexes, reset sequences, foreign keys,
      workers = {workers}, concurrency = {concurrency}, batch rows = {batch_rows}, prefetch rows = {prefetch_rows}
  SET work_mem to '32MB', maintenance_work_mem to '256MB', timezone to 'UTC'
 CAST type datetime to timestamptz drop default using agent-ui-timestamp
;
"""
# pgloader loading only the data into the app schema (same target as the module; extra information).
PGLOADER_APP_LOAD = """\
LOAD DATABASE
     FROM sqlite://{src}
     INTO postgresql://{user}@unix:{socket}:{port}/{db}
 WITH data only, reset sequences,
      workers = {workers}, concurrency = {concurrency}, batch rows = {batch_rows}, prefetch rows = {prefetch_rows}
  SET work_mem to '32MB', maintenance_work_mem to '256MB', timezone to 'UTC'
 CAST type datetime to timestamptz drop default using agent-ui-timestamp,
      column agents.enabled to boolean using agent-ui-true-if-null,
      column mcp_servers.disabled to boolean using agent-ui-false-if-null
;
"""


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

class BenchError(Exception):
    """A real error: the benchmark cannot give a meaningful result."""


def log(msg):
    sys.stderr.write('[bench %s] %s\n' % (time.strftime('%H:%M:%S'), msg))
    sys.stderr.flush()


def tail(path, chars=3000):
    if not os.path.exists(path):
        return ''
    with open(path, 'rb') as handle:
        data = handle.read()
    return data[-chars:].decode('utf-8', 'replace')


def fmt_int(value):
    return '{:,}'.format(int(value))


# ---------------------------------------------------------------------------
# Value conversion shared by the row-by-row loader and the CSV export
# ---------------------------------------------------------------------------

def timestamp_text(value):
    """A SQLite timestamp (any form the app stores) as text PostgreSQL reads as timestamptz."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        ms = value if abs(value) >= EPOCH_MS_THRESHOLD else value * 1000
        moment = EPOCH + datetime.timedelta(milliseconds=round(ms))
        return moment.strftime('%Y-%m-%d %H:%M:%S.%f') + '+00'
    if PLAIN_TS.match(value):
        return value + '+00'  # SQLite's CURRENT_TIMESTAMP form is UTC
    return value


def row_converter(columns):
    """Function turning one SQLite row of ``columns`` into Python values for the app schema."""
    steps = []
    for i, name in enumerate(columns):
        if name in TIMESTAMPS:
            steps.append((i, timestamp_text, None))
        elif name in BOOLEANS:
            steps.append((i, bool, NULL_DEFAULTS[name]))
        elif name in NULL_DEFAULTS:
            steps.append((i, None, NULL_DEFAULTS[name]))

    def convert(row):
        values = list(row)
        for i, func, default in steps:
            value = values[i]
            if value is None:
                values[i] = default
            elif func is not None:
                values[i] = func(value)
        return values
    return convert


def csv_field(value):
    """One CSV field as PostgreSQL's CSV format reads it: NULL is an unquoted empty field, text is always quoted."""
    if value is None:
        return ''
    if value is True or value is False:
        return 't' if value else 'f'
    if isinstance(value, (int, float)):
        return repr(value)
    return '"%s"' % value.replace('"', '""')


def csv_line(values):
    return ','.join(csv_field(value) for value in values) + '\n'


# ---------------------------------------------------------------------------
# Data sets (cached under .cache/bench)
# ---------------------------------------------------------------------------

def dataset_params(args, divisor=1):
    def part(value):
        return max(1, value // divisor) if value else 0
    return {'tasks': part(args.tasks), 'agents': part(args.agents), 'skills': part(args.skills),
            'mcp_servers': part(args.mcp_servers), 'large_prompt_kb': args.large_prompt_kb, 'seed': args.seed}


def ensure_dataset(params, cache_dir):
    """Path of the app SQLite file for ``params`` (generated once, then reused) and its row counts."""
    tick = time.time()
    path = app_data.cached_app_sqlite(cache_dir, log=log, **params)
    if time.time() - tick > 1:
        log('generated in %.1f s (%.1f MB)' % (time.time() - tick, os.path.getsize(path) / MB / MB))
    return path, app_data.row_counts(path)


def ensure_csv(sqlite_path):
    """Directory of ``<table>.csv`` files holding the converted rows of ``sqlite_path`` (cached)."""
    directory = '%s.csv-v%d' % (sqlite_path[:-len('.sqlite')], EXPORT_VERSION)
    done = os.path.join(directory, 'done')
    if os.path.exists(done):
        return directory
    log('exporting CSV for psql \\copy to %s (not timed)' % directory)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    src = sqlite3.connect('file:%s?mode=ro' % sqlite_path, uri=True)
    try:
        for table, columns in app_data.table_columns(sqlite_path):
            convert = row_converter(columns)
            with open(os.path.join(directory, table + '.csv'), 'w', newline='', encoding='utf-8') as handle:
                cursor = src.execute('SELECT %s FROM %s ORDER BY id' % (', '.join(columns), table))
                while True:
                    rows = cursor.fetchmany(10000)
                    if not rows:
                        break
                    handle.write(''.join(csv_line(convert(row)) for row in rows))
    finally:
        src.close()
    with open(done, 'w') as handle:
        handle.write('ok\n')
    return directory


# ---------------------------------------------------------------------------
# The throwaway server
# ---------------------------------------------------------------------------

class Server(ThrowawayServer):
    """The benchmark's server (tests/support/pg_server.py) with its SERVER_SETTINGS, and two helpers of its own."""

    def __init__(self, bindir, run_user, port=5432):
        super(Server, self).__init__(bindir, [s for s in SERVER_SETTINGS if s[0] != 'listen_addresses'], run_user=run_user,
                                     port=port, prefix='agent-ui-bench-')

    def quiesce(self):
        """Flush what earlier steps left behind so it is not charged to the next timed run."""
        os.sync()
        self.query('postgres', 'CHECKPOINT')

    def counts(self, db):
        conn = self.connect(db)
        try:
            cur = conn.cursor()
            result = {}
            for name in TABLE_NAMES:
                cur.execute('SELECT count(*) FROM public.%s' % name)
                result[name] = cur.fetchone()[0]
            return result
        finally:
            conn.close()


# ---------------------------------------------------------------------------
# Timed child processes
# ---------------------------------------------------------------------------

def spawn(argv, log_path, env=None):
    """Run ``argv``; return (wall seconds, peak RSS in MB, exit code).

    A child's ``ru_maxrss`` starts at the RSS of the process that forked it (Linux carries the
    old address space's high-water mark across exec), so ``os.wait4`` on a child of this
    Python process would report at least this process's own RSS.  GNU time forks the method
    from a process of about 2 MB and reports the method's ``ru_maxrss`` (``%M``), which is what
    is used when /usr/bin/time exists; otherwise ``os.wait4``'s value is reported (an upper bound).
    """
    rss_file = log_path + '.rss'
    if os.path.exists(GNU_TIME):
        argv = [GNU_TIME, '-f', '%M', '-o', rss_file] + list(argv)
    with open(log_path, 'ab') as out:
        tick = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)  # pylint: disable=consider-using-with
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - tick
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    proc.returncode = code
    rss = usage.ru_maxrss / MB
    if os.path.exists(rss_file):
        with open(rss_file) as handle:
            measured = [line for line in handle.read().split() if line.isdigit()]
        if measured:
            rss = int(measured[-1]) / MB
    return seconds, rss, code


def worker_argv(spec):
    return [sys.executable, os.path.abspath(__file__), '--worker', json.dumps(spec)]


# ---------------------------------------------------------------------------
# Workers (run in the child process)
# ---------------------------------------------------------------------------

def worker_main(spec):
    if spec['method'] == 'module':
        result = worker_module(spec)
    elif spec['method'] == 'rbr':
        result = worker_rbr(spec)
    else:
        raise BenchError('unknown worker method %r' % spec['method'])
    with open(spec['result'], 'w') as handle:
        json.dump(result, handle, sort_keys=True, default=str)
    return 0


def worker_module(spec):
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)
    from ansible_collections.agent_ui.postgresql.plugins.module_utils import migration_load
    params = {'src': spec['src'], 'db': spec['db'], 'login_unix_socket': spec['socket'], 'login_port': spec['port'],
              'login_user': spec['user']}
    trace = None
    if spec.get('profile'):
        result = profiled_module_run(migration_load, params, spec['profile'])
    elif spec.get('trace'):
        result, trace = traced_module_run(migration_load, params)
    else:
        result = migration_load.run(params)
    return {'trace': trace, 'tables': result['tables'], 'validation': result['validation'], 'timings': result['timings'],
            'problem_summary': result.get('problem_summary'), 'changed': result['changed'],
            'rebuilt_after_load': result.get('rebuilt_after_load')}


def copy_reader_class(migration_load):
    """The module's COPY reader class (its producer thread runs the row checks), wherever it lives."""
    reader = getattr(migration_load, 'CopyReader', None)
    if reader is None:
        from ansible_collections.agent_ui.postgresql.plugins.module_utils import migration_stream
        reader = migration_stream.CopyReader
    return reader


def profiled_module_run(migration_load, params, directory):
    """migration_load.run() under cProfile, one profile per thread (the row checks run in the COPY producer thread)."""
    import cProfile
    profiles = {}
    reader_class = copy_reader_class(migration_load)
    original = reader_class._produce  # pylint: disable=protected-access

    def produce(self):
        profile = profiles.setdefault('producer', cProfile.Profile())
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    reader_class._produce = produce  # pylint: disable=protected-access
    profiles['main'] = cProfile.Profile()
    result = profiles['main'].runcall(migration_load.run, params)
    for name, profile in profiles.items():
        profile.dump_stats(os.path.join(directory, 'module-%s.prof' % name))
    return result


def traced_module_run(migration_load, params):
    """migration_load.run() with wall-clock timing of each SQL statement and COPY, and of the waits for the producer thread.

    No profiler overhead: the producer's CPU time is read with time.thread_time() in that thread.
    """
    import threading
    import psycopg2.extensions
    trace = {'statements': {}, 'copies': [], 'producer_cpu': []}
    state = {'wait': 0.0}
    reader_class = copy_reader_class(migration_load)
    original_read, original_produce = reader_class.read, reader_class._produce  # pylint: disable=protected-access

    def read(self, size=-1):
        tick = time.monotonic()
        try:
            return original_read(self, size)
        finally:
            state['wait'] += time.monotonic() - tick

    def produce(self):
        start = time.thread_time()
        try:
            original_produce(self)
        finally:
            trace['producer_cpu'].append((threading.current_thread().name, time.thread_time() - start))

    class TimingCursor(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):  # pylint: disable=redefined-builtin
            tick = time.monotonic()
            try:
                return super(TimingCursor, self).execute(query, vars)
            finally:
                key = ' '.join(str(query).split())[:90]
                count, total = trace['statements'].get(key, (0, 0.0))
                trace['statements'][key] = (count + 1, total + time.monotonic() - tick)

        def copy_expert(self, sql, file, size=8192):
            tick, state['wait'] = time.monotonic(), 0.0
            try:
                return super(TimingCursor, self).copy_expert(sql, file, size)
            finally:
                trace['copies'].append((' '.join(sql.split())[:60], time.monotonic() - tick, state['wait']))

    def connect_fn(params):
        conn = migration_load.connect(params)
        conn.cursor_factory = TimingCursor
        return conn

    reader_class.read, reader_class._produce = read, produce  # pylint: disable=protected-access
    try:
        result = migration_load.run(params, connect_fn=connect_fn)
    finally:
        reader_class.read, reader_class._produce = original_read, original_produce  # pylint: disable=protected-access
    return result, trace


def print_trace(trace, top=12):
    copies = trace['copies']
    print('\n--- trace of the module run (wall clock, no profiler) ---')
    print('COPY statements: seconds in copy_expert, of which waiting for the producer thread (row checks); the rest is '
          'PostgreSQL consuming the rows:')
    for sql, seconds, wait in copies:
        print('  %7.2f s  wait %6.2f s  server %6.2f s  %s' % (seconds, wait, seconds - wait, sql))
    total, waited = sum(c[1] for c in copies), sum(c[2] for c in copies)
    print('  %7.2f s  wait %6.2f s  server %6.2f s  (all COPY)' % (total, waited, total - waited))
    producer = sum(cpu for _name, cpu in trace['producer_cpu'])
    print('producer threads: %.2f s CPU in total over %d tables' % (producer, len(trace['producer_cpu'])))
    statements = sorted(trace['statements'].items(), key=lambda item: -item[1][1])
    print('slowest other statements (calls, seconds):')
    for sql, (count, seconds) in statements[:top]:
        print('  %5d  %7.2f s  %s' % (count, seconds, sql))


def worker_rbr(spec):
    """The design document's approach: every table read whole, then one INSERT per row, a commit per table."""
    import psycopg2
    src = sqlite3.connect('file:%s?mode=ro' % spec['src'], uri=True)
    conn = psycopg2.connect(host=spec['socket'], port=spec['port'], user=spec['user'], dbname=spec['db'])
    loaded = {}
    try:
        cur = conn.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute("SET agent_ui.bulk_load = 'on'")  # same audit-trigger bypass as the module and \copy
        conn.commit()
        for table, columns in app_data.table_columns(spec['src']):
            query = 'SELECT %s FROM %s ORDER BY id' % (', '.join(columns), table)
            if table == 'tasks' and spec.get('limit'):
                query += ' LIMIT %d' % spec['limit']
            rows = src.execute(query).fetchall()  # the design's migrator reads each table whole (.all())
            convert = row_converter(columns)
            insert = 'INSERT INTO %s (%s) VALUES (%s)' % (table, ', '.join(columns), ', '.join(['%s'] * len(columns)))
            for row in rows:
                cur.execute(insert, convert(row))
            conn.commit()
            loaded[table] = len(rows)
            del rows
        for table in TABLE_NAMES:
            cur.execute("SELECT setval(pg_get_serial_sequence(%%s, 'id'), GREATEST(max(id), 1)) FROM %s" % table, (table,))
        conn.commit()
    finally:
        conn.close()
        src.close()
    return {'loaded': loaded}


# ---------------------------------------------------------------------------
# Methods (run in the parent: prepare a database, time the child, verify)
# ---------------------------------------------------------------------------

class Context(object):
    def __init__(self, args, server, workdir):
        self.args = args
        self.server = server
        self.workdir = workdir
        self.template = 'bench_app_template'

    def fresh_db(self, name, app_schema=True):
        self.server.make_database(name, self.template if app_schema else None)
        self.server.quiesce()

    def paths(self, name):
        return os.path.join(self.workdir, name + '.log'), os.path.join(self.workdir, name + '.json')


def result_row(method, label, rows, seconds, rss, note='', detail=None):
    return {'method': method, 'label': label, 'rows': rows, 'seconds': seconds, 'rows_per_second': rows / seconds if seconds else 0,
            'peak_rss_mb': rss, 'note': note, 'detail': detail or {}}


def verify_counts(server, db, expected, label):
    got = server.counts(db)
    bad = dict((name, (got.get(name), expected[name])) for name in TABLE_NAMES if got.get(name) != expected[name])
    if bad:
        raise BenchError('%s: row counts differ from the source (table: loaded, expected): %s' % (label, bad))
    return sum(got.values())


def run_module(ctx, name, src, expected, label, profile=None, trace=False):
    db = 'bench_' + name
    ctx.fresh_db(db)
    log_path, result_path = ctx.paths(name)
    spec = {'method': 'module', 'src': src, 'db': db, 'socket': ctx.server.socket_dir, 'port': ctx.server.port,
            'user': ctx.server.user, 'result': result_path, 'profile': profile, 'trace': trace}
    log('%s: loading %s rows' % (label, fmt_int(sum(expected.values()))))
    seconds, rss, code = spawn(worker_argv(spec), log_path)
    if code != 0:
        raise BenchError('%s failed (exit %d):\n%s' % (label, code, tail(log_path)))
    with open(result_path) as handle:
        result = json.load(handle)
    validation = result['validation']
    if not (validation['counts_match'] and validation['checksums_match'] and validation['fk_orphans'] == 0):
        raise BenchError('%s: the module reported a failed validation: %s' % (label, validation))
    rows = verify_counts(ctx.server, db, expected, label)
    ctx.server.drop_database(db)
    timings = result['timings']
    note = 'load %.1fs, finish %.1fs, validate %.1fs' % tuple(
        timings.get(key, 0) for key in ('load_seconds', 'finish_seconds', 'validate_seconds'))
    return result_row('module', label, rows, seconds, rss, note, {'timings': timings, 'trace': result.get('trace'),
                                                                  'rebuilt_after_load': result.get('rebuilt_after_load')})


def run_pgloader(ctx, src, expected, app_schema=False):
    args = ctx.args
    name = 'pgloader_app' if app_schema else 'pgloader'
    db = 'bench_' + name
    ctx.fresh_db(db, app_schema=app_schema)
    if app_schema:
        # pgloader's SET clause cannot name a dotted setting: the audit-trigger bypass goes on the database.
        ctx.server.query('postgres', 'ALTER DATABASE "%s" SET agent_ui.bulk_load = \'on\'' % db)
    log_path, _result = ctx.paths(name)
    lisp = os.path.join(ctx.workdir, 'agent_ui_transforms.lisp')
    with open(lisp, 'w') as handle:
        handle.write(PGLOADER_LISP)
    load = os.path.join(ctx.workdir, name + '.load')
    with open(load, 'w') as handle:
        handle.write((PGLOADER_APP_LOAD if app_schema else PGLOADER_LOAD).format(
            src=src, user=ctx.server.user, socket=ctx.server.socket_dir, port=ctx.server.port, db=db,
            workers=args.pgloader_workers, concurrency=args.pgloader_concurrency, batch_rows=args.pgloader_batch_rows,
            prefetch_rows=args.pgloader_prefetch_rows))
    argv = [args.pgloader, '--root-dir', os.path.join(ctx.workdir, 'pgloader-root'), '--load-lisp-file', lisp, load]
    log('%s: loading %s rows (workers=%d, concurrency=%d)' % (
        name, fmt_int(sum(expected.values())), args.pgloader_workers, args.pgloader_concurrency))
    seconds, rss, code = spawn(argv, log_path)
    if code != 0:
        raise BenchError('%s failed (exit %d):\n%s' % (name, code, tail(log_path)))
    total = [line for line in tail(log_path, 4000).splitlines() if 'Total import time' in line]
    rows = verify_counts(ctx.server, db, expected, name)
    ctx.server.drop_database(db)
    if app_schema:
        label, note = 'pgloader, data only into app schema', 'same target as the module; tables in parallel, no validation'
    else:
        label, note = 'pgloader %s' % args.pgloader_version, 'own schema, indexes+FKs built after load, no validation'
    return result_row(name, label, rows, seconds, rss, note, {'summary': total[-1].strip() if total else None})


def run_rbr(ctx, src, expected, limit):
    db = 'bench_rbr'
    ctx.fresh_db(db)
    log_path, result_path = ctx.paths('rbr')
    sample = dict(expected)
    sample['tasks'] = min(limit, expected['tasks']) if limit else expected['tasks']
    spec = {'method': 'rbr', 'src': src, 'db': db, 'socket': ctx.server.socket_dir, 'port': ctx.server.port,
            'user': ctx.server.user, 'result': result_path, 'limit': limit}
    log('row-by-row INSERT: loading %s rows (%s of %s tasks)' % (fmt_int(sum(sample.values())), fmt_int(sample['tasks']),
                                                                 fmt_int(expected['tasks'])))
    seconds, rss, code = spawn(worker_argv(spec), log_path)
    if code != 0:
        raise BenchError('row-by-row INSERT failed (exit %d):\n%s' % (code, tail(log_path)))
    rows = verify_counts(ctx.server, db, sample, 'row-by-row INSERT')
    ctx.server.drop_database(db)
    note = 'one INSERT per row, commit per table'
    if sample['tasks'] < expected['tasks']:
        full = sum(expected.values())
        note += '; SAMPLE: %s of %s tasks, full load est. %.0f s' % (
            fmt_int(sample['tasks']), fmt_int(expected['tasks']), full / (rows / seconds))
    return result_row('rbr', 'row-by-row INSERT (psycopg2)', rows, seconds, rss, note, {'sample_tasks': sample['tasks']})


def run_copy(ctx, src, csv_dir, expected):
    db = 'bench_copy'
    ctx.fresh_db(db)
    log_path, _result = ctx.paths('copy')
    script = os.path.join(ctx.workdir, 'copy.sql')
    with open(script, 'w') as handle:
        handle.write('\\set ON_ERROR_STOP on\nBEGIN;\nSET LOCAL agent_ui.bulk_load = \'on\';\nSET LOCAL TimeZone = \'UTC\';\n')
        for table, columns in app_data.table_columns(src):
            csv_path = os.path.join(csv_dir, table + '.csv')
            handle.write("\\copy %s (%s) FROM '%s' WITH (FORMAT csv)\n" % (table, ', '.join(columns), csv_path))
        for table in TABLE_NAMES:
            handle.write("SELECT setval(pg_get_serial_sequence('%s', 'id'), GREATEST(max(id), 1)) FROM %s;\n" % (table, table))
        handle.write('COMMIT;\n')
    env = dict(os.environ, PGHOST=ctx.server.socket_dir, PGPORT=str(ctx.server.port), PGUSER=ctx.server.user, PGDATABASE=db)
    argv = [ctx.args.psql, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', script]
    log('psql \\copy: loading %s rows' % fmt_int(sum(expected.values())))
    seconds, rss, code = spawn(argv, log_path, env)
    if code != 0:
        raise BenchError('psql \\copy failed (exit %d):\n%s' % (code, tail(log_path)))
    rows = verify_counts(ctx.server, db, expected, 'psql \\copy')
    ctx.server.drop_database(db)
    return result_row('copy', 'psql \\copy (CSV)', rows, seconds, rss, 'one transaction, same app schema; no checks or validation')


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def combine(runs):
    """One result from the repeated runs of a method: the run with the median time, the highest peak RSS."""
    ordered = sorted(runs, key=lambda res: res['seconds'])
    res = dict(ordered[(len(ordered) - 1) // 2])
    res['peak_rss_mb'] = max(run['peak_rss_mb'] for run in runs)
    if len(runs) > 1:
        res['note'] = 'median of %d (%s s); %s' % (len(runs), '/'.join('%.1f' % run['seconds'] for run in runs), res['note'])
        res['detail'] = dict(res['detail'], all_seconds=[run['seconds'] for run in runs])
    return res


def print_table(results):
    header = ('method', 'rows', 'seconds', 'rows/s', 'peak RSS MB', 'notes')
    lines = [header]
    for res in results:
        lines.append((res['label'], fmt_int(res['rows']), '%.1f' % res['seconds'], fmt_int(res['rows_per_second']),
                      '%.1f' % res['peak_rss_mb'], res['note']))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for n, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [line[i].rjust(widths[i]) for i in range(1, len(widths))] + [line[-1]]
        print('  '.join(cells).rstrip())
        if n == 0:
            print('  '.join('-' * w for w in widths) + '  -----')


def server_floor(trace):
    """Seconds the module's connection spent inside PostgreSQL (COPY minus waits for the row checks, plus every
    other statement), from a trace; None without one.  This is what no client-side speed-up can remove."""
    if not trace:
        return None
    copy_in = sum(seconds - wait for sql, seconds, wait in trace['copies'] if not sql.startswith('COPY ('))
    copy_out = sum(seconds - wait for sql, seconds, wait in trace['copies'] if sql.startswith('COPY ('))
    statements = sum(seconds for _count, seconds in trace['statements'].values())
    return {'seconds': copy_in + copy_out + statements, 'copy_in': copy_in}


def evaluate(results, args):
    """Ratios and PASS/FAIL lines for the targets of issue 3."""
    by = dict((res['method'] + ('_tenth' if res['detail'].get('tenth') else ''), res) for res in results)
    module = by.get('module')
    lines, verdicts = [], []

    def verdict(name, ok, text):
        verdicts.append(ok)
        lines.append('%-4s  %s: %s' % ('PASS' if ok else 'FAIL', name, text))

    if module is None:
        return ['(module not run: no ratios)'], verdicts
    if 'pgloader' in by:
        ratio = module['rows_per_second'] / by['pgloader']['rows_per_second']
        verdict('module >= 1.5x pgloader rows/s', ratio >= 1.5, 'module/pgloader = %.2fx' % ratio)
    if 'copy' in by:
        ratio = module['rows_per_second'] / by['copy']['rows_per_second']
        verdict('module >= 0.5x \\copy rows/s', ratio >= 0.5, 'module/\\copy = %.2fx' % ratio)
    floor = server_floor(module['detail'].get('trace'))
    if floor is not None:
        ceiling = module['rows'] / floor['seconds']
        lines.append('info  server floor: PostgreSQL itself is busy %.1f s in the module\'s one transaction (COPY in %.1f s, '
                     'index/FK rebuild, validation read-back and ANALYZE %.1f s), so even with free row checks the module '
                     'tops out near %s rows/s' % (floor['seconds'], floor['copy_in'], floor['seconds'] - floor['copy_in'],
                                                  fmt_int(ceiling)))
        if 'pgloader' in by:
            lines.append('info  that ceiling is %.2fx pgloader; 1.5x pgloader needs %s rows/s' % (
                ceiling / by['pgloader']['rows_per_second'], fmt_int(1.5 * by['pgloader']['rows_per_second'])))
    if 'pgloader_app' in by:
        ratio = module['rows_per_second'] / by['pgloader_app']['rows_per_second']
        lines.append('info  module/pgloader-into-app-schema = %.2fx (rows/s, same target tables)' % ratio)
    if 'rbr' in by:
        ratio = module['rows_per_second'] / by['rbr']['rows_per_second']
        lines.append('info  module/row-by-row INSERT = %.1fx (rows/s, row-by-row on its sample)' % ratio)
    verdict('module peak RSS < %d MB' % args.rss_limit, module['peak_rss_mb'] < args.rss_limit,
            '%.1f MB at %s rows' % (module['peak_rss_mb'], fmt_int(module['rows'])))
    tenth = by.get('module_tenth')
    if tenth is not None:
        growth = module['peak_rss_mb'] - tenth['peak_rss_mb']
        allowed = max(args.flat_slack_mb, tenth['peak_rss_mb'] * args.flat_slack_pct / 100.0)
        verdict('module peak RSS flat over 10x data', growth <= allowed,
                '%.1f MB at %s rows -> %.1f MB at %s rows (%+.1f MB; flat = at most +%.1f MB, i.e. max(%d MB, %d%%))' % (
                    tenth['peak_rss_mb'], fmt_int(tenth['rows']), module['peak_rss_mb'], fmt_int(module['rows']), growth,
                    allowed, args.flat_slack_mb, args.flat_slack_pct))
    return lines, verdicts


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(
        description='Load one app-shaped SQLite file four ways (sqlite_to_postgresql module, pgloader, row-by-row INSERT, '
                    'psql \\copy) and compare rows/s and peak RSS.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--tasks', type=int, default=None, help='task rows (default 1,000,000; 100,000 with --quick)')
    parser.add_argument('--entities', type=int, default=None,
                        help='agents, skills and MCP servers each (default 10,000; 1,000 with --quick)')
    parser.add_argument('--agents', type=int, help='agents (overrides --entities)')
    parser.add_argument('--skills', type=int, help='skills (overrides --entities)')
    parser.add_argument('--mcp-servers', type=int, help='MCP servers (overrides --entities)')
    parser.add_argument('--scale', type=float, default=1.0, help='multiply every row count by this factor')
    parser.add_argument('--quick', action='store_true', help='smoke run: 100,000 tasks, 1,000 entities, --rbr-limit 10,000')
    parser.add_argument('--large-prompt-kb', type=int, default=120, help='size of the few very large prompts')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--methods', default=','.join(METHODS), help='comma-separated subset of %s' % ','.join(METHODS))
    parser.add_argument('--repeat', type=int, default=1, help='run every method this many times (round robin); report the median')
    parser.add_argument('--no-tenfold', action='store_true', help='skip the module run on the ten times smaller database')
    parser.add_argument('--rbr-limit', type=int, default=None,
                        help='row-by-row INSERT loads only this many tasks (0 = all; default 50,000, 10,000 with --quick)')
    parser.add_argument('--pgloader', default=shutil.which('pgloader') or '/usr/bin/pgloader')
    parser.add_argument('--pgloader-workers', type=int, default=4)
    parser.add_argument('--pgloader-concurrency', type=int, default=2)
    parser.add_argument('--pgloader-batch-rows', type=int, default=25000)
    parser.add_argument('--pgloader-prefetch-rows', type=int, default=100000)
    parser.add_argument('--psql', default=shutil.which('psql') or 'psql')
    parser.add_argument('--pg-bin', default=find_bindir(), help='directory of initdb and pg_ctl (default: PG_BINDIR, else the newest '
                        'installed PostgreSQL, as for the unit tests)')
    parser.add_argument('--pg-user', default='postgres', help='unprivileged OS user that runs the server when started as root')
    parser.add_argument('--cache-dir', default=DEFAULT_CACHE, help='generated SQLite files and CSV exports')
    parser.add_argument('--rss-limit', type=int, default=150, help='target: module peak RSS below this many MB')
    parser.add_argument('--flat-slack-mb', type=int, default=10, help='"flat": RSS may grow by this many MB over 10x data ...')
    parser.add_argument('--flat-slack-pct', type=int, default=20, help='... or by this percentage, whichever is larger')
    parser.add_argument('--profile', action='store_true',
                        help='run only the module, under cProfile (one profile per thread), and print where its time goes')
    parser.add_argument('--trace', action='store_true',
                        help='run only the module and print where its wall time goes (COPY vs waiting for the row checks, '
                             'slowest SQL statements), without profiler overhead')
    parser.add_argument('--json', help='also write the results as JSON to this file')
    parser.add_argument('--keep-logs', action='store_true', help='keep the per-method logs (printed directory)')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    base_tasks, base_entities, base_limit = (100000, 1000, 10000) if quick else (1000000, 10000, 50000)
    args.tasks = int((args.tasks if args.tasks is not None else base_tasks) * args.scale)
    entities = args.entities if args.entities is not None else base_entities
    for name in ('agents', 'skills', 'mcp_servers'):
        value = getattr(args, name)
        setattr(args, name, int((value if value is not None else entities) * args.scale))
    args.rbr_limit = base_limit if args.rbr_limit is None else args.rbr_limit
    args.methods = [m.strip() for m in args.methods.split(',') if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error('unknown method(s): %s' % ', '.join(unknown))
    if args.profile or args.trace:
        args.methods, args.no_tenfold = ['module'], True
    return args


def ensure_python():
    """Re-run under the checkout's venv when this interpreter lacks psycopg2."""
    problem = ensure_modules(__file__, ['psycopg2'])
    if problem:
        raise BenchError(problem)


def tool_version(argv):
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False).stdout
    except OSError:
        return 'missing'
    return out.splitlines()[0].strip() if out else 'unknown'


def print_profile(directory, top=25):
    import pstats
    for name in ('main', 'producer'):
        path = os.path.join(directory, 'module-%s.prof' % name)
        if not os.path.exists(path):
            continue
        print('\n--- cProfile, %s thread (%s), top %d by own time ---' % (
            name, 'COPY send, identities, ANALYZE, validation' if name == 'main' else 'SQLite read + row checks + COPY chunks', top))
        stats = pstats.Stats(path)
        stats.sort_stats('tottime').print_stats(top)


def benchmark(args):
    for tool, path in (('initdb', os.path.join(args.pg_bin, 'initdb')), ('pgloader', args.pgloader), ('psql', args.psql)):
        if (tool != 'pgloader' or set(args.methods) & set(['pgloader', 'pgloader_app'])) and not (os.path.exists(path) or shutil.which(path)):
            raise BenchError('%s not found at %s' % (tool, path))
    os.makedirs(args.cache_dir, exist_ok=True)
    full_params = dataset_params(args)
    src, expected = ensure_dataset(full_params, args.cache_dir)
    tenth = None
    if 'module' in args.methods and not args.no_tenfold:
        tenth = ensure_dataset(dataset_params(args, 10), args.cache_dir)
    csv_dir = ensure_csv(src) if 'copy' in args.methods else None
    args.pgloader_version = tool_version([args.pgloader, '--version']).replace('pgloader version ', '').strip('"')

    args.load_before = os.getloadavg()
    workdir = tempfile.mkdtemp(prefix='agent-ui-bench-run-')
    server = Server(args.pg_bin, args.pg_user)
    results, errors, failed = [], [], set()
    try:
        log('starting PostgreSQL in %s' % server.base)
        server.start()
        server.make_app_template('bench_app_template')
        ctx = Context(args, server, workdir)
        profile_dir = None
        if args.profile:
            profile_dir = os.path.join(args.cache_dir, 'profile')
            os.makedirs(profile_dir, exist_ok=True)
        steps = []
        if tenth is not None:
            steps.append(('module_tenth', lambda: run_module(ctx, 'module_tenth', tenth[0], tenth[1], 'module, 1/10 size')))
        if 'module' in args.methods:
            steps.append(('module', lambda: run_module(
                ctx, 'module', src, expected, 'module (checks+COPY+validation)', profile=profile_dir,
                trace=profile_dir is None)))
        if 'pgloader' in args.methods:
            steps.append(('pgloader', lambda: run_pgloader(ctx, src, expected)))
        if 'pgloader_app' in args.methods:
            steps.append(('pgloader_app', lambda: run_pgloader(ctx, src, expected, app_schema=True)))
        if 'rbr' in args.methods:
            steps.append(('rbr', lambda: run_rbr(ctx, src, expected, args.rbr_limit)))
        if 'copy' in args.methods:
            steps.append(('copy', lambda: run_copy(ctx, src, csv_dir, expected)))
        runs = dict((name, []) for name, _step in steps)
        for round_no in range(1, args.repeat + 1):
            if args.repeat > 1:
                log('round %d of %d' % (round_no, args.repeat))
            for name, step in steps:
                if name in failed:
                    continue
                try:
                    res = step()
                except BenchError as exc:
                    failed.add(name)
                    errors.append('%s: %s' % (name, exc))
                    log('ERROR %s: %s' % (name, exc))
                    continue
                runs[name].append(res)
                log('%s: %s rows in %.1f s = %s rows/s, peak RSS %.1f MB' % (
                    res['label'], fmt_int(res['rows']), res['seconds'], fmt_int(res['rows_per_second']), res['peak_rss_mb']))
        for name, _step in steps:
            if runs[name] and name not in failed:
                res = combine(runs[name])
                res['detail']['tenth'] = name == 'module_tenth'
                results.append(res)
        version = server.version()
    finally:
        server.stop()
        if args.keep_logs or errors:
            log('per-method logs kept in %s' % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    args.load_after = os.getloadavg()
    report(args, src, expected, version, results, errors)
    if args.profile:
        print_profile(os.path.join(args.cache_dir, 'profile'))
    for res in results:
        if args.trace and res['detail'].get('trace'):
            print_trace(res['detail']['trace'])
    return 1 if errors else 0


def report(args, src, expected, version, results, errors):
    print()
    print('sqlite_to_postgresql benchmark: %s (%.1f MB)' % (os.path.basename(src), os.path.getsize(src) / MB / MB))
    print('source rows: %s = %s' % (fmt_int(sum(expected.values())), ', '.join('%s %s' % (n, fmt_int(expected[n])) for n in TABLE_NAMES)))
    print('host: %d CPUs, Python %s, PostgreSQL %s, pgloader %s' % (
        os.cpu_count() or 0, platform.python_version(), version, args.pgloader_version))
    print('load average (1/5/15 min) before %s, after %s: other work on the host slows every method alike, '
          'so compare methods within one run' % ('/'.join('%.1f' % v for v in args.load_before),
                                                 '/'.join('%.1f' % v for v in args.load_after)))
    print('server: %s' % ', '.join('%s=%s' % (n, v.strip("'")) for n, v in SERVER_SETTINGS if n != 'listen_addresses'))
    print('seconds = wall time of the method\'s own process (start to exit); peak RSS = its ru_maxrss (client side only)')
    print()
    print_table(results)
    print()
    lines, _verdicts = evaluate(results, args)
    for line in lines:
        print(line)
    for error in errors:
        print('ERROR %s' % error.splitlines()[0])
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump({'source': src, 'source_rows': expected, 'postgresql': version, 'settings': dict(SERVER_SETTINGS),
                       'results': results, 'targets': lines, 'errors': errors}, handle, indent=2, sort_keys=True, default=str)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        return worker_main(json.loads(args.worker))
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        ensure_python()
        return benchmark(args)
    except (BenchError, ServerError) as exc:
        sys.stderr.write('benchmark error: %s\n' % exc)
        return 2
    except Exception:  # pylint: disable=broad-except
        traceback.print_exc()
        return 2


if __name__ == '__main__':
    sys.exit(main())
