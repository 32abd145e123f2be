# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Generate a realistic Claude Agent UI SQLite file (the app's real, flat schema).

Shared by the unit tests, the molecule ``migration`` scenario and ``benchmarks/migrate.py``::

    from app_sqlite import generate
    info = generate('/tmp/app.sqlite', tasks=1000, bad='json')

    python3 tests/support/app_sqlite.py OUT.sqlite [--tasks N] [--agents N] [--skills N]
                                        [--mcp-servers N] [--bad CLASS] [--seed N] [--no-links]

The data has unicode everywhere (accents, CJK, RTL, combining marks, emoji with ZWJ), tabs,
newlines and backslashes in text, prompts larger than 100 kB, NULLs, every timestamp form
('YYYY-MM-DD HH:MM:SS' UTC, ISO-8601 with a zone, JavaScript's toISOString(), epoch seconds
as integer and real, epoch milliseconds) and booleans as 0 and 1.  ``bad`` injects one
row of one class of bad input (see :data:`BAD_CLASSES`).  ``null_fills`` writes NULL, somewhere,
into every column that SQLite lets be NULL but the target declares NOT NULL (see :data:`NULL_FILLS`):
rows inserted with an explicit NULL, which the module fills under its not_null fix rules.  Pure standard library; a million
tasks take a few seconds (executemany in large batches, journal and sync off while writing).
"""

from __future__ import absolute_import, division, print_function

import argparse
import ast
import json
import os
import random
import sqlite3
import sys
import time

SCHEMA = """
CREATE TABLE agents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    description TEXT,
    system_prompt TEXT NOT NULL,
    tools TEXT,
    disallowed_tools TEXT,
    model TEXT DEFAULT 'sonnet',
    enabled INTEGER DEFAULT 1,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE skills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    description TEXT,
    content TEXT,
    allowed_tools TEXT,
    experience_score REAL DEFAULT 0,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE mcp_servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    command TEXT NOT NULL,
    args TEXT,
    env TEXT,
    transport TEXT DEFAULT 'stdio',
    disabled INTEGER DEFAULT 0,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT,
    status TEXT DEFAULT 'pending',
    agent_id INTEGER REFERENCES agents(id),
    error_message TEXT,
    duration_ms INTEGER,
    input_tokens INTEGER,
    output_tokens INTEGER,
    total_cost REAL,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE agents_skills_links (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id INTEGER NOT NULL REFERENCES agents(id),
    skill_id INTEGER NOT NULL REFERENCES skills(id)
);
CREATE TABLE agents_mcp_servers_links (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id INTEGER NOT NULL REFERENCES agents(id),
    mcp_server_id INTEGER NOT NULL REFERENCES mcp_servers(id)
);
"""

TABLES = ('agents', 'skills', 'mcp_servers', 'agents_skills_links', 'agents_mcp_servers_links', 'tasks')
# Where the module's app mapping is: in the collection, or copied next to this file (the molecule scenario copies
# both into the container, where the collection is not installed).
MAPPING_PATHS = ('../../plugins/module_utils/migration_app.py', 'migration_app.py')


def mapping_domains(names=('MODELS', 'TRANSPORTS', 'STATUSES')):
    """The enum domains of the module's app mapping, read from migration_app.py (not imported: no Ansible needed).

    One source of truth: a model name added to the module (and to the schema's CHECK, which a unit test
    compares with it) is generated here too.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for relative in MAPPING_PATHS:
        path = os.path.normpath(os.path.join(here, relative))
        if os.path.isfile(path):
            with open(path, encoding='utf-8') as handle:
                tree = ast.parse(handle.read(), path)
            found = dict((node.targets[0].id, ast.literal_eval(node.value)) for node in tree.body
                         if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                         and node.targets[0].id in names)
            return tuple(found[name] for name in names)
    raise RuntimeError('migration_app.py (the module\'s app mapping) is neither in the collection nor next to %s' % here)


MODELS, TRANSPORTS, STATUSES = mapping_domains()

# One injected bad row per class: (problem class the migration reports, table, column).
BAD_CLASSES = {
    'json': ('json', 'agents', 'tools'),
    'boolean': ('boolean', 'agents', 'enabled'),
    'enum': ('enum', 'agents', 'model'),
    'range': ('enum', 'skills', 'experience_score'),
    'not_null': ('not_null', 'agents', 'system_prompt'),
    'unique': ('unique', 'agents_skills_links', 'agent_id,skill_id'),
    'orphan': ('orphan', 'agents_skills_links', 'skill_id'),
    'timestamp': ('timestamp', 'tasks', 'created_at'),
    'utf8': ('utf8', 'agents', 'description'),
    'nul': ('nul', 'tasks', 'name'),
    'type': ('type', 'tasks', 'duration_ms'),
    'length': ('length', 'agents', 'name'),
}

