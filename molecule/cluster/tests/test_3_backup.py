"""WAL archiving and backups with pgBackRest on the live cluster (issue 12, acceptance 1, 3 and 7).

These run after the incident tests: the cluster has been failed over and switched over several times, so the archive
they read holds WAL of several timelines, pushed by whichever member was the primary at the time.
"""
import json
import time

import pytest

import cluster_lib as lab
from cluster_lib import psql

BACKUP = lab.BACKUP
STANZA = "agent-ui"
PASSPHRASE = "mol-pgbackrest-cipher-2d7a9c41e8"
CIPHER_CONF = "/etc/pgbackrest/conf.d/agent-ui-cipher.conf"


def pgbackrest(name, command, check=True):
    result = lab.host(name).run("runuser -u postgres -- pgbackrest --stanza={} {}".format(STANZA, command))
    if check:
        assert result.rc == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
    return result


def info():
    return json.loads(pgbackrest(BACKUP, "--output=json info").stdout)[0]


def archiver(name):
    row = psql(name, "SELECT archived_count, failed_count, coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    archived, failed, last = row.split("|")
    return int(archived), int(failed), last


def test_check_passes_and_forced_wal_switches_are_archived_without_a_failure():
    primary = lab.primary()
    pgbackrest(BACKUP, "check")
    before, failed_before, _last = archiver(primary)
    assert failed_before == 0, "pg_stat_archiver.failed_count is {} on {}".format(failed_before, primary)
    for step in range(3):
        psql(primary, "INSERT INTO {} VALUES ({})".format(lab.TABLE, 7000000 + step), db=lab.DB)
        psql(primary, "SELECT pg_switch_wal()")
    deadline = time.time() + 60
    while time.time() < deadline and archiver(primary)[0] < before + 3:
        time.sleep(0.5)
    archived, failed, last = archiver(primary)
    assert archived >= before + 3 and failed == 0, (before, archived, failed)
    # The segment the server last archived is in the repository, on the primary's current timeline.
    assert int(last[:8], 16) == lab.timeline(primary), last
    assert info()["archive"][0]["max"] >= last.upper(), info()["archive"]


def test_the_repository_holds_wal_of_every_timeline_since_the_first_backup():
    """Every failover before this test promoted a member whose WAL went on into the same stanza."""
    primary = lab.primary()
    archive = info()["archive"]
    assert len(archive) == 1 and archive[0]["id"].startswith("17-"), archive
    first, last = archive[0]["min"], archive[0]["max"]
    assert int(last[:8], 16) == lab.timeline(primary) > int(first[:8], 16), (first, last)
    # ...and verify finds every file whole.
    result = pgbackrest(BACKUP, "verify --log-level-console=detail")
    assert "completed successfully" in result.stdout and "invalid" not in result.stdout.lower(), result.stdout[-3000:]


def test_the_timers_are_scheduled_and_the_differential_backup_service_takes_one_from_a_standby():
    node = lab.host(BACKUP)
    listed = node.run("systemctl list-timers --all --no-legend 'pgbackrest-*'").stdout
    for kind in ("full", "diff", "verify"):
        timer = "pgbackrest-{}-{}.timer".format(STANZA, kind)
        assert timer in listed, listed
        assert node.run("systemctl is-enabled " + timer).stdout.strip() == "enabled"
        assert node.run("systemctl is-active " + timer).stdout.strip() == "active"
    fulls = [backup["label"] for backup in info()["backup"] if backup["type"] == "full"]
    assert fulls, info()["backup"]
    # backup-standby=prefer (molecule.yml): with a replica streaming, the files come from it, not the primary.
    assert lab.wait_streaming(lab.primary(), 1)
    unit = "pgbackrest-{}-diff.service".format(STANZA)
    started, run = lab.shared.run_unit(node, unit)
    assert started.rc == 0, run[-4000:]
    latest = info()["backup"][-1]
    assert latest["type"] == "diff" and latest["prior"] in fulls and not latest["error"], latest
    assert "backup command begin" in run and "replay on the standby reached" in run, run[-4000:]
    assert "using primary instead" not in run, run[-4000:]
    assert node.run("grep -x 'backup-standby=prefer' /etc/pgbackrest/pgbackrest.conf").rc == 0
    verified = node.run("systemctl start pgbackrest-{}-verify.service".format(STANZA))
    assert verified.rc == 0, node.run("journalctl -u pgbackrest-{}-verify --no-pager -n 40".format(STANZA)).stdout


def test_the_repository_is_encrypted_and_only_pgbackrest_reads_the_passphrase():
    assert info()["cipher"] == "aes-256-cbc"
    node = lab.host(BACKUP)
    archived = node.run("find /var/lib/pgbackrest/archive -type f -name '0000*' | head -1").stdout.strip()
    assert archived, "no WAL in the archive"
    # OpenSSL's format, as pgBackRest writes an encrypted file: not zstd's magic number.
    assert node.run("head -c 8 {} | od -An -c".format(archived)).stdout.split() == list("Salted__")
    conf = node.file(CIPHER_CONF)
    assert (conf.user, conf.group, conf.mode) == ("postgres", "postgres", 0o600)
    assert node.run("runuser -u nobody -- cat " + CIPHER_CONF).rc != 0
    # Nowhere else on any host: not in the main file, a log, the journal, a unit, or the PostgreSQL hosts' files.
    found = node.run("grep -rlF -e {} /etc /var/log /var/lib/pgbackrest /run /tmp 2>/dev/null".format(PASSPHRASE)).stdout.split()
    assert found == [CIPHER_CONF], found
    assert PASSPHRASE not in node.run("journalctl --no-pager").stdout
    for name in lab.members():
        assert lab.host(name).run("grep -rlF -e {} /etc /var/log /var/lib/postgresql 2>/dev/null".format(PASSPHRASE)).stdout == ""


def test_a_client_is_let_in_only_for_its_own_stanza():
    """tls-server-auth: the repository host lets each member's certificate in for stanza agent-ui only."""
    primary = lab.primary()
    result = lab.host(primary).run("runuser -u postgres -- pgbackrest --stanza=other --pg1-path={} archive-get "
                                   "000000010000000000000001 /tmp/never".format(lab.DATA))
    assert result.rc != 0 and "access denied" in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["mol-cluster-pg1", "mol-cluster-pg2", "mol-cluster-pg3"])
