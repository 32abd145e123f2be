"""Point-in-time restore drills with restore.yml onto the app host, outside the cluster (issue 12, acceptance 2, 3, 6).

The drill host is mol-cluster-app (inventory group restore_drill). The rows are counted there, on the restored
server, against what was committed on the primary before and after each target time.
"""
import json
import time

import pytest

import cluster_lib as lab
from cluster_lib import psql

BACKUP = "mol-cluster-backup1"
DRILL = lab.APP
STANZA = "agent-ui"
MARKS = "drill_marks"


def now_on(name):
    """The server's clock, as a target time with its zone (the containers share the machine's clock)."""
    return psql(name, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")


def archived_up_to_now(primary):
    """Switch WAL and wait until that segment is archived: every commit so far is in the repository."""
    segment = psql(primary, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    psql(primary, "SELECT pg_switch_wal()")
    deadline = time.time() + 60
    while time.time() < deadline:
        if psql(primary, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= segment:
            return
        time.sleep(0.5)
    raise AssertionError("segment {} was not archived within 60 s".format(segment))


def write(primary, first, last):
    psql(primary, "INSERT INTO {} SELECT g FROM generate_series({}, {}) AS g".format(MARKS, first, last), db=lab.DB)


def restore(*extra):
    return lab.playbook("restore.yml", "restore_host=" + DRILL, *extra)


def on_drill(sql, db=lab.DB):
    return lab.shared.psql(lab.host(DRILL), sql, db=db)


def drill_rows():
    return [int(value) for value in on_drill("SELECT id FROM {} ORDER BY id".format(MARKS)).split()]


@pytest.fixture(scope="module")
def marks():
    primary = lab.primary()
    psql(primary, "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id int PRIMARY KEY)".format(t=MARKS), db=lab.DB)
    return primary


def test_a_drill_to_a_time_restores_exactly_the_rows_before_it_and_the_dropped_table(marks):
    primary = marks
    psql(primary, "DROP TABLE IF EXISTS drill_victim; CREATE TABLE drill_victim (id int); "
                  "INSERT INTO drill_victim VALUES (1), (2), (3)", db=lab.DB)
    write(primary, 1, 100)
    time.sleep(0.2)
    target = now_on(primary)
    time.sleep(0.2)
    write(primary, 101, 150)
    psql(primary, "DROP TABLE drill_victim", db=lab.DB)
    archived_up_to_now(primary)
    started = time.time()
    result, report = restore("restore_target=time", "restore_target_value='{}'".format(target))
    assert result.returncode == 0, lab.tail(result)
    lab.MEASURED.append({"kind": "restore drill to a time (restore.yml)", "time_to_write_s": "-", "lost_rows": "-",
                         "acked": "-", "lost_bytes": "-", "playbook_s": round(time.time() - started, 1)})
    assert drill_rows() == list(range(1, 101))
    assert on_drill("SELECT count(*) FROM drill_victim") == "3"
    assert report["target"] == "time" and report["target_value"] == target and report["backup"], report
    assert "before" in report["recovery_end_reason"] and "/" in report["recovery_end_lsn"], report
    assert "RESTORE DONE" in result.stdout


def test_the_drill_never_archives_and_never_joins_the_cluster():
    assert on_drill("SHOW archive_mode", db="postgres") == "off"
    assert on_drill("SHOW listen_addresses", db="postgres") == "localhost"
    assert on_drill("SELECT pg_is_in_recovery()", db="postgres") == "f"
    drill_timeline = int(on_drill("SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int",
                                  db="postgres"))
    history = lab.host(BACKUP).run("ls /var/lib/pgbackrest/archive/{}/17-1/".format(STANZA)).stdout.split()
    assert "{:08X}.history".format(drill_timeline) not in history, history
    primary = lab.primary()
    assert drill_timeline > lab.timeline(primary)  # its own timeline, past every one the cluster used
    assert DRILL not in psql(primary, "SELECT string_agg(application_name, ' ') FROM pg_stat_replication")


def test_a_time_before_and_a_time_after_a_failover_each_restore_exactly_their_rows(marks):
    old = lab.primary()
    psql(old, "TRUNCATE {}".format(MARKS), db=lab.DB)
    write(old, 1, 40)
    time.sleep(0.2)
    before = now_on(old)
    time.sleep(0.2)
    write(old, 41, 60)
    archived_up_to_now(old)
    lab.wait_streaming(old, 2)
    time.sleep(1)
    lab.kill_postgres(old)
    result, report = lab.playbook("failover.yml")
    assert result.returncode == 0 and report["archive_check"] == "ok", lab.tail(result)
    new = report["new_primary"]
    write(new, 61, 80)
    time.sleep(0.2)
    after = now_on(new)
    time.sleep(0.2)
    write(new, 81, 90)
    archived_up_to_now(new)
    rejoined, _rejoin_report = lab.playbook("rejoin.yml", "rejoin_host=" + old)
    assert rejoined.returncode == 0, lab.tail(rejoined)
    for value, expected in ((before, list(range(1, 41))), (after, list(range(1, 81)))):
        result, report = restore("restore_target=time", "restore_target_value='{}'".format(value))
        assert result.returncode == 0, lab.tail(result)
        assert drill_rows() == expected, (value, report)


def first_backup_start():
    backups = json.loads(lab.host(BACKUP).run("runuser -u postgres -- pgbackrest --stanza={} --output=json info"
                                              .format(STANZA)).stdout)[0]["backup"]
    return min(backup["timestamp"]["start"] for backup in backups)


@pytest.mark.parametrize("extra, message", [
    (["restore_target=time", "restore_target_value='2099-01-01 00:00:00+00'"], "is in the future"),
    (["restore_target=time", "restore_target_value=BEFORE_FIRST"], "before the end of the first backup"),
    (["restore_target=time", "restore_target_value='2026-12-01 10:00:00'"], "time zone"),
    (["restore_host=mol-cluster-pg1"], "is a member of the cluster"),
    (["restore_target=yesterday"], "restore_target must be one of"),
], ids=["future", "before-first-backup", "no-zone", "member", "bad-target"])
def test_bad_input_is_refused_and_nothing_is_touched(extra, message):
    extra = [item.replace("BEFORE_FIRST", "'" + time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(first_backup_start() - 3600)) + "'")
             for item in extra]
    before = (drill_rows(), lab.host(DRILL).run("systemctl show -p ActiveEnterTimestamp postgresql@17-drill").stdout)
    result, report = restore(*extra)
    assert result.returncode != 0 and "RESTORE REFUSED" in result.stdout + result.stderr, lab.tail(result)
    assert message in result.stdout + result.stderr, lab.tail(result)
    assert report is None
    assert (drill_rows(), lab.host(DRILL).run("systemctl show -p ActiveEnterTimestamp postgresql@17-drill").stdout) == before


def test_a_restore_in_place_onto_a_running_primary_is_refused_without_force():
    primary = lab.primary()
    before = (lab.timeline(primary), lab.roles())
    result, report = lab.playbook("restore.yml", "restore_host=" + primary, "restore_mode=in_place")
    said = result.stdout + result.stderr
    assert result.returncode != 0 and "RESTORE REFUSED" in said, lab.tail(result)
    assert "runs as a primary" in said and "force=true" in said, lab.tail(result)
    assert report is None and (lab.timeline(primary), lab.roles()) == before
    # Nor onto a replica while the primary runs: that would make two.
    replica = lab.replicas()[0]
    result, _report = lab.playbook("restore.yml", "restore_host=" + replica, "restore_mode=in_place")
    assert result.returncode != 0 and "would make two" in result.stdout + result.stderr, lab.tail(result)
    assert lab.roles() == before[1]


def test_a_disaster_restore_brings_back_every_row_up_to_the_last_archived_wal(marks):
    """The primary's data directory is destroyed; restoring it in place to latest gives back every archived commit."""
    primary = lab.primary()
    psql(primary, "TRUNCATE {}".format(MARKS), db=lab.DB)
    write(primary, 1, 5000)
    archived_up_to_now(primary)
    node = lab.host(primary)
    node.run("systemctl kill -s KILL {s}; sleep 1; rm -rf {d}".format(s=lab.SERVICE, d=lab.DATA))
    assert not lab.is_up(primary)
    started = time.time()
    result, report = lab.playbook("restore.yml", "restore_host=" + primary, "restore_mode=in_place")
    assert result.returncode == 0, lab.tail(result)
    lab.MEASURED.append({"kind": "disaster restore in place, latest", "time_to_write_s": "-", "lost_rows": "-",
                         "acked": "-", "lost_bytes": "-", "playbook_s": round(time.time() - started, 1)})
    assert psql(primary, "SELECT count(*), min(id), max(id) FROM {}".format(MARKS), db=lab.DB) == "5000|1|5000"
    assert report["archive_check"] == "ok" and report["target"] == "latest", report
    others = sorted(name for name in lab.members() if name != primary)
    assert sorted(report["rebuild"]) == others and "rejoin_host=" + others[0] in result.stdout
    assert lab.roles() == dict([(primary, "primary")] + [(name, "down") for name in others])
    for name in others:
        rejoined, _rejoin = lab.playbook("rejoin.yml", "rejoin_host=" + name, "allow_reclone=true")
        assert rejoined.returncode == 0, lab.tail(rejoined)
    assert lab.wait_streaming(primary, 2) == others
