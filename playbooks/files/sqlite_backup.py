# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verified backup of a SQLite file, run by playbooks/migrate.yml before anything else.

    python3 sqlite_backup.py SRC DEST

SQLite's online backup API copies a consistent snapshot even while the app writes (a byte copy could catch a
half-written page). The copy is checked with PRAGMA integrity_check, then moved into place atomically, and only
when its content differs from DEST: a re-run reports changed=false. Prints one JSON object.
"""
from __future__ import absolute_import, division, print_function

import hashlib
import json
import os
import sqlite3
import sys
import tempfile

try:
    from urllib.parse import quote
except ImportError:  # Python 2
    from urllib import quote

__metaclass__ = type


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def backup(src, dest):
    if not os.path.isfile(src):
        raise RuntimeError('%s does not exist or is not a file' % src)
    directory = os.path.dirname(os.path.abspath(dest))
    fd, tmp = tempfile.mkstemp(prefix='.sqlite-backup-', dir=directory)
    os.close(fd)
    try:
        source = sqlite3.connect('file:%s?mode=ro' % quote(os.path.abspath(src)), uri=True)
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)
            check = [row[0] for row in target.execute('PRAGMA integrity_check')]
            tables = target.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        finally:
            target.close()
            source.close()
        if check != ['ok']:
            raise RuntimeError('PRAGMA integrity_check of the backup of %s failed: %s' % (src, '; '.join(check[:5])))
        digest = sha256(tmp)
        changed = not (os.path.isfile(dest) and sha256(dest) == digest)
        if changed:
            os.chmod(tmp, 0o600)
            os.rename(tmp, dest)
        return {'changed': changed, 'path': dest, 'sha256': digest, 'bytes': os.path.getsize(dest),
                'tables': tables, 'integrity_check': 'ok'}
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write('usage: sqlite_backup.py SRC DEST\n')
        return 2
    try:
        result = backup(argv[1], argv[2])
    except (RuntimeError, sqlite3.Error, OSError) as exc:
        sys.stderr.write('backup failed: %s\n' % exc)
        return 1
    sys.stdout.write(json.dumps(result, sort_keys=True) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
