# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Loading: one transaction, COPY streamed from the row checks, then validation.

:func:`run` is the whole migration behind the ``sqlite_to_postgresql`` module:

1. open the source snapshot (and take the verified backup when asked);
2. plan the tables (app mapping or generic mode) and lock the target tables;
3. if the target already holds rows, compare them with the source row by row (checksums
   streamed in key order from both sides): identical -> nothing to do (changed=false),
   different -> fail with a summary unless ``on_conflict=replace``;
4. stream every table through the row checks into ``COPY ... FROM STDIN`` (all tables in
   one transaction), set identities past max(id), ANALYZE;
5. validate: row counts, per-row checksums (the target's own COPY output, streamed in key
   order and matched against the checksums recorded while loading) and FK orphans;
6. write the BULK_LOAD audit row, then COMMIT (or ROLLBACK in check mode or on any failure).

Memory stays flat: rows are streamed in both directions and the per-row checksums of the
source are spilled to a temporary file, not kept in a list.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import filecmp
import json
import os
import sqlite3
import tempfile
import time
import traceback

try:
    import psycopg2
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:
    psycopg2 = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.agent_ui.postgresql.plugins.module_utils import sqlite_source
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_canonical import row_checksum
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_app import (
    APP_DEFAULT_POLICIES, app_specs, check_source_columns,
)
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_checks import (
    KeyRegistry, MigrationError, ProblemLog, RejectLog, TableChecker, TableSpec, key_function, qualified, quote_ident,
    raw_values_decide, resolve_policies, sortable_key, unique_key_function,
)
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_generic import generic_tables
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_stream import (
    CHUNK_BYTES, Comparison, CopyReader, MultisetComparison, key_text_function, spill_source, stream_target,
)

# A table with at least this many source rows is loaded without its secondary indexes and foreign
# keys, which are rebuilt right after its COPY (option rebuild_after_load).
REBUILD_MIN_ROWS = 50000
# Session settings (SET LOCAL) that fix the canonical form (see migration_canonical), mark the bulk
# load for the audit trigger, and lift the server's statement and idle-in-transaction timeouts (the
# server role sets 30 s / 60 s for the app; one COPY of a large table takes longer).  lock_timeout is
# the module's option of that name (see _session), so a table lock the app holds makes the run fail
# fast instead of queueing behind the app (and making the app's next statements queue behind it).
SESSION_SETTINGS = (
    ('TimeZone', 'UTC'), ('DateStyle', 'ISO, YMD'), ('IntervalStyle', 'postgres'),
    ('extra_float_digits', '1'), ('bytea_output', 'hex'), ('agent_ui.bulk_load', 'on'),
    ('statement_timeout', '0'), ('idle_in_transaction_session_timeout', '0'),
)
# format_type() results the canonical text of each converter kind is valid for.
COMPATIBLE_TYPES = {
    'integer': ('integer', 'bigint', 'smallint'), 'smallint': ('smallint', 'integer', 'bigint'),
    'bigint': ('bigint',), 'text': ('text', 'character varying'), 'boolean': ('boolean',),
    'timestamptz': ('timestamp with time zone',), 'date': ('date',), 'jsonb': ('jsonb',),
    'numeric': ('numeric',), 'float8': ('double precision',), 'bytea': ('bytea',),
}
# SQLSTATE lock_not_available: lock_timeout expired (or NOWAIT).
LOCK_NOT_AVAILABLE = '55P03'


def argument_spec():
    """The sqlite_to_postgresql module's argument spec: the one place its options and their defaults are written."""
    return dict(
        src=dict(type='path', required=True),
        mode=dict(type='str', default='app', choices=['app', 'generic']),
        db=dict(type='str', default='claude_agent_ui', aliases=['login_db']),
        target_schema=dict(type='str', default='public'),
        login_host=dict(type='str'),
        login_port=dict(type='int', default=5432),
        login_user=dict(type='str', default='postgres'),
        login_password=dict(type='str', no_log=True),
        login_unix_socket=dict(type='str'),
        ssl_mode=dict(type='str', default='prefer', choices=['allow', 'disable', 'prefer', 'require', 'verify-ca', 'verify-full']),
        ca_cert=dict(type='path'),
        connect_timeout=dict(type='int', default=30),
        lock_timeout=dict(type='str', default='5s'),
        policies=dict(type='dict', default={}),
        model_map=dict(type='dict', default={}),
        reject_file=dict(type='path'),
        backup=dict(type='path'),
        report=dict(type='path'),
        on_conflict=dict(type='str', default='fail', choices=['fail', 'replace']),
        casts=dict(type='dict', default={}),
        analyze=dict(type='bool', default=True),
        max_problems=dict(type='int', default=1000),
        rebuild_after_load=dict(type='bool', default=True),
        backup_only=dict(type='bool', default=False),
    )


# What run() uses for an option it is not given: the argument spec's defaults.
DEFAULTS = dict((name, option.get('default')) for name, option in argument_spec().items())


# ---------------------------------------------------------------------------
# Connection
# ---------------------------------------------------------------------------

def connection_kwargs(params):
    """psycopg2.connect() keyword arguments from the module options."""
    kwargs = {'dbname': params['db'], 'port': params['login_port'], 'user': params['login_user'],
              'sslmode': params['ssl_mode'], 'connect_timeout': params['connect_timeout'],
              'application_name': 'agent_ui.postgresql.sqlite_to_postgresql'}
    host = params.get('login_unix_socket') or params.get('login_host')
    if host:
        kwargs['host'] = host
    if params.get('login_password'):
        kwargs['password'] = params['login_password']
    if params.get('ca_cert'):
        kwargs['sslrootcert'] = params['ca_cert']
    return kwargs


