"""The incident playbooks against a live cluster, with the writer running (issue 11, acceptance 2 to 6).

Order matters: each test starts from the healthy cluster the one before left (one primary, two streaming replicas),
and leaves it so. Kills: SIGKILL of every postgres process of the primary (the host stays up), or of the whole
container (the host goes down). The time from each kill to the first write the new primary acknowledged is printed
at the end of the run; no test asserts a time.
"""
import subprocess
import time

import cluster_lib as lab
from cluster_lib import Writer, psql


def healthy(expected_replicas=2):
    """One primary and the other members streaming from it; returns the primary."""
    primary = lab.primary()
    lab.wait_streaming(primary, expected_replicas)
    return primary


def rejoin(name, *extra):
    result, report = lab.playbook("rejoin.yml", "rejoin_host=" + name, *extra)
    assert result.returncode == 0, lab.tail(result)
    return report


def failover(*extra):
    started = time.time()
    result, report = lab.playbook("failover.yml", *extra)
    if result.returncode == 0:
        # Every other replica follows the new primary (else the report names it, with the end of its log).
        assert report and not report.get("not_streaming"), (report or {}).get("not_streaming")
    return result, report, round(time.time() - started, 1)


def freeze(names, signal, process):
    """SIGSTOP or SIGCONT the walsender or walreceiver processes of members ([p]: the pattern must not match the shell
    that runs pkill). A stopped walsender sends nothing: what the primary commits meanwhile is only on the primary (a
    stopped walreceiver would not do: the kernel still receives into its socket)."""
    for name in names:
        lab.host(name).run("pkill -{} -f '[p]ostgres: .*{}'".format(signal, process))


def test_failover_is_refused_against_a_healthy_primary_and_changes_nothing():
    primary = healthy()
    before = (lab.timeline(primary), lab.roles())
    result, report, _wall = failover()
    assert result.returncode != 0 and "FAILOVER REFUSED" in result.stdout, lab.tail(result)
    assert "is a running primary" in report["reason"], report
    assert (lab.timeline(primary), lab.roles()) == before
    for name in lab.members():
        assert lab.host(name).run("systemctl is-enabled {}".format(lab.SERVICE)).stdout.strip() != "masked"


def test_async_kill_loses_what_no_replica_received_and_the_report_says_how_much():
    old = healthy()
    others = lab.replicas()
    with Writer(1000000) as writer:
        # The primary stops sending for a moment while it acknowledges commits: those are on the old primary only, so
        # the kill loses them, and the failover must say how much.
        freeze([old], "STOP", "walsender")
        writer.wait_acks(50, host_name=old, after=time.time())
        kill_at = lab.kill_postgres(old)
        result, report, wall = failover()
        assert result.returncode == 0, lab.tail(result)
        new = report["new_primary"]
        assert new in others and report["old_primary"] == old and report["timeline"] == lab.timeline(new)
        entry, lost = lab.measure("async, SIGKILL, walsender stopped first", kill_at, writer, new, report, wall)
    # Exact: the old host was reachable, so its WAL end was read from its pg_wal.
    assert isinstance(report["lost_bytes"], int) and report["lost_bytes"] > 0, report
    assert "exact" in report["lost_estimate"], report
    assert len(lost) > 0, entry
    assert report["fence"] == [old] and lab.host(old).run("systemctl is-enabled " + lab.SERVICE).stdout.strip() == "masked"
    assert lab.wait_streaming(new, 1) == [name for name in others if name != new]
    # The new primary archives into the same stanza, on its new timeline (pgbackrest check at the end, issue 12).
    assert report["archive_check"] == "ok", report["archive_check"]
    assert "WAL archiving on the new primary: ok" in result.stdout, lab.tail(result)


def test_the_old_primary_started_again_by_accident_accepts_no_writes():
    old = [name for name, role in lab.roles().items() if role == "down"][0]
    node = lab.host(old)
    assert node.run("systemctl unmask {s} && systemctl start {s}".format(s=lab.SERVICE)).rc != 0
    assert not lab.is_up(old)
    journal = node.run("journalctl -u {} --no-pager -n 30".format(lab.SERVICE)).stdout
    assert "pg_start_guard: REFUSED" in journal and "rejoin.yml -e rejoin_host={}".format(old) in journal, journal


