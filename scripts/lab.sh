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
hosts=("pg1:trixie" "pg2:trixie" "pg3:trixie" "backup1:trixie" "drill1:trixie" "pooler1:trixie")
# Ansible reaches the lab hosts over SSH, as it reaches real hosts (pipelining and ControlPersist: see ansible.cfg),
# through an ssh_config written here: a lab-only key, the containers' addresses on $network, and their host keys,
# read over `podman exec` (a channel that needs no trust on first use) into a known_hosts file checked strictly.
sshdir=$cache/lab-ssh

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
  ssh_access
}

# Ansible keeps one SSH master connection per host open between runs (ControlPersist), at ~/.ansible/cp/%C (set in
# inventories/lab): close it when the host behind it is made anew, or the next run hangs on a connection to the old
# one (seen as "Timeout waiting for privilege escalation prompt").
close_master() {
  [ -s "$sshdir/config" ] || return 0
  ssh -F "$sshdir/config" -o ControlPath="$HOME/.ansible/cp/%C" -O exit "$1" >/dev/null 2>&1 || true
}

# sshd in each lab host (installed here, not in the image: molecule's hosts from the same image run no sshd), the
# lab key authorised for root, and the ssh_config and known_hosts that inventories/lab points ssh at.
ssh_access() {
  command -v ssh >/dev/null || { echo "lab.sh: ssh is missing: apt-get install openssh-client" >&2; exit 1; }
  mkdir -p "$sshdir" && chmod 0700 "$sshdir"
  if [ ! -s "$sshdir/id_ed25519" ]; then
    rm -f "$sshdir/id_ed25519" "$sshdir/id_ed25519.pub"
    ssh-keygen -q -t ed25519 -N '' -C "agent-ui-lab-$(hostname)" -f "$sshdir/id_ed25519"
  fi
  chmod 0600 "$sshdir/id_ed25519"
  local config known
  config=$(mktemp "$sshdir/config.XXXXXX") known=$(mktemp "$sshdir/known_hosts.XXXXXX")
  for entry in "${hosts[@]}"; do
    ctr="agent-ui-lab-${entry%%:*}"
    if ! podman exec "$ctr" test -x /usr/sbin/sshd; then
      echo "$ctr: installing openssh-server" >&2
      podman exec -e DEBIAN_FRONTEND=noninteractive "$ctr" sh -c \
        'apt-get install -y -qq openssh-server >/dev/null || { apt-get update -qq && apt-get install -y -qq openssh-server >/dev/null; }'
    fi
    podman exec "$ctr" sh -c 'test -s /etc/ssh/ssh_host_ed25519_key || ssh-keygen -q -A; systemctl enable --now -q ssh'
    podman exec -i "$ctr" sh -c 'umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys' < "$sshdir/id_ed25519.pub"
    ip=$(podman inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$ctr")
    # Keyed by the container's name (HostKeyAlias): a container made anew with another address is still checked.
    printf '%s %s\n' "$ctr" "$(podman exec "$ctr" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2)" >> "$known"
    cat >> "$config" <<CONFIG
Host $ctr
  HostName $ip
  HostKeyAlias $ctr
CONFIG
  done
  cat >> "$config" <<CONFIG
Host *
  User root
  IdentityFile $sshdir/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $sshdir/known_hosts
  StrictHostKeyChecking yes
  HostKeyAlgorithms ssh-ed25519
  CheckHostIP no
  GSSAPIAuthentication no
CONFIG
  chmod 0600 "$config" "$known"
  mv "$config" "$sshdir/config"
  mv "$known" "$sshdir/known_hosts"
  for entry in "${hosts[@]}"; do
    ctr="agent-ui-lab-${entry%%:*}"
    close_master "$ctr"
    # BatchMode: a key or host key that does not match fails here, not as a prompt in the middle of the play.
    ssh -F "$sshdir/config" -o BatchMode=yes -o ConnectTimeout=10 "$ctr" true \
      || { echo "$ctr: ssh as root with the lab key failed (see $sshdir/config)" >&2; exit 1; }
  done
  echo "ssh: $sshdir/config"
}

down() {
  for entry in "${hosts[@]}"; do
    podman rm -f -t 5 "agent-ui-lab-${entry%%:*}" >/dev/null 2>&1 || true
  done
  podman network rm "$network" >/dev/null 2>&1 || true
  for entry in "${hosts[@]}"; do close_master "agent-ui-lab-${entry%%:*}"; done
  # The lab key stays (it authorises nothing once the hosts are gone); the host keys go with the hosts.
  rm -f "$sshdir/config" "$sshdir/known_hosts"
}

info() {
  ips=$(for entry in "${hosts[@]}"; do case "$entry" in pg*) ;; *) continue ;; esac; podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "agent-ui-lab-${entry%%:*}"; done | paste -sd,)
  cat <<INFO

The lab is up: pg1, pg2 and pg3 (Debian 13, PostgreSQL 17, one cluster with streaming replication) and backup1
(the pgBackRest repository: ssh -F $sshdir/config agent-ui-lab-backup1 sudo -u postgres pgbackrest info), and
drill1, where playbooks/restore.yml restores drills (docs/runbook-restore.md), and pooler1 (PgBouncer on 6432, in
front of whichever node is the primary: docs/pgbouncer.md); network $network.
Log in: ssh -F $sshdir/config agent-ui-lab-pg1 (Ansible goes the same way).
Connect to whichever node is the primary now, with TLS verified against the lab CA (password: see
inventories/lab/group_vars/postgresql.yml):

  podman exec -it agent-ui-lab-pg2 psql "host=pg1,pg2,pg3 target_session_attrs=read-write dbname=agent_ui user=agent_ui_app sslmode=verify-full sslrootcert=/etc/ssl/certs/agent-ui-postgresql-ca.pem"

or from this machine:

  psql "host=$ips target_session_attrs=read-write dbname=agent_ui user=agent_ui_app sslmode=verify-full sslrootcert=$top/inventories/lab/pki/ca.crt"
INFO
}

"${1:?usage: scripts/lab.sh up|down|info}"
