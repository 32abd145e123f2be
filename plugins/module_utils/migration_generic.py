# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Generic mode: recreate any SQLite schema in PostgreSQL with a documented type mapping.

Tables are created without constraints, loaded with COPY, then given their primary keys,
UNIQUE constraints, indexes and foreign keys (all inside the one load transaction), which
is both faster and independent of the order of mutually referencing tables.  The type
mapping is :data:`TYPE_RULES`; ``casts`` ("table.column" -> PostgreSQL type) override it
per column.  docs/migration.md documents both.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import hashlib
import re
import sqlite3

from ansible_collections.agent_ui.postgresql.plugins.module_utils import sqlite_source
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_canonical import Problem, copy_unescape, excerpt
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_checks import (
    ForeignKey, MigrationError, TableSpec, column, make_converter, qualified, quote_ident, resolve_policies,
)

# Declared SQLite type -> converter kind; the first matching rule wins (declared type upper-cased).
# The PostgreSQL type is format_type(kind, n, p, s) with n, p and s read from the declared type.
# docs/migration.md ("Generic mode") shows the same table with examples.
TYPE_RULES = (
    (r'INT', 'bigint'),
    (r'^(N?VARCHAR|VARYING CHARACTER|NATIVE CHARACTER|CHARACTER VARYING|NCHAR|CHARACTER|CHAR)\s*\(\s*(?P<n>\d+)\s*\)$', 'text'),
    (r'CHAR|CLOB|TEXT', 'text'),
    (r'BLOB', 'bytea'),
    (r'REAL|FLOA|DOUB', 'float8'),
    (r'BOOL', 'boolean'),
    (r'DATETIME|TIMESTAMP', 'timestamptz'),
    (r'DATE', 'date'),
    (r'JSON', 'jsonb'),
    (r'^(NUMERIC|DECIMAL)\s*\(\s*(?P<p>\d+)\s*(,\s*(?P<s>\d+)\s*)?\)$', 'numeric'),
    (r'NUMERIC|DECIMAL', 'numeric'),
)
DEFAULT_KIND = 'text'  # no declared type, or one no rule matches

# PostgreSQL types accepted in ``casts`` -> kind.
CAST_TYPES = (
    (r'^(text)$', 'text'), (r'^(varchar|character varying)\s*\(\s*(?P<n>\d+)\s*\)$', 'text'),
    (r'^(smallint|int2)$', 'smallint'), (r'^(integer|int|int4)$', 'integer'), (r'^(bigint|int8)$', 'bigint'),
    (r'^(numeric|decimal)$', 'numeric'), (r'^(numeric|decimal)\s*\(\s*(?P<p>\d+)\s*(,\s*(?P<s>\d+)\s*)?\)$', 'numeric'),
    (r'^(double precision|float8)$', 'float8'), (r'^(boolean|bool)$', 'boolean'),
    (r'^(timestamptz|timestamp with time zone)$', 'timestamptz'), (r'^(date)$', 'date'),
    (r'^(jsonb)$', 'jsonb'), (r'^(bytea)$', 'bytea'),
)

# PostgreSQL keeps the first 63 bytes of an identifier (NAMEDATALEN - 1) and drops the rest with a NOTICE.
MAX_IDENTIFIER_BYTES = 63

# Defaults are converted strictly: a default that would need a fix is not recreated.
_STRICT = resolve_policies(None)
_BARE_WORD = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')

# finish: the keys and indexes, added after the load; links: the foreign keys, added once every table has its keys.
# steps: each DDL statement -> what it creates ("index x", "foreign key y"), named if PostgreSQL refuses it.
# partial: the partial indexes, as PartialIndex; their WHERE clause is SQLite's and is tried before the load.
GenericTable = collections.namedtuple('GenericTable', ['spec', 'pg_types', 'create', 'finish', 'links', 'warnings', 'steps', 'partial'])
# name, unique, the statement that creates it, the same without a name (to try the WHERE clause alone), SQLite's SQL.
PartialIndex = collections.namedtuple('PartialIndex', ['name', 'unique', 'statement', 'probe', 'sql'])


def map_type(declared):
    """(kind, PostgreSQL type, length, precision, scale) for a declared SQLite type."""
    text = ' '.join((declared or '').strip().upper().split())
    for pattern, kind in TYPE_RULES:
        match = re.search(pattern, text)
        if match:
            return _typed(kind, match.groupdict())
    return _typed(DEFAULT_KIND, {})