def test_rejoin_saves_the_diverged_wal_and_streams_on_the_new_timeline():
    old = [name for name, role in lab.roles().items() if role == "down"][0]
    primary = lab.primary()
    report = rejoin(old)
    assert report["done"] == "rewound" and report["primary"] == primary
    assert report["diverged_bytes"] > 0 and report["diverged_segments"], report
    saved = lab.host(old).run("ls {}".format(report["saved_to"])).stdout.split()
    assert set(report["diverged_segments"]) <= set(saved) and "diverged-records.txt" in saved, saved
    listing = lab.host(old).file(report["saved_to"] + "/diverged-records.txt").content_string
    assert "rmgr: Heap" in listing and "INSERT" in listing, listing[:2000]
    assert lab.wait_streaming(primary, 2)
    assert psql(old, "SELECT received_tli FROM pg_stat_wal_receiver") == str(lab.timeline(primary))


def test_a_paused_replica_is_not_chosen_when_another_is_as_far():
    old = healthy()
    paused, other = sorted(lab.replicas())  # the paused one would win the tie by name
    psql(paused, "SELECT pg_wal_replay_pause()")
    target = psql(old, "SELECT pg_current_wal_flush_lsn()")
    for _attempt in range(30):
        if all(psql(r, "SELECT pg_last_wal_receive_lsn() >= '{}'".format(target)) == "t" for r in (paused, other)):
            break
        time.sleep(0.5)
    lab.kill_postgres(old)
    result, report, wall = failover()
    assert result.returncode == 0, lab.tail(result)
    ranking = dict((entry["host"], entry) for entry in report["ranking"])
    assert ranking[paused]["paused"] and ranking[paused]["lsn"] == ranking[other]["lsn"], report["ranking"]
    assert report["new_primary"] == other, report
    lab.MEASURED.append({"kind": "async, SIGKILL, paused replica skipped", "time_to_write_s": "-", "lost_rows": "-",
                         "acked": "-", "lost_bytes": report["lost_bytes"], "playbook_s": wall})
    psql(paused, "SELECT pg_wal_replay_resume()")
    rejoin(old)
    healthy()


