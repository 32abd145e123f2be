# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reading the SQLite source: a read-only consistent snapshot and a verified backup.

The source is opened with a ``file:...?mode=ro`` URI and one deferred read transaction is
held for the whole run, so every query sees the same snapshot even while the app keeps
writing.  Text comes back as bytes so that invalid UTF-8 is reported per value instead of
aborting the whole query.  The backup uses SQLite's online backup API (never a byte copy of
a file that may be mid-write) and is verified with ``PRAGMA integrity_check``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import hashlib
import os
import re
import sqlite3
import tempfile

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2 is not supported, kept for the sanity import test
    from urllib import quote

FETCH_ROWS = 2000

# The shadow tables SQLite's own virtual table modules keep their storage in, named
# ``<virtual table>_<suffix>``.  Used where ``PRAGMA table_list`` (SQLite 3.37+) cannot say.
SHADOW_SUFFIXES = {
    'fts3': ('content', 'segments', 'segdir', 'docsize', 'stat'),
    'fts4': ('content', 'segments', 'segdir', 'docsize', 'stat'),
    'fts5': ('data', 'idx', 'content', 'docsize', 'config'),
    'rtree': ('node', 'rowid', 'parent'),
    'rtree_i32': ('node', 'rowid', 'parent'),
    'geopoly': ('node', 'rowid', 'parent'),
}
_VIRTUAL_SQL = re.compile(r'^\s*CREATE\s+VIRTUAL\s+TABLE\s.*?\bUSING\s+(\w+)\s*(?:\((.*)\))?\s*;?\s*$', re.I | re.S)
# An FTS4/FTS5 ``content=`` option (not content_rowid=); its value may be quoted.
_CONTENT_OPTION = re.compile(r'''(?:^|,)\s*content\s*=\s*('(?:[^']|'')*'|"(?:[^"]|"")*"|[^,\s]*)''', re.I)

VirtualTable = collections.namedtuple('VirtualTable', ['module', 'content'])


class SourceError(Exception):
    """The source cannot be opened, read or backed up."""


def _is_locked(exc):
    """Whether a sqlite3.Error says another connection holds the file (SQLITE_BUSY or SQLITE_LOCKED)."""
    return 'locked' in str(exc) or 'busy' in str(exc)


def error_message(path, exc, doing='reading'):
    """What a sqlite3.Error while reading ``path`` means to the operator."""
    text = str(exc)
    if _is_locked(exc):
        return ('the source %s is locked by another connection (%s): a writer holds it, for example the app in the middle of '
                'a write; stop the app or wait for the write to end, then run again. Nothing was written' % (path, text))
    return '%s the source %s failed (%s: %s); rolled back, nothing was written' % (doing, path, type(exc).__name__, text)


def open_snapshot(path, timeout=5.0):
    """Open ``path`` read-only and start the read transaction that pins the snapshot."""
    if not os.path.isfile(path):
        raise SourceError('source %s does not exist or is not a file' % path)
    uri = 'file:%s?mode=ro' % quote(os.path.abspath(path))
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=timeout)
        conn.text_factory = bytes
        conn.execute('BEGIN DEFERRED')
        # The first read takes the snapshot (and fails here if the file is not a database).
        conn.execute('SELECT count(*) FROM sqlite_master').fetchone()
    except sqlite3.Error as exc:
        if _is_locked(exc):
            raise SourceError(error_message(path, exc))
        raise SourceError('cannot open %s as a SQLite database: %s' % (path, exc))
    return conn


def close_snapshot(conn):
    """End the read transaction and close the connection."""
    try:
        conn.execute('COMMIT')
    except sqlite3.Error:
        pass
    conn.close()


def stream(conn, sql, params=()):
    """Yield the rows of ``sql`` in batches, never holding the whole result."""
    cursor = conn.execute(sql, params)
    try:
        while True:
            batch = cursor.fetchmany(FETCH_ROWS)
            if not batch:
                return
            yield from batch
    finally:
        cursor.close()


def _text(value):
    return value.decode('utf-8', 'replace') if isinstance(value, bytes) else value


def tables(conn):
    """User tables of the source, in name order (internal sqlite_* tables excluded)."""
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                        "ORDER BY name").fetchall()
    return [_text(row[0]) for row in rows]


