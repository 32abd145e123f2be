# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Generic mode on random SQLite schemas holding valid data: every one must load, validate and re-run unchanged.

Each seed builds a file of one to four tables with names that need quoting, every declared type
of the type mapping, rowid, composite and WITHOUT ROWID keys, UNIQUE columns and pairs, plain,
descending and partial indexes, foreign keys to earlier tables and to the table itself, and now
and then an FTS5 table, and column defaults of mixed types (constants of every storage class,
current-time expressions, volatile ones).  The seeds are fixed, so a failure repeats; a run of 400
seeds found the cycle, forward-reference and name-case defects that the named tests in
test_migration_generic.py now pin down.  Each seed's defaults are checked against an oracle: a
PostgreSQL default gives what the module loads for SQLite's default (53 of the 90 random schemas of
the two families below failed on the code before defaults were converted, PostgreSQL refusing the DDL).

Two more families run under skip_row: self-referencing tables checked against an oracle of what
must be kept, and random schemas with wild values, references to later tables or to the table
itself, and cycles, which must load exactly (9 of the 50 seeds failed with PostgreSQL's foreign
key error before the read-ahead settled).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import random
import sqlite3

import pytest

from ansible_collections.agent_ui.postgresql.plugins.module_utils import migration_load
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_checks import PROBLEM_CLASSES

SEEDS = range(40)
TABLES = ['t', 'Order', 'select', 'weird name', '\u00fcn\u00ef', 'a"b', 'Group', 'x1', 'CamelCase', 'user']
COLUMNS = ['v', 'Name', 'value', 'from', 'col two', '\u00fc', 'k"q', 'x', 'created']
TYPES = ['INTEGER', 'INT', 'TEXT', 'VARCHAR(10)', 'REAL', 'NUMERIC(8,2)', 'BLOB', 'BOOLEAN', 'DATETIME', 'DATE',
         'JSON', '', 'DECIMAL', 'NVARCHAR(5)', 'BIGINT', 'DOUBLE', 'CLOB', 'NUMERIC']
KEY_TYPES = ('INTEGER', 'INT', 'TEXT', 'BIGINT')
# Column defaults of mixed types, as PRAGMA table_info gives them back: a constant, the current time, or volatile.
DEFAULTS = {
    '0': 'constant', '1': 'constant', '-1': 'constant', '-2.5': 'constant', '1.5e3': 'constant', '0x10': 'constant',
    '1704164645123': 'constant', "'x'": 'constant', "''": 'constant', '""': 'constant', '\'"0"\'': 'constant',
    "'abc''d'": 'constant', "'12.345'": 'constant', "'yes'": 'constant', "'2024-01-02 03:04:05'": 'constant',
    "'2024-02-29'": 'constant', 'active': 'constant', "x'00ff'": 'constant', "x''": 'constant', 'TRUE': 'constant', 'FALSE': 'constant',
    'NULL': 'constant', "'{\"a\": [1, 2.50]}'": 'constant', "'[1,'": 'constant', '1 + 2': 'constant', '-(7)': 'constant',
    'CURRENT_TIMESTAMP': 'now', 'CURRENT_DATE': 'now', 'CURRENT_TIME': 'now', "datetime('now')": 'now',
    "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')": 'now', "date('now')": 'now', 'random()': 'volatile', "lower('ABC')": 'volatile',
}
TEXT_CHARS = u'abc\u00fc\t\n\r\\\u00e9\U0001f600 "\''


def quoted(name):
    return '"%s"' % name.replace('"', '""')


def _text(rnd, chars, most):
    return ''.join(rnd.choice(chars) for _position in range(rnd.randint(0, most)))


