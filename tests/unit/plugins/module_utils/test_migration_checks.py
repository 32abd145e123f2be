# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Row checks, problem classes and policies (migration_checks.py, migration_app.py).

These run the checks over generated app SQLite files without PostgreSQL: every class of bad
input is reported with table, primary key, column, excerpt and rule; skip_row writes the reject
file and cascades to child rows; each fix rule repairs what it documents and nothing else.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import io
import json
import sqlite3

import pytest

import app_sqlite
from ansible_collections.agent_ui.postgresql.plugins.module_utils import migration_load, sqlite_source
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_app import APP_DEFAULT_POLICIES, app_specs, check_source_columns
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_canonical import NULL
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_checks import (
    FIXABLE, PROBLEM_CLASSES, MigrationError, resolve_policies,
)


def check_pass(path, policies=None, model_map=None):
    """Run the checks of every table (as a load would) and return the SourcePass and the lines per table."""
    src = sqlite_source.open_snapshot(str(path))
    try:
        plan = migration_load.build_plan(src, dict(migration_load.DEFAULTS, src=str(path), model_map=model_map))
        rejects = io.StringIO()
        source_pass = migration_load.SourcePass(src, plan, resolve_policies(policies, APP_DEFAULT_POLICIES), 1000, rejects)
        lines = dict((spec.name, list(source_pass.lines(spec))) for spec in plan.specs)
    finally:
        sqlite_source.close_snapshot(src)
    source_pass.reject_text = rejects.getvalue()
    return source_pass, lines


def make_app(tmp_path, bad=None, **kwargs):
    path = tmp_path / ('app-%s.sqlite' % (bad or 'good'))
    options = dict(agents=12, skills=10, mcp_servers=6, tasks=60, large_prompt_kb=0)
    options.update(kwargs)
    info = app_sqlite.generate(str(path), bad=bad, **options)
    return path, info


def update(path, sql, *args):
    conn = sqlite3.connect(str(path))
    conn.execute(sql, args)
    conn.commit()
    conn.close()


# ---------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------

def test_policies_default_to_fail():
    assert set(resolve_policies(None).values()) == {'fail'}
    assert sorted(resolve_policies({})) == sorted(PROBLEM_CLASSES)


@pytest.mark.parametrize('policies, message', [
    ({'jsn': 'fail'}, 'unknown problem class'),
    ({'json': 'ignore'}, 'must be one of'),
    ({'unique': 'fix'}, 'has no fix rule'),
    ({'timestamp': 'fix'}, 'has no fix rule'),
])
def test_policies_are_validated(policies, message):
    with pytest.raises(MigrationError, match=message):
        resolve_policies(policies)


def test_fixable_classes_are_documented_subset():
    assert set(FIXABLE) <= set(PROBLEM_CLASSES)


# ---------------------------------------------------------------------------
# The app mapping
# ---------------------------------------------------------------------------

def test_mapping_covers_every_source_column(tmp_path):
    path, _info = make_app(tmp_path)
    src = sqlite_source.open_snapshot(str(path))
    try:
        columns = sqlite_source.source_columns(src)
    finally:
        sqlite_source.close_snapshot(src)
    specs = app_specs()
    check_source_columns(specs, columns)
    for spec in specs:
        assert sorted(col.name for col in spec.columns) == sorted(columns[spec.source])


def test_mapping_refuses_unknown_source_columns(tmp_path):
    path, _info = make_app(tmp_path)
    update(path, 'ALTER TABLE tasks ADD COLUMN extra TEXT')
    with pytest.raises(MigrationError, match='tasks has column.*extra'):
        check_pass(path)


def test_mapping_refuses_missing_tables(tmp_path):
    path, _info = make_app(tmp_path)
    update(path, 'DROP TABLE agents_mcp_servers_links')
    with pytest.raises(MigrationError, match='no table agents_mcp_servers_links'):
        check_pass(path)


# ---------------------------------------------------------------------------
# Clean data
# ---------------------------------------------------------------------------

