"""What the cluster scenario's tests share: the members, psql on each, kills, the writer, the incident playbooks.

The writer (tests/support/writer.py) runs on the app host, a lab host outside the cluster, and connects to whichever
member is the primary (target_session_attrs=read-write over all three). Kills are SIGKILL of every postgres process
of a member (the host stays up) or of the whole container (the host goes down).
"""
import importlib.util
import json
import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

import testinfra

_SPEC = importlib.util.spec_from_file_location("molecule_shared", Path(__file__).resolve().parents[2] / "conftest.py")
shared = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(shared)

PROJECT = shared.PROJECT
PLAYBOOKS = PROJECT / "playbooks"
CA = "/etc/ssl/certs/agent-ui-postgresql-ca.pem"
SERVICE = "postgresql@17-main"
DATA = "/var/lib/postgresql/17/main"
APP = "mol-cluster-app"
POOLER = "mol-cluster-pooler1"
DB = "app_test"
TABLE = "failover_probe"
# The app through PgBouncer: TLS with the server's name checked, and SCRAM or nothing.
POOLER_DSN = ("host={pooler} port=6432 dbname={db} user={db} sslmode=verify-full sslrootcert={ca} "
              "require_auth=scram-sha-256 connect_timeout=2").format(pooler=POOLER, db=DB, ca=CA)

# Measurements printed at the end of the run (conftest.py's terminal summary): no test asserts a time.
MEASURED = []


def members():
    return shared.group_hosts("postgresql")


def host(name):
    return testinfra.get_host("podman://" + name)


def psql(name, sql, db="postgres", check=True):
    return shared.psql(host(name), sql, db=db, check=check)


def is_up(name):
    return host(name).run("runuser -u postgres -- pg_isready -q -h /var/run/postgresql").rc == 0


def address(name):
    """The member's address on the scenario's network, as inet_server_addr() reports it."""
    return host(name).run("hostname -I").stdout.split()[0]