def schema_objects(conn, kind):
    """[(name, table, sql)] of the source's views (``kind`` 'view') or triggers ('trigger'), by table and name."""
    rows = conn.execute('SELECT name, tbl_name, sql FROM sqlite_master WHERE type = ? ORDER BY tbl_name, name', (kind,))
    return [(_text(name), _text(table), (_text(sql) or '').strip()) for name, table, sql in rows]


def virtual_tables(conn):
    """{name: VirtualTable(module, content)} for the source's virtual tables (module lower-cased).

    ``content`` is None for a table that stores its own rows, '' for a contentless FTS table
    (``content=''``: it keeps only the index, its columns read back NULL) and the name of the
    table an external-content FTS table indexes.
    """
    found = {}
    for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL%'"):
        match = _VIRTUAL_SQL.match(_text(sql) or '')
        if not match:
            continue
        module, args = match.group(1).lower(), match.group(2) or ''
        content = None
        option = _CONTENT_OPTION.search(args) if module in ('fts4', 'fts5') else None
        if option:
            content = option.group(1)
            if content[:1] in ('"', "'") and content[-1:] == content[:1] and len(content) > 1:
                content = content[1:-1].replace(content[0] * 2, content[0])
        found[_text(name)] = VirtualTable(module, content)
    return found


def shadow_tables(conn, virtual=None, use_table_list=True):
    """{shadow table: its virtual table}: the internal storage of the source's virtual tables.

    SQLite 3.37+ names them itself (``PRAGMA table_list`` type 'shadow'); older versions, and
    ``use_table_list=False``, fall back to :data:`SHADOW_SUFFIXES` of the modules SQLite ships.
    """
    virtual = virtual_tables(conn) if virtual is None else virtual
    names = set(tables(conn))
    found = {}
    for vtab, info in virtual.items():
        for suffix in SHADOW_SUFFIXES.get(info.module, ()):
            if '%s_%s' % (vtab, suffix) in names:
                found['%s_%s' % (vtab, suffix)] = vtab
    if use_table_list:
        listed = conn.execute('PRAGMA table_list').fetchall()  # no rows before SQLite 3.37
        for row in listed:
            name = _text(row[1])
            if _text(row[0]) == 'main' and _text(row[2]) == 'shadow' and name not in found:
                owners = [vtab for vtab in virtual if name.startswith(vtab + '_')]
                found[name] = max(owners, key=len) if owners else None
    return found


def table_columns(conn, table):
    """PRAGMA table_info rows as dicts: name, type, notnull, default, pk (position, 0 if not)."""
    rows = conn.execute('PRAGMA table_info("%s")' % table.replace('"', '""')).fetchall()
    return [{'name': _text(r[1]), 'type': _text(r[2]) or '', 'notnull': bool(r[3]), 'default': _text(r[4]), 'pk': r[5]}
            for r in rows]


def source_columns(conn):
    """Map of every table to its column names."""
    return dict((name, [col['name'] for col in table_columns(conn, name)]) for name in tables(conn))


def autoincrement_counters(conn):
    """{table: sqlite_sequence.seq}: the largest id each AUTOINCREMENT table ever handed out (never reused).

    It can be ahead of max(id) after deletes.  Empty when no table uses AUTOINCREMENT.
    """
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'").fetchone()
    if not found:
        return {}
    return dict((_text(name), seq) for name, seq in conn.execute('SELECT name, seq FROM sqlite_sequence')
                if isinstance(seq, int) and seq > 0)


def table_sql(conn, table):
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return _text(row[0]) if row else ''


def indexes(conn, table):
    """Indexes of ``table``: name, unique, origin ('c' CREATE INDEX, 'u' UNIQUE, 'pk'), partial, columns, sql."""
    result = []
    quoted = table.replace('"', '""')
    for row in conn.execute('PRAGMA index_list("%s")' % quoted).fetchall():
        name = _text(row[1])
        info = conn.execute('PRAGMA index_xinfo("%s")' % name.replace('"', '""')).fetchall()
        cols = [{'name': _text(r[2]), 'desc': bool(r[3]), 'collation': _text(r[4])} for r in info if r[5]]
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)).fetchone()
        result.append({'name': name, 'unique': bool(row[2]), 'origin': _text(row[3]), 'partial': bool(row[4]),
                       'columns': cols, 'expression': any(r[1] == -2 for r in info if r[5]),
                       'sql': _text(sql[0]) if sql and sql[0] else None})
    return result