def test_clean_source_has_no_problems(tmp_path):
    path, info = make_app(tmp_path, large_prompt_kb=110)
    source_pass, lines = check_pass(path)
    assert source_pass.problems.total == 0
    for table, count in info['tables'].items():
        assert len(lines[table]) == count
        assert source_pass.checkers[table].counts()['kept_rows'] == count
    assert max(len(line.encode('utf-8')) for line in lines['agents']) > 110 * 1024


def test_booleans_null_loads_as_default(tmp_path):
    path, _info = make_app(tmp_path)
    update(path, 'UPDATE agents SET enabled = NULL WHERE id = 1')
    update(path, 'UPDATE mcp_servers SET disabled = NULL WHERE id = 1')
    source_pass, lines = check_pass(path)
    agent = lines['agents'][0].split('\t')
    server = lines['mcp_servers'][0].split('\t')
    assert agent[7] == 't'
    assert server[5] == 'f'
    # Filled, and reported as filled (they were filled silently before).
    assert [(p['table'], p['column'], p['class'], p['action']) for p in source_pass.problems.items] == [
        ('agents', 'enabled', 'not_null', 'fix'), ('mcp_servers', 'disabled', 'not_null', 'fix')]
    assert source_pass.problems.items[0]['rule'].endswith('filled with true')


def test_nullable_columns_stay_null(tmp_path):
    path, _info = make_app(tmp_path)
    update(path, 'UPDATE agents SET description = NULL, tools = NULL WHERE id = 1')
    _source_pass, lines = check_pass(path)
    fields = lines['agents'][0].split('\t')
    assert fields[2] == NULL and fields[4] == NULL


# ---------------------------------------------------------------------------
# Each class of bad input is reported (fail policy)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('bad', sorted(app_sqlite.BAD_CLASSES))
def test_each_bad_class_is_reported(tmp_path, bad):
    path, info = make_app(tmp_path, bad=bad)
    source_pass, _lines = check_pass(path)
    where = info['bad']
    assert source_pass.problems.fatal == 1
    problem = source_pass.problems.items[0]
    assert problem['class'] == where['class']
    assert problem['table'] == where['table']
    assert problem['pk'] == str(where['pk'])
    assert problem['column'] == where['column']
    assert problem['rule']
    assert problem['action'] == 'fail'
    assert 'value_excerpt' in problem


def test_problem_excerpt_of_invalid_utf8_is_readable(tmp_path):
    path, _info = make_app(tmp_path, bad='utf8')
    source_pass, _lines = check_pass(path)
    assert source_pass.problems.items[0]['value_excerpt'] == 'Hello \\xff world'


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    path, _info = make_app(tmp_path)
    update(path, "UPDATE agents SET tools = 'x', model = 'gpt' WHERE id = 2")
    update(path, "UPDATE tasks SET status = 'done' WHERE id IN (3, 4)")
    source_pass, _lines = check_pass(path)
    found = sorted((p['table'], p['pk'], p['column'], p['class']) for p in source_pass.problems.items)
    assert found == [('agents', '2', 'model', 'enum'), ('agents', '2', 'tools', 'json'),
                     ('tasks', '3', 'status', 'enum'), ('tasks', '4', 'status', 'enum')]


def test_children_of_a_failed_parent_are_not_reported_as_orphans(tmp_path):
    path, _info = make_app(tmp_path)
    update(path, "UPDATE agents SET tools = 'x' WHERE id = 1")
    source_pass, _lines = check_pass(path)
    assert source_pass.problems.summary()['by_class'] == {'json': 1}
    assert source_pass.checkers['agents_skills_links'].counts()['failed_rows'] >= 1


# ---------------------------------------------------------------------------
# skip_row: reject file and cascades
# ---------------------------------------------------------------------------

def test_skip_row_writes_the_reject_file_with_the_reason(tmp_path):
    path, info = make_app(tmp_path, bad='json')
    source_pass, lines = check_pass(path, {'json': 'skip_row'})
    assert source_pass.problems.fatal == 0
    rejected = [json.loads(line) for line in source_pass.reject_text.splitlines()]
    skipped = [r for r in rejected if r['table'] == 'agents']
    assert len(skipped) == 1
    assert skipped[0]['pk'] == str(info['bad']['pk'])
    assert skipped[0]['action'] == 'skip_row'
    assert skipped[0]['reasons'][0]['class'] == 'json'
    assert skipped[0]['row']['tools'] == '["Read", '
    assert len(lines['agents']) == info['tables']['agents'] - 1


