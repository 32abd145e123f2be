"""Monitoring on the live cluster (issue 13, acceptance 4, 5, 7): the exporters, Prometheus, alerts and the dashboard.

They run last: the cluster has been failed over and switched over, so the primary is whichever member the incident
tests left, and Prometheus has scraped every target for the whole run. The archiving alert is asserted in
test_3_backup.py, where the repository is made unreachable anyway.
"""
import re
import shlex
import sys
import time

import pytest
import yaml

import cluster_lib as lab
from cluster_lib import psql

sys.path.insert(0, str(lab.PROJECT / "tests" / "support"))
import dashboard  # noqa: E402  (tests/support)

MONITOR = lab.MONITOR
EXPORTER_CA = "/etc/prometheus/tls/ca.crt"
SCRAPE = ("prometheus", "mol-scrape-7b2e4d")
EXPORTER_ROLE, EXPORTER_PASSWORD = "postgres_exporter", "mol-postgres-exporter-1d8c5e"
STATS_PASSWORD = "mol-pgbouncer-stats-6e1d0a9c"
RULES = lab.PROJECT / "roles" / "prometheus" / "files" / "rules" / "agent_ui_postgresql.yml"
DASHBOARD = lab.PROJECT / "roles" / "prometheus" / "files" / "dashboards" / "agent_ui_postgresql.json"
PORTS = {"postgresql": 9187, "pgbouncer": 9127, "node": 9100}
SERVICES = {"postgresql": "prometheus-postgres-exporter", "pgbouncer": "prometheus-pgbouncer-exporter",
            "node": "prometheus-node-exporter"}


def targets():
    """(job, host) of every exporter the scenario should run."""
    found = [("postgresql", name) for name in lab.members()] + [("pgbouncer", lab.POOLER)]
    return found + [("node", name) for name in lab.members() + [lab.BACKUP, lab.POOLER]]


def curl(target_host, port, path, auth=None, scheme="https"):
    """(HTTP status, body) of a request from the monitoring host to an exporter."""
    command = "curl -s -m 10 --cacert {ca} -o /tmp/curl.out -w '%{{http_code}}' {auth} {url}; echo; cat /tmp/curl.out".format(
        ca=EXPORTER_CA, auth="-u " + shlex.quote(":".join(auth)) if auth else "",
        url=shlex.quote("{}://{}:{}{}".format(scheme, target_host, port, path)))
    out = lab.host(MONITOR).run(command).stdout
    status, _newline, body = out.partition("\n")
    return status.strip(), body


def metrics(target_host, port):
    status, body = curl(target_host, port, "/metrics", SCRAPE)
    assert status == "200", (target_host, port, status, body[:500])
    values = {}
    for line in body.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if match:
            values.setdefault(match.group(1), []).append((match.group(2) or "", float(match.group(3))))
    return values


@pytest.mark.parametrize("job,name", targets(), ids=str)
def test_every_exporter_answers_only_the_scrape_user_over_tls(job, name):
    port = PORTS[job]
    assert curl(name, port, "/metrics")[0] == "401"
    assert curl(name, port, "/metrics", ("prometheus", "not-the-password"))[0] == "401"
    # Plain HTTP gets no metrics (the exporter toolkit answers 400 to HTTP on a TLS port).
    assert curl(name, port, "/metrics", SCRAPE, scheme="http")[0] != "200"
    if job == "postgresql":
        # 0.17.1's /probe connects to any server its caller names: without the scrape user, it does not.
        status, body = curl(name, port, "/probe?target=" + lab.BACKUP + ":5432")
        assert status == "401", (status, body[:300])
    assert curl(name, port, "/metrics", SCRAPE)[0] == "200"


def test_pg_up_and_replication_metrics_on_the_primary_and_the_replicas():
    primary = lab.primary()
    for name in lab.members():
        found = metrics(name, PORTS["postgresql"])
        assert [value for _labels, value in found["pg_up"]] == [1.0], (name, found.get("pg_up"))
        replica = name != primary
        assert found["agent_ui_replication_is_replica"][0][1] == (1.0 if replica else 0.0), name
        assert "agent_ui_replication_lag_seconds" in found, name
        if replica:
            assert found["agent_ui_replication_receiver_streaming"][0][1] == 1.0, name
        else:
            # One physical slot per other member, each in use by its replica.
            slots = found["agent_ui_replication_slot_active"]
            assert len(slots) == 2 and all(value == 1.0 for _labels, value in slots), slots
            assert found["agent_ui_connections_max"][0][1] == 100.0


