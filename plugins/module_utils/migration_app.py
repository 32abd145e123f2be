# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The app mapping: Claude Agent UI's SQLite tables onto the schema role's PostgreSQL tables.

Every source column has exactly one target column here; docs/migration.md shows the same
mapping as a table.  Target columns without a source (users, created_by_id, updated_by_id,
published_at, locale, search_vector, tasks.message/result/started_at/completed_at, the link
tables' order and timestamps) keep their defaults or are filled by the schema's triggers.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_checks import (
    ForeignKey, MigrationError, TableSpec, column,
)

MODELS = ('sonnet', 'opus', 'haiku', 'sonnet-4', 'opus-4')
TRANSPORTS = ('stdio', 'sse', 'http')
STATUSES = ('pending', 'running', 'completed', 'failed', 'cancelled')
EXPERIENCE_BOUNDS = (0, 100)
# The instant a NULL timestamp is filled with when the row's other timestamp is NULL too (fix rule of not_null).
NULL_TIMESTAMP_FILL = '1970-01-01 00:00:00+00'
# The app mapping's own default policies, for the classes the user does not name: every NOT NULL target column
# has a fix rule that gives the same value on every run (docs/migration.md, "NULL where the target says NOT NULL").
APP_DEFAULT_POLICIES = {'not_null': 'fix'}


def _timestamps():
    return [column('created_at', 'timestamptz', not_null=True, default=NULL_TIMESTAMP_FILL, fill_from='updated_at'),
            column('updated_at', 'timestamptz', not_null=True, default=NULL_TIMESTAMP_FILL, fill_from='created_at')]


def app_specs(model_map=None):
    """The six TableSpecs of app mode, in load order."""
    agents = TableSpec('agents', 'agents', [
        column('id', 'integer', not_null=True),
        column('name', 'text', not_null=True, length=100, required=True),
        column('description', 'text'),
        column('system_prompt', 'text', not_null=True, required=True),
        column('tools', 'jsonb', shape='array', default='[]'),
        column('disallowed_tools', 'jsonb', shape='array', default='[]'),
        column('model', 'text', not_null=True, default='sonnet', allowed=MODELS, fix_map=dict(model_map or {})),
        column('enabled', 'boolean', not_null=True, default='t'),
    ] + _timestamps(), uniques=[('name',)], identity='id')
    skills = TableSpec('skills', 'skills', [
        column('id', 'integer', not_null=True),
        column('name', 'text', not_null=True, length=100, required=True),
        column('description', 'text'),
        column('content', 'text', not_null=True, default=''),
        column('allowed_tools', 'jsonb', shape='array', default='[]'),
        column('experience_score', 'numeric', not_null=True, default='0.00', scale=2, bounds=EXPERIENCE_BOUNDS),
    ] + _timestamps(), uniques=[('name',)], identity='id')
    mcp_servers = TableSpec('mcp_servers', 'mcp_servers', [
        column('id', 'integer', not_null=True),
        column('name', 'text', not_null=True, length=100, required=True),
        column('command', 'text', not_null=True, length=500, required=True),
        column('args', 'jsonb', shape='array', default='[]'),
        column('env', 'jsonb', shape='object', default='{}'),
        column('disabled', 'boolean', not_null=True, default='f'),
        column('transport', 'text', not_null=True, default='stdio', allowed=TRANSPORTS),
    ] + _timestamps(), uniques=[('name',)], identity='id')
    skill_links = TableSpec('agents_skills_links', 'agents_skills_links', [
        column('id', 'integer', not_null=True),
        column('agent_id', 'integer', not_null=True),
        column('skill_id', 'integer', not_null=True),
    ], uniques=[('agent_id', 'skill_id')], identity='id', fks=[
        ForeignKey(('agent_id',), 'agents', ('id',), 'CASCADE', 'agents_skills_links_agent_id_fkey'),
        ForeignKey(('skill_id',), 'skills', ('id',), 'CASCADE', 'agents_skills_links_skill_id_fkey'),
    ])
    server_links = TableSpec('agents_mcp_servers_links', 'agents_mcp_servers_links', [
        column('id', 'integer', not_null=True),
        column('agent_id', 'integer', not_null=True),
        column('mcp_server_id', 'integer', not_null=True),
    ], uniques=[('agent_id', 'mcp_server_id')], identity='id', fks=[
        ForeignKey(('agent_id',), 'agents', ('id',), 'CASCADE', 'agents_mcp_servers_links_agent_id_fkey'),
        ForeignKey(('mcp_server_id',), 'mcp_servers', ('id',), 'CASCADE', 'agents_mcp_servers_links_mcp_server_id_fkey'),
    ])
    tasks = TableSpec('tasks', 'tasks', [
        column('id', 'integer', not_null=True),
        column('agent_id', 'integer'),
        column('name', 'text', not_null=True, required=True),
        column('description', 'text'),
        column('status', 'text', not_null=True, default='pending', allowed=STATUSES),
        column('error_message', 'text'),
        column('duration_ms', 'bigint'),
        column('input_tokens', 'bigint'),
        column('output_tokens', 'bigint'),
        column('total_cost', 'float8'),
    ] + _timestamps(), identity='id', fks=[
        ForeignKey(('agent_id',), 'agents', ('id',), 'SET NULL', 'tasks_agent_id_fkey'),
    ])
    return [agents, skills, mcp_servers, skill_links, server_links, tasks]


def check_source_columns(specs, source_columns):
    """Fail unless each source table exists with exactly the mapped columns.

    ``source_columns`` maps a SQLite table name to its column names.  A missing table or
    column, or a column the mapping does not know, stops the run: nothing is dropped silently.
    """
    errors = []
    for spec in specs:
        have = source_columns.get(spec.source)
        if have is None:
            errors.append('the source has no table %s' % spec.source)
            continue
        want = [col.name for col in spec.columns]
        missing = [name for name in want if name not in have]
        extra = [name for name in have if name not in want]
        if missing:
            errors.append('%s lacks column(s) %s' % (spec.source, ', '.join(missing)))
        if extra:
            errors.append('%s has column(s) the app mapping does not know: %s (use mode=generic, or extend the mapping)'
                          % (spec.source, ', '.join(extra)))
    if errors:
        raise MigrationError('the source is not the app schema: ' + '; '.join(errors))