def parse_cast(pg_type):
    """(kind, PostgreSQL type, length, precision, scale) for a ``casts`` value; MigrationError if unsupported."""
    text = ' '.join(pg_type.strip().lower().split())
    for pattern, kind in CAST_TYPES:
        match = re.match(pattern, text)
        if match:
            return _typed(kind, match.groupdict())
    raise MigrationError('casts: unsupported PostgreSQL type %r; supported: text, varchar(n), smallint, integer, bigint, '
                         'numeric[(p[,s])], double precision, boolean, timestamptz, date, jsonb, bytea' % pg_type)


_FORMAT_TYPE = {'float8': 'double precision', 'timestamptz': 'timestamp with time zone'}


def format_type(kind, length=None, precision=None, scale=None):
    """The PostgreSQL type of a column the way format_type() prints it (used in DDL and checks)."""
    if kind == 'text' and length is not None:
        return 'character varying(%d)' % length
    if kind == 'numeric' and precision is not None:
        return 'numeric(%d,%d)' % (precision, scale or 0)
    return _FORMAT_TYPE.get(kind, kind)


def _typed(kind, args):
    length = int(args['n']) if args.get('n') else None
    precision = int(args['p']) if args.get('p') else None
    scale = int(args['s']) if args.get('s') else (0 if precision is not None else None)
    return kind, format_type(kind, length, precision, scale), length, precision, scale


# SQLite defaults whose value is the current time (UTC), as the strftime format of the text they give, or
# 'epoch' for integer seconds.  docs/migration.md ("Column defaults") lists them with their PostgreSQL equivalents.
_NOW_DEFAULTS = (
    (r'^CURRENT_TIMESTAMP$|^datetime\(\s*\'now\'\s*\)$', '%Y-%m-%d %H:%M:%S'),
    (r'^CURRENT_DATE$|^date\(\s*\'now\'\s*\)$', '%Y-%m-%d'),
    (r'^CURRENT_TIME$|^time\(\s*\'now\'\s*\)$', '%H:%M:%S'),
    (r'^unixepoch\(\s*(\'now\'\s*)?\)$|^CAST\(\s*strftime\(\s*\'%s\'\s*,\s*\'now\'\s*\)\s+AS\s+(INT|INTEGER|BIGINT)\s*\)$', 'epoch'),
    (r'^strftime\(\s*\'(?P<format>[^\']*)\'\s*,\s*\'now\'\s*\)$', None),
)
# strftime specifiers -> to_char patterns (what a text column gets), and the finest date_trunc unit each keeps.
_TO_CHAR = {'Y': ('YYYY', 'year'), 'm': ('MM', 'month'), 'd': ('DD', 'day'), 'H': ('HH24', 'hour'), 'M': ('MI', 'minute'),
            'S': ('SS', 'second'), 'f': ('SS.MS', 'milliseconds'), 'j': ('DDD', 'day')}
_UNITS = ('year', 'month', 'day', 'hour', 'minute', 'second', 'milliseconds')
_EPOCH_SQL = 'floor(extract(epoch FROM CURRENT_TIMESTAMP))::bigint'
_NUMBER_KINDS = ('smallint', 'integer', 'bigint', 'numeric', 'float8')


def _now_format(text):
    """The strftime format (or 'epoch') of a SQLite current-time default, or None for any other default."""
    for pattern, fmt in _NOW_DEFAULTS:
        match = re.match(pattern, text, re.I)
        if match:
            fmt = fmt or match.group('format')
            return 'epoch' if fmt == '%s' else fmt
    return None


def _to_char(fmt):
    """(to_char pattern, finest unit) for a strftime format; None when a specifier has no equivalent."""
    parts, units, literal = [], [], ''
    for piece in re.findall(r'%.|[^%]', fmt):
        if piece == '%%':
            literal += '%'
        elif piece.startswith('%'):
            if piece[1] not in _TO_CHAR:
                return None
            if literal:
                parts.append(_literal(literal))
                literal = ''
            pattern, unit = _TO_CHAR[piece[1]]
            parts.append(pattern)
            units.append(unit)
        elif piece in '"\\':
            return None
        else:
            literal += piece
    if literal:
        parts.append(_literal(literal))
    return ''.join(parts), max(units, key=_UNITS.index) if units else None


