# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A throwaway PostgreSQL cluster, shared by the unit tests and ``benchmarks/migrate.py``.

It is started from the host's server binaries (``initdb``/``pg_ctl``, e.g.
/usr/lib/postgresql/15/bin; ``PG_BINDIR`` overrides the search) in a temporary directory, listens
only on a Unix socket there, and is removed by :meth:`ThrowawayServer.stop`.  initdb and postgres
refuse to run as root, so under root they run as an unprivileged user through ``runuser``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os
import pwd
import shutil
import subprocess
import tempfile


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The app schema is the app_schema role's own migrations, applied in order: one source of truth for the DDL.
APP_SCHEMA_MIGRATIONS = tuple(sorted(glob.glob(os.path.join(REPO, 'roles', 'app_schema', 'files', 'migrations', '[0-9]*.sql'))))


class ServerError(RuntimeError):
    """initdb or pg_ctl failed; the message ends with the tail of the server log."""


def find_bindir():
    """Directory holding initdb and pg_ctl (newest major first), or None."""
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


def _tail(path, chars=3000):
    if not os.path.exists(path):
        return ''
    with open(path, errors='replace') as handle:
        return handle.read()[-chars:]


class ThrowawayServer(object):
    """One cluster in a temporary directory: start, stop, connect, run SQL, make and drop databases.

    ``settings`` is a list of ``(name, value)`` pairs appended to postgresql.conf before the
    start (values are written as given, so quote strings).  ``stop_mode`` is pg_ctl's -m.
    """

    def __init__(self, bindir, settings=(), run_user='nobody', port=5432, prefix='agent-ui-pg-', stop_mode='fast'):
        self.bindir = bindir
        self.settings = list(settings)
        self.port = port
        self.user = 'postgres'
        self.stop_mode = stop_mode
        self.base = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.base, 0o755)
        self.socket_dir = self.base
        self.data = os.path.join(self.base, 'data')
        self.log = os.path.join(self.base, 'server.log')
        self.started = False
        self._as_user = []
        if os.geteuid() == 0:
            if not shutil.which('runuser'):
                shutil.rmtree(self.base, ignore_errors=True)
                raise ServerError('running as root and runuser is missing: cannot start postgres as %s' % run_user)
            entry = pwd.getpwnam(run_user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
            self._as_user = ['runuser', '-u', run_user, '--']

    def _run(self, *argv):
        result = subprocess.run(self._as_user + list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.base,
                                universal_newlines=True, check=False)
        if result.returncode != 0:
            raise ServerError('%s failed (%d): %s\n%s' % (' '.join(argv), result.returncode, result.stdout, _tail(self.log)))
        return result.stdout

    def start(self):
        """initdb (trust, UTF8, C locale), write the settings, start and wait; removes the directory on failure."""
        try:
            self._run(os.path.join(self.bindir, 'initdb'), '-D', self.data, '-U', self.user, '-A', 'trust', '-E', 'UTF8',
                      '--no-locale', '--no-sync')
            settings = [('listen_addresses', "''")] + self.settings + [
                ('port', str(self.port)), ('unix_socket_directories', "'%s'" % self.socket_dir)]
            with open(os.path.join(self.data, 'postgresql.conf'), 'a') as handle:
                handle.write('\n# agent_ui.postgresql throwaway server\n')
                for name, value in settings:
                    handle.write('%s = %s\n' % (name, value))
            self._run(os.path.join(self.bindir, 'pg_ctl'), '-D', self.data, '-l', self.log, '-w', '-t', '120', 'start')
            self.started = True
        except Exception:
            shutil.rmtree(self.base, ignore_errors=True)
            raise

    def stop(self):
        try:
            if self.started:
                self._run(os.path.join(self.bindir, 'pg_ctl'), '-D', self.data, '-m', self.stop_mode, '-w', 'stop')
                self.started = False
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def dsn(self, db):
        return {'host': self.socket_dir, 'port': self.port, 'user': self.user, 'dbname': db}

    def connect(self, db='postgres'):
        """An autocommit psycopg2 connection to ``db``."""
        import psycopg2
        conn = psycopg2.connect(**self.dsn(db))
        conn.autocommit = True
        return conn

    def query(self, db, sql, args=None):
        """Run one statement in its own connection; its rows, or None if it returns none."""
        conn = self.connect(db)
        try:
            cur = conn.cursor()
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def version(self):
        return self.query('postgres', 'SHOW server_version')[0][0]

    def make_database(self, name, template=None):
        """CREATE DATABASE ``name`` (dropping one of that name first), optionally from ``template``."""
        self.drop_database(name)
        self.query('postgres', 'CREATE DATABASE "%s"%s' % (name, ' TEMPLATE "%s"' % template if template else ''))
        return name

    def drop_database(self, name):
        self.query('postgres', 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)

    def make_app_template(self, name):
        """A new database ``name`` holding the app schema (the app_schema role's migrations, in one transaction)."""
        self.make_database(name)
        conn = self.connect(name)
        try:
            conn.autocommit = False
            for path in APP_SCHEMA_MIGRATIONS:
                with open(path) as handle:
                    conn.cursor().execute(handle.read())
            conn.commit()
        finally:
            conn.close()
        return name