def connect(params):
    """Open the target connection (one transaction, UTF-8 client encoding)."""
    if not HAS_PSYCOPG2:
        raise MigrationError('psycopg2 is required on the host that runs this module')
    try:
        conn = psycopg2.connect(**connection_kwargs(params))
    except psycopg2.Error as exc:
        raise MigrationError('cannot connect to the target database %s: %s' % (params['db'], str(exc).strip()))
    conn.set_client_encoding('UTF8')
    conn.autocommit = False
    return conn


def _session(cur, schema, lock_timeout):
    for name, value in SESSION_SETTINGS:
        cur.execute('SELECT set_config(%s, %s, true)', (name, value))
    cur.execute('SELECT set_config(%s, %s, true)', ('search_path', '%s, pg_catalog' % quote_ident(schema)))
    try:
        cur.execute('SELECT set_config(%s, %s, true)', ('lock_timeout', str(lock_timeout)))
    except psycopg2.DataError as exc:
        raise MigrationError('lock_timeout %r is not a duration PostgreSQL accepts (e.g. 5s, 500ms, 1min; 0 waits forever): %s'
                             % (lock_timeout, str(exc).strip()))


def _preflight(cur, schema):
    cur.execute("SELECT pg_is_in_recovery(), current_setting('server_encoding'), "
                "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (schema,))
    in_recovery, encoding, schema_exists = cur.fetchone()
    if in_recovery:
        raise MigrationError('the target server is a read-only replica (pg_is_in_recovery() is true); migrate into the primary')
    if encoding.upper() not in ('UTF8', 'UTF-8'):
        raise MigrationError('the target database encoding is %s; it must be UTF8' % encoding)
    return schema_exists


def _existing_tables(cur, schema, names):
    cur.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)", (schema, list(names)))
    return set(row[0] for row in cur.fetchall())


