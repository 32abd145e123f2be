"""pgBackRest on a standalone server (issue 12): a local, encrypted repository and asynchronous archiving.

The cluster scenario covers the dedicated repository host; here each host of the scenario keeps its repository on
a local path (no host in the group pgbackrest), on Debian 12's pgBackRest 2.45 and Debian 13's 2.55. The proof is a
restore: the local repository gives back a copy of the server with every row committed before the last archived
segment.
"""
import json
import shlex
import time

import pytest

from conftest import podman_hosts, psql

testinfra_hosts = podman_hosts("postgresql")

STANZA = "agent-ui"
PASSPHRASE = "mol-default-cipher-61f0b3e2a9d4"
TABLE = "backup_probe"
COPY = "/var/tmp/agent-ui-restore-copy"
COPY_PORT = 5499
MATCHED = ("max_connections", "max_worker_processes", "max_wal_senders", "max_prepared_transactions",
           "max_locks_per_transaction")


def pgbackrest(host, command, check=True):
    result = host.run("runuser -u postgres -- pgbackrest --stanza={} {}".format(STANZA, command))
    if check:
        assert result.rc == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
    return result


def info(host):
    return json.loads(pgbackrest(host, "--output=json info").stdout)[0]


def version(host):
    return psql(host, "SHOW server_version_num")[:2]


def archived_through(host, segment, timeout=60):
    """Wait until the server reports `segment` (or a later one) archived; return pg_stat_archiver's counts."""
    deadline = time.time() + timeout
    while True:
        archived, failed, last = psql(host, "SELECT archived_count, failed_count, coalesce(last_archived_wal, '') "
                                            "FROM pg_stat_archiver").split("|")
        if last >= segment or time.time() > deadline:
            return int(archived), int(failed), last
        time.sleep(0.5)


