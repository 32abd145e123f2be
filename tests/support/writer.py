# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The writer of the failover tests and of benchmarks/failover.py: the app, as far as a failover can tell.

It runs on a lab host (python3 and python3-psycopg2 only), connects with a multi-host connection string and
``target_session_attrs=read-write`` (libpq finds whichever member is the primary now), and inserts increasing
sequence numbers in autocommit, one statement at a time.  Each insert the server acknowledged is recorded, with the
time and the host that acknowledged it, in ``--out``, one line each::

    ack <seq> <unix time> <host>     (--server-address: the address of the server that acknowledged)
    err <unix time> <message>

An insert that raised is not acknowledged (it may or may not have been committed: it is never counted as lost).
A commit that PostgreSQL returned with a warning that it "might not have been replicated" (a cancelled wait for a
synchronous standby) is written as ``unsafe`` instead of ``ack``: PostgreSQL did not promise it.

The password comes from the file PGPASSFILE names, never from the command line.  It stops on SIGTERM or when the file
``--stop`` exists.
"""

import argparse
import os
import signal
import sys
import time

import psycopg2

STOP = {'now': False}


def _stop(_signum, _frame):
    STOP['now'] = True


def connect(dsn):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--dsn', required=True, help='libpq connection string (no password)')
    parser.add_argument('--table', default='failover_probe')
    parser.add_argument('--out', required=True)
    parser.add_argument('--stop', default=None, help='stop when this file exists')
    parser.add_argument('--start', type=int, default=1, help='first sequence number')
    parser.add_argument('--interval', type=float, default=0.01, help='seconds between inserts')
    parser.add_argument('--retry', type=float, default=0.1, help='seconds between connection attempts')
    parser.add_argument('--server-address', action='store_true',
                        help='record the address of the server that acknowledged (through a pooler, the host the '
                             'writer connects to is the pooler\'s)')
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    seq = args.start
    conn = None
    sql = 'INSERT INTO %s (seq) VALUES (%%s)' % args.table
    if args.server_address:
        sql += ' RETURNING host(inet_server_addr())'
    with open(args.out, 'a', buffering=1) as out:
        while not STOP['now'] and not (args.stop and os.path.exists(args.stop)):
            try:
                if conn is None:
                    conn = connect(args.dsn)
                del conn.notices[:]
                with conn.cursor() as cursor:
                    cursor.execute(sql, (seq,))
                    host = cursor.fetchone()[0] if args.server_address else conn.info.host
                warned = any('might not have been replicated' in notice for notice in conn.notices)
                out.write('%s %d %.6f %s\n' % ('unsafe' if warned else 'ack', seq, time.time(), host))
                seq += 1
                time.sleep(args.interval)
            except psycopg2.Error as error:
                out.write('err %.6f %s\n' % (time.time(), ' '.join(str(error).split())))
                try:
                    if conn is not None:
                        conn.close()
                except psycopg2.Error:
                    pass
                conn = None
                seq += 1  # the failed number may or may not be in the table: never reuse it
                time.sleep(args.retry)
    return 0


if __name__ == '__main__':
    sys.exit(main())