def foreign_keys(conn, table):
    """Foreign keys of ``table``: id, columns, parent, parent_columns (None = parent PK), on_delete, on_update."""
    grouped = {}
    for row in conn.execute('PRAGMA foreign_key_list("%s")' % table.replace('"', '""')).fetchall():
        fk = grouped.setdefault(row[0], {'id': row[0], 'parent': _text(row[2]), 'columns': [], 'parent_columns': [],
                                         'on_update': _text(row[5]), 'on_delete': _text(row[6])})
        fk['columns'].append(_text(row[3]))
        fk['parent_columns'].append(_text(row[4]))
    return [grouped[key] for key in sorted(grouped)]


def storage_classes(conn, table, expression):
    """The SQLite storage classes (``typeof``) that ``expression`` takes in ``table``."""
    sql = 'SELECT DISTINCT typeof(%s) FROM "%s"' % (expression, table.replace('"', '""'))
    return set(_text(row[0]) for row in conn.execute(sql))


def duplicate_values(conn, table, expressions, key=None):
    """Raw value tuples of ``expressions`` whose key occurs more than once (SQLite does the grouping).

    Without ``key`` the raw values themselves are the key (a NULL in any of them: no key).
    ``key`` is a Python function of the raw values (text passed as bytes, as the snapshot reads
    it; None = no key): the rows whose keys collide are returned, with memory bounded by
    SQLite's own temporary storage.
    """
    select = ', '.join(expressions)
    source = '"%s"' % table.replace('"', '""')
    if key is None:
        # NULLs never collide in a UNIQUE constraint.
        present = ' AND '.join('%s IS NOT NULL' % e for e in expressions)
        sql = 'SELECT %s FROM %s WHERE %s GROUP BY %s HAVING count(*) > 1' % (select, source, present, select)
        return set(tuple(row) for row in conn.execute(sql))
    conn.create_function('agent_ui_key', len(expressions), key, deterministic=True)
    args = ', '.join("CASE WHEN typeof(%s) = 'text' THEN CAST(%s AS BLOB) ELSE %s END" % (e, e, e) for e in expressions)
    sql = 'SELECT %s FROM %s WHERE agent_ui_key(%s) IN (SELECT agent_ui_key(%s) FROM %s GROUP BY 1 HAVING count(*) > 1)' % (
        select, source, args, args, source)
    return set(tuple(row) for row in conn.execute(sql))


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def integrity_check(path):
    """(PRAGMA integrity_check messages, number of tables) of the database file at ``path``."""
    conn = sqlite3.connect(path)
    try:
        verdict = [_text(row[0]) for row in conn.execute('PRAGMA integrity_check').fetchall()]
        tables_count = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    finally:
        conn.close()
    return verdict, tables_count


def verified_backup(conn, dest):
    """Copy the snapshot to ``dest`` with the backup API and verify it; return a result dict.

    The copy is written next to ``dest`` first and checked with ``PRAGMA integrity_check``;
    it replaces ``dest`` only when it differs, so a re-run with unchanged data changes nothing.
    """
    directory = os.path.dirname(os.path.abspath(dest)) or '.'
    if not os.path.isdir(directory):
        raise SourceError('backup directory %s does not exist' % directory)
    try:
        handle, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(dest), suffix='.tmp', dir=directory)
    except OSError as exc:
        raise SourceError('backup to %s failed: %s' % (dest, exc))
    os.close(handle)
    try:
        target = sqlite3.connect(tmp)
        try:
            conn.backup(target)
        finally:
            target.close()
        verdict, tables_count = integrity_check(tmp)
        if verdict != ['ok']:
            raise SourceError('backup %s failed PRAGMA integrity_check: %s' % (dest, '; '.join(verdict[:5])))
        checksum = _sha256(tmp)
        changed = not (os.path.exists(dest) and _sha256(dest) == checksum)
        if changed:
            os.rename(tmp, dest)
        result = {'path': dest, 'integrity_check': 'ok', 'sha256': checksum, 'tables': tables_count,
                  'bytes': os.path.getsize(dest), 'changed': changed}
    except (sqlite3.Error, OSError) as exc:
        raise SourceError('backup to %s failed: %s' % (dest, exc))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return result