def _literal(text):
    """Literal text in a to_char pattern: quoted where a letter could be read as a pattern."""
    return '"%s"' % text if re.search(r'[A-Za-z]', text) else text


def _now_sql(fmt, kind):
    """The PostgreSQL default giving what the module loads for SQLite's current-time default ``fmt``, or None."""
    if fmt == 'epoch':
        if kind in _NUMBER_KINDS:
            return _EPOCH_SQL
        if kind == 'text':
            return _EPOCH_SQL + '::text'
        if kind == 'timestamptz':
            return "date_trunc('second', CURRENT_TIMESTAMP)"
        return None
    pattern = _to_char(fmt)
    if pattern is None:
        return None
    pattern, unit = pattern
    if kind == 'text':
        return "to_char(CURRENT_TIMESTAMP AT TIME ZONE 'UTC', '%s')" % pattern
    if kind == 'timestamptz' and re.match(r'^%Y-%m-%d([ T]%H:%M(:%S|:%f)?Z?)?$', fmt):
        return "date_trunc('%s', CURRENT_TIMESTAMP, 'UTC')" % unit
    if kind == 'date' and fmt == '%Y-%m-%d':
        return "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')::date"
    return None


# SQLite's type affinity of a declared type (https://www.sqlite.org/datatype3.html, 3.1), as a type with that affinity.
_AFFINITY = ((r'INT', 'INTEGER'), (r'CHAR|CLOB|TEXT', 'TEXT'), (r'BLOB', 'BLOB'), (r'REAL|FLOA|DOUB', 'REAL'))


def _affinity(declared):
    upper = (declared or '').upper()
    if not upper.strip():
        return 'BLOB'
    for pattern, affinity in _AFFINITY:
        if re.search(pattern, upper):
            return affinity
    return 'NUMERIC'


def _deny_functions(action, *_args):
    return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_FUNCTION else sqlite3.SQLITE_OK


def sqlite_default_value(default, declared, functions=False):
    """The value SQLite stores for a column declared ``declared`` when an INSERT leaves it to ``default``.

    SQLite itself evaluates the expression (literals, signs, blobs, double-quoted strings,
    arithmetic) and applies the column's affinity, in a scratch in-memory database.  Unless
    ``functions``, a call to any function (random(), CURRENT_TIMESTAMP, ...) is refused with
    sqlite3.DatabaseError: such a default is not one constant.
    """
    conn = sqlite3.connect(':memory:')
    try:
        conn.text_factory = bytes  # as the source is read (sqlite_source.open_snapshot)
        conn.execute('CREATE TABLE d (v %s)' % _affinity(declared))
        if not functions:
            conn.set_authorizer(_deny_functions)
        # A VALUES list applies the affinity as a DEFAULT does; "x" is the string 'x' in both (no column is named x).
        conn.execute('INSERT INTO d (v) VALUES ((%s))' % default)
        conn.set_authorizer(None)
        return conn.execute('SELECT v FROM d').fetchone()[0]
    finally:
        conn.close()


def _default_sql(default, col, pg_type, declared, warnings, where):
    """The PostgreSQL DEFAULT of a column, converted like its values; None (with a warning) where there is none.

    A constant default is evaluated by SQLite, goes through the column's converter and is
    written as a literal of the PostgreSQL type.  A current-time default becomes the
    PostgreSQL expression that gives the same value for the column's kind.  Anything else,
    or a value the converter refuses, is dropped with a warning naming table and column.
    """
    if default is None:
        return None
    text = default.strip()
    while text.startswith('(') and text.endswith(')'):
        text = text[1:-1].strip()
    convert = make_converter(col, _STRICT)[0]
    fmt = _now_format(text)
    if fmt is None and _BARE_WORD.match(text) and text.upper() not in ('NULL', 'TRUE', 'FALSE'):
        text = "'%s'" % text  # SQLite reads DEFAULT active as the string 'active'
    try:
        value = sqlite_default_value(text, declared, functions=fmt is not None)
    except sqlite3.Error:
        warnings.append('%s: default %s is not a constant or a current-time expression; not recreated' % (where, default))
        return None
    if value is None:
        return None
    try:
        canonical = convert(value)
    except Problem as problem:
        shown = ' (it gives values such as %s)' % excerpt(value) if fmt else ''
        warnings.append('%s: default %s%s does not convert to %s (%s); not recreated' % (where, default, shown, pg_type, problem.rule))
        return None
    if fmt is None:
        return "'%s'::%s" % (copy_unescape(canonical).replace("'", "''"), pg_type)
    sql = _now_sql(fmt, col.kind)
    if sql is None:
        warnings.append('%s: default %s has no PostgreSQL equivalent for a %s column; not recreated' % (where, default, pg_type))
    return sql