def random_value(rnd, declared):
    """A value SQLite stores for ``declared`` that the type mapping accepts."""
    if rnd.random() < 0.1:
        return None
    upper = declared.upper()
    choices = [
        ('INT', lambda: rnd.choice([0, 1, -1, 2 ** 62, -2 ** 63, rnd.randint(-10 ** 6, 10 ** 6)])),
        ('NVARCHAR(5)', lambda: _text(rnd, u'abc\u00fc\\', 5)),
        ('VARCHAR(10)', lambda: _text(rnd, TEXT_CHARS, 10)),
        ('CHAR', lambda: _text(rnd, TEXT_CHARS, 30)),
        ('CLOB', lambda: _text(rnd, TEXT_CHARS, 30)),
        ('TEXT', lambda: _text(rnd, TEXT_CHARS, 30)),
        ('BLOB', lambda: bytes(bytearray(rnd.randint(0, 255) for _byte in range(rnd.randint(0, 20))))),
        ('REAL', lambda: rnd.choice([0.0, -0.0, 1.5, 1e300, -2.5e-300, 0.1, 3.0, rnd.randint(-1000, 1000) / 7.0])),
        ('DOUB', lambda: rnd.choice([0.0, 1e-5, 2.0 ** 60])),
        ('BOOL', lambda: rnd.choice([0, 1])),
        ('DATETIME', lambda: rnd.choice(['2024-01-02 03:04:05', '2024-01-02T03:04:05.123Z', '2023-12-31T23:59:59.999+05:30',
                                         1700000000, 1700000000123, 1700000000.5])),
        ('DATE', lambda: rnd.choice(['2024-02-29', '1999-12-31', '2000-01-01'])),
        ('JSON', lambda: json.dumps(rnd.choice([[1, 2], {'a': u'\u00fc'}, 'x', 1.5, None, {'k': [True, False]}]))),
        ('NUMERIC(8,2)', lambda: rnd.choice([0, 1.25, -999999.99, '12.5', 123456])),
        ('NUMERIC', lambda: rnd.choice([0, 1.25, 10 ** 18, '3.14159', -7])),
        ('DECIMAL', lambda: rnd.choice([0, 1.25, 10 ** 18, '3.14159', -7])),
    ]
    for marker, make in choices:
        if marker in upper:
            return make()
    return rnd.choice([1, 'text', 2.5, b'\x01\x02', u'\u00fc'])


def _table(rnd, conn, name, earlier):
    """Create and fill one random table; return its key column (or None) and declared types."""
    cols = rnd.sample(COLUMNS, rnd.randint(1, 5))
    types = [rnd.choice(TYPES) for _col in cols]
    kind = rnd.choice(['rowid', 'rowid', 'composite', 'none', 'without'])
    key_cols = [c for c, t in zip(cols, types) if t in KEY_TYPES][:2] if kind in ('composite', 'without') else []
    if kind in ('composite', 'without') and not key_cols:
        kind = 'none'
    defs = ['id INTEGER PRIMARY KEY'] if kind == 'rowid' else []
    for col, declared in zip(cols, types):
        extra = ' UNIQUE' if rnd.random() < 0.2 and declared not in ('BLOB', 'JSON', 'REAL', 'DOUBLE') else ''
        extra += ' NOT NULL' if col in key_cols or rnd.random() < 0.15 else ''
        if rnd.random() < 0.4:
            extra += ' DEFAULT %s' % default_clause(rnd.choice(sorted(DEFAULTS)))
        defs.append('%s %s%s' % (quoted(col), declared, extra))
    ref = None
    if kind == 'rowid' and rnd.random() < 0.25:
        ref = (name, 'id', 'INTEGER')
    elif earlier and rnd.random() < 0.6:
        ref = rnd.choice(earlier)
    if ref:
        defs.append('ref %s REFERENCES %s (%s)' % (ref[2], quoted(ref[0]), quoted(ref[1])))
    if key_cols:
        defs.append('PRIMARY KEY (%s)' % ', '.join(quoted(c) for c in key_cols))
    if len(cols) >= 2 and rnd.random() < 0.2:
        defs.append('UNIQUE (%s, %s)' % (quoted(cols[0]), quoted(cols[1])))
    conn.execute('CREATE TABLE %s (%s)%s' % (quoted(name), ', '.join(defs), ' WITHOUT ROWID' if kind == 'without' else ''))
    if rnd.random() < 0.5:
        col = rnd.choice(cols)
        conn.execute('CREATE INDEX %s ON %s (%s%s)%s' % (
            quoted('ix_%s_%s' % (name, col)), quoted(name), quoted(col), rnd.choice(['', ' DESC']),
            ' WHERE %s IS NOT NULL' % quoted(col) if rnd.random() < 0.3 else ''))
    names = (['id'] if kind == 'rowid' else []) + cols + (['ref'] if ref and ref[0] != name else [])
    parent_keys = [row[0] for row in conn.execute('SELECT %s FROM %s' % (quoted(ref[1]), quoted(ref[0])))] if ref else []
    for number in range(rnd.choice([0, 1, 5, 30, 200])):
        row = ([number + 1] if kind == 'rowid' else []) + [random_value(rnd, t) for t in types]
        row += [rnd.choice(parent_keys + [None])] if ref and ref[0] != name else []
        try:
            conn.execute('INSERT INTO %s (%s) VALUES (%s)' % (
                quoted(name), ', '.join(quoted(c) for c in names), ', '.join('?' * len(row))), row)
        except sqlite3.IntegrityError:
            pass  # a random duplicate of a UNIQUE or key value: that row is simply not there
    if ref and ref[0] == name:
        ids = [row[0] for row in conn.execute('SELECT id FROM %s' % quoted(name))]
        for row_id in ids:
            conn.execute('UPDATE %s SET ref = ? WHERE id = ?' % quoted(name), (rnd.choice(ids + [None]), row_id))
    if kind == 'rowid':
        return ('id', 'INTEGER')
    if len(key_cols) == 1:
        return (key_cols[0], types[cols.index(key_cols[0])])
    return None