def test_skipped_parent_cascades_to_links_and_nulls_task_agent(tmp_path):
    path, info = make_app(tmp_path, bad='json')
    agent = str(info['bad']['pk'])
    src = sqlite3.connect(str(path))
    links = src.execute('SELECT count(*) FROM agents_skills_links WHERE agent_id = ?', (agent,)).fetchone()[0]
    server_links = src.execute('SELECT count(*) FROM agents_mcp_servers_links WHERE agent_id = ?', (agent,)).fetchone()[0]
    tasks = [row[0] for row in src.execute('SELECT id FROM tasks WHERE agent_id = ?', (agent,))]
    src.close()
    assert links and tasks
    source_pass, lines = check_pass(path, {'json': 'skip_row'})
    assert len(lines['agents_skills_links']) == info['tables']['agents_skills_links'] - links
    assert len(lines['agents_mcp_servers_links']) == info['tables']['agents_mcp_servers_links'] - server_links
    # tasks.agent_id is ON DELETE SET NULL: the tasks stay, without the agent, and are flagged
    assert len(lines['tasks']) == info['tables']['tasks']
    by_id = dict((line.split('\t')[0], line.split('\t')) for line in lines['tasks'])
    assert all(by_id[str(task)][1] == NULL for task in tasks)
    actions = [json.loads(line)['action'] for line in source_pass.reject_text.splitlines()]
    assert actions.count('skip_row') == 1 + links + server_links
    assert actions.count('set_null') == len(tasks)
    orphans = [p for p in source_pass.problems.items if p['class'] == 'orphan']
    assert len(orphans) == links + server_links + len(tasks)
    # no child references a row that is not loaded
    agent_ids = set(line.split('\t')[0] for line in lines['agents'])
    assert all(line.split('\t')[1] in agent_ids for line in lines['agents_skills_links'])


def test_skip_row_of_duplicates_keeps_the_first(tmp_path):
    path, info = make_app(tmp_path, bad='unique')
    source_pass, lines = check_pass(path, {'unique': 'skip_row'})
    ids = [line.split('\t')[0] for line in lines['agents_skills_links']]
    assert str(info['bad']['pk']) not in ids and '1' in ids
    assert source_pass.problems.items[0]['rule'].endswith('first used by id 1')


# ---------------------------------------------------------------------------
# fix rules
# ---------------------------------------------------------------------------

def test_fix_model_with_model_map(tmp_path):
    path, info = make_app(tmp_path, bad='enum')
    source_pass, lines = check_pass(path, {'enum': 'fix'}, model_map={'gpt-4o': 'opus'})
    row = [line.split('\t') for line in lines['agents'] if line.split('\t')[0] == str(info['bad']['pk'])][0]
    assert row[6] == 'opus'
    assert source_pass.problems.items[0]['action'] == 'fix'
    assert source_pass.checkers['agents'].counts()['fixed_rows'] == 1


def test_fix_model_without_mapping_still_fails(tmp_path):
    path, _info = make_app(tmp_path, bad='enum')
    source_pass, _lines = check_pass(path, {'enum': 'fix'}, model_map={'other': 'opus'})
    assert source_pass.problems.fatal == 1
    assert 'no fix rule applies' in source_pass.problems.items[0]['rule']


def test_fix_enum_normalises_case(tmp_path):
    path, _info = make_app(tmp_path)
    update(path, "UPDATE mcp_servers SET transport = ' SSE ' WHERE id = 1")
    update(path, "UPDATE tasks SET status = 'Completed' WHERE id = 1")
    _source_pass, lines = check_pass(path, {'enum': 'fix'})
    assert lines['mcp_servers'][0].split('\t')[6] == 'sse'
    assert lines['tasks'][0].split('\t')[4] == 'completed'


def test_fix_experience_score_clamps(tmp_path):
    path, info = make_app(tmp_path, bad='range')
    _source_pass, lines = check_pass(path, {'enum': 'fix'})
    row = [line.split('\t') for line in lines['skills'] if line.split('\t')[0] == str(info['bad']['pk'])][0]
    assert row[5] == '100.00'


