#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: sqlite_to_postgresql
short_description: Move a SQLite database into PostgreSQL, checked, in one transaction, and validated
version_added: "0.1.0"
description:
  - Reads a SQLite file from a read-only consistent snapshot and loads it into PostgreSQL with C(COPY) inside
    one transaction, so a run either loads everything or nothing.
  - Every source row is checked before it is written (JSON, booleans, enum and CHECK domains, NOT NULL, UNIQUE,
    foreign keys, timestamps, UTF-8 and NUL, types and lengths). Each problem is reported with its table, primary
    key, column, an excerpt of the value and the rule it broke, and handled by the policy of its class
    (O(policies)).
  - Source primary keys are kept, identity columns are moved past C(max(id)) and past SQLite's AUTOINCREMENT
    counter, and after loading the module validates row counts, per-row checksums computed on both sides over one
    canonical form, and foreign key orphans before it commits.
  - When the target already holds exactly the source's rows the module changes nothing (C(changed=false)). When
    it holds different rows the module fails with a summary of the differences unless O(on_conflict=replace).
  - In O(mode=app) the source is Claude Agent UI's SQLite file and the target is the schema created by the
    C(agent_ui.postgresql.app_schema) role. In O(mode=generic) any SQLite schema is recreated in
    O(target_schema) with a documented type mapping, keys, indexes and foreign keys.
  - The mapping, conversion rules, problem classes, canonical form and type mapping are documented in
    C(docs/migration.md) of the collection.
author:
  - Agent UI contributors (@agent-ui)
requirements:
  - psycopg2 (or psycopg2-binary) on the host that runs the module
  - Python's sqlite3 module
