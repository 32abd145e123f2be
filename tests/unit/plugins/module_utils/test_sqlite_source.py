# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The SQLite source: read-only consistent snapshot and verified backup (sqlite_source.py)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import sqlite3

import pytest

from ansible_collections.agent_ui.postgresql.plugins.module_utils import sqlite_source


@contextlib.contextmanager
def snapshot_of(path, script):
    """The read-only snapshot of a new SQLite file built by ``script``."""
    conn = sqlite3.connect(str(path))
    conn.executescript(script)
    conn.close()
    src = sqlite_source.open_snapshot(str(path))
    try:
        yield src
    finally:
        sqlite_source.close_snapshot(src)


def make_db(path, wal=False):
    conn = sqlite3.connect(str(path))
    if wal:
        conn.execute('PRAGMA journal_mode = WAL')
    conn.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)')
    conn.executemany('INSERT INTO t (v) VALUES (?)', [('a',), ('b',)])
    conn.commit()
    conn.close()


def test_snapshot_is_read_only(tmp_path):
    path = tmp_path / 'db.sqlite'
    make_db(path)
    src = sqlite_source.open_snapshot(str(path))
    try:
        with pytest.raises(sqlite3.OperationalError, match='readonly'):
            src.execute("INSERT INTO t (v) VALUES ('c')")
    finally:
        sqlite_source.close_snapshot(src)


def test_snapshot_does_not_see_later_writes(tmp_path):
    path = tmp_path / 'db.sqlite'
    make_db(path, wal=True)
    src = sqlite_source.open_snapshot(str(path))
    try:
        writer = sqlite3.connect(str(path))
        writer.execute("INSERT INTO t (v) VALUES ('late')")
        writer.commit()
        writer.close()
        assert [row[0] for row in sqlite_source.stream(src, 'SELECT v FROM t ORDER BY id')] == [b'a', b'b']
    finally:
        sqlite_source.close_snapshot(src)


def test_text_comes_back_as_bytes_so_bad_utf8_is_per_value(tmp_path):
    path = tmp_path / 'db.sqlite'
    make_db(path)
    conn = sqlite3.connect(str(path))
    conn.execute("UPDATE t SET v = CAST(X'FF' AS TEXT) WHERE id = 1")
    conn.commit()
    conn.close()
    src = sqlite_source.open_snapshot(str(path))
    try:
        assert list(sqlite_source.stream(src, 'SELECT v FROM t ORDER BY id')) == [(b'\xff',), (b'b',)]
    finally:
        sqlite_source.close_snapshot(src)


def test_missing_or_invalid_source(tmp_path):
    with pytest.raises(sqlite_source.SourceError, match='does not exist'):
        sqlite_source.open_snapshot(str(tmp_path / 'nope.sqlite'))
    junk = tmp_path / 'junk.sqlite'
    junk.write_bytes(b'this is not a database' * 100)
    with pytest.raises(sqlite_source.SourceError, match='cannot open'):
        sqlite_source.open_snapshot(str(junk))


def test_backup_is_verified_and_idempotent(tmp_path):
    path = tmp_path / 'db.sqlite'
    make_db(path, wal=True)
    backup = tmp_path / 'backup.sqlite'
    src = sqlite_source.open_snapshot(str(path))
    try:
        first = sqlite_source.verified_backup(src, str(backup))
        second = sqlite_source.verified_backup(src, str(backup))
    finally:
        sqlite_source.close_snapshot(src)
    assert first['integrity_check'] == 'ok' and first['changed'] is True and first['tables'] == 1
    assert second['changed'] is False and second['sha256'] == first['sha256']
    conn = sqlite3.connect(str(backup))
    assert conn.execute('SELECT v FROM t ORDER BY id').fetchall() == [('a',), ('b',)]
    conn.close()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]


def test_backup_failing_integrity_check_is_refused(tmp_path, monkeypatch):
    path = tmp_path / 'db.sqlite'
    make_db(path)
    monkeypatch.setattr(sqlite_source, 'integrity_check', lambda _path: (['*** in database main *** Page 2 is never used'], 1))
    src = sqlite_source.open_snapshot(str(path))
    try:
        with pytest.raises(sqlite_source.SourceError, match='integrity_check'):
            sqlite_source.verified_backup(src, str(tmp_path / 'backup.sqlite'))
    finally:
        sqlite_source.close_snapshot(src)
    assert not list(tmp_path.glob('*backup*'))


def test_backup_directory_must_exist(tmp_path):
    path = tmp_path / 'db.sqlite'
    make_db(path)
    src = sqlite_source.open_snapshot(str(path))
    try:
        with pytest.raises(sqlite_source.SourceError, match='does not exist'):
            sqlite_source.verified_backup(src, str(tmp_path / 'missing' / 'backup.sqlite'))
    finally:
        sqlite_source.close_snapshot(src)