def test_two_failovers_at_once_end_with_exactly_one_primary_after_the_host_dies():
    old = healthy()
    with Writer(3000000) as writer:
        kill_at = lab.kill_host(old)
        runs = [subprocess.Popen(["ansible-playbook", "-i", lab.shared.inventory_file(), str(lab.PLAYBOOKS / "failover.yml")],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _run in range(2)]
        outputs = [run.communicate()[0] for run in runs]
        codes = [run.returncode for run in runs]
        assert codes.count(0) == 1, (codes, [out[-3000:] for out in outputs])
        assert "FAILOVER REFUSED" in outputs[1 - codes.index(0)], outputs[1 - codes.index(0)][-3000:]
        new = lab.primary()  # exactly one
        entry, lost = lab.measure("async, host killed, two runs at once", kill_at, writer, new)
    winner = outputs[codes.index(0)]
    assert "WAL lost: unknown" in winner, winner[-3000:]  # the old host is down: no exact figure
    # The host comes back (a reboot): systemd starts PostgreSQL, and the guard keeps it from being a primary.
    lab.start_host(old)
    time.sleep(2)
    assert not lab.is_up(old)
    assert "pg_start_guard: REFUSED" in lab.host(old).run("journalctl -u {} --no-pager -n 30".format(lab.SERVICE)).stdout
    print(entry, lost)
    rejoin(old)
    healthy()


def test_force_fences_a_healthy_primary_first():
    old = healthy()
    result, report, _wall = failover("force=true")
    assert result.returncode == 0, lab.tail(result)
    assert report["fence"] == [old] and report["new_primary"] != old
    assert lab.host(old).run("systemctl is-enabled " + lab.SERVICE).stdout.strip() == "masked"
    assert lab.roles()[old] == "down" and lab.primary() == report["new_primary"]
    # A clean stop sent every WAL record to the replicas: nothing lost.
    assert report["lost_bytes"] == 0, report
    rejoin(old)
    healthy()


def test_a_second_failover_goes_back_to_the_rejoined_node():
    old = healthy()
    rejoined, third = sorted(lab.replicas())
    lab.host(third).run("systemctl stop " + lab.SERVICE)  # the rejoined node is then the only candidate
    kill_at = lab.kill_postgres(old)
    result, report, wall = failover()
    assert result.returncode == 0, lab.tail(result)
    assert report["new_primary"] == rejoined
    lab.MEASURED.append({"kind": "async, SIGKILL, back to a rejoined node (from {:.0f} s)".format(time.time() - kill_at),
                         "time_to_write_s": "-", "lost_rows": "-", "acked": "-", "lost_bytes": report["lost_bytes"],
                         "playbook_s": wall})
    lab.host(third).run("systemctl start " + lab.SERVICE)
    rejoin(third)  # it was a replica of the old primary: it follows the new one
    rejoin(old)
    healthy()


def test_switchover_loses_nothing_and_the_writes_resume():
    old = healthy()
    with Writer(4000000) as writer:
        writer.wait_acks(50, host_name=old)
        started = time.time()
        result, report = lab.playbook("switchover.yml")
        assert result.returncode == 0, lab.tail(result)
        new = report["new_primary"]
        assert new != old and lab.primary() == new
        entry, lost = lab.measure("switchover", started, writer, new, None, round(time.time() - started, 1))
    assert lost == [], entry
    assert report["archive_check"] == "ok", report["archive_check"]
    assert lab.wait_streaming(new, 2) == sorted(name for name in lab.members() if name != new)


def test_switchover_refuses_a_lagging_target_and_changes_nothing():
    old = healthy()
    target = sorted(lab.replicas())[0]
    psql(target, "SELECT pg_wal_replay_pause()")  # its replay stands still while the primary writes on
    try:
        psql(old, "INSERT INTO {} SELECT g FROM generate_series(9000000, 9000999) AS g".format(lab.TABLE), db=lab.DB)
        result, report = lab.playbook("switchover.yml", "target=" + target, "max_lag_bytes=1024")
    finally:
        psql(target, "SELECT pg_wal_replay_resume()")
    assert result.returncode != 0 and "SWITCHOVER REFUSED" in result.stdout, lab.tail(result)
    assert report is None or report.get("new_primary") is None
    assert "cannot take over: it is paused" in result.stdout + result.stderr or \
        "more than max_lag_bytes 1024" in result.stdout + result.stderr, lab.tail(result)
    assert lab.primary() == old and lab.wait_streaming(old, 2)


def test_sync_mode_reconverged_keeps_the_live_primary():
    primary = healthy()
    result = lab.site("postgresql_replication_sync_count=1")
    assert result.returncode == 0, lab.tail(result)
    assert lab.primary() == primary  # site.yml after failovers: reality, not the inventory's bootstrap primary
    others = sorted(name for name in lab.members() if name != primary)
    assert psql(primary, "SHOW synchronous_standby_names") == 'ANY 1 ("{}", "{}")'.format(*others)
    assert sorted(psql(primary, "SELECT sync_state FROM pg_stat_replication").split()) == ["quorum", "quorum"]


def test_sync_kill_loses_no_acknowledged_row():
    old = healthy()
    with Writer(5000000) as writer:
        writer.wait_acks(100, host_name=old, after=time.time())
        kill_at = lab.kill_postgres(old)
        result, report, wall = failover()
        assert result.returncode == 0, lab.tail(result)
        entry, lost = lab.measure("sync ANY 1, SIGKILL", kill_at, writer, report["new_primary"], report, wall)
    assert report["sync_provable"] is True, report
    assert lost == [], entry
    rejoin(old)
    healthy()


def test_sync_refuses_when_the_sync_standby_died_with_the_primary():
    old = healthy()
    candidate, dead = sorted(lab.replicas())
    with Writer(6000000) as writer:
        writer.wait_acks(50, host_name=old, after=time.time())
        kill_at = lab.kill_postgres(old)
        lab.kill_postgres(dead)
        result, report, _wall = failover()
        assert result.returncode != 0 and "FAILOVER REFUSED" in result.stdout, lab.tail(result)
        assert "allow_data_loss" in report["reason"] and report["sync_provable"] is False, report
        assert psql(candidate, "SELECT pg_is_in_recovery()") == "t"  # nothing changed
        result, report, wall = failover("allow_data_loss=true")
        assert result.returncode == 0, lab.tail(result)
        assert report["new_primary"] == candidate
        # Its writes wait for a synchronous standby: none is left until the dead one rejoins.
        rejoin(dead)
        entry, lost = lab.measure("sync, primary + standby killed (after a rejoin)", kill_at, writer, candidate, report, wall)
    print(entry, lost)
    rejoin(old)
    healthy()