def container_running(name):
    out = subprocess.run(["podman", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True, check=False)
    return out.stdout.strip() == "true"


def roles():
    """{member: 'primary' | 'replica' | 'down'} from the live servers."""
    found = {}
    for name in members():
        if not container_running(name) or not is_up(name):
            found[name] = "down"
            continue
        found[name] = "replica" if psql(name, "SELECT pg_is_in_recovery()") == "t" else "primary"
    return found


def primary():
    """The one running primary; fails when there is not exactly one."""
    found = [name for name, role in roles().items() if role == "primary"]
    assert len(found) == 1, "expected exactly one primary, found {}".format(roles())
    return found[0]


def replicas():
    return [name for name, role in roles().items() if role == "replica"]


def timeline(name):
    return int(psql(name, "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"))


def wait_streaming(primary_name, expected, timeout=60):
    """Wait until `expected` replicas stream from the primary; return pg_stat_replication's application names."""
    deadline = time.time() + timeout
    names = []
    while time.time() < deadline:
        names = sorted(psql(primary_name, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'").split())
        if len(names) >= expected:
            return names
        time.sleep(1)
    raise AssertionError("only {} stream from {} after {} s".format(names, primary_name, timeout))


def kill_postgres(name):
    """SIGKILL every postgres process of the member (a crash; the host stays up). Returns the time of the kill."""
    at = time.time()
    host(name).run("pkill -KILL -u postgres")
    return at


def kill_host(name):
    """SIGKILL the whole container (the host goes down)."""
    at = time.time()
    subprocess.run(["podman", "kill", "-s", "KILL", name], capture_output=True, check=False)
    return at


def start_host(name):
    subprocess.run(["podman", "start", name], capture_output=True, check=True)
    for _attempt in range(60):
        state = host(name).run("systemctl is-system-running").stdout.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(1)
    raise AssertionError("{} did not boot".format(name))


def playbook(name, *extra, report=True):
    """Run playbooks/<name> with -e for each extra; returns (result, report dict or None)."""
    args = [str(PLAYBOOKS / name)]
    path = None
    if report:
        handle, path = tempfile.mkstemp(prefix="report-", suffix=".json")
        os.close(handle)
        os.unlink(path)
        args += ["-e", "{}_report={}".format(name.split(".")[0], path)]
    for item in extra:
        args += ["-e", item]
    result = shared.run_playbook(*args)
    data = None
    if path and os.path.exists(path):
        with open(path) as handle:
            data = json.load(handle)
        os.unlink(path)
    return result, data


def site(*extra):
    args = [str(PLAYBOOKS / "site.yml")]
    for item in extra:
        args += ["-e", item]
    return shared.run_playbook(*args)


def tail(result):
    return result.stdout[-8000:] + result.stderr[-3000:]


class Writer(object):
    """tests/support/writer.py on the app host: sequence numbers from `start`, every acknowledgement recorded."""

    def __init__(self, start, dsn=None):
        """`dsn`: the members by default; another (PgBouncer's) makes the writer record each server's address."""
        self.start = start
        self.server_address = dsn is not None
        self.out = "/root/writer-{}.log".format(start)
        self.stop_file = "/root/writer-{}.stop".format(start)
        self.dsn = dsn or ("host={hosts} port=5432 dbname={db} user={db} sslmode=verify-full sslrootcert={ca} "
                           "target_session_attrs=read-write connect_timeout=1").format(hosts=",".join(members()), db=DB, ca=CA)

    def __enter__(self):
        app = host(APP)
        dsn = self.dsn
        command = ("rm -f {out} {stop}; PGPASSFILE=/root/.pgpass.writer nohup python3 /root/writer.py --dsn {dsn} "
                   "--table {table} --out {out} --stop {stop} --start {start} --interval 0.02{extra} >/root/writer.err 2>&1 &").format(
                       out=self.out, stop=self.stop_file, dsn=shlex.quote(dsn), table=TABLE, start=self.start,
                       extra=" --server-address" if self.server_address else "")
        assert app.run(command).rc == 0
        self.wait_acks(20)
        return self

    def acks(self):
        """[(seq, time, host)] of every acknowledged insert so far."""
        rows = []
        for line in host(APP).run("cat {}".format(self.out)).stdout.splitlines():
            fields = line.split()
            if fields and fields[0] == "ack":
                rows.append((int(fields[1]), float(fields[2]), fields[3]))
        return rows

    def wait_acks(self, count, host_name=None, after=0.0, timeout=90):
        """Wait for `count` acks (from `host_name`, after time `after`); return the first of them."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [ack for ack in self.acks() if ack[1] > after and (host_name is None or ack[2] == host_name)]
            if len(found) >= count:
                return found[0]
            time.sleep(0.5)
        raise AssertionError("the writer got no {} acks from {} after {}: last lines {}".format(
            count, host_name, after, host(APP).run("tail -5 {} /root/writer.err".format(self.out)).stdout))

    def errors(self, after=0.0):
        """[(time, message)] of every failed insert after time `after`."""
        rows = []
        for line in host(APP).run("cat {}".format(self.out)).stdout.splitlines():
            fields = line.split(None, 2)
            if fields and fields[0] == "err" and float(fields[1]) > after:
                rows.append((float(fields[1]), fields[2] if len(fields) > 2 else ""))
        return rows

    def stop(self):
        host(APP).run("touch {}".format(self.stop_file))
        time.sleep(0.5)

    def __exit__(self, *exc):
        self.stop()

    def lost(self, on):
        """Acknowledged sequence numbers missing on member `on` (the primary now)."""
        acked = set(seq for seq, _t, _h in self.acks())
        present = set(int(v) for v in psql(on, "SELECT seq FROM {} WHERE seq >= {} AND seq < {}".format(
            TABLE, self.start, self.start + 10 ** 6), db=DB).split())
        return sorted(acked - present)


def measure(kind, kill_at, writer, new_primary, report=None, wall=None, acked_by=False):
    """Record (and return) the seconds from the kill to the first write the new primary acknowledged, and the losses.
    `acked_by`: the host name the writer sees acknowledging (the new primary's by default; a writer through PgBouncer
    sees the pooler's)."""
    acked_by = new_primary if acked_by is False else acked_by
    first = writer.wait_acks(1, host_name=acked_by, after=kill_at)
    writer.wait_acks(20, host_name=acked_by, after=kill_at)
    writer.stop()
    lost = writer.lost(new_primary)
    entry = {"kind": kind, "time_to_write_s": round(first[1] - kill_at, 2), "lost_rows": len(lost),
             "acked": len(writer.acks()), "new_primary": new_primary,
             "lost_bytes": (report or {}).get("lost_bytes"), "playbook_s": wall}
    MEASURED.append(entry)
    return entry, lost


# --- Prometheus (issue 13), on the repository host ---------------------------------------------------------------------
BACKUP = "mol-cluster-backup1"
MONITOR = BACKUP
PROMETHEUS_AUTH = "monitor:mol-prometheus-3c9f1a"


def prometheus_api(path, **params):
    """The `data` of a Prometheus API call (/api/v1/<path>), made on the monitoring host over TLS with its web user."""
    command = "curl -sf -m 20 --cacert /etc/prometheus/tls/ca.crt -u {auth} https://{host}:9090/api/v1/{path} {data}".format(
        auth=shlex.quote(PROMETHEUS_AUTH), host=MONITOR, path=path,
        data=" ".join("--data-urlencode " + shlex.quote("{}={}".format(key, value)) for key, value in params.items()))
    result = host(MONITOR).run(command)
    assert result.rc == 0, (path, params, result.stderr)
    answer = json.loads(result.stdout)
    assert answer["status"] == "success", answer
    return answer["data"]


def prometheus(expr):
    """The result of an instant query (a list of {metric, value})."""
    return prometheus_api("query", query=expr)["result"]