def default_clause(text):
    """A DEFAULT as SQLite's grammar takes it: expressions in parentheses, literals bare ("" is refused in parentheses)."""
    return text if DEFAULTS[text] == 'constant' and ' ' not in text and not text.startswith('-(') else '(%s)' % text


def random_source(rnd, path):
    conn = sqlite3.connect(path)
    earlier = []
    for name in rnd.sample(TABLES, rnd.randint(1, 4)):
        key = _table(rnd, conn, name, earlier)
        if key:
            earlier.append((name,) + key)
    if rnd.random() < 0.2:
        conn.execute('CREATE VIRTUAL TABLE fts USING fts5(title, body)')
        conn.executemany('INSERT INTO fts (rowid, title, body) VALUES (?, ?, ?)',
                         [(rnd.randint(1, 10 ** 9), random_value(rnd, 'TEXT'), random_value(rnd, 'TEXT')) for _row in range(20)])
    conn.commit()
    conn.close()


@pytest.mark.parametrize('seed', SEEDS)
def test_random_schema_round_trip(postgresql_server, empty_db, tmp_path, seed):
    path = str(tmp_path / 'random.sqlite')
    random_source(random.Random(seed), path)
    params = dict(postgresql_server.params(empty_db), src=path, mode='generic', target_schema='rnd')
    result = migration_load.run(params)
    validation = result['validation']
    assert validation['counts_match'] and validation['checksums_match'] and validation['fk_orphans'] == 0, validation
    source = sqlite3.connect(path)
    try:
        expected = sum(source.execute('SELECT count(*) FROM %s' % quoted(spec_name)).fetchone()[0]
                       for spec_name in result['tables'])
    finally:
        source.close()
    assert sum(table['loaded_rows'] for table in result['tables'].values()) == expected
    again = migration_load.run(params)
    assert again['changed'] is False and again['action'] == 'none'
    defaults_agree_with_the_loaded_values(postgresql_server, empty_db, tmp_path, path)