def _target_columns(cur, schema, table):
    cur.execute("SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                (qualified(schema, table),))
    return cur.fetchall()


def _check_target_columns(cur, schema, spec, exact_types=None):
    """Fail unless the target table has every mapped column with a compatible type."""
    have = dict(_target_columns(cur, schema, spec.name))
    errors = []
    for i, col in enumerate(spec.columns):
        pg_type = have.get(col.name)
        if pg_type is None:
            errors.append('%s.%s is missing' % (spec.name, col.name))
        elif exact_types is not None and pg_type != exact_types[i]:
            errors.append('%s.%s is %s, expected %s' % (spec.name, col.name, pg_type, exact_types[i]))
        elif not pg_type.startswith(COMPATIBLE_TYPES[col.kind]):
            errors.append('%s.%s is %s, expected %s' % (spec.name, col.name, pg_type, ' or '.join(COMPATIBLE_TYPES[col.kind])))
    return errors


def _counts(cur, schema, names, existing):
    counts = {}
    for name in names:
        if name in existing:
            cur.execute('SELECT count(*) FROM %s' % qualified(schema, name))
            counts[name] = cur.fetchone()[0]
        else:
            counts[name] = 0
    return counts


# ---------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------

class Plan(object):
    """What to move: table specs in load order, plus generic mode's DDL."""

    def __init__(self, mode, specs, generic=None, warnings=None):
        self.mode = mode
        self.specs = specs
        self.generic = dict((g.spec.name, g) for g in (generic or []))
        self.warnings = list(warnings or [])
        self.referenced = {}
        for spec in specs:
            for fk in spec.fks:
                cols = self.referenced.setdefault(fk.parent, [])
                if tuple(fk.parent_columns) not in cols:
                    cols.append(tuple(fk.parent_columns))

    @property
    def names(self):
        return [spec.name for spec in self.specs]


def build_plan(src, params):
    """The Plan for ``params['mode']`` from the opened source."""
    if params['mode'] == 'app':
        if params.get('casts'):
            raise MigrationError('casts applies to mode=generic only')
        specs = app_specs(params.get('model_map'))
        check_source_columns(specs, sqlite_source.source_columns(src))
        return Plan('app', specs)
    tables, skipped = generic_tables(src, params['target_schema'], params.get('casts'))
    warnings = skipped + [w for table in tables for w in table.warnings]
    return Plan('generic', [t.spec for t in tables], tables, warnings)


# ---------------------------------------------------------------------------
# One pass over the source
# ---------------------------------------------------------------------------

# Passes the read-ahead of rows not loaded yet may take to settle (SourcePass._settle).
SETTLE_PASSES = 25


class SourcePass(object):
    """Checkers for every table of one pass, sharing the problem log, rejects and FK keys."""

    def __init__(self, src, plan, policies, max_problems, reject_stream):
        self.src = src
        self.plan = plan
        self.policies = policies
        self.problems = ProblemLog(max_problems)
        self.rejects = RejectLog(reject_stream)
        self.registry = KeyRegistry()
        self.checkers = {}
        self._position = dict((spec.name, i) for i, spec in enumerate(plan.specs))
        self._early = {}
        self._candidates = {}

    def _unique_candidates(self, spec):
        if spec.name in self._candidates:
            return self._candidates[spec.name]
        result = self._candidates[spec.name] = []
        for cols in spec.uniques:
            columns = [spec.columns[spec.index_of(name)] for name in cols]
            exprs = [col.source for col in columns]
            key = None
            if not all(raw_values_decide(col, self.policies, sqlite_source.storage_classes(self.src, spec.source, col.source))
                       for col in columns):
                key = unique_key_function(spec, cols, self.policies)
            result.append(sqlite_source.duplicate_values(self.src, spec.source, exprs, key))
        return result

    def _forward(self, spec):
        """(parent, columns) of ``spec``'s foreign keys to rows not loaded before it: its own, or a later table's."""
        here = self._position[spec.name]
        return [(fk.parent, tuple(fk.parent_columns)) for fk in spec.fks if self._position[fk.parent] >= here]

    def _check_all(self, spec, registry, provisional, problems=None, rejects=None, forward_edges=None):
        """A checker for ``spec`` over ``registry``: scratch logs unless ``problems`` and ``rejects`` are given."""
        return TableChecker(spec, self.policies, ProblemLog(0) if problems is None else problems,
                            RejectLog(None) if rejects is None else rejects, registry,
                            referenced=self.plan.referenced.get(spec.name, ()),
                            unique_candidates=self._unique_candidates(spec), provisional=provisional,
                            forward_edges=forward_edges)

    def _bare_keys(self, parent, columns):
        """The keys the parent's own checks keep, skip and fail, its foreign keys left out: the first read-ahead."""
        spec = self.plan.specs[self._position[parent]]
        bare = TableSpec(spec.name, spec.source, spec.columns, spec.pk, spec.uniques, (), spec.identity, spec.source_order)
        registry = KeyRegistry()
        checker = TableChecker(bare, self.policies, ProblemLog(0), RejectLog(None), registry, referenced=[columns])
        for _lines in checker.batches(sqlite_source.stream(self.src, spec.source_sql())):
            pass
        return registry.sets(parent, columns)

    def _settle(self, spec):
        """Read-ahead keys for the stretch of tables, from ``spec`` on, that reference rows not loaded yet.

        The first read-ahead checks each parent's rows without their own foreign keys.  Under
        skip_row that misses the rows its load skips because of their references, and a row
        that referenced one of those would be kept, which PostgreSQL's foreign key refuses.  So
        the stretch is checked again (scratch logs, scratch keys) with the keys the previous pass
        kept, skipped and failed, until a pass keeps exactly what it read ahead: every forward
        reference then points at a row that really loads, or follows the foreign key's rule for
        a skipped one, as a backward reference does.  Within a pass a skip runs down every
        backward reference; between passes :meth:`KeyRegistry.predict_drops` runs it down the
        forward ones, so a pass is needed only each time a chain of skips turns from forward to
        backward references.  Without skip_row, any row the checks drop stops the run, so the
        first read-ahead is enough.
        """
        start = end = self._position[spec.name]
        i = start
        while i <= end:
            end = max([end] + [self._position[parent] for parent, _cols in self._forward(self.plan.specs[i])])
            i += 1
        stretch = self.plan.specs[start:end + 1]
        early = {}
        for table in stretch:
            for key in self._forward(table):
                if key not in early:
                    early[key] = self._bare_keys(*key)
        if 'skip_row' not in self.policies.values():
            return early
        for _attempt in range(SETTLE_PASSES):
            registry = self.registry.overlay([table.name for table in stretch])
            edges = []
            for table in stretch:
                checker = self._check_all(table, registry, dict((key, early[key]) for key in self._forward(table)),
                                          forward_edges=edges)
                for _lines in checker.batches(sqlite_source.stream(self.src, table.source_sql())):
                    pass
            settled = dict((key, registry.sets(*key)) for key in early)
            if settled == early:
                return early
            registry.predict_drops(edges)  # settled's sets, moved ahead along the forward references
            early = settled
        raise MigrationError(
            'which rows of %s to keep did not settle in %d passes: rows skipped under skip_row are referenced through '
            'a chain that turns between earlier and later rows (or around a cycle) that many times, or skipping a row '
            'lets a later duplicate in; nothing was written. Run with the fail policy to list the problems, and mend '
            'those rows in the source' % (', '.join(table.name for table in stretch), SETTLE_PASSES))

    def checker(self, spec):
        wanted = self._forward(spec)
        if any(key not in self._early for key in wanted):
            self._early.update(self._settle(spec))
        checker = self._check_all(spec, self.registry, dict((key, self._early[key]) for key in wanted),
                                  self.problems, self.rejects)
        self.checkers[spec.name] = checker
        return checker

    def lines(self, spec):
        checker = self.checker(spec)
        return checker.lines(sqlite_source.stream(self.src, spec.source_sql()))

    def batches(self, spec):
        checker = self.checker(spec)
        return checker.batches(sqlite_source.stream(self.src, spec.source_sql()))


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

def _params(params):
    merged = dict(DEFAULTS)
    merged.update(dict((k, v) for k, v in params.items() if v is not None))
    if merged['mode'] not in ('app', 'generic'):
        raise MigrationError('mode must be app or generic, got %r' % merged['mode'])
    if merged['on_conflict'] not in ('fail', 'replace'):
        raise MigrationError('on_conflict must be fail or replace, got %r' % merged['on_conflict'])
    if merged['backup_only'] and not merged['backup']:
        raise MigrationError('backup_only needs backup: the path of the verified backup to take')
    return merged


# Options naming a file the run writes: (option, what it is).
_OUTPUT_FILES = (('report', 'report'), ('reject_file', 'reject file'), ('backup', 'backup'))


def check_output_paths(params):
    """Fail before anything is read or written when a file the run must write cannot be written.

    The report is written after the commit: finding out only then that its directory is missing
    would leave a committed load and a failed task.
    """
    errors = []
    for option, what in _OUTPUT_FILES:
        path = params.get(option)
        if not path:
            continue
        directory = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            errors.append('%s %s is a directory' % (option, path))
        elif not os.path.isdir(directory):
            errors.append('%s %s: directory %s does not exist' % (option, path, directory))
        elif not os.access(directory, os.W_OK | os.X_OK):
            errors.append('%s %s: directory %s is not writable by this user' % (option, path, directory))
    if errors:
        raise MigrationError('cannot write the output files, nothing was read or written: %s' % '; '.join(errors))


def run(params, check_mode=False, diff=False, connect_fn=None):
    """Run a migration; return the module result dict or raise MigrationError (with details).

    Every error of the source (sqlite3), the target (psycopg2) or the file system ends in a
    MigrationError with a message for the operator, the transaction rolled back.
    """
    params = _params(params)
    policies = resolve_policies(params.get('policies'), APP_DEFAULT_POLICIES if params['mode'] == 'app' else None)
    check_output_paths(params)
    try:
        return _run(params, policies, check_mode, diff, connect_fn)
    except sqlite3.Error as exc:
        raise MigrationError(sqlite_source.error_message(params['src'], exc))
    except OSError as exc:
        raise MigrationError('a file operation failed, rolled back, nothing was written: %s' % exc)


def _run(params, policies, check_mode, diff, connect_fn):
    started = time.time()
    try:
        src = sqlite_source.open_snapshot(params['src'])
    except sqlite_source.SourceError as exc:
        raise MigrationError(str(exc))
    artifacts = _Artifacts(params, check_mode)
    try:
        backup = None
        if params.get('backup') and not check_mode:
            try:
                backup = sqlite_source.verified_backup(src, params['backup'])
            except sqlite_source.SourceError as exc:
                raise MigrationError(str(exc))
        if params['backup_only']:
            # Stop after the backup, without connecting to PostgreSQL. In check mode nothing is written, and
            # changed predicts whether a backup would be written (none exists yet).
            changed = backup['changed'] if backup is not None else not os.path.exists(params['backup'])
            return {'changed': changed, 'backup': backup, 'action': 'backup_only'}
        plan = build_plan(src, params)
        conn = (connect_fn or connect)(params)
        migration = _Migration(conn, src, plan, params, policies, check_mode, artifacts)
        try:
            result = migration.run()
        except MigrationError as exc:
            conn.rollback()
            artifacts.discard_rejects()
            exc.details.setdefault('mapping_warnings', plan.warnings)
            if exc.details.get('problems') is not None or exc.details.get('differences') is not None:
                try:
                    artifacts.write_report(dict(exc.details, msg=exc.msg, failed=True, mode=params['mode']))
                except OSError as report_error:
                    exc.msg += '; the report could not be written either: %s' % report_error
            raise
        except Exception as exc:
            conn.rollback()
            artifacts.discard_rejects()
            if HAS_PSYCOPG2 and isinstance(exc, psycopg2.Error) and getattr(exc, 'pgcode', None) == LOCK_NOT_AVAILABLE:
                raise MigrationError(
                    'gave up after lock_timeout=%s waiting for a lock on %s: another session holds a conflicting lock (the app in '
                    'a long transaction, a backup, a VACUUM FULL; pg_locks and pg_stat_activity show which). Rolled back, nothing '
                    'was written; run again when it is done, or raise lock_timeout. PostgreSQL said: %s' % (
                        params['lock_timeout'], migration.locking or 'a target table', str(exc).strip()),
                    mapping_warnings=plan.warnings, waited_for=migration.locking)
            if HAS_PSYCOPG2 and isinstance(exc, psycopg2.Error):
                raise MigrationError('PostgreSQL refused a step, rolled back, nothing was written: %s' % str(exc).strip(),
                                     mapping_warnings=plan.warnings)
            raise
        finally:
            conn.close()
    finally:
        sqlite_source.close_snapshot(src)
    result['mapping_warnings'] = plan.warnings
    if backup is not None:
        result['backup'] = backup
        result['changed'] = result['changed'] or (backup['changed'])
    if not diff:
        result.pop('diff', None)
    elapsed = time.time() - started
    moved = sum(t.get('loaded_rows', 0) for t in result['tables'].values())
    result['timings']['total_seconds'] = round(elapsed, 3)
    result['timings']['rows_per_second'] = int(moved / elapsed) if elapsed > 0 and moved else 0
    report = dict((k, v) for k, v in result.items() if k not in ('timings', 'changed', 'diff'))
    try:
        result['report_written'] = artifacts.write_report(report)
        artifacts.keep_rejects(result)
    except OSError as exc:
        artifacts.discard_rejects()
        raise MigrationError('the run %s, but writing its report or reject file failed: %s' % (
            'was checked in check mode' if check_mode else 'committed its changes', exc),
            changed=result['changed'], tables=result['tables'], validation=result['validation'])
    return result


class _Artifacts(object):
    """Reject file and JSON report: written beside their target, replaced only when different."""

    def __init__(self, params, check_mode):
        self.check_mode = check_mode
        self.reject_path = params.get('reject_file')
        self.report_path = params.get('report')
        self._reject_tmp = None

    def reject_stream(self):
        """A fresh temporary reject stream for one pass (None when no reject file is wanted)."""
        self.discard_rejects()
        if not self.reject_path or self.check_mode:
            return None
        directory = os.path.dirname(os.path.abspath(self.reject_path))
        if not os.path.isdir(directory):
            raise MigrationError('reject_file directory %s does not exist' % directory)
        handle, path = tempfile.mkstemp(prefix='.reject.', suffix='.tmp', dir=directory)
        self._reject_tmp = (os.fdopen(handle, 'w', encoding='utf-8'), path)
        return self._reject_tmp[0]

    def discard_rejects(self):
        if self._reject_tmp is not None:
            stream, path = self._reject_tmp
            stream.close()
            if os.path.exists(path):
                os.unlink(path)
            self._reject_tmp = None

    def keep_rejects(self, result):
        if self._reject_tmp is None:
            return
        stream, path = self._reject_tmp
        stream.close()
        self._reject_tmp = None
        if os.path.exists(self.reject_path) and filecmp.cmp(path, self.reject_path, shallow=False):
            os.unlink(path)
            written = False
        else:
            os.rename(path, self.reject_path)
            written = True
        result['reject_file'] = {'path': self.reject_path, 'rows': result.get('rejected_rows', 0), 'written': written}

    def write_report(self, report):
        if not self.report_path or self.check_mode:
            return False
        data = (json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False, default=str) + '\n').encode('utf-8')
        return _write_if_changed(self.report_path, data)