# Columns that SQLite lets be NULL and the target declares NOT NULL; ``null_fills`` puts NULLs in each.
NULL_FILLS = {
    'agents': ('model', 'enabled'),
    'skills': ('content', 'experience_score'),
    'mcp_servers': ('transport', 'disabled'),
    'tasks': ('status',),
}
TIMESTAMPED = ('agents', 'skills', 'mcp_servers', 'tasks')

WORDS = ('agent', 'Ünïcødé', '数据', 'مرحبا', 'café', 'e\u0301', '👩\u200d💻', 'naïve', 'Ωμέγα', 'ß', 'résumé', '🚀',
         'Größe', 'tab\there', 'back\\slash', '"quoted"', "it's", 'line\nbreak', 'crlf\r\nend', '✓', 'κόσμε', '日本語')
TOOLS = ('Read', 'Write', 'Edit', 'Bash', 'Bash(git:*)', 'Grep', 'Glob', 'WebFetch', 'Tâche ✓', '工具')
BASE_MS = 1672531200000  # 2023-01-01T00:00:00Z
SPAN_MS = 2 * 365 * 86400 * 1000
BATCH = 20000


def _timestamp(rng, form, ms=None):
    """One timestamp in one of the forms found in the wild (form 0..5)."""
    if ms is None:
        ms = BASE_MS + int(rng.random() * SPAN_MS)
    seconds, millis = divmod(ms, 1000)
    if form == 0:  # SQLite CURRENT_TIMESTAMP, UTC
        return time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(seconds))
    if form == 1:  # ISO-8601 with a zone offset and milliseconds
        offset_min = (seconds // 7) % 27 * 30 - 360
        local = time.gmtime(seconds + offset_min * 60)
        sign = '+' if offset_min >= 0 else '-'
        return '%s.%03d%s%02d:%02d' % (time.strftime('%Y-%m-%dT%H:%M:%S', local), millis, sign, abs(offset_min) // 60,
                                       abs(offset_min) % 60)
    if form == 2:  # JavaScript toISOString()
        return '%s.%03dZ' % (time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds)), millis)
    if form == 3:  # epoch seconds (integer)
        return seconds
    if form == 4:  # epoch seconds with a fraction (real)
        return seconds + millis / 1000.0
    return ms  # epoch milliseconds


def _text(rng, prefix, words=3):
    return '%s %s' % (prefix, ' '.join(rng.choice(WORDS) for _word in range(words)))


def _prompt(rng, kib):
    paragraph = 'You are a careful agent. Réponds en français si besoin. 你好，世界。 مرحبا بالعالم. 🚀\n\tStep \\ by step.\n'
    repeat = (kib * 1024) // len(paragraph.encode('utf-8')) + 1
    return (paragraph * repeat) + _text(rng, 'end', 2)


def _json_list(rng, low=0, high=4):
    return json.dumps(rng.sample(TOOLS, rng.randint(low, high)), ensure_ascii=rng.random() < 0.5)


def _agents(rng, count, large_prompt_kb):
    for i in range(1, count + 1):
        prompt = _prompt(rng, large_prompt_kb) if i <= 2 and large_prompt_kb else _text(rng, 'Prompt %d:' % i, 30)
        tools = None if i % 7 == 0 else _json_list(rng)
        disallowed = '[]' if i % 3 else (None if i % 2 else _json_list(rng, 1, 2))
        enabled = (1, 0, 1, 1)[i % 4]
        created = _timestamp(rng, i % 6)
        yield (i, 'agent-%d %s' % (i, rng.choice(WORDS)), None if i % 5 == 0 else _text(rng, 'Agent', 6), prompt, tools,
               disallowed, MODELS[i % len(MODELS)], enabled, created, _timestamp(rng, (i + 1) % 6))


def _skills(rng, count, large_prompt_kb):
    for i in range(1, count + 1):
        content = _prompt(rng, large_prompt_kb) if i == 1 and large_prompt_kb else _text(rng, '# Skill %d\n' % i, 20)
        score = (0, 100, 42, 87.5, 33.33, 99.99)[i % 6] if i % 2 else round(rng.random() * 100, 2)
        yield (i, 'skill-%d %s' % (i, rng.choice(WORDS)), None if i % 4 == 0 else _text(rng, 'Skill', 4), content,
               None if i % 9 == 0 else _json_list(rng), score, _timestamp(rng, i % 6), _timestamp(rng, (i + 2) % 6))


