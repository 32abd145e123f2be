# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Benchmark: pgbench through PgBouncer against pgbench straight to the primary, side by side, on the lab.

Run from the checkout after ``make lab``::

    python3 benchmarks/pgbouncer.py                        # 50 clients for 15 s each way, then the client sweep
    python3 benchmarks/pgbouncer.py --seconds 5 --sweep 100,1000

1. The primary is found from the live servers (``pg_is_in_recovery()``), never taken to be pg1. pgbench's tables
   (scale ``--scale``, 10) are made in the database agent_ui and given to agent_ui_app, the lab's app role.
2. pgbench runs in a replica's container (the server package has pgbench), as agent_ui_app with its password in a
   0600 passfile there, over TLS with the server's name checked (``sslmode=verify-full``, the lab CA): straight to
   the primary on 5432, and through pooler1 on 6432 (transaction pooling, SCRAM passed through). Each path runs the
   select-only and the simple-update scripts for ``--seconds`` with ``--clients`` (50) clients; the paths alternate,
   so that a slow spell of the machine falls on both. It prints the TPS of each and the ratio pooled / direct.
3. The sweep: for each client count of ``--sweep`` (100, 200, 500, 1000) a short select-only run each way
   (``--sweep-seconds``, 5, plus a second per 50 clients: their SCRAM logins over TLS take time); a run is served
   when pgbench exits 0 with every client connected and no failed transaction. It prints the most clients
   each path served. The lab's max_connections is 100: straight to the server, a run with more clients than it has
   free fails at connect; through PgBouncer, the clients share its pools (at most 40 server connections for
   agent_ui).