def _rowid_alias(columns, table_sql):
    pk = [col for col in columns if col['pk']]
    return len(pk) == 1 and pk[0]['type'].strip().upper() == 'INTEGER' and 'WITHOUT ROWID' not in table_sql.upper()


def _row_id(columns, table_sql):
    """How SQLite names the rowid of a table without a primary key (reported as the row's ``pk``), or None.

    ``rowid``, unless a column has that name; then ``_rowid_`` or ``oid``.  A virtual table may
    have no rowid at all, so it gets none (FTS and R*Tree tables have their key column anyway).
    """
    if re.match(r'\s*CREATE\s+VIRTUAL\b', table_sql or '', re.I):
        return None
    taken = set(_fold(col['name']) for col in columns)
    return next((alias for alias in ('rowid', '_rowid_', 'oid') if alias not in taken), None)


def _load_order(names, parents):
    """Parents before children where possible (cycles and self references are broken by name order)."""
    order, done, visiting = [], set(), set()

    def visit(name):
        if name in done or name in visiting:
            return
        visiting.add(name)
        for parent in sorted(parents.get(name, ())):
            if parent != name and parent in names:
                visit(parent)
        visiting.discard(name)
        done.add(name)
        order.append(name)
    for name in sorted(names):
        visit(name)
    return order


def constraint_name(table, columns, suffix):
    """PostgreSQL's ``<table>_<columns>_<suffix>`` name, shortened with a hash when it would pass 63 bytes.

    PostgreSQL would cut a longer name silently, and two cut names can collide; the hash of the
    whole name keeps the shortened ones distinct and the same on every run.
    """
    name = '_'.join([table] + list(columns) + [suffix])
    if len(name.encode('utf-8')) <= MAX_IDENTIFIER_BYTES:
        return name
    tail = '_%s_%s' % (hashlib.sha256(name.encode('utf-8')).hexdigest()[:8], suffix)
    return name.encode('utf-8')[:MAX_IDENTIFIER_BYTES - len(tail)].decode('utf-8', 'ignore') + tail


def _check_identifiers(names, info, indexes):
    """Refuse table, column and index names PostgreSQL would cut to 63 bytes: the target would not match the source."""
    too_long = []
    for name in names:
        found = [('table', name, name)] + [('column', '%s.%s' % (name, col['name']), col['name']) for col in info[name]]
        found += [('index', index['name'], index['name']) for index in indexes[name] if index['origin'] == 'c']
        for what, shown, identifier in found:
            size = len(identifier.encode('utf-8'))
            if size > MAX_IDENTIFIER_BYTES:
                too_long.append('%s %s (%d bytes)' % (what, shown, size))
    if too_long:
        raise MigrationError('PostgreSQL identifiers are at most %d bytes and longer ones would be cut, so rename these in '
                             'the source first (nothing was written): %s' % (MAX_IDENTIFIER_BYTES, '; '.join(too_long)))


def generic_tables(conn, schema, casts=None):
    """Plan every user table of the SQLite source: ([GenericTable], warnings about virtual and shadow tables)."""
    casts = dict(casts or {})
    names, info, notices = _source_tables(conn)
    if not names:
        raise MigrationError('the source has no tables')
    indexes = dict((name, sqlite_source.indexes(conn, name)) for name in names)
    _check_identifiers(names, info, indexes)
    known = set('%s.%s' % (name, col['name']) for name in names for col in info[name])
    unknown = sorted(key for key in casts if key not in known)
    if unknown:
        raise MigrationError('casts: no such source column(s): %s' % ', '.join(unknown))
    pks = dict((name, [c['name'] for c in sorted((c for c in info[name] if c['pk']), key=lambda c: c['pk'])]) for name in names)
    fks = _resolve_foreign_keys(names, info, indexes, pks, dict((name, sqlite_source.foreign_keys(conn, name)) for name in names))
    order = _load_order(names, dict((name, set(fk['parent'] for fk in fks[name])) for name in names))
    planned = []
    for name in order:
        planned.append(_plan_table(conn, schema, name, info[name], indexes[name], pks, fks[name], casts))
    _check_key_types(planned)
    return planned, notices + view_warnings(conn) + trigger_warnings(conn)


