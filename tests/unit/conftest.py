# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Shared unit-test fixtures.

* ``collections/`` goes on sys.path so ``ansible_collections.agent_ui.postgresql`` imports
  from this checkout, and ``tests/support`` so tests can import the app SQLite generator.
* ``postgresql_server``: a throwaway PostgreSQL started from the host's server binaries
  (``initdb``/``pg_ctl``, e.g. /usr/lib/postgresql/15/bin; ``PG_BINDIR`` overrides), listening
  only on a Unix socket in a temporary directory, stopped and removed after the session.
  initdb and postgres refuse to run as root, so under root they run as ``nobody`` via
  ``runuser``.  The tests that need it are skipped only when no initdb binary exists.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import itertools
import os
import pathlib
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
for _path in (REPO / 'collections', REPO / 'tests' / 'support'):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# The app schema is the app_schema role's own migrations, applied in order: one source of truth for the DDL.
APP_SCHEMA_MIGRATIONS = sorted((REPO / 'roles' / 'app_schema' / 'files' / 'migrations').glob('[0-9]*.sql'))
UNPRIVILEGED_USER = 'nobody'


def find_pg_bindir():
    """Directory holding initdb and pg_ctl, or None."""
    candidates = [os.environ.get('PG_BINDIR')]
    candidates += sorted(glob.glob('/usr/lib/postgresql/*/bin'), key=lambda p: int(p.split('/')[-2]), reverse=True)
    candidates += ['/usr/pgsql-16/bin', '/usr/pgsql-15/bin', '/usr/local/pgsql/bin']
    for directory in candidates:
        if directory and os.path.isfile(os.path.join(directory, 'initdb')) and os.path.isfile(os.path.join(directory, 'pg_ctl')):
            return directory
    on_path = shutil.which('initdb')
    if on_path and shutil.which('pg_ctl'):
        return os.path.dirname(os.path.realpath(on_path))
    return None


class PostgresServer(object):
    """A running throwaway server: connection parameters and small helpers."""

    def __init__(self, bindir, base):
        self.bindir = bindir
        self.base = base
        self.socket_dir = base
        self.data = os.path.join(base, 'data')
        self.log = os.path.join(base, 'server.log')
        self.user = 'postgres'
        self.port = 5432
        self._names = itertools.count(1)
        self._as_user = []
        if os.geteuid() == 0:
            if not shutil.which('runuser'):
                raise RuntimeError('running as root and runuser is missing: cannot start postgres as %s' % UNPRIVILEGED_USER)
            self._as_user = ['runuser', '-u', UNPRIVILEGED_USER, '--']
            uid, gid = pwd.getpwnam(UNPRIVILEGED_USER).pw_uid, pwd.getpwnam(UNPRIVILEGED_USER).pw_gid
            os.chown(base, uid, gid)

    def _run(self, *args):
        result = subprocess.run(self._as_user + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.base,
                                universal_newlines=True, check=False)
        if result.returncode != 0:
            log = open(self.log).read() if os.path.exists(self.log) else ''
            raise RuntimeError('%s failed (%d): %s\n%s' % (' '.join(args), result.returncode, result.stdout, log[-3000:]))
        return result.stdout

    def start(self):
        self._run(os.path.join(self.bindir, 'initdb'), '-D', self.data, '-U', self.user, '-A', 'trust', '-E', 'UTF8',
                  '--no-locale', '--no-sync')
        options = "-c listen_addresses='' -k %s -p %d -c fsync=off -c synchronous_commit=off -c full_page_writes=off " \
                  "-c max_connections=30 -c shared_buffers=128MB" % (self.socket_dir, self.port)
        self._run(os.path.join(self.bindir, 'pg_ctl'), '-D', self.data, '-l', self.log, '-o', options, '-w', '-t', '60', 'start')

    def stop(self):
        try:
            self._run(os.path.join(self.bindir, 'pg_ctl'), '-D', self.data, '-m', 'immediate', '-w', 'stop')
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def params(self, db):
        """Connection options of the sqlite_to_postgresql module for database ``db``."""
        return {'db': db, 'login_unix_socket': self.socket_dir, 'login_port': self.port, 'login_user': self.user}

    def connect(self, db='postgres'):
        import psycopg2
        conn = psycopg2.connect(host=self.socket_dir, port=self.port, user=self.user, dbname=db)
        conn.autocommit = True
        return conn

    def query(self, db, sql, args=None):
        conn = self.connect(db)
        try:
            cur = conn.cursor()
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def create_database(self, prefix='t', template=None):
        name = '%s_%d_%d' % (prefix, os.getpid(), next(self._names))
        conn = self.connect()
        try:
            conn.cursor().execute('CREATE DATABASE "%s"%s' % (name, ' TEMPLATE "%s"' % template if template else ''))
        finally:
            conn.close()
        return name

    def drop_database(self, name):
        conn = self.connect()
        try:
            conn.cursor().execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
        finally:
            conn.close()


@pytest.fixture(scope='session')
def postgresql_server():
    bindir = find_pg_bindir()
    if bindir is None:
        pytest.skip('no PostgreSQL server binaries (initdb) found: install postgresql-15 or set PG_BINDIR')
    base = tempfile.mkdtemp(prefix='agent-ui-pg-')
    os.chmod(base, 0o755)
    server = PostgresServer(bindir, base)
    try:
        server.start()
    except Exception:
        shutil.rmtree(base, ignore_errors=True)
        raise
    yield server
    server.stop()


@pytest.fixture(scope='session')
def app_template(postgresql_server):
    """A template database holding the app schema (the app_schema role's migrations)."""
    name = postgresql_server.create_database('app_template')
    conn = postgresql_server.connect(name)
    try:
        for migration in APP_SCHEMA_MIGRATIONS:
            conn.cursor().execute(migration.read_text())
        conn.commit()
    finally:
        conn.close()
    return name


@pytest.fixture
def app_db(postgresql_server, app_template):
    """A fresh database with the app schema; dropped after the test."""
    name = postgresql_server.create_database('app', template=app_template)
    yield name
    postgresql_server.drop_database(name)


@pytest.fixture
def empty_db(postgresql_server):
    """A fresh empty database; dropped after the test."""
    name = postgresql_server.create_database('empty')
    yield name
    postgresql_server.drop_database(name)