def defaults_agree_with_the_loaded_values(server, db, tmp_path, path):
    """The oracle for the defaults of ``path``: a PostgreSQL default gives what the module loads for SQLite's default.

    Each (declared type, default) pair becomes a probe table of its own whose one row is SQLite's default, loaded
    under skip_row through the value converters.  A constant default is kept exactly when that row loads a value,
    and then PostgreSQL's default gives that value; a dropped one is named in the warnings.  A current-time default
    that is kept gives a value, and one whose row is refused is dropped.  A volatile one is always dropped.
    """
    source = sqlite3.connect(path)
    try:
        pairs = sorted(set((col[2], col[4]) for name, _cols, _has_id in _rowid_tables(source, every=True)
                           for col in source.execute('PRAGMA table_info(%s)' % quoted(name)) if col[4] is not None))
    finally:
        source.close()
    if not pairs:
        return
    probe = str(tmp_path / 'probe.sqlite')
    conn = sqlite3.connect(probe)
    for number, (declared, default) in enumerate(pairs):
        conn.execute('CREATE TABLE p%d (v %s DEFAULT %s)' % (number, declared, default_clause(default)))
        conn.execute('INSERT INTO p%d DEFAULT VALUES' % number)
    conn.commit()
    conn.close()
    result = migration_load.run(dict(server.params(db), src=probe, mode='generic', target_schema='probe',
                                     policies=dict((cls, 'skip_row') for cls in PROBLEM_CLASSES)))
    warned = set(warning.split('.')[0] for warning in result['mapping_warnings'])
    for number, (declared, default) in enumerate(pairs):
        table, kind = 'p%d' % number, DEFAULTS[default]
        loaded = server.query(db, 'SELECT v::text FROM probe.%s' % table)
        server.query(db, 'INSERT INTO probe.%s DEFAULT VALUES' % table)
        filled = [row[0] for row in server.query(db, 'SELECT v::text FROM probe.%s' % table)][len(loaded):]
        shown = (declared, default, loaded, filled, result['mapping_warnings'])
        if kind == 'volatile':
            assert filled == [None] and table in warned, shown
        elif kind == 'now':
            assert (filled != [None]) == (table not in warned), shown
            assert filled == [None] or loaded, shown
        elif loaded and loaded[0][0] is not None:
            assert filled == [loaded[0][0]] and table not in warned, shown
        else:
            assert filled == [None] and (table in warned) == (not loaded), shown


# ---------------------------------------------------------------------------
# Skipped rows and references in any direction: what skip_row keeps, against an oracle
# ---------------------------------------------------------------------------

def greatest_consistent_rows(rows, set_null):
    """The oracle: start from the rows whose own values pass, and drop (or, under SET NULL, unlink) every row that
    points at a row not kept, until nothing changes. References run to any row, earlier or later."""
    kept = dict((row_id, ref) for row_id, ref, good in rows if good)
    existing = set(row_id for row_id, _ref, _good in rows)
    changed = True
    while changed:
        changed = False
        for row_id, ref in sorted(kept.items()):
            if ref is None or ref in kept:
                continue
            if set_null and ref in existing:
                kept[row_id] = None  # the parent exists but is skipped: ON DELETE SET NULL
            else:
                del kept[row_id]  # skipped parent (NO ACTION) or no such row (orphan)
            changed = True
    return kept


@pytest.mark.parametrize('seed', range(30))
def test_skip_row_with_references_in_any_direction_keeps_the_greatest_consistent_set(postgresql_server, empty_db, tmp_path, seed):
    rnd = random.Random(seed)
    set_null = rnd.random() < 0.5
    size = rnd.choice([10, 40, 300])
    ids = rnd.sample(range(1, 5 * size), size)
    rows = [(row_id, rnd.choice(ids + [None, None, 5 * size]), rnd.random() > 0.15) for row_id in ids]
    path = str(tmp_path / 'refs.sqlite')
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, ref INTEGER REFERENCES t (id)%s, v INTEGER)'
                 % (' ON DELETE SET NULL' if set_null else ''))
    # Rows load in id order and refer to random ids: at earlier rows, later rows, themselves and missing rows.
    conn.executemany('INSERT INTO t VALUES (?, ?, ?)', [(row_id, ref, 1 if good else 'bad') for row_id, ref, good in rows])
    conn.commit()
    conn.close()
    params = dict(postgresql_server.params(empty_db), src=path, mode='generic', target_schema='rf',
                  policies=dict((cls, 'skip_row') for cls in ('orphan', 'type')))
    result = migration_load.run(params)
    assert result['validation']['checksums_match'] and result['validation']['fk_orphans'] == 0
    expected = greatest_consistent_rows(rows, set_null)
    assert dict(postgresql_server.query(empty_db, 'SELECT id, ref FROM rf.t')) == expected
    assert migration_load.run(params)['changed'] is False