def view_warnings(conn):
    """One warning per SQLite view, naming it and giving its SQL: views are not recreated.

    PostgreSQL accepts much of SQLite's view SQL and then computes something else: LIKE
    ignores ASCII case in SQLite, text and numbers compare as SQLite's affinities say, date
    functions and GROUP BY's bare columns differ.  A view that loads without error could
    answer differently, so none is recreated; each is for the operator to port.
    """
    return ['view %s not recreated (its SQL is SQLite\'s: port it to PostgreSQL by hand): %s' % (name, sql)
            for name, _table, sql in sqlite_source.schema_objects(conn, 'view')]


def trigger_warnings(conn):
    """One warning per SQLite trigger, naming it, its table and its SQL: triggers are not recreated.

    A SQLite trigger's body is SQLite SQL run per row; PostgreSQL needs a trigger function
    (PL/pgSQL) called by a CREATE TRIGGER, and the semantics differ: SQLite has no statement
    triggers, fires BEFORE triggers with different visibility of the row being written,
    its RAISE() and WHEN differ, and the body would still be SQLite's SQL.  Each trigger is
    for the operator to port, as the views are.
    """
    return ['trigger %s on %s not recreated (its body is SQLite SQL and PostgreSQL needs a trigger function: port it by '
            'hand): %s' % (name, table, sql) for name, table, sql in sqlite_source.schema_objects(conn, 'trigger')]


_INTEGER_KINDS = frozenset(('smallint', 'integer', 'bigint'))


def comparable_kinds(child, parent):
    """Whether PostgreSQL can build a foreign key from a ``child`` kind column to a ``parent`` kind key.

    It needs an equality operator between the two types, or an implicit cast of the child's
    type to the parent's: the integer types compare with each other, an integer column can
    reference numeric and double precision keys, numeric can reference double precision, and
    date and timestamptz compare with each other.  Anything else needs a cast.
    """
    if child == parent or (child in _INTEGER_KINDS and parent in _INTEGER_KINDS):
        return True
    if child in _INTEGER_KINDS and parent in ('numeric', 'float8'):
        return True
    return (child, parent) in (('numeric', 'float8'), ('date', 'timestamptz'), ('timestamptz', 'date'))


def _check_key_types(planned):
    """Refuse foreign keys between columns of types PostgreSQL cannot compare, before the target is touched."""
    specs = dict((table.spec.name, table) for table in planned)
    refused = []
    for table in planned:
        spec = table.spec
        for fk in spec.fks:
            parent = specs[fk.parent]
            for col, parent_col in zip(fk.columns, fk.parent_columns):
                child_at, parent_at = spec.index_of(col), parent.spec.index_of(parent_col)
                if not comparable_kinds(spec.columns[child_at].kind, parent.spec.columns[parent_at].kind):
                    refused.append('%s.%s (%s) references %s.%s (%s)' % (
                        spec.name, col, table.pg_types[child_at], fk.parent, parent_col, parent.pg_types[parent_at]))
    if refused:
        raise MigrationError('PostgreSQL cannot compare the types of these foreign key columns; give one side the '
                             'other\'s type with casts (nothing was written): %s' % '; '.join(refused))


_ASCII_LOWER = dict(zip(range(ord('A'), ord('Z') + 1), range(ord('a'), ord('z') + 1)))


def _fold(name):
    """A name as SQLite compares it: ASCII letters without case, every other character as it is."""
    return name.translate(_ASCII_LOWER)


