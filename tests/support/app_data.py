# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""App-shaped data for the unit tests and ``benchmarks/migrate.py``: generated SQLite files, cached, and their shape.

The generator is ``app_sqlite.generate`` (next to this file).  A file generated for a set of
parameters is kept under ``cache_dir`` with a name holding those parameters and a hash of the
generator, so it is reused until the generator changes.  The app's tables, their columns and
their row counts are read from the file itself rather than written down a second time.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import sqlite3

import app_sqlite

GENERATOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'app_sqlite.py')
TABLES = app_sqlite.TABLES  # load order: parents first


def _digest(path, length=10):
    with open(path, 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:length]


def cached_app_sqlite(cache_dir, agents, skills, mcp_servers, tasks, large_prompt_kb=120, seed=1, log=None):
    """Path of the app SQLite file for these parameters (with links), generated once in ``cache_dir``."""
    key = 'app-t%d-a%d-s%d-m%d-kb%d-seed%d' % (tasks, agents, skills, mcp_servers, large_prompt_kb, seed)
    path = os.path.join(cache_dir, '%s-g%s.sqlite' % (key, _digest(GENERATOR)))
    if not os.path.exists(path):
        os.makedirs(cache_dir, exist_ok=True)
        if log:
            log('generating %s' % path)
        tmp = path + '.tmp'
        if os.path.exists(tmp):
            os.unlink(tmp)
        app_sqlite.generate(tmp, agents=agents, skills=skills, mcp_servers=mcp_servers, tasks=tasks, links=True,
                            large_prompt_kb=large_prompt_kb, seed=seed)
        os.rename(tmp, path)
    return path


def _read_only(path):
    return sqlite3.connect('file:%s?mode=ro' % path, uri=True)


def table_columns(path):
    """((table, (column, ...)), ...) of the app tables in ``path``, in load order and column order."""
    conn = _read_only(path)
    try:
        return tuple((table, tuple(row[1] for row in conn.execute('PRAGMA table_info(%s)' % table))) for table in TABLES)
    finally:
        conn.close()


def row_counts(path):
    """{table: rows} of the app tables in ``path``."""
    conn = _read_only(path)
    try:
        return dict((table, conn.execute('SELECT count(*) FROM %s' % table).fetchone()[0]) for table in TABLES)
    finally:
        conn.close()