def _write_if_changed(path, data):
    if os.path.exists(path):
        with open(path, 'rb') as handle:
            if handle.read() == data:
                return False
    directory = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    with os.fdopen(handle, 'wb') as stream:
        stream.write(data)
    os.rename(tmp, path)
    return True


class _Migration(object):
    """One run against one open connection; every step happens in the same transaction."""

    def __init__(self, conn, src, plan, params, policies, check_mode, artifacts):
        self.conn = conn
        self.cur = conn.cursor()
        self.src = src
        self.plan = plan
        self.params = params
        self.schema = params['target_schema']
        self.policies = policies
        self.check_mode = check_mode
        self.artifacts = artifacts
        self.timings = {}
        self.existing = set()
        self.deferrable_tables = None
        self.rebuilt = {}
        self.locking = None  # what the statement that may wait for a table lock locks (named if lock_timeout ends it)
        self.skipped_indexes = set()  # generic mode: partial indexes whose WHERE clause PostgreSQL refuses

    def _lock(self, what, sql, args=None):
        """Execute ``sql``, a statement that takes a table lock, on ``what`` (named if lock_timeout ends it)."""
        self.locking = what
        self.cur.execute(sql, args)
        self.locking = None

    def _pass(self):
        return SourcePass(self.src, self.plan, self.policies, self.params['max_problems'], self.artifacts.reject_stream())

    def _fail_on_problems(self, source_pass, msg):
        if source_pass.problems.fatal:
            keys = dict((spec.name, spec.key_name) for spec in self.plan.specs)
            raise MigrationError('%s: %d problem(s) under the fail policy, nothing was written. By class: %s' % (
                msg, source_pass.problems.fatal, source_pass.problems.headline(keys)),
                problems=source_pass.problems.items, problem_summary=source_pass.problems.summary(),
                tables=_table_counts(source_pass), plan=_failed_plan(source_pass))

    # -- target inspection -------------------------------------------------
    def _inspect(self):
        schema_exists = _preflight(self.cur, self.schema)
        names = self.plan.names
        if not schema_exists:
            if self.plan.mode == 'app':
                raise MigrationError('schema %s does not exist in %s; apply the schema role first' % (self.schema, self.params['db']))
            self.cur.execute('CREATE SCHEMA %s' % quote_ident(self.schema))
        self.existing = _existing_tables(self.cur, self.schema, names)
        errors = []
        if self.plan.mode == 'app':
            missing = [name for name in names if name not in self.existing]
            if missing:
                raise MigrationError('target table(s) %s missing in %s.%s; apply the schema role first' % (
                    ', '.join(missing), self.params['db'], self.schema))
            for spec in self.plan.specs:
                errors.extend(_check_target_columns(self.cur, self.schema, spec))
        elif self.existing:
            missing = [name for name in names if name not in self.existing]
            if missing:
                raise MigrationError('some source tables already exist in %s (%s) and others do not (%s); migrate into an '
                                     'empty target_schema' % (self.schema, ', '.join(sorted(self.existing)), ', '.join(missing)))
            for spec in self.plan.specs:
                errors.extend(_check_target_columns(self.cur, self.schema, spec, self.plan.generic[spec.name].pg_types))
        if errors:
            raise MigrationError('the target tables do not match the %s mapping: %s' % (self.plan.mode, '; '.join(errors)))
        # One table at a time, in load order, so a lock timeout names the table it waited for.
        for name in names if self.existing else ():
            table = qualified(self.schema, name)
            self._lock('table %s (SHARE ROW EXCLUSIVE)' % table, 'LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE' % table)

    # -- re-run comparison ---------------------------------------------------
    def _compare(self):
        """Stream source and target side by side; return (SourcePass, {table: summary}, identical)."""
        source_pass = self._pass()
        differences, identical = {}, True
        for spec in self.plan.specs:
            lines = source_pass.lines(spec)
            if spec.pk and sortable_key(spec.key_kinds()):
                key_fn = key_function(spec.key_kinds())
                idx = [spec.index_of(name) for name in spec.pk]

                def source(lines=lines, key_fn=key_fn, idx=idx):
                    for line in lines:
                        fields = line.split('\t')
                        yield key_fn([fields[i] for i in idx]), row_checksum(line), line
                comparison = Comparison(source(), spec.column_names)
            else:
                comparison = MultisetComparison()
                for line in lines:
                    comparison.add_source(row_checksum(line))
            stream_target(self.cur, self.schema, spec, comparison, keep_lines=True)
            if not comparison.identical:
                identical = False
                differences[spec.name] = comparison.summary()
        return source_pass, differences, identical

    # -- loading ---------------------------------------------------------------
    def _load(self, fresh_tables):
        source_pass = self._pass()
        spills = {}
        loaded = {}
        for spec in self.plan.specs:
            batches = source_pass.batches(spec)
            if source_pass.problems.fatal:
                for _lines in batches:
                    pass
                continue
            spill = tempfile.TemporaryFile(mode='w+', encoding='utf-8')
            spills[spec.name] = spill
            reader = CopyReader(batches, spill, key_text_function(spec), source_pass.problems)
            freeze = ' WITH (FREEZE)' if spec.name in fresh_tables else ''
            deferred = self._defer_builds(spec)
            try:
                self.cur.copy_expert('COPY %s (%s) FROM STDIN%s' % (
                    qualified(self.schema, spec.name), ', '.join(quote_ident(c) for c in spec.column_names), freeze),
                    reader, size=CHUNK_BYTES)
                if not source_pass.problems.fatal:
                    self._rebuild(spec, *deferred)
            except psycopg2.Error as exc:
                if isinstance(reader.error, sqlite3.Error):  # the source failed inside COPY's producer: say so
                    raise MigrationError(sqlite_source.error_message(self.params['src'], reader.error),
                                         problems=source_pass.problems.items, problem_summary=source_pass.problems.summary())
                raise MigrationError('COPY into %s failed, rolled back, nothing was written: %s' % (spec.name, str(exc).strip()),
                                     problems=source_pass.problems.items, problem_summary=source_pass.problems.summary())
            finally:
                reader.close()
            loaded[spec.name] = reader.rows
        return source_pass, spills, loaded

    def _defer_builds(self, spec):
        """Before a large COPY, drop the table's secondary indexes and foreign keys; return them.

        Building an index once after the load, and validating a foreign key with one join, is
        much faster than maintaining both for every row (PostgreSQL's "Populating a Database").
        Done only when the table is empty before the load, holds at least
        :data:`REBUILD_MIN_ROWS` source rows and the connected role owns the tables involved.
        Indexes that back a constraint (primary key, UNIQUE, a foreign key's target) stay.
        Everything happens inside the load transaction: other sessions never see the table
        without them, and :meth:`_rebuild` checks that the definitions come back identical.
        """
        if not self.params['rebuild_after_load'] or spec.name not in self.existing or spec.name not in self.deferrable_tables:
            return [], []
        rows = self.src.execute('SELECT count(*) FROM %s' % quote_ident(spec.source)).fetchone()[0]
        if rows < REBUILD_MIN_ROWS:
            return [], []
        table = qualified(self.schema, spec.name)
        self.cur.execute(
            "SELECT ic.relname, pg_get_indexdef(i.indexrelid), obj_description(i.indexrelid, 'pg_class') "
            "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE i.indrelid = %s::regclass AND i.indisvalid AND NOT i.indisreplident AND NOT i.indisclustered "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) "
            "AND pg_has_role(t.relowner, 'USAGE') ORDER BY ic.relname", (table,))
        indexes = self.cur.fetchall()
        self.cur.execute(
            "SELECT c.conname, pg_get_constraintdef(c.oid), obj_description(c.oid, 'pg_constraint') "
            "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class p ON p.oid = c.confrelid "
            "WHERE c.conrelid = %s::regclass AND c.contype = 'f' AND c.coninhcount = 0 AND c.conparentid = 0 "
            "AND pg_has_role(t.relowner, 'USAGE') AND pg_has_role(p.relowner, 'USAGE') ORDER BY c.conname", (table,))
        foreign_keys = self.cur.fetchall()
        for name, definition, _comment in foreign_keys:
            self._lock('table %s and the table its foreign key %s references (ACCESS EXCLUSIVE, to drop it until the COPY ends)'
                       % (table, name), 'ALTER TABLE %s DROP CONSTRAINT %s' % (table, quote_ident(name)))
        for name, _definition, _comment in indexes:
            self._lock('table %s (ACCESS EXCLUSIVE, to drop index %s until the COPY ends)' % (table, name),
                       'DROP INDEX %s' % qualified(self.schema, name))
        return indexes, foreign_keys

    def _rebuild(self, spec, indexes, foreign_keys):
        """Recreate what :meth:`_defer_builds` dropped, with its comments, and check it is identical."""
        if not indexes and not foreign_keys:
            return
        table = qualified(self.schema, spec.name)
        for name, definition, comment in indexes:
            self.cur.execute(definition)
            if comment is not None:
                self.cur.execute('COMMENT ON INDEX %s IS %%s' % qualified(self.schema, name), (comment,))
        for name, definition, comment in foreign_keys:
            self._lock('the table %s references (SHARE ROW EXCLUSIVE, to recreate foreign key %s)' % (table, name),
                       'ALTER TABLE %s ADD CONSTRAINT %s %s' % (table, quote_ident(name), definition))
            if comment is not None:
                self.cur.execute('COMMENT ON CONSTRAINT %s ON %s IS %%s' % (quote_ident(name), table), (comment,))
        self.cur.execute("SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass", (table,))
        now = set(row[0] for row in self.cur.fetchall())
        self.cur.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass", (table,))
        now_fks = set(self.cur.fetchall())
        missing = [d for _n, d, _c in indexes if d not in now] + [d for n, d, _c in foreign_keys if (n, d) not in now_fks]
        if missing:
            raise MigrationError('%s: could not rebuild identically: %s' % (spec.name, '; '.join(sorted(missing))))
        self.rebuilt[spec.name] = {'indexes': [n for n, _d, _c in indexes], 'foreign_keys': [n for n, _d, _c in foreign_keys]}

    def _finish_generic(self, created):
        """Keys and indexes of every created table, then the foreign keys (whose targets need those keys)."""
        tables = [self.plan.generic[spec.name] for spec in self.plan.specs if spec.name in created]
        for table, statement in [(t, s) for t in tables for s in t.finish] + [(t, s) for t in tables for s in t.links]:
            if statement not in self.skipped_indexes:
                self._ddl(table, statement)

    def _ddl(self, table, statement):
        """Run one generic-mode DDL statement of ``table``; a refusal names the table, what it creates and the statement."""
        try:
            self.cur.execute(statement)
        except psycopg2.Error as exc:
            raise _refused(table, statement, exc)

    def _try_partial_indexes(self, tables):
        """Try the WHERE clause of each partial index on the new, still empty tables, before any row is loaded.

        The clause is copied from SQLite and may use SQLite's functions or syntax (GLOB,
        julianday()).  Each is tried alone (an unnamed index, in a savepoint rolled back at
        once).  A plain index PostgreSQL refuses is left out with a mapping warning: an index is
        not data.  A UNIQUE one is a constraint on the data, so the run stops here, before COPY.
        """
        for table in tables:
            for index in table.partial:
                self.cur.execute('SAVEPOINT agent_ui_partial_index')
                refused = None
                try:
                    self.cur.execute(index.probe)
                except psycopg2.Error as exc:
                    if getattr(exc, 'pgcode', None) is None or exc.pgcode[:2] not in ('42', '22'):
                        raise _refused(table, index.statement, exc)
                    refused = str(exc).strip().splitlines()[0]
                self.cur.execute('ROLLBACK TO SAVEPOINT agent_ui_partial_index')
                self.cur.execute('RELEASE SAVEPOINT agent_ui_partial_index')  # back in the subtransaction COPY FREEZE needs
                if refused is None:
                    continue
                if index.unique:
                    raise MigrationError(
                        'table %s, UNIQUE index %s: PostgreSQL refuses its WHERE clause (SQLite SQL), so the uniqueness it '
                        'enforces cannot be kept; rewrite or drop the index in the source first. Rolled back, nothing was '
                        'written. The statement: %s. PostgreSQL said: %s' % (table.spec.name, index.name, index.statement, refused),
                        table=table.spec.name, statement=index.statement)
                self.skipped_indexes.add(index.statement)
                self.plan.warnings.append('index %s on %s not recreated (PostgreSQL refuses its WHERE clause, which is SQLite '
                                          'SQL: port it by hand): %s. PostgreSQL said: %s' % (index.name, table.spec.name, index.sql,
                                                                                              refused))

    def _missing_partial_indexes(self):
        """On a re-run into existing tables: a mapping warning for each partial index the target does not have."""
        for spec in self.plan.specs:
            table = self.plan.generic[spec.name]
            if not table.partial:
                continue
            self.cur.execute('SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s', (self.schema, spec.name))
            have = set(row[0] for row in self.cur.fetchall())
            for index in table.partial:
                if index.name not in have:
                    self.plan.warnings.append('index %s on %s not recreated (it is not in the target; PostgreSQL refused its '
                                              'WHERE clause, which is SQLite SQL, when the tables were created: port it by hand): '
                                              '%s' % (index.name, spec.name, index.sql))

    def _set_identities(self):
        """Move each identity past max(max(id), sqlite_sequence.seq): AUTOINCREMENT never hands an id out twice.

        sqlite_sequence.seq is ahead of max(id) when the rows with the highest ids were deleted
        (or skipped); the app's next row must not get one of their ids back.
        """
        counters = sqlite_source.autoincrement_counters(self.src)
        for spec in self.plan.specs:
            if spec.identity:
                ident = quote_ident(spec.identity)
                table = qualified(self.schema, spec.name)
                seq = counters.get(spec.source)
                self.cur.execute('SELECT setval(pg_get_serial_sequence(%%s, %%s), GREATEST(max(%s), %%s, 1), '
                                 'GREATEST(max(%s), %%s) IS NOT NULL) FROM %s' % (ident, ident, table), (table, spec.identity, seq, seq))

    def _analyze(self):
        for spec in self.plan.specs:
            table = qualified(self.schema, spec.name)
            self._lock('table %s (SHARE UPDATE EXCLUSIVE, to ANALYZE it)' % table, 'ANALYZE %s' % table)

    # -- validation ------------------------------------------------------------
    def _validate(self, source_pass, spills):
        tables, counts_match, checksums_match, mismatches = {}, True, True, {}
        for spec in self.plan.specs:
            checker = source_pass.checkers[spec.name]
            spill = spills[spec.name]
            if spec.pk and sortable_key(spec.key_kinds()):
                comparison = Comparison(spill_source(spill, spec))
            else:
                comparison = MultisetComparison()
                spill.seek(0)
                for record in spill:
                    comparison.add_source(record[:32])
            target_rows = stream_target(self.cur, self.schema, spec, comparison)
            spill.close()
            match = comparison.identical
            counts_ok = target_rows == checker.kept_rows
            counts_match = counts_match and counts_ok
            checksums_match = checksums_match and match
            if not match or not counts_ok:
                mismatches[spec.name] = comparison.summary()
            tables[spec.name] = dict(checker.counts(), loaded_rows=target_rows, checksum_match=match)
        orphans = self._fk_orphans()
        validation = {'counts_match': counts_match, 'checksums_match': checksums_match,
                      'fk_orphans': sum(orphans.values()), 'fk_orphans_by_constraint': orphans}
        if mismatches:
            validation['mismatches'] = mismatches
        return tables, validation

    def _fk_orphans(self):
        orphans = {}
        for spec in self.plan.specs:
            for fk in spec.fks:
                not_null = ' AND '.join('c.%s IS NOT NULL' % quote_ident(c) for c in fk.columns)
                join = ' AND '.join('p.%s = c.%s' % (quote_ident(p), quote_ident(c)) for p, c in zip(fk.parent_columns, fk.columns))
                self.cur.execute('SELECT count(*) FROM %s c WHERE %s AND NOT EXISTS (SELECT 1 FROM %s p WHERE %s)' % (
                    qualified(self.schema, spec.name), not_null, qualified(self.schema, fk.parent), join))
                orphans[fk.name] = self.cur.fetchone()[0]
        return orphans

    def _audit(self, tables):
        if self.plan.mode != 'app':
            return False
        self.cur.execute('SELECT to_regclass(%s)', (qualified(self.schema, 'audit_log'),))
        if self.cur.fetchone()[0] is None:
            return False
        counts = dict((name, info['loaded_rows']) for name, info in tables.items())
        self.cur.execute("INSERT INTO %s (table_name, operation, new_data, changed_by) VALUES ('migration', 'BULK_LOAD', %%s::jsonb, "
                         "current_user)" % qualified(self.schema, 'audit_log'), (json.dumps(counts, sort_keys=True),))
        return True

    # -- orchestration ---------------------------------------------------------
    def run(self):
        _session(self.cur, self.schema, self.params['lock_timeout'])
        self._inspect()
        if self.plan.mode == 'generic' and self.existing:
            self._missing_partial_indexes()
        names = self.plan.names
        before = _counts(self.cur, self.schema, names, self.existing)
        action, differences = 'load', None
        tick = time.time()
        if any(before.values()):
            source_pass, differences, identical = self._compare()
            self.timings['compare_seconds'] = round(time.time() - tick, 3)
            self._fail_on_problems(source_pass, 'the source has problems')
            if identical:
                return self._unchanged(source_pass, before)
            if self.params['on_conflict'] != 'replace':
                raise MigrationError('the target already holds different data in %s; set on_conflict=replace to replace it '
                                     '(nothing was written)' % ', '.join(sorted(differences)),
                                     differences=differences, target_rows=before)
            action = 'replace'
        # Tables that are empty when COPY starts: candidates for building their indexes after the load.
        self.deferrable_tables = set(name for name in names if action == 'replace' or not before[name])
        fresh = set()
        if self.plan.mode == 'generic' and not self.existing:
            for spec in self.plan.specs:
                for statement in self.plan.generic[spec.name].create:
                    self._ddl(self.plan.generic[spec.name], statement)
            self._try_partial_indexes([self.plan.generic[name] for name in names])
            fresh = set(names)
        elif action == 'replace' or (self.plan.mode == 'generic' and self.existing):
            self._lock('tables %s (ACCESS EXCLUSIVE, to TRUNCATE them)' % ', '.join(names),
                       'TRUNCATE %s' % ', '.join(qualified(self.schema, name) for name in names))
            fresh = set(names)
        tick = time.time()
        source_pass, spills, loaded = self._load(fresh)
        self.timings['load_seconds'] = round(time.time() - tick, 3)
        self._fail_on_problems(source_pass, 'the source has problems')
        if action == 'load' and self.existing and not any(loaded.values()):
            # Existing tables, empty before and after: an empty source, or every row skipped. Nothing is
            # written, so a re-run must not count as a change (nor add an audit row) every time. (A replace
            # that empties the tables is a change.)
            for spill in spills.values():
                spill.close()
            return self._unchanged(source_pass, before)
        tick = time.time()
        if self.plan.mode == 'generic' and not self.existing:
            self._finish_generic(set(names))
        if not self.check_mode:  # setval is not transactional: a dry run must not move sequences
            self._set_identities()
        if self.params['analyze']:
            self._analyze()
        self.timings['finish_seconds'] = round(time.time() - tick, 3)
        tick = time.time()
        tables, validation = self._validate(source_pass, spills)
        self.timings['validate_seconds'] = round(time.time() - tick, 3)
        for name in names:
            tables[name]['target_rows_before'] = before[name]
        if not (validation['counts_match'] and validation['checksums_match'] and validation['fk_orphans'] == 0):
            raise MigrationError('validation failed after loading; rolled back, nothing was written',
                                 validation=validation, tables=tables, problems=source_pass.problems.items)
        audit = False if self.check_mode else self._audit(tables)  # nextval of audit_log.id is not transactional
        after = _counts(self.cur, self.schema, names, set(names))
        result = self._result(source_pass, tables, validation, before, after, action, differences)
        result['audit_row'] = audit
        result['rebuilt_after_load'] = self.rebuilt
        if self.check_mode:
            self.conn.rollback()
        else:
            self.conn.commit()
        return result

    def _unchanged(self, source_pass, before):
        self.conn.rollback()
        tables = {}
        for spec in self.plan.specs:
            tables[spec.name] = dict(source_pass.checkers[spec.name].counts(), loaded_rows=0,
                                     target_rows_before=before[spec.name], checksum_match=True)
        validation = {'counts_match': True, 'checksums_match': True, 'fk_orphans': 0, 'fk_orphans_by_constraint': {}}
        return self._result(source_pass, tables, validation, before, before, 'none', None, changed=False)

    def _result(self, source_pass, tables, validation, before, after, action, differences, changed=True):
        plan = dict((name, {'action': action, 'rows_to_load': info['kept_rows'],
                            'rows_to_skip': info['skipped_rows'], 'rows_fixed': info['fixed_rows'],
                            'target_rows_before': before[name]}) for name, info in tables.items())
        result = {
            'changed': changed and action != 'none', 'mode': self.plan.mode, 'action': action,
            'src': self.params['src'], 'db': self.params['db'], 'target_schema': self.schema,
            'tables': tables, 'problems': source_pass.problems.items, 'problem_summary': source_pass.problems.summary(),
            'rejected_rows': source_pass.rejects.rows, 'validation': validation, 'plan': plan,
            'diff': {'before': {'tables': before}, 'after': {'tables': after}}, 'timings': dict(self.timings),
        }
        if differences:
            result['replaced'] = differences
        return result


def _refused(table, statement, exc):
    """The MigrationError for a generic-mode DDL statement PostgreSQL refused (a lock timeout stays itself)."""
    if getattr(exc, 'pgcode', None) == LOCK_NOT_AVAILABLE:
        return exc
    return MigrationError('table %s, %s: PostgreSQL refused this step, rolled back, nothing was written. The statement: %s. '
                          'PostgreSQL said: %s' % (table.spec.name, table.steps.get(statement, 'DDL'), statement, str(exc).strip()),
                          table=table.spec.name, statement=statement)


def _table_counts(source_pass):
    return dict((name, checker.counts()) for name, checker in source_pass.checkers.items())


def _failed_plan(source_pass):
    plan = {}
    for name, checker in source_pass.checkers.items():
        counts = checker.counts()
        plan[name] = {'action': 'none (problems under the fail policy)', 'rows_to_load': counts['kept_rows'],
                      'rows_to_skip': counts['skipped_rows'], 'rows_fixed': counts['fixed_rows'], 'rows_failed': counts['failed_rows']}
    return plan