def test_the_exporter_role_is_not_a_superuser_and_copy_to_program_is_denied():
    primary = lab.primary()
    assert psql(primary, "SELECT rolsuper, rolcanlogin, pg_has_role('{r}', 'pg_monitor', 'MEMBER'), "
                         "pg_has_role('{r}', 'pg_execute_server_program', 'MEMBER') FROM pg_roles WHERE rolname = '{r}'"
                         .format(r=EXPORTER_ROLE)) == "f|t|t|f"
    for name in (primary, sorted(lab.replicas())[0]):
        conninfo = "host=127.0.0.1 dbname=postgres user={} sslmode=verify-full sslrootcert={}".format(
            EXPORTER_ROLE, EXPORTER_CA)
        run = "PGPASSWORD={} psql -XAtq {} -c {}".format(EXPORTER_PASSWORD, shlex.quote(conninfo), "{}")
        ok = lab.host(name).run(run.format(shlex.quote("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")))
        assert ok.rc == 0 and ok.stdout.strip() == EXPORTER_ROLE + "|t", (name, ok.stdout, ok.stderr)
        denied = lab.host(name).run(run.format(shlex.quote("COPY (SELECT 1) TO PROGRAM 'true'")))
        assert denied.rc != 0 and "permission denied" in denied.stderr.lower(), (name, denied.stderr)


@pytest.mark.parametrize("job,name", [t for t in targets() if t[0] != "node"] + [("node", lab.BACKUP)],
                         ids=str)
def test_no_secret_in_argv_the_environment_or_a_world_readable_file(job, name):
    node = lab.host(name)
    service = SERVICES[job]
    pid = node.run("systemctl show -p MainPID --value " + service).stdout.strip()
    assert pid not in ("", "0"), (name, service)
    exposed = node.run("tr '\\0' '\\n' < /proc/{p}/cmdline; tr '\\0' '\\n' < /proc/{p}/environ; systemctl show {s}; "
                       "ps -eo args".format(p=pid, s=service)).stdout
    for secret in (SCRAPE[1], EXPORTER_PASSWORD, STATS_PASSWORD):
        assert secret not in exposed, (name, service)
    # The files that do hold a secret are not world-readable, and the scrape password is only there as a hash.
    holders = node.run("grep -rlF -e {} -e {} -e {} /etc/prometheus /etc/default".format(
        SCRAPE[1], EXPORTER_PASSWORD, STATS_PASSWORD)).stdout.split()
    expected = {"postgresql": ["/etc/prometheus/agent-ui-postgres-exporter.password"],
                "pgbouncer": ["/etc/prometheus/agent-ui-pgbouncer-exporter.pgpass"],
                "node": ["/etc/prometheus/agent-ui-scrape.password"]}[job]
    assert sorted(holders) == expected, holders
    for path in holders:
        assert node.file(path).mode & 0o007 == 0, (path, oct(node.file(path).mode))


def test_prometheus_scrapes_every_target():
    expected = set(targets()) | {("prometheus", MONITOR)}
    deadline = time.time() + 90
    while True:
        found = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1] for r in lab.prometheus("up")}
        if set(found) == expected and set(found.values()) == {"1"} or time.time() > deadline:
            break
        time.sleep(3)
    assert set(found) == expected, set(found) ^ expected
    assert {key: value for key, value in found.items() if value != "1"} == {}


def test_the_collection_rules_are_loaded_and_none_fires_on_the_healthy_cluster():
    shipped = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    loaded = {rule["name"] for group in lab.prometheus_api("rules")["groups"] for rule in group["rules"]
              if group["file"].endswith("agent_ui_postgresql.yml")}
    assert loaded == shipped and len(shipped) >= 15, loaded ^ shipped
    # Not about the cluster's health: free disk is the CI machine's (bind mounts), and a backup schedule is daily.
    firing = [r["metric"] for r in lab.prometheus('ALERTS{alertstate="firing"}')
              if r["metric"]["alertname"] not in ("AgentUIBackupMissing", "AgentUIDiskSpaceLow")]
    assert firing == [], firing


def test_every_dashboard_panel_query_returns_data():
    empty = []
    for title, ref, expr in dashboard.queries(dashboard.load(DASHBOARD), rate_interval="1m"):
        if not lab.prometheus(expr):
            empty.append((title, ref, expr))
    assert empty == [], empty


def test_stopping_a_replica_fires_the_replication_alert():
    primary = lab.primary()
    replica = sorted(lab.replicas())[0]
    query = 'ALERTS{alertname="AgentUIReplicaNotStreaming",instance="%s"}' % primary
    assert lab.prometheus(query) == [], "the alert is already pending or firing"
    stopped_at = time.time()
    assert lab.host(replica).run("systemctl stop " + lab.SERVICE).rc == 0
    try:
        firing = []
        deadline = time.time() + 180
        while time.time() < deadline and not firing:
            firing = [r["metric"] for r in lab.prometheus(query) if r["metric"]["alertstate"] == "firing"]
            time.sleep(3)
        assert firing, "AgentUIReplicaNotStreaming did not fire within 180 s of stopping " + replica
        assert firing[0]["severity"] == "critical" and firing[0].get("slot_type") == "physical", firing
        lab.MEASURED.append({"kind": "alert: replica stopped -> firing", "time_to_write_s": round(time.time() - stopped_at, 1),
                             "lost_rows": "-", "acked": "-", "lost_bytes": "-", "playbook_s": "-"})
    finally:
        assert lab.host(replica).run("systemctl start " + lab.SERVICE).rc == 0
    lab.wait_streaming(primary, 2)