def test_introspection(tmp_path):
    with snapshot_of(tmp_path / 'db.sqlite', '''
        CREATE TABLE p (id INTEGER PRIMARY KEY, code TEXT UNIQUE);
        CREATE TABLE c (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id) ON DELETE CASCADE, n INT);
        CREATE INDEX c_n ON c (n DESC) WHERE n > 0;
        INSERT INTO p VALUES (1, 'a'), (2, 'a2');
        INSERT INTO c VALUES (1, 1, 1), (2, 1, 1), (3, 2, 2);
    ''') as src:
        assert sqlite_source.tables(src) == ['c', 'p']
        assert [col['name'] for col in sqlite_source.table_columns(src, 'c')] == ['id', 'p_id', 'n']
        fks = sqlite_source.foreign_keys(src, 'c')
        assert fks[0]['parent'] == 'p' and fks[0]['columns'] == ['p_id'] and fks[0]['on_delete'] == 'CASCADE'
        index = [i for i in sqlite_source.indexes(src, 'c') if i['name'] == 'c_n'][0]
        assert index['partial'] and index['columns'] == [{'name': 'n', 'desc': True, 'collation': 'BINARY'}]
        assert sqlite_source.duplicate_values(src, 'c', ['"p_id"', '"n"']) == {(1, 1)}


VIRTUAL_DDL = '''
    CREATE TABLE doc (id INTEGER PRIMARY KEY, title TEXT, body TEXT);
    INSERT INTO doc VALUES (1, 'a', 'hello world'), (2, 'b', 'second doc');
    CREATE VIRTUAL TABLE notes USING fts5(title, body, tokenize = 'porter');
    INSERT INTO notes (rowid, title, body) VALUES (7, 'n1', 'note one'), (9, 'n2', 'note two');
    CREATE VIRTUAL TABLE doc_fts USING fts5(title, body, content = 'doc', content_rowid = 'id');
    INSERT INTO doc_fts (doc_fts) VALUES ('rebuild');
    CREATE VIRTUAL TABLE blind USING fts5(x, content = '');
    INSERT INTO blind (rowid, x) VALUES (1, 'gone');
    CREATE VIRTUAL TABLE old USING fts4(t, content);
    INSERT INTO old (docid, t, content) VALUES (3, 'fts4 row', 'a column named content');
    CREATE VIRTUAL TABLE box USING rtree(id, minx, maxx);
    INSERT INTO box VALUES (1, 0.5, 2.5);
'''
SHADOWS = {
    'notes_data': 'notes', 'notes_idx': 'notes', 'notes_content': 'notes', 'notes_docsize': 'notes', 'notes_config': 'notes',
    'doc_fts_data': 'doc_fts', 'doc_fts_idx': 'doc_fts', 'doc_fts_docsize': 'doc_fts', 'doc_fts_config': 'doc_fts',
    'blind_data': 'blind', 'blind_idx': 'blind', 'blind_docsize': 'blind', 'blind_config': 'blind',
    'old_content': 'old', 'old_segments': 'old', 'old_segdir': 'old', 'old_docsize': 'old', 'old_stat': 'old',
    'box_node': 'box', 'box_rowid': 'box', 'box_parent': 'box',
}


@pytest.mark.parametrize('use_table_list', [True, False], ids=['table_list', 'suffix_rules'])
def test_virtual_and_shadow_tables(tmp_path, use_table_list):
    """Both ways of finding shadow tables (SQLite's own list, and the suffix rules for SQLite < 3.37) agree."""
    with snapshot_of(tmp_path / 'virtual.sqlite', VIRTUAL_DDL + 'CREATE TABLE notes_extra (id INTEGER PRIMARY KEY);') as src:
        virtual = sqlite_source.virtual_tables(src)
        assert virtual == {'notes': ('fts5', None), 'doc_fts': ('fts5', 'doc'), 'blind': ('fts5', ''),
                           'old': ('fts4', None), 'box': ('rtree', None)}
        assert sqlite_source.shadow_tables(src, use_table_list=use_table_list) == SHADOWS
        # A module the suffix rules do not know: only SQLite's own list finds its shadow tables.
        unknown = {'notes': sqlite_source.VirtualTable('custom', None)}
        found = sqlite_source.shadow_tables(src, unknown, use_table_list=use_table_list)
        if use_table_list:
            assert found == dict((name, 'notes' if owner == 'notes' else None) for name, owner in SHADOWS.items())
        else:
            assert found == {}


def test_quoted_content_options(tmp_path):
    with snapshot_of(tmp_path / 'quoted.sqlite', '''
        CREATE TABLE "it's" (id INTEGER PRIMARY KEY, t TEXT);
        CREATE VIRTUAL TABLE a USING fts5(t, content = 'it''s', content_rowid = id);
        CREATE VIRTUAL TABLE b USING fts5(t, content="");
        CREATE VIRTUAL TABLE c USING fts5(t, content_rowid = 'x', columnsize = 0);
    ''') as src:
        virtual = sqlite_source.virtual_tables(src)
        assert (virtual['a'].content, virtual['b'].content, virtual['c'].content) == ("it's", '', None)