def _servers(rng, count):
    for i in range(1, count + 1):
        env = None if i % 5 == 0 else json.dumps({'API_URL': 'https://example.invalid/%d' % i, 'ÜNI': '✓ 数据', 'PATH': '/usr/bin',
                                                  'NESTED': {'b': [1, 2.5, None, True], 'a': 'x\ty'}}, ensure_ascii=i % 2 == 0)
        if i % 11 == 0:
            env = '{"DUP": "first", "a": 1.50, "big": 1e3, "DUP": "last"}'
        args = None if i % 6 == 0 else json.dumps(['--port', str(8000 + i), '--name=ünï'])
        yield (i, 'server-%d %s' % (i, rng.choice(WORDS)), '/usr/local/bin/mcp-%d --flag "a b"' % i, args, env,
               TRANSPORTS[i % 3], (0, 1, 0)[i % 3], _timestamp(rng, i % 6), _timestamp(rng, (i + 3) % 6))


def _tasks(rng, count, agents):
    rand = rng.random
    names = ['Task %s' % w for w in WORDS]
    descriptions = [None, 'Summarise the repo', 'Écrire un test ✓', '运行迁移', 'multi\nline\tdescription \\o/']
    for i in range(1, count + 1):
        status = STATUSES[i % 5]
        done = status in ('completed', 'failed')
        ms = BASE_MS + int(rand() * SPAN_MS)
        yield (i, '%s #%d' % (names[i % len(names)], i), descriptions[i % 5], status,
               None if (i % 10 == 0 or not agents) else 1 + int(rand() * agents),
               'Error: ✗ timeout after 30s\nstack…' if status == 'failed' else None,
               int(rand() * 600000) if done else None,
               int(rand() * 200000) if done else None, int(rand() * 50000) if done else None,
               round(rand() * 3, 6) if done else None,
               _timestamp(rng, i % 6, ms), _timestamp(rng, (i + 1) % 6, ms + 1234))


def _links(rng, agents, parents, per_agent):
    if not parents:
        return
    link_id = 0
    for agent in range(1, agents + 1):
        for parent in rng.sample(range(1, parents + 1), min(parents, rng.randint(*per_agent))):
            link_id += 1
            yield (link_id, agent, parent)


def _insert(conn, table, columns, rows):
    sql = 'INSERT INTO %s (%s) VALUES (%s)' % (table, ', '.join(columns), ', '.join('?' * len(columns)))
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            conn.executemany(sql, batch)
            batch = []
    if batch:
        conn.executemany(sql, batch)


