"""The cluster scenario's session set-up (the writer's table and the app host) and what it prints at the end."""
import subprocess

import pytest

import cluster_lib
from cluster_lib import psql

WRITER = str(cluster_lib.PROJECT / "tests" / "support" / "writer.py")


def _quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


@pytest.fixture(scope="session", autouse=True)
def app_host():
    """The writer's table (owned by the app role), and on the app host the writer, the CA and a password file."""
    primary = cluster_lib.primary()
    psql(primary, "CREATE TABLE IF NOT EXISTS {t} (seq bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT "
                  "clock_timestamp()); ALTER TABLE {t} OWNER TO {db}".format(t=cluster_lib.TABLE, db=cluster_lib.DB),
         db=cluster_lib.DB)
    app = cluster_lib.host(cluster_lib.APP)
    ca = cluster_lib.host(primary).file(cluster_lib.CA).content_string
    subprocess.run(["podman", "cp", WRITER, cluster_lib.APP + ":/root/writer.py"], check=True)
    assert app.run("install -m 0644 /dev/null {ca} && printf '%s' {pem} > {ca}".format(ca=cluster_lib.CA, pem=_quote(ca))).rc == 0
    assert app.run("install -m 0600 /dev/null /root/.pgpass.writer && echo '*:*:*:{db}:lab-only-9f3c2a7e5d1b' "
                   "> /root/.pgpass.writer".format(db=cluster_lib.DB)).rc == 0


def pytest_terminal_summary(terminalreporter):
    if not cluster_lib.MEASURED:
        return
    terminalreporter.section("failovers measured (no time is asserted)")
    terminalreporter.write_line("{:<44} {:>14} {:>10} {:>11} {:>11} {:>8}".format(
        "what", "time to write", "lost rows", "lost bytes", "playbook s", "acked"))
    for entry in cluster_lib.MEASURED:
        terminalreporter.write_line("{:<44} {:>12} s {:>10} {:>11} {:>11} {:>8}".format(
            entry["kind"], entry["time_to_write_s"], entry["lost_rows"], str(entry["lost_bytes"]), str(entry["playbook_s"]),
            entry["acked"]))
