# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The app schema's migrations applied to a throwaway PostgreSQL, checked through the catalog."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

# Foreign keys whose columns are not the leading columns of any index on the referencing table.
UNINDEXED_FOREIGN_KEYS = """
SELECT c.conrelid::regclass::text, c.conname
FROM pg_constraint c
WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
  AND NOT EXISTS (
    SELECT 1
    FROM pg_index i
    WHERE i.indrelid = c.conrelid
      AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(c.conkey)] @> c.conkey
      AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(c.conkey)] <@ c.conkey)
ORDER BY 1, 2
"""


def test_every_foreign_key_column_is_indexed(postgresql_server, app_db):
    assert postgresql_server.query(app_db, UNINDEXED_FOREIGN_KEYS) == []


def test_the_check_finds_an_unindexed_foreign_key(postgresql_server, app_db):
    postgresql_server.query(app_db, 'DROP INDEX idx_tasks_created_by_id')
    assert postgresql_server.query(app_db, UNINDEXED_FOREIGN_KEYS) == [('tasks', 'tasks_created_by_id_fkey')]


def test_deleting_a_user_uses_the_partial_index(postgresql_server, app_db):
    conn = postgresql_server.connect(app_db)
    try:
        cur = conn.cursor()
        cur.execute("SET enable_seqscan = off")
        cur.execute("EXPLAIN SELECT 1 FROM tasks WHERE created_by_id = 42")
        plan = ' '.join(row[0] for row in cur.fetchall())
    finally:
        conn.close()
    assert 'idx_tasks_created_by_id' in plan, plan
