# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Shared unit-test fixtures.

* ``collections/`` goes on sys.path so ``ansible_collections.agent_ui.postgresql`` imports
  from this checkout, and ``tests/support`` so tests can import the app SQLite generator.
* ``HYPOTHESIS_PROFILE=repeatable`` (set by ``make unit``) makes the property tests deterministic.
* ``postgresql_server``: a throwaway PostgreSQL (``tests/support/pg_server.py``, the same class
  the benchmark uses), listening only on a Unix socket in a temporary directory, stopped and
  removed after the session.  Under root it runs as ``nobody``.  The tests that need it are
  skipped only when no initdb binary exists.
* Every test that uses ``postgresql_server`` (directly or through another fixture) is marked
  ``server``: ``make check`` runs ``-m "not server"``, the tests that need no server.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.util
import itertools
import os
import pathlib
import sys

import pytest
from hypothesis import settings as hypothesis_settings

REPO = pathlib.Path(__file__).resolve().parents[2]

# `make unit` (and so `make test` and CI) runs the property tests on fixed examples, so a run can be repeated
# exactly; plain `pytest` draws new random examples every time, to keep exploring.
hypothesis_settings.register_profile('repeatable', derandomize=True, print_blob=True)
hypothesis_settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'default'))
for _path in (REPO / 'collections', REPO / 'tests' / 'support'):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

UNPRIVILEGED_USER = 'nobody'

from pg_server import APP_SCHEMA_MIGRATIONS as _MIGRATION_PATHS, ThrowawayServer, find_bindir  # noqa: E402
# (tests/support is on sys.path only from here.)  The app_schema role's migrations, in order.
APP_SCHEMA_MIGRATIONS = [pathlib.Path(path) for path in _MIGRATION_PATHS]


class PostgresServer(ThrowawayServer):
    """The unit tests' server: fsync off, every database under a fresh generated name."""

    SETTINGS = [('fsync', 'off'), ('synchronous_commit', 'off'), ('full_page_writes', 'off'), ('max_connections', '30'),
                ('shared_buffers', "'128MB'")]

    def __init__(self, bindir):
        super(PostgresServer, self).__init__(bindir, self.SETTINGS, run_user=UNPRIVILEGED_USER, stop_mode='immediate')
        self._names = itertools.count(1)

    def params(self, db):
        """Connection options of the sqlite_to_postgresql module for database ``db``."""
        return {'db': db, 'login_unix_socket': self.socket_dir, 'login_port': self.port, 'login_user': self.user}

    def create_database(self, prefix='t', template=None):
        """A new database named after ``prefix``, optionally from ``template``; returns its name."""
        return self.make_database('%s_%d_%d' % (prefix, os.getpid(), next(self._names)), template)


def pytest_collection_modifyitems(items):
    """Mark ``server`` every test whose fixtures include postgresql_server."""
    for item in items:
        if 'postgresql_server' in getattr(item, 'fixturenames', ()):
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope='session')
def postgresql_server():
    bindir = find_bindir()
    if bindir is None:
        pytest.skip('no PostgreSQL server binaries (initdb) found: install postgresql-15 or set PG_BINDIR')
    server = PostgresServer(bindir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope='session')
def app_template(postgresql_server):
    """A template database holding the app schema (the app_schema role's migrations)."""
    return postgresql_server.make_app_template('app_template_%d' % os.getpid())


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


@pytest.fixture
def without_ansible(monkeypatch):
    """Load a filter file as a plain module with Ansible hidden: its stand-in AnsibleFilterError must serve."""
    monkeypatch.setitem(sys.modules, 'ansible', None)  # makes "import ansible.errors" fail
    monkeypatch.setitem(sys.modules, 'ansible.errors', None)

    def load(module):
        spec = importlib.util.spec_from_file_location('agent_ui_postgresql_plain_' + module.__name__.rsplit('.', 1)[-1],
                                                      module.__file__)
        plain = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(plain)
        assert issubclass(plain.AnsibleFilterError, ValueError)
        return plain
    return load