def _resolve_foreign_keys(names, info, indexes, pks, fks):
    """Foreign keys with table and column names spelled as declared; MigrationError for any PostgreSQL would refuse.

    SQLite accepts a foreign key to a missing table, or to columns without a PRIMARY KEY or
    UNIQUE constraint, and only fails writes to the child ("foreign key mismatch") while
    foreign keys are enforced.  PostgreSQL refuses to create either, so these stop the run
    before the target is touched, every one listed.  SQLite matches names without case
    (``REFERENCES Parent(ID)``); PostgreSQL's quoted names need the declared spelling.
    """
    tables = dict((_fold(name), name) for name in names)
    resolved, refused = {}, []
    for name in names:
        own = dict((_fold(col['name']), col['name']) for col in info[name])
        resolved[name] = []
        for fk in fks[name]:
            columns = [own.get(_fold(col), col) for col in fk['columns']]
            shown = '%s(%s)' % (name, ', '.join(columns))
            parent = tables.get(_fold(fk['parent']))
            if parent is None:
                refused.append('%s references table %s, which the source does not have (or which is not loaded)' % (
                    shown, fk['parent']))
                continue
            theirs = dict((_fold(col['name']), col['name']) for col in info[parent])
            if all(fk['parent_columns']):
                missing = [col for col in fk['parent_columns'] if _fold(col) not in theirs]
                if missing:
                    refused.append('%s references %s(%s), which has no column %s' % (
                        shown, parent, ', '.join(fk['parent_columns']), ', '.join(missing)))
                    continue
                parent_columns = [theirs[_fold(col)] for col in fk['parent_columns']]
            else:
                parent_columns = pks[parent]
                if not parent_columns:
                    refused.append('%s references %s, which has no primary key' % (shown, parent))
                    continue
            keys = [set(pks[parent])] + [set(c['name'] for c in index['columns']) for index in indexes[parent]
                                         if index['unique'] and not index['partial'] and not index['expression']]
            if set(parent_columns) not in keys or len(parent_columns) != len(columns):
                refused.append('%s references %s(%s), which is not its primary key or a UNIQUE constraint' % (
                    shown, parent, ', '.join(parent_columns)))
                continue
            resolved[name].append(dict(fk, columns=columns, parent=parent, parent_columns=parent_columns))
    if refused:
        raise MigrationError('PostgreSQL cannot create these foreign keys, which SQLite accepts but cannot enforce either '
                             '("foreign key mismatch"); fix them in the source first (nothing was written): %s'
                             % '; '.join(refused))
    return resolved


def _source_tables(conn):
    """(table names to load, their columns, warnings about what is not loaded) of the source.

    Virtual tables are loaded as plain tables of their columns, read through the virtual table;
    an FTS table keeps its rowid as an ``rowid`` primary key (what links it to other rows) and
    an R*Tree its id.  Not loaded: shadow tables (the virtual tables' internal storage, which
    means nothing in PostgreSQL) and FTS tables without rows of their own (external content:
    the rows are the content table's; contentless: only the index is kept, the values are gone).
    """
    virtual = sqlite_source.virtual_tables(conn)
    shadows = sqlite_source.shadow_tables(conn, virtual)
    names, info, notices = [], {}, []
    for name in sqlite_source.tables(conn):
        vtab = virtual.get(name)
        if name in shadows:
            notices.append('%s: internal storage of virtual table %s, not loaded' % (name, shadows[name]) if shadows[name]
                           else '%s: internal storage of a virtual table, not loaded' % name)
            continue
        if vtab is not None and vtab.content is not None:
            notices.append('%s: %s table without rows of its own (%s), not loaded; build full-text search in PostgreSQL '
                           'instead' % (name, vtab.module, 'contentless' if vtab.content == '' else 'external content: the '
                                        'rows are those of %s' % vtab.content))
            continue
        try:
            columns = sqlite_source.table_columns(conn, name)
        except sqlite3.Error as exc:
            raise MigrationError('cannot read virtual table %s (module %s) with this SQLite %s: %s' % (
                name, vtab.module if vtab else '?', sqlite3.sqlite_version, exc))
        if vtab is not None:
            columns = _virtual_columns(vtab.module, columns)
            notices.append('%s: %s virtual table loaded as a plain table of its rows; its index is not recreated' % (
                name, vtab.module))
        names.append(name)
        info[name] = columns
    return names, info, notices


def _virtual_columns(module, columns):
    """The columns a virtual table is loaded with: FTS gains its rowid, an R*Tree's id is its key."""
    if module.startswith('fts'):
        return [{'name': 'rowid', 'type': 'INTEGER', 'notnull': True, 'default': None, 'pk': 1}] + columns
    if module in ('rtree', 'rtree_i32') and columns:
        return [dict(columns[0], type='INTEGER', pk=1)] + columns[1:]
    return columns


