#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_node_info
short_description: Everything about one node's PostgreSQL cluster in one fast, read-only look
version_added: "0.1.0"
description:
  - Reports whether PostgreSQL is installed, whether the cluster exists, runs, is a primary or a standby, its system
    identifier, timeline, LSNs, replication state, slots, its systemd service and which peers answer, in one task.
  - Runs the PostgreSQL tools as O(os_user) through C(runuser) (so the module runs as root, with C(become)). One
    C(psql) query over the local socket (peer authentication), C(pg_controldata), C(systemctl) and one C(pg_isready)
    per peer run at the same time, so a node whose peers are all down costs about O(probe_timeout).
  - Never fails because PostgreSQL is down, crashed, half-made or not installed; what could not be read is listed in
    C(errors) of RV(node). It fails only when the host cannot be examined (C(runuser) missing).
  - Written for the Debian postgresql-common layout; the paths can be overridden.
author:
  - Agent UI contributors (@agent-ui)
options:
  version:
    description:
      - Major version of PostgreSQL (15, 16, 17).
    type: int
    required: true
  cluster_name:
    description:
      - Name of the cluster (postgresql-common's cluster name).
    type: str
    default: main
  data_dir:
    description:
      - Data directory. Default C(/var/lib/postgresql/<version>/<cluster_name>).
    type: path
  bin_dir:
    description:
      - Directory of the server binaries. Default C(/usr/lib/postgresql/<version>/bin).
    type: path
  socket_dir:
    description:
      - Directory of the server's Unix socket.
    type: path
    default: /var/run/postgresql
  port:
    description:
      - Port of the server (names its socket file).
    type: int
    default: 5432
  service:
    description:
      - systemd unit of the cluster. Default C(postgresql@<version>-<cluster_name>).
    type: str
  peers:
    description:
      - Other nodes to probe with C(pg_isready -h host -p port -t probe_timeout), all at once.
      - Their exit codes are returned in C(peers_ready) of RV(node) (0 accepting, 1 rejecting, 2 no response, 3 no attempt).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the peer, the key of C(peers_ready) of RV(node).
        type: str
        required: true
      host:
        description: Host name or address of the peer.
        type: str
        required: true
      port:
        description: Port of the peer.
        type: int
        default: 5432
  probe_timeout:
    description:
      - Seconds each peer probe may wait, and the connection timeout of the local query. At least 1.
    type: int
    default: 2
  wal_end:
    description:
      - When the server is not running and the cluster exists, find where its valid WAL ends with C(pg_waldump), from
        the last checkpoint's REDO point, and return it as C(wal_end_lsn) of RV(node).
      - This reads the WAL written since the last checkpoint, so it costs more than the rest; ask for it when choosing
        between stopped nodes, or before a rejoin.
    type: bool
    default: false
  os_user:
    description:
      - OS user that owns the cluster; the PostgreSQL tools run as this user, and C(psql) logs in as the role of that
        name.
    type: str
    default: postgres
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads; it runs the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - C(changed) is always false.
  - The whole C(primary_conninfo) is never returned (it could hold a password), only its host.
  - The timeline of a running primary comes from its current WAL file name, because C(pg_control_checkpoint()) lags
    after a promotion until the next checkpoint; that of a stopped cluster is the larger of pg_control's checkpoint
    timeline and minimum recovery timeline, which is what its crash recovery follows.
seealso:
  - name: pg_waldump
    description: The tool that finds the end of the WAL.
    link: https://www.postgresql.org/docs/current/pgwaldump.html
'''

EXAMPLES = r'''
- name: Look at this node and probe its peers
  agent_ui.postgresql.pg_node_info:
    version: 17
    # e.g. [{name: pg2, host: 10.0.0.12}, {name: pg3, host: 10.0.0.13}]: every other host of the group
    peers: "{{ pg_node_peers }}"
  become: true
  register: __pg_node

- name: Find where the WAL of stopped nodes ends, to choose the one to promote
  agent_ui.postgresql.pg_node_info:
    version: 16
    cluster_name: main
    wal_end: true
    peers:
      - {name: pg1, host: 10.0.0.11}
      - {name: pg2, host: 10.0.0.12}
    probe_timeout: 1
  become: true
  register: __pg_node

- name: Refuse to go on when this node is a running primary
  ansible.builtin.assert:
    that: not (__pg_node.node.running and not __pg_node.node.in_recovery)
'''

RETURN = r'''
node:
  description:
    - Everything known about the node; every key is always present, V(null) when it is unknown (for example the LSNs
      of a stopped server, or everything but the service and the peers when PostgreSQL is not installed).
    - C(installed) (C(bin_dir/postgres) exists), C(data) (C(data_dir/PG_VERSION) exists), C(placeholder)
      (C(data_dir/agent_ui_placeholder) exists, the marker of a never-used cluster made for a replica to be built),
      C(standby_signal) (C(data_dir/standby.signal) exists), C(running) (the local query succeeded).
    - C(in_recovery), C(system_identifier) (text), C(timeline) (int), C(cluster_state) (pg_controldata's "Database
      cluster state"), C(checkpoint_lsn), C(redo_lsn), C(checkpoint_timeline) (pg_control's latest checkpoint).
    - C(current_lsn) and C(flush_lsn) (a primary's C(pg_current_wal_lsn()) and C(pg_current_wal_flush_lsn())),
      C(receive_lsn), C(replay_lsn), C(replay_pause_state), C(last_replay_timestamp) (text) of a standby.
    - C(primary_conninfo_host) (only the host of C(primary_conninfo)), C(primary_slot_name),
      C(synchronous_standby_names).
    - C(wal_receiver) (V(null) or C(status), C(sender_host), C(sender_port), C(received_tli), C(latest_end_lsn),
      C(slot_name)); C(replication) (list of C(application_name), C(client_addr), C(state), C(sync_state),
      C(sent_lsn), C(flush_lsn), C(replay_lsn)); C(slots) (list of C(slot_name), C(slot_type), C(active),
      C(restart_lsn), C(wal_status)).
    - C(wal_end_lsn) (with O(wal_end), for a stopped cluster) the LSN right after the last complete valid WAL record.
    - C(service_active) (C(systemctl is-active)'s answer), C(service_enabled) (C(systemctl is-enabled)'s answer),
      C(service_masked) (bool), C(peers_ready) (peer name to C(pg_isready) exit code, V(null) when it could not
      run), C(server_version_num) (int), C(wal_segment_size) (bytes, from pg_controldata), C(addresses) (the host's
      global IPv4 addresses, from C(ip addr)), C(errors) (list of what could not be read).
  returned: success
  type: dict
  sample:
    installed: true
    data: true
    placeholder: false
    standby_signal: true
    running: true
    in_recovery: true
    system_identifier: "7714408626570431828"
    timeline: 2
    cluster_state: in archive recovery
    checkpoint_lsn: 0/3000060
    redo_lsn: 0/3000028
    checkpoint_timeline: 2
    current_lsn: null
    flush_lsn: null
    receive_lsn: 0/3000148
    replay_lsn: 0/3000148
    replay_pause_state: not paused
    last_replay_timestamp: "2026-12-01 18:45:26.455884+00"
    primary_conninfo_host: pg1.example.com
    primary_slot_name: pg2
    synchronous_standby_names: ""
    wal_receiver: {status: streaming, sender_host: pg1.example.com, sender_port: 5432, received_tli: 2,
                   latest_end_lsn: 0/3000148, slot_name: pg2}
    replication: []
    slots: []
    wal_end_lsn: null
    service_active: active
    service_enabled: enabled
    service_masked: false
    peers_ready: {pg1: 0, pg3: 2}
    server_version_num: 170002
    wal_segment_size: 16777216
    addresses: [10.89.0.3]
    errors: []
'''

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agent_ui.postgresql.plugins.module_utils.pg_node import NodeInfoError, argument_spec, gather


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if module.params['probe_timeout'] < 1:
        module.fail_json(msg='probe_timeout must be at least 1 (pg_isready waits forever with 0)')
    try:
        node = gather(module.params)
    except NodeInfoError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # a bug: still a clear failure; the stack only with ANSIBLE_DISPLAY_TRACEBACK=error
        module.fail_json(msg='pg_node_info stopped on an unexpected %s: %s (please report this as a bug)'
                         % (type(exc).__name__, exc), exception=traceback.format_exc())
    module.exit_json(changed=False, node=node)


if __name__ == '__main__':
    main()