def _inject(conn, bad, counts):
    """Inject one bad row of class ``bad``; return where it is."""
    cls, table, column = BAD_CLASSES[bad]
    pk = max(1, counts[table] // 2)
    if bad == 'json':
        conn.execute("UPDATE agents SET tools = '[\"Read\", ' WHERE id = ?", (pk,))
    elif bad == 'boolean':
        conn.execute('UPDATE agents SET enabled = 2 WHERE id = ?', (pk,))
    elif bad == 'enum':
        conn.execute("UPDATE agents SET model = 'gpt-4o' WHERE id = ?", (pk,))
    elif bad == 'range':
        conn.execute('UPDATE skills SET experience_score = 150.5 WHERE id = ?', (pk,))
    elif bad == 'not_null':  # empty required text: no fix rule can invent a prompt
        conn.execute("UPDATE agents SET system_prompt = '' WHERE id = ?", (pk,))
    elif bad == 'unique':
        conn.execute('INSERT INTO agents_skills_links (agent_id, skill_id) SELECT agent_id, skill_id FROM agents_skills_links '
                     'WHERE id = 1')
        pk = conn.execute('SELECT max(id) FROM agents_skills_links').fetchone()[0]
    elif bad == 'orphan':
        conn.execute('INSERT INTO agents_skills_links (agent_id, skill_id) VALUES (1, 999999)')
        pk = conn.execute('SELECT max(id) FROM agents_skills_links').fetchone()[0]
    elif bad == 'timestamp':
        conn.execute("UPDATE tasks SET created_at = '2024-02-30 10:00:00' WHERE id = ?", (pk,))
    elif bad == 'utf8':
        conn.execute("UPDATE agents SET description = CAST(X'48656C6C6F20FF20776F726C64' AS TEXT) WHERE id = ?", (pk,))
    elif bad == 'nul':
        conn.execute("UPDATE tasks SET name = 'before' || char(0) || 'after' WHERE id = ?", (pk,))
    elif bad == 'type':
        conn.execute("UPDATE tasks SET duration_ms = 'fast' WHERE id = ?", (pk,))
    elif bad == 'length':
        conn.execute('UPDATE agents SET name = ? WHERE id = ?', ('long-name-' + 'x' * 150, pk))
    counts[table] = conn.execute('SELECT count(*) FROM %s' % table).fetchone()[0]
    return {'name': bad, 'class': cls, 'table': table, 'column': column, 'pk': pk}


def _null_fills(conn):
    """NULL in every column of :data:`NULL_FILLS` (every third row), and in the timestamps: one, the other or both."""
    for table, columns in NULL_FILLS.items():
        for column in columns:
            conn.execute('UPDATE %s SET %s = NULL WHERE id %% 3 = 0' % (table, column))
    for table in TIMESTAMPED:
        conn.execute('UPDATE %s SET created_at = NULL WHERE id %% 4 IN (1, 3)' % table)
        conn.execute('UPDATE %s SET updated_at = NULL WHERE id %% 4 IN (2, 3)' % table)


def generate(path, agents=50, skills=50, mcp_servers=20, tasks=1000, links=True, large_prompt_kb=120, bad=None, seed=1,
             null_fills=False):
    """Write the app SQLite file at ``path`` (replaced if present); return counts and the bad row."""
    if bad is not None and bad not in BAD_CLASSES:
        raise ValueError('bad must be one of %s' % ', '.join(sorted(BAD_CLASSES)))
    needs = {'json': agents, 'boolean': agents, 'enum': agents, 'utf8': agents, 'length': agents, 'range': skills,
             'not_null': agents, 'timestamp': tasks, 'nul': tasks, 'type': tasks, 'unique': agents and skills and links,
             'orphan': agents}
    if bad is not None and not needs[bad]:
        raise ValueError('bad=%s needs rows in %s' % (bad, BAD_CLASSES[bad][1]))
    for suffix in ('', '-wal', '-shm', '-journal'):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute('PRAGMA journal_mode = OFF')
        conn.execute('PRAGMA synchronous = OFF')
        conn.executescript(SCHEMA)
        conn.execute('BEGIN')
        _insert(conn, 'agents', ('id', 'name', 'description', 'system_prompt', 'tools', 'disallowed_tools', 'model', 'enabled',
                                 'created_at', 'updated_at'), _agents(rng, agents, large_prompt_kb))
        _insert(conn, 'skills', ('id', 'name', 'description', 'content', 'allowed_tools', 'experience_score', 'created_at',
                                 'updated_at'), _skills(rng, skills, large_prompt_kb))
        _insert(conn, 'mcp_servers', ('id', 'name', 'command', 'args', 'env', 'transport', 'disabled', 'created_at',
                                      'updated_at'), _servers(rng, mcp_servers))
        if links:
            _insert(conn, 'agents_skills_links', ('id', 'agent_id', 'skill_id'), _links(rng, agents, skills, (1, 3)))
            _insert(conn, 'agents_mcp_servers_links', ('id', 'agent_id', 'mcp_server_id'), _links(rng, agents, mcp_servers, (0, 2)))
        _insert(conn, 'tasks', ('id', 'name', 'description', 'status', 'agent_id', 'error_message', 'duration_ms', 'input_tokens',
                                'output_tokens', 'total_cost', 'created_at', 'updated_at'), _tasks(rng, tasks, agents))
        if null_fills:
            _null_fills(conn)
        conn.execute('COMMIT')
        counts = dict((table, conn.execute('SELECT count(*) FROM %s' % table).fetchone()[0]) for table in TABLES)
        info = {'path': path, 'tables': counts, 'bad': None}
        if bad is not None:
            info['bad'] = _inject(conn, bad, counts)
        conn.execute('PRAGMA journal_mode = DELETE')
    finally:
        conn.close()
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description='Generate an app-shaped Claude Agent UI SQLite file.')
    parser.add_argument('out')
    parser.add_argument('--agents', type=int, default=50)
    parser.add_argument('--skills', type=int, default=50)
    parser.add_argument('--mcp-servers', type=int, default=20)
    parser.add_argument('--tasks', type=int, default=1000)
    parser.add_argument('--no-links', action='store_true')
    parser.add_argument('--large-prompt-kb', type=int, default=120)
    parser.add_argument('--bad', choices=sorted(BAD_CLASSES))
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--null-fills', action='store_true', help='NULLs in the columns the target declares NOT NULL')
    args = parser.parse_args(argv)
    info = generate(args.out, agents=args.agents, skills=args.skills, mcp_servers=args.mcp_servers, tasks=args.tasks,
                    links=not args.no_links, large_prompt_kb=args.large_prompt_kb, bad=args.bad, seed=args.seed,
                    null_fills=args.null_fills)
    json.dump(info, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