Target: pooled TPS at least 0.8 of direct at 50 clients, and 1,000 clients served where direct connections fail.
Nothing here is asserted; it prints what it measured.
"""

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parent.parent
LAB_VARS = TOP / "inventories" / "lab" / "group_vars" / "postgresql.yml"
MEMBERS = ["pg1", "pg2", "pg3"]
POOLER = "pooler1"
DB = "agent_ui"
USER = "agent_ui_app"
CA = "/etc/ssl/certs/agent-ui-postgresql-ca.pem"
PGBENCH = "/usr/lib/postgresql/17/bin/pgbench"


def container(name):
    return "agent-ui-lab-" + name


def run(name, command, check=True):
    result = subprocess.run(["podman", "exec", container(name), "sh", "-c", command], capture_output=True, text=True,
                            check=False)
    if check and result.returncode != 0:
        raise SystemExit("{}: {} failed: {}".format(name, command, result.stderr.strip()[-2000:]))
    return result


def psql(name, sql, db="postgres"):
    return run(name, "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {} -c {}".format(
        db, shlex.quote(sql))).stdout.strip()


def roles():
    found = {}
    for name in MEMBERS:
        result = run(name, "runuser -u postgres -- psql -XAtq -c 'SELECT pg_is_in_recovery()'", check=False)
        found[name] = {"f": "primary", "t": "replica"}.get(result.stdout.strip(), "down")
    return found


def pgbench(client, host, port, clients, seconds, script):
    """One pgbench run from `client`; returns {served, tps, failed, clients, error}."""
    jobs = max(1, min(8, clients // 25))
    command = ("PGPASSFILE=/root/.pgpass.bench PGSSLMODE=verify-full PGSSLROOTCERT={ca} {bin} -h {host} -p {port} "
               "-U {user} -n -b {script} -c {clients} -j {jobs} -T {seconds} {db}").format(
                   ca=CA, bin=PGBENCH, host=host, port=port, user=USER, script=script, clients=clients, jobs=jobs,
                   seconds=seconds, db=DB)
    result = run(client, command, check=False)
    out = result.stdout
    tps = re.search(r"^tps = ([0-9.]+)", out, re.M)
    failed = re.search(r"number of failed transactions: ([0-9]+)", out)
    connected = re.search(r"number of clients: ([0-9]+)", out)
    served = (result.returncode == 0 and tps is not None and failed is not None and failed.group(1) == "0"
              and connected is not None and int(connected.group(1)) == clients)
    error = "" if served else (result.stderr.strip().splitlines() or ["rc {}".format(result.returncode)])[-1][:160]
    return {"served": served, "tps": float(tps.group(1)) if tps else 0.0,
            "failed": int(failed.group(1)) if failed else None, "clients": clients, "error": error}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--sweep", default="100,200,500,1000")
    parser.add_argument("--sweep-seconds", type=int, default=5)
    parser.add_argument("--json", help="write the measurements here too")
    args = parser.parse_args(argv)

    found = roles()
    primaries = [name for name, role in found.items() if role == "primary"]
    replicas = sorted(name for name, role in found.items() if role == "replica")
    if len(primaries) != 1 or not replicas:
        raise SystemExit("the lab needs one primary and a replica: {}".format(found))
    primary, client = primaries[0], replicas[0]
    password = yaml.safe_load(LAB_VARS.read_text())["postgresql_users"][0]["password"]
    run(client, "install -m 0600 /dev/null /root/.pgpass.bench && printf '%s\\n' {} > /root/.pgpass.bench".format(
        shlex.quote("*:*:*:{}:{}".format(USER, password))))
    init = run(primary, "runuser -u postgres -- {} -i -q -s {} {}".format(PGBENCH, args.scale, DB), check=False)
    if init.returncode != 0:
        raise SystemExit("pgbench -i failed: " + init.stderr[-2000:])
    psql(primary, "; ".join("ALTER TABLE pgbench_{} OWNER TO {}".format(table, USER)
                            for table in ("accounts", "branches", "tellers", "history")), db=DB)
    max_connections = psql(primary, "SHOW max_connections")
    paths = {"direct": (primary, 5432), "pgbouncer": (POOLER, 6432)}

    print("primary {}, pgbench in {}'s container, max_connections {}, scale {}".format(
        primary, client, max_connections, args.scale))
    side = {}
    for script in ("select-only", "simple-update"):
        for path in ("direct", "pgbouncer"):
            host, port = paths[path]
            side[(script, path)] = pgbench(client, host, port, args.clients, args.seconds, script)
    print("\n{} clients, {} s each ({} and {} alternating):".format(args.clients, args.seconds, *paths))
    print("{:<14} {:>12} {:>12} {:>8}".format("script", "direct tps", "pooled tps", "ratio"))
    ratios = {}
    for script in ("select-only", "simple-update"):
        direct, pooled = side[(script, "direct")], side[(script, "pgbouncer")]
        ratio = pooled["tps"] / direct["tps"] if direct["tps"] else float("nan")
        ratios[script] = round(ratio, 3)
        print("{:<14} {:>12.0f} {:>12.0f} {:>8.2f}{}".format(script, direct["tps"], pooled["tps"], ratio,
              "" if direct["served"] and pooled["served"] else "  (errors: {} | {})".format(direct["error"], pooled["error"])))

    sweep = {}
    most = {"direct": 0, "pgbouncer": 0}
    print("\nclients served (select-only, {} s each, plus 1 s per 50 clients):".format(args.sweep_seconds))
    for clients in [int(n) for n in args.sweep.split(",") if n.strip()]:
        row = {}
        for path in ("direct", "pgbouncer"):
            host, port = paths[path]
            # Logging in 1,000 clients with SCRAM over TLS takes seconds of its own: the run is longer the more there are.
            row[path] = pgbench(client, host, port, clients, args.sweep_seconds + clients // 50, "select-only")
            if row[path]["served"]:
                most[path] = max(most[path], clients)
        sweep[clients] = row
        print("{:>6} clients: direct {:<40} pgbouncer {}".format(
            clients, "served, {:.0f} tps".format(row["direct"]["tps"]) if row["direct"]["served"] else "FAILED: " + row["direct"]["error"][:32],
            "served, {:.0f} tps".format(row["pgbouncer"]["tps"]) if row["pgbouncer"]["served"] else "FAILED: " + row["pgbouncer"]["error"]))
    print("\nmost clients served: direct {}, pgbouncer {}".format(most["direct"], most["pgbouncer"]))
    met = ratios.get("select-only", 0) >= 0.8 and most["pgbouncer"] >= 1000 > most["direct"]
    print("target (pooled >= 0.8 of direct at {} clients, 1,000 clients served where direct fails): {}".format(
        args.clients, "met" if met else "missed"))
    if args.json:
        Path(args.json).write_text(json.dumps({"ratios": ratios, "most_served": most, "max_connections": max_connections,
                                               "side_by_side": {"%s/%s" % key: value for key, value in side.items()},
                                               "sweep": sweep}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