def _plan_table(conn, schema, name, columns, indexes, pks, fks, casts):
    warnings = []
    table_sql = sqlite_source.table_sql(conn, name)
    identity = _rowid_alias(columns, table_sql)
    pk = pks[name]
    cols, pg_types, defs = [], [], []
    for col in columns:
        where = '%s.%s' % (name, col['name'])
        kind, pg_type, length, precision, scale = parse_cast(casts[where]) if where in casts else map_type(col['type'])
        not_null = col['notnull'] or col['name'] in pk
        if kind == 'numeric' and precision is not None:
            length = precision
        cols.append(column(col['name'], kind, not_null=not_null, length=length, scale=scale))
        pg_types.append(pg_type)
        parts = [quote_ident(col['name']), pg_type]
        if identity and col['name'] in pk:
            parts.append('GENERATED BY DEFAULT AS IDENTITY')
        elif not_null:
            parts.append('NOT NULL')
        default = None
        if not (identity and col['name'] in pk):
            default = _default_sql(col['default'], cols[-1], pg_type, col['type'], warnings, where)
        if default is not None:
            parts.append('DEFAULT ' + default)
        if identity and col['name'] in pk:
            parts.append('NOT NULL')
        defs.append(' '.join(parts))
    target = qualified(schema, name)
    create = ['CREATE TABLE %s (%s)' % (target, ', '.join(defs))]
    steps = dict((statement, 'CREATE TABLE') for statement in create)
    finish, partial = [], []
    if pk:
        pk_name = constraint_name(name, [], 'pkey')
        finish.append('ALTER TABLE %s ADD CONSTRAINT %s PRIMARY KEY (%s)' % (
            target, quote_ident(pk_name), ', '.join(quote_ident(c) for c in pk)))
        steps[finish[-1]] = 'primary key %s' % pk_name
    uniques = []
    for index in indexes:
        names = [c['name'] for c in index['columns']]
        if index['origin'] == 'pk':
            continue
        if index['expression']:
            raise MigrationError('index %s on %s uses an expression; generic mode recreates column indexes only' % (index['name'], name))
        if index['origin'] == 'u':
            uniques.append(tuple(names))
            unique_name = constraint_name(name, names, 'key')
            finish.append('ALTER TABLE %s ADD CONSTRAINT %s UNIQUE (%s)' % (
                target, quote_ident(unique_name), ', '.join(quote_ident(c) for c in names)))
            steps[finish[-1]] = 'UNIQUE constraint %s' % unique_name
            continue
        where = ''
        if index['partial']:
            match = re.search(r'\bWHERE\b(.*)$', index['sql'] or '', re.I | re.S)
            where = ' WHERE ' + match.group(1).strip() if match else ''
        elif index['unique']:
            uniques.append(tuple(names))
        on = 'ON %s (%s)%s' % (target, ', '.join(quote_ident(c['name']) + (' DESC' if c['desc'] else '') for c in index['columns']), where)
        kind = 'UNIQUE ' if index['unique'] else ''
        finish.append('CREATE %sINDEX %s %s' % (kind, quote_ident(index['name']), on))
        steps[finish[-1]] = '%sindex %s' % ('partial ' if index['partial'] else kind.lower(), index['name'])
        if index['partial']:
            partial.append(PartialIndex(index['name'], bool(index['unique']), finish[-1], 'CREATE %sINDEX %s' % (kind, on),
                                        index['sql'].strip()))
    specs_fks, links = [], []
    for fk in fks:
        parent_cols = fk['parent_columns']
        fk_name = constraint_name(name, fk['columns'], 'fkey')
        specs_fks.append(ForeignKey(tuple(fk['columns']), fk['parent'], tuple(parent_cols), fk['on_delete'].upper(), fk_name))
        links.append('ALTER TABLE %s ADD CONSTRAINT %s FOREIGN KEY (%s) REFERENCES %s (%s) ON DELETE %s ON UPDATE %s' % (
            target, quote_ident(fk_name), ', '.join(quote_ident(c) for c in fk['columns']), qualified(schema, fk['parent']),
            ', '.join(quote_ident(c) for c in parent_cols), fk['on_delete'].upper(), fk['on_update'].upper()))
        steps[links[-1]] = 'foreign key %s' % fk_name
    if pk and not identity:
        # Keys SQLite keeps apart can load as equal (1 and '1' in an untyped column): checked like UNIQUE.
        uniques.insert(0, tuple(pk))
    spec = TableSpec(name, name, cols, pk=pk, uniques=uniques, fks=specs_fks, identity=pk[0] if identity else None,
                     source_order=None if pk else '', row_id=None if pk else _row_id(columns, table_sql))
    return GenericTable(spec, pg_types, create, finish, links, warnings, steps, partial)