options:
  src:
    description:
      - Path of the SQLite file on the host that runs the module (use C(delegate_to) to run it where the file is).
      - The file is opened read-only; it is never modified.
    type: path
    required: true
  mode:
    description:
      - V(app) loads Claude Agent UI's tables into the app schema, which must already exist.
      - V(generic) recreates every table of any SQLite file (tables, primary keys, UNIQUE constraints, indexes,
        foreign keys) in O(target_schema) and loads it. Virtual tables (FTS, R*Tree) are loaded as plain tables of
        their rows; their shadow tables, and FTS tables without rows of their own, are skipped with a warning.
    type: str
    choices: [app, generic]
    default: app
  db:
    description:
      - Name of the target database.
    type: str
    default: claude_agent_ui
    aliases: [login_db]
  target_schema:
    description:
      - Schema of the target tables. In O(mode=generic) it is created when missing.
    type: str
    default: public
  login_host:
    description:
      - Host of the target server. Without it and without O(login_unix_socket) libpq's default applies.
    type: str
  login_port:
    description:
      - Port of the target server.
    type: int
    default: 5432
  login_user:
    description:
      - Role used to connect. It needs INSERT (and TRUNCATE for O(on_conflict=replace)) on the target tables,
        and CREATE on O(target_schema) in O(mode=generic).
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user).
    type: str
  login_unix_socket:
    description:
      - Directory of the server's Unix socket; takes precedence over O(login_host).
    type: str
  ssl_mode:
    description:
      - libpq C(sslmode) of the connection.
    type: str
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
    default: prefer
  ca_cert:
    description:
      - CA certificate file used to verify the server (libpq C(sslrootcert)).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for the connection.
    type: int
    default: 30
  lock_timeout:
    description:
      - How long a statement of the run waits for a table lock before the run fails (PostgreSQL's C(lock_timeout),
        set with C(SET LOCAL) inside the run's transaction), in check mode as in a real run.
      - The run then fails with a message naming the table it waited for, and nothing is written. Without it, a
        run queues behind a long transaction of the app, and the app's next statements queue behind the run.
      - A PostgreSQL duration such as V(5s), V(500ms) or V(1min); V(0) waits forever. The locks each mode takes are
        listed in C(docs/migration.md).
    type: str
    default: 5s
  policies:
    description:
      - Policy per problem class, as a dict of class name to V(fail), V(skip_row) or V(fix). Classes not listed
        use V(fail), except C(not_null) in O(mode=app), which uses V(fix). A NULL in a NOT NULL column is then filled by
        its documented rule (the SQLite default, the row's other timestamp, empty text for C(skills.content)) and
        reported. Empty or whitespace-only text in a required column (names, prompts, commands) is a C(not_null)
        problem without a fix rule.
      - Classes are C(json), C(boolean), C(enum), C(not_null), C(unique), C(orphan), C(timestamp), C(utf8),
        C(nul), C(type) and C(length).
      - V(fail) stops the run before anything is committed; the target is left unchanged.
      - V(skip_row) leaves the row out and writes it with the reason to O(reject_file). Rows that reference a
        skipped row are skipped too (or get a NULL reference when the foreign key is C(ON DELETE SET NULL)).
      - V(fix) applies the class's documented rule (for example O(model_map) for C(enum)); a value no rule can
        fix still fails. C(unique), C(timestamp), C(type) and C(length) have no fix rule.
    type: dict
    default: {}
  model_map:
    description:
      - Used by the C(fix) policy of the C(enum) class in O(mode=app) to map model names outside the allowed
        list (C(sonnet), C(opus), C(haiku), C(sonnet-4), C(opus-4)) to allowed ones.
    type: dict
    default: {}
  reject_file:
    description:
      - File that receives one JSON line per skipped row (table, primary key, reasons, the source row).
      - Written only when the run succeeds and not in check mode; replaced only when its content changes.
    type: path
  backup:
    description:
      - Path of a verified backup of the source taken before loading, with SQLite's online backup API (not a
        byte copy) and checked with C(PRAGMA integrity_check).
      - The backup is replaced only when its content differs. Not taken in check mode.
    type: path
  report:
    description:
      - Path of a JSON report with the per-table counts, problems, validation and differences.
      - Written after a run, including a run that failed on problems; not in check mode. Writing it never
        counts as a change.
    type: path
  on_conflict:
    description:
      - What to do when the target tables already hold rows that differ from the source.
      - V(fail) stops with a summary of the differences and writes nothing.
      - V(replace) empties the target tables and loads the source in the same transaction.
    type: str
    choices: [fail, replace]
    default: fail
  casts:
    description:
      - O(mode=generic) only. PostgreSQL type per source column, as a dict of C(table.column) to type, overriding
        the type mapping. Supported types are text, varchar(n), smallint, integer, bigint, numeric, numeric(p,s),
        double precision, boolean, timestamptz, date, jsonb and bytea.
    type: dict
    default: {}
  analyze:
    description:
      - Run C(ANALYZE) on the loaded tables inside the load transaction.
    type: bool
    default: true
  backup_only:
    description:
      - Take the verified backup given by O(backup) and stop, without connecting to PostgreSQL. O(backup) is then
        required.
      - C(playbooks/migrate.yml) uses it to back the file up before it touches the schema.
      - In check mode nothing is written, and C(changed) predicts whether a backup would be written, that is,
        whether none exists yet.
    type: bool
    default: false
  max_problems:
    description:
      - Most problems listed in RV(problems); RV(problem_summary) always counts all of them.
    type: int
    default: 1000
  rebuild_after_load:
    description:
      - For a table that is empty before the load and has at least 50,000 source rows, drop its secondary indexes
        (those that back no constraint) and its foreign keys before its C(COPY), and recreate them from their own
        definitions right after it, inside the load transaction. Other sessions never see the table without
        them, and the module checks that the recreated definitions are identical.
      - Building an index once and validating a foreign key with one join is much faster than maintaining both
        for every row. Skipped for tables the connected role does not own. Primary keys and UNIQUE constraints
        are never touched.
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying the target.
    support: full
    details: Loads and validates inside the transaction, then rolls back; returns the plan and every problem.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Shows the row count of each target table before and after.
notes:
  - A killed run leaves the target unchanged, because nothing is committed before validation passes.
  - While the module reads a SQLite file in rollback-journal mode, the app's writes to it wait; files in WAL
    mode keep accepting writes (the module reads its own snapshot).
seealso:
  - name: docs/migration.md
    description: Mapping, conversion rules, problem classes, canonical form and generic type mapping.
    link: https://github.com/agent-ui/ansible-collection-postgresql/blob/main/docs/migration.md
'''

EXAMPLES = r'''
- name: Migrate the app's SQLite file into the app schema
  agent_ui.postgresql.sqlite_to_postgresql:
    src: /srv/claude-agent-ui/data/app.sqlite
    db: claude_agent_ui
    login_unix_socket: /var/run/postgresql
    backup: /var/backups/app-before-migration.sqlite
    report: /var/log/agent-ui/migration-report.json
  become: true
  become_user: postgres

- name: Dry run that lists every problem without writing anything
  agent_ui.postgresql.sqlite_to_postgresql:
    src: /srv/claude-agent-ui/data/app.sqlite
    login_host: db1.example.com
    login_user: migrator
    login_password: "{{ vault_migrator_password }}"
    ssl_mode: verify-full
    ca_cert: /etc/ssl/certs/agent-ui-ca.pem
  check_mode: true
  register: __migration_plan

- name: Map old model names and skip rows with broken JSON
  agent_ui.postgresql.sqlite_to_postgresql:
    src: /srv/claude-agent-ui/data/app.sqlite
    policies:
      enum: fix
      json: skip_row
    model_map:
      claude-3-opus: opus
      claude-3-5-sonnet: sonnet
    reject_file: /var/log/agent-ui/rejected-rows.jsonl

- name: Move any other SQLite file into its own schema
  agent_ui.postgresql.sqlite_to_postgresql:
    src: /srv/data/Chinook_Sqlite.sqlite
    mode: generic
    db: sandbox
    target_schema: chinook
    casts:
      Invoice.Total: numeric(12,2)
'''

RETURN = r'''
action:
  description:
    - V(load) into empty tables, V(replace) of different rows (O(on_conflict=replace)), V(none), or V(backup_only)
      (O(backup_only=true)).
  returned: success
  type: str
  sample: load
mode:
  description: The mode used.
  returned: success
  type: str
  sample: app
tables:
  description:
    - Per target table, in load order.
    - C(source_rows) read, C(kept_rows) that passed the checks, C(skipped_rows) under C(skip_row), C(fixed_rows)
      changed by a C(fix) rule, C(failed_rows) under C(fail), C(loaded_rows) found in the target after loading
      (0 when nothing was loaded), C(target_rows_before), and C(checksum_match).
  returned: success
  type: dict
  sample: {"agents": {"source_rows": 50, "kept_rows": 50, "skipped_rows": 0, "fixed_rows": 0, "failed_rows": 0,
           "loaded_rows": 50, "target_rows_before": 0, "checksum_match": true}}
problems:
  description: Problems found, up to O(max_problems), each with the action taken.
  returned: always
  type: list
  elements: dict
  sample: [{"table": "agents", "pk": "12", "column": "model", "value_excerpt": "claude-3-opus",
            "rule": "model not in (sonnet, opus, haiku, sonnet-4, opus-4)", "class": "enum", "action": "fix"}]
problem_summary:
  description: Counts of all problems by class and by action, and whether RV(problems) was truncated.
  returned: always
  type: dict
  sample: {"total": 1, "by_class": {"enum": 1}, "by_action": {"fix": 1}, "truncated": false}
rejected_rows:
  description: Rows skipped or given a NULL foreign key because of a skipped parent.
  returned: success
  type: int
  sample: 0
validation:
  description:
    - Result of the validation after loading (inside the transaction, before commit).
    - C(counts_match) and C(checksums_match) compare each table's rows with the source rows that passed the
      checks; C(fk_orphans) counts rows whose foreign key has no parent; C(mismatches) details any difference.
  returned: success
  type: dict
  sample: {"counts_match": true, "checksums_match": true, "fk_orphans": 0, "fk_orphans_by_constraint": {"tasks_agent_id_fkey": 0}}
plan:
  description: Per table, the action and the number of rows to load, skip and fix (what check mode would do).
  returned: success
  type: dict
  sample: {"tasks": {"action": "load", "rows_to_load": 1000, "rows_to_skip": 0, "rows_fixed": 0, "target_rows_before": 0}}
diff:
  description: Row counts per target table before and after (after = what the run committed or would commit).
  returned: when diff mode is on
  type: dict
  sample: {"before": {"tables": {"agents": 0}}, "after": {"tables": {"agents": 50}}}
replaced:
  description: With O(on_conflict=replace), the differences that were replaced, per table.
  returned: when rows were replaced
  type: dict
  sample: {"agents": {"matching_rows": 49, "different_rows": 1, "only_in_source": 0, "only_in_target": 0}}
backup:
  description: The verified backup (path, integrity_check, sha256, bytes, tables, changed).
  returned: when O(backup) is set and not in check mode
  type: dict
  sample: {"path": "/var/backups/app.sqlite", "integrity_check": "ok", "sha256": "9f2c...", "bytes": 1048576,
           "tables": 7, "changed": true}
reject_file:
  description: The reject file (path, rows, written).
  returned: when O(reject_file) is set and the run succeeded outside check mode
  type: dict
  sample: {"path": "/var/log/agent-ui/rejected-rows.jsonl", "rows": 0, "written": false}
report_written:
  description: Whether the JSON report was (re)written.
  returned: success
  type: bool
  sample: true
audit_row:
  description: Whether the BULK_LOAD row was written to audit_log (app mode, when the table exists).
  returned: when rows were loaded
  type: bool
  sample: true
rebuilt_after_load:
  description: Per table, the indexes and foreign keys that were recreated after its COPY (O(rebuild_after_load)).
  returned: when rows were loaded
  type: dict
  sample: {"tasks": {"indexes": ["idx_tasks_agent_id", "idx_tasks_status"], "foreign_keys": ["tasks_agent_id_fkey"]}}
mapping_warnings:
  description:
    - Generic mode notes, such as column defaults that were not literals and were not recreated.
    - Each is also shown as an Ansible warning.
  returned: success
  type: list
  elements: str
  sample: []
timings:
  description: Seconds per phase, total seconds and loaded rows per second.
  returned: success
  type: dict
  sample: {"load_seconds": 3.1, "validate_seconds": 0.5, "total_seconds": 3.9, "rows_per_second": 51000}
'''

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_checks import MigrationError
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_load import (
    HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR, argument_spec, run,
)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[('backup_only', True, ('backup',))])
    if not HAS_PSYCOPG2 and not module.params['backup_only']:
        module.fail_json(msg=missing_required_lib('psycopg2'), exception=PSYCOPG2_IMPORT_ERROR)
    try:
        result = run(dict(module.params), check_mode=module.check_mode, diff=module._diff)
    except MigrationError as exc:
        for warning in exc.details.get('mapping_warnings') or []:
            module.warn(warning)
        module.fail_json(msg=exc.msg, **exc.details)
    except Exception as exc:  # a bug: still a clear failure; the stack only with ANSIBLE_DISPLAY_TRACEBACK=error
        module.fail_json(msg='sqlite_to_postgresql stopped on an unexpected %s: %s; the transaction was rolled back '
                         '(please report this as a bug)' % (type(exc).__name__, exc), exception=traceback.format_exc())
    for warning in result.get('mapping_warnings') or []:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