def switch_wal(host):
    """Write a record, then close the current segment; return its name. (With nothing written since the last
    switch, pg_switch_wal does nothing, and the current position names the segment already closed.)"""
    psql(host, "CREATE TABLE IF NOT EXISTS wal_probe (at timestamptz); INSERT INTO wal_probe VALUES (now())")
    segment = psql(host, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    psql(host, "SELECT pg_switch_wal()")
    return segment


def test_the_server_archives_asynchronously_into_its_own_encrypted_repository(host):
    pgbackrest(host, "check")
    stanza = info(host)
    assert stanza["status"]["code"] == 0 and stanza["cipher"] == "aes-256-cbc", stanza["status"]
    assert [b["type"] for b in stanza["backup"]][:1] == ["full"], stanza["backup"]
    # The repository is on this host, and what it holds is encrypted (OpenSSL's "Salted__" header, not zstd's).
    stored = host.run("find /var/lib/pgbackrest/archive/{} -type f -name '0000*' | head -1".format(STANZA)).stdout.strip()
    assert stored, "no WAL in the local repository"
    assert host.run("head -c 8 {} | od -An -c".format(stored)).stdout.split() == list("Salted__")

    archived_before, failed_before, _last = archived_through(host, "")
    segment = switch_wal(host)
    archived, failed, last = archived_through(host, segment)
    assert last >= segment and archived > archived_before and failed == failed_before == 0, (segment, last, failed)
    # archive_command handed the segment to the asynchronous process, which pushed it from the spool directory (its
    # log is the one with -async in its name; the foreground archive-push writes no log file of its own then).
    log = "/var/log/pgbackrest/{}-archive-push-async.log".format(STANZA)
    pushed = host.run("grep -cF \"pushed WAL file '{}' to the archive\" {}".format(segment, log))
    assert pushed.stdout.strip() == "1", host.run("tail -n 20 " + log).stdout
    spool = host.file("/var/spool/pgbackrest")
    assert (spool.user, spool.mode) == ("postgres", 0o750)


def test_only_pgbackrest_reads_the_passphrase(host):
    conf = host.file("/etc/pgbackrest/conf.d/agent-ui-cipher.conf")
    assert (conf.user, conf.group, conf.mode) == ("postgres", "postgres", 0o600)
    assert host.run("runuser -u nobody -- cat " + conf.path).rc != 0
    found = host.run("grep -rlF -e {} /etc /var/log /var/lib/postgresql /var/lib/pgbackrest /run /tmp "
                     "2>/dev/null".format(PASSPHRASE)).stdout.split()
    assert found == [conf.path], found
    assert PASSPHRASE not in host.run("journalctl --no-pager").stdout


def test_the_timers_take_a_differential_backup_on_the_server_itself(host):
    for kind in ("full", "diff", "verify"):
        assert host.run("systemctl is-enabled pgbackrest-{}-{}.timer".format(STANZA, kind)).stdout.strip() == "enabled"
    fulls = [b["label"] for b in info(host)["backup"] if b["type"] == "full"]
    started = host.run("systemctl start pgbackrest-{}-diff.service".format(STANZA))
    assert started.rc == 0, host.run("journalctl -u pgbackrest-{}-diff --no-pager -n 40".format(STANZA)).stdout
    latest = info(host)["backup"][-1]
    assert latest["type"] == "diff" and latest["prior"] in fulls and not latest["error"], latest


@pytest.fixture()
def copy_dir(host):
    host.run("runuser -u postgres -- /usr/lib/postgresql/{}/bin/pg_ctl -D {} -m immediate stop".format(version(host), COPY))
    host.run("rm -rf " + COPY)
    yield COPY
    host.run("runuser -u postgres -- /usr/lib/postgresql/{}/bin/pg_ctl -D {} -m immediate stop".format(version(host), COPY))
    host.run("rm -rf " + COPY)


def test_the_local_repository_restores_every_row_up_to_the_last_archived_segment(host, copy_dir):
    psql(host, "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id int PRIMARY KEY)".format(t=TABLE), db="app_test")
    psql(host, "INSERT INTO {} SELECT generate_series(1, 500)".format(TABLE), db="app_test")
    segment = switch_wal(host)
    assert archived_through(host, segment)[2] >= segment
    # Rows after the last archived segment are not in the archive: a restore to latest cannot have them.
    psql(host, "INSERT INTO {} SELECT generate_series(501, 600)".format(TABLE), db="app_test")

    # A copy beside the server: never archiving, on a port and socket of its own.
    host.run("install -d -o postgres -g postgres -m 0700 " + copy_dir)
    pgbackrest(host, "--pg1-path={} --archive-mode=off restore".format(copy_dir))
    # Recovery refuses settings lower than the server's where a standby must match them.
    settings = ["port = {}".format(COPY_PORT), "unix_socket_directories = '{}'".format(copy_dir), "listen_addresses = ''"]
    settings += ["{} = {}".format(name, psql(host, "SHOW " + name)) for name in MATCHED]
    host.run("runuser -u postgres -- sh -c {}".format(shlex.quote(
        "printf 'local all all trust\\n' > {d}/pg_hba.conf && : > {d}/pg_ident.conf && "
        "printf '%s\\n' {s} > {d}/postgresql.conf".format(d=copy_dir, s=" ".join(shlex.quote(x) for x in settings)))))
    started = host.run("runuser -u postgres -- /usr/lib/postgresql/{v}/bin/pg_ctl -D {d} -w -t 120 -l {d}/startup.log "
                       "start".format(v=version(host), d=copy_dir))
    assert started.rc == 0, host.run("tail -n 30 {}/startup.log".format(copy_dir)).stdout

    def copy(sql):
        result = host.run("runuser -u postgres -- psql -XAtq -h {} -p {} -d app_test -c {}".format(
            copy_dir, COPY_PORT, shlex.quote(sql)))
        assert result.rc == 0, result.stderr
        return result.stdout.strip()

    deadline = time.time() + 60
    while copy("SELECT pg_is_in_recovery()") == "t" and time.time() < deadline:
        time.sleep(0.5)
    assert copy("SELECT pg_is_in_recovery()") == "f"
    assert copy("SELECT count(*), min(id), max(id) FROM {}".format(TABLE)) == "500|1|500"
    assert copy("SHOW archive_mode") == "off"