def test_huge_experience_score_is_a_reported_problem(tmp_path):
    """A value whose rounding to numeric(5,2) overflows Decimal's precision is a type problem, not a crash."""
    path, _info = make_app(tmp_path)
    update(path, "UPDATE skills SET experience_score = '1E100' WHERE id = 3")
    source_pass, lines = check_pass(path, {'type': 'skip_row'})
    skills = [item for item in source_pass.problems.items if item['table'] == 'skills']
    assert [(item['pk'], item['class'], item['column']) for item in skills] == [('3', 'type', 'experience_score')]
    assert '3' not in [line.split('\t')[0] for line in lines['skills']]


def test_fix_boolean_words(tmp_path):
    path, _info = make_app(tmp_path)
    update(path, "UPDATE agents SET enabled = 'yes' WHERE id = 1")
    update(path, "UPDATE agents SET enabled = 'false' WHERE id = 2")
    update(path, "UPDATE agents SET enabled = 'maybe' WHERE id = 3")
    source_pass, lines = check_pass(path, {'boolean': 'fix'})
    assert lines['agents'][0].split('\t')[7] == 't'
    assert lines['agents'][1].split('\t')[7] == 'f'
    assert source_pass.problems.fatal == 1


def test_fix_not_null_fills_by_the_documented_rules_only(tmp_path):
    path, _info = make_app(tmp_path)
    update(path, 'UPDATE agents SET model = NULL WHERE id = 1')
    update(path, 'UPDATE skills SET experience_score = NULL WHERE id = 1')
    update(path, 'UPDATE skills SET content = NULL WHERE id = 2')
    update(path, "UPDATE mcp_servers SET name = '' WHERE id = 2")
    source_pass, lines = check_pass(path, {'not_null': 'fix'})
    assert lines['agents'][0].split('\t')[6] == 'sonnet'
    assert lines['skills'][0].split('\t')[5] == '0.00'
    assert lines['skills'][1].split('\t')[3] == ''
    assert source_pass.problems.fatal == 1  # no rule invents a name
    assert source_pass.problems.items[-1]['column'] == 'name'


def test_fix_utf8_and_nul(tmp_path):
    path, info = make_app(tmp_path, bad='utf8')
    update(path, "UPDATE tasks SET name = 'a' || char(0) || 'b' WHERE id = 1")
    _source_pass, lines = check_pass(path, {'utf8': 'fix', 'nul': 'fix'})
    row = [line.split('\t') for line in lines['agents'] if line.split('\t')[0] == str(info['bad']['pk'])][0]
    assert row[2] == 'Hello \ufffd world'
    assert lines['tasks'][0].split('\t')[2] == 'ab'


def test_fix_json_empty_text_becomes_default(tmp_path):
    path, _info = make_app(tmp_path)
    update(path, "UPDATE agents SET tools = '' WHERE id = 1")
    update(path, "UPDATE mcp_servers SET env = ' ' WHERE id = 1")
    _source_pass, lines = check_pass(path, {'json': 'fix'})
    assert lines['agents'][0].split('\t')[4] == '[]'
    assert lines['mcp_servers'][0].split('\t')[4] == '{}'


def test_fix_orphan_nulls_nullable_reference_only(tmp_path):
    path, _info = make_app(tmp_path, bad='orphan')
    update(path, 'UPDATE tasks SET agent_id = 424242 WHERE id = 1')
    source_pass, lines = check_pass(path, {'orphan': 'fix'})
    assert lines['tasks'][0].split('\t')[1] == NULL
    # the orphaned link has a NOT NULL reference: no fix, it still fails
    assert source_pass.problems.fatal == 1
    assert 'NOT NULL' in [p for p in source_pass.problems.items if p['action'] == 'fail'][0]['rule']


def test_json_is_canonicalised_in_the_line(tmp_path):
    path, _info = make_app(tmp_path)
    update(path, 'UPDATE mcp_servers SET env = ? WHERE id = 1', '{"b": 1.50, "a": [1e2], "b": "last"}')
    _source_pass, lines = check_pass(path)
    assert lines['mcp_servers'][0].split('\t')[4] == '{"a": [100], "b": "last"}'