def test_every_member_archives_into_the_stanza_and_reads_it_back(name):
    """The same archive settings on every member, so that whichever is promoted archives."""
    assert psql(name, "SHOW archive_mode") == "on"
    assert psql(name, "SHOW archive_command") == "pgbackrest --stanza={} archive-push %p".format(STANZA)
    assert psql(name, "SHOW restore_command") == 'pgbackrest --stanza={} archive-get %f "%p"'.format(STANZA)


def test_an_unreachable_repository_fails_archiving_keeps_the_wal_and_resumes_with_nothing_missing():
    """Acceptance 5 (and issue 13's archiving alert). The scenario's PostgreSQL hosts use io-timeout 10 (molecule.yml), so archive-push gives up after
    about 30 s instead of about 3 minutes with pgBackRest's defaults."""
    primary = lab.primary()
    node = lab.host(BACKUP)
    _archived, failed_before, _last = archiver(primary)
    psql(primary, "INSERT INTO {} VALUES (7100000)".format(lab.TABLE), db=lab.DB)
    segment = psql(primary, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    assert node.run("systemctl stop pgbackrest").rc == 0
    try:
        psql(primary, "SELECT pg_switch_wal()")
        deadline = time.time() + 120
        while time.time() < deadline and archiver(primary)[1] == failed_before:
            time.sleep(1)
        _archived, failed, last = archiver(primary)
        assert failed > failed_before, "failed_count stayed at {} for 120 s".format(failed)
        # The primary keeps the segment, and says it is still to be archived.
        status = lab.host(primary).run("ls {}/pg_wal/archive_status".format(lab.DATA)).stdout.split()
        assert segment + ".ready" in status, status
        assert lab.host(primary).file("{}/pg_wal/{}".format(lab.DATA, segment)).exists
        # Issue 13, acceptance 5: the archiving alert fires, through the Prometheus API (its `for` is 1 minute).
        query = 'ALERTS{alertname="AgentUIArchiveFailing",alertstate="firing",instance="%s"}' % primary
        deadline = time.time() + 180
        while time.time() < deadline and not lab.prometheus(query):
            time.sleep(3)
        assert lab.prometheus(query), "AgentUIArchiveFailing did not fire within 180 s"
    finally:
        assert node.run("systemctl start pgbackrest").rc == 0
    deadline = time.time() + 120
    while time.time() < deadline and archiver(primary)[2] < segment:
        time.sleep(1)
    assert archiver(primary)[2] >= segment, archiver(primary)
    assert segment + ".ready" not in lab.host(primary).run("ls {}/pg_wal/archive_status".format(lab.DATA)).stdout.split()
    # The segment is in the repository, and verify finds the WAL whole, with no gap.
    stored = node.run("find /var/lib/pgbackrest/archive -name '{}-*'".format(segment)).stdout.split()
    assert len(stored) == 1, stored
    result = pgbackrest(BACKUP, "verify --log-level-console=detail")
    assert "completed successfully" in result.stdout and "missing" not in result.stdout.lower(), result.stdout[-3000:]
