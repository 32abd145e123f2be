#!/usr/bin/env bash
# The local lab: systemd hosts in podman on the project's own network.
#   scripts/lab.sh up | down | info
# Names (agent-ui-lab-*) differ from molecule's (mol-*), so `make lab` and `make test` can share a machine.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$top/.config/containers.conf}
cache=${LAB_CACHE_DIR:-$top/.cache}
network=agent-ui-lab
# host name : image suite
hosts=("pg1:trixie" "pg2:trixie")

up() {
  podman network exists "$network" || podman network create "$network" >/dev/null
  for entry in "${hosts[@]}"; do
    name=${entry%%:*} suite=${entry##*:}
    ctr="agent-ui-lab-$name"
    # A container podman still calls running, but that no longer runs (its processes were lost, e.g. after the
    # machine was restored or rebooted under it), refuses exec: restart it, or make it anew if even that fails.
    if podman container exists "$ctr" && [ "$(podman inspect -f '{{.State.Running}}' "$ctr")" = true ] \
        && ! podman exec "$ctr" true >/dev/null 2>&1; then
      echo "$ctr: stale, restarting it" >&2
      podman restart -t 5 "$ctr" >/dev/null 2>&1 || podman rm -f -t 5 "$ctr" >/dev/null 2>&1 || true
    fi
    if ! podman container exists "$ctr"; then
      # One apt cache per lab host: apt locks its archive directory, so hosts that install at the same
      # time cannot share one (molecule shares one per suite, one host of each per scenario).
      mkdir -p "$cache/apt-archives/$ctr/partial"
      podman run -d --name "$ctr" --hostname "$name" --network "$network" --network-alias "$name" \
        --systemd=always -v "$cache/apt-archives/$ctr:/var/cache/apt/archives" \
        "localhost/agent-ui-pg-lab:$suite" /sbin/init >/dev/null
    elif [ "$(podman inspect -f '{{.State.Running}}' "$ctr")" != true ]; then
      podman start "$ctr" >/dev/null
    fi
  done
  for entry in "${hosts[@]}"; do
    ctr="agent-ui-lab-${entry%%:*}"
    for _ in $(seq 1 30); do
      state=$(podman exec "$ctr" systemctl is-system-running 2>/dev/null || true)
      case "$state" in running|degraded) break ;; esac
      sleep 1
    done
    echo "$ctr: ${state:-unknown}"
    case "$state" in
      running|degraded) ;;
      *) echo "$ctr did not boot systemd (state: ${state:-unknown}); try: scripts/lab.sh down && make lab" >&2; exit 1 ;;
    esac
  done
}

down() {
  for entry in "${hosts[@]}"; do
    podman rm -f -t 5 "agent-ui-lab-${entry%%:*}" >/dev/null 2>&1 || true
  done
  podman network rm "$network" >/dev/null 2>&1 || true
}

info() {
  ip=$(podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' agent-ui-lab-pg1)
  cat <<INFO

The lab is up: pg1 and pg2 (Debian 13, PostgreSQL 17), network $network.
Connect with TLS verified against the lab CA (password: see inventories/lab/group_vars/postgresql.yml):

  podman exec -it agent-ui-lab-pg2 psql "host=pg1 dbname=agent_ui user=agent_ui_app sslmode=verify-full sslrootcert=/etc/ssl/certs/agent-ui-postgresql-ca.pem"

or from this machine:

  psql "host=$ip dbname=agent_ui user=agent_ui_app sslmode=verify-full sslrootcert=$top/inventories/lab/pki/ca.crt"
INFO
}

"${1:?usage: scripts/lab.sh up|down|info}"