# ---------------------------------------------------------------------------
# Wild values, references both ways and cycles under skip_row
# ---------------------------------------------------------------------------

WILD_VALUES = ['wild', b'\xff\xfe', 'a\x00b', '1e999', 2 ** 62, float('nan'), '2024-13-45', '{bad json', -1, 999999]


def _rowid_tables(conn, every=False):
    """(name, columns, whether it has an id key) of the ordinary tables; only rowid tables unless ``every``."""
    found = []
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%' "
                                "AND name NOT LIKE 'fts%'" + ('' if every else " AND upper(sql) NOT LIKE '%WITHOUT ROWID%'")):
        columns = list(conn.execute('PRAGMA table_info(%s)' % quoted(name)))
        found.append((name, [col[1] for col in columns], any(col[1] == 'id' and col[5] for col in columns)))
    return found


def wild_source(rnd, path):
    """A random schema (random_source), then a reference from a table to a later table or itself, and wild values."""
    random_source(rnd, path)
    conn = sqlite3.connect(path)
    tables = _rowid_tables(conn)
    keyed = [name for name, _columns, has_id in tables if has_id]
    if keyed and rnd.random() < 0.7:
        child, parent = rnd.choice(keyed), rnd.choice(keyed)
        conn.execute('ALTER TABLE %s ADD COLUMN back INTEGER REFERENCES %s (id)%s' % (
            quoted(child), quoted(parent), rnd.choice(['', ' ON DELETE SET NULL', ' ON DELETE CASCADE'])))
        ids = [row[0] for row in conn.execute('SELECT id FROM %s' % quoted(parent))]
        for (row_id,) in list(conn.execute('SELECT id FROM %s' % quoted(child))):
            conn.execute('UPDATE %s SET back = ? WHERE id = ?' % quoted(child), (rnd.choice(ids + [None, None, 10 ** 6]), row_id))
    for name, columns, _has_id in tables:
        for (rowid,) in list(conn.execute('SELECT rowid FROM %s' % quoted(name))):
            if rnd.random() < 0.1:
                try:
                    conn.execute('UPDATE %s SET %s = ? WHERE rowid = ?' % (quoted(name), quoted(rnd.choice(columns))),
                                 (rnd.choice(WILD_VALUES), rowid))
                except sqlite3.IntegrityError:
                    pass  # a wild value that would break a SQLite UNIQUE or key: that row keeps its value
    conn.commit()
    conn.close()


@pytest.mark.parametrize('seed', range(50))
def test_wild_values_and_cycles_under_skip_row_load_exactly(postgresql_server, empty_db, tmp_path, seed):
    """Whatever is skipped, what loads validates and a re-run changes nothing: PostgreSQL never refuses a key."""
    path = str(tmp_path / 'wild.sqlite')
    wild_source(random.Random(seed), path)
    params = dict(postgresql_server.params(empty_db), src=path, mode='generic', target_schema='wild',
                  policies=dict((cls, 'skip_row') for cls in PROBLEM_CLASSES))
    result = migration_load.run(params)
    validation = result['validation']
    assert validation['counts_match'] and validation['checksums_match'] and validation['fk_orphans'] == 0, validation
    assert migration_load.run(params)['changed'] is False
