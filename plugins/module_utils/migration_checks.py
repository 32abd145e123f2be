# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Row checks before writing: problem classes, policies (fail, skip_row, fix) and the reject file.

A :class:`TableSpec` describes one target table: its columns (each with a converter kind and
its constraints), primary key, UNIQUE column sets and foreign keys.  :class:`TableChecker`
streams the source rows of one table through the converters and the row checks, applies the
policy of each problem class, and yields the canonical line of every row to load.  Nothing
here touches PostgreSQL; memory grows only with the keys of parent tables and the values of
UNIQUE columns, never with the number of rows of a table such as tasks.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import decimal
import itertools
import json
import math

from ansible_collections.agent_ui.postgresql.plugins.module_utils import migration_batch

from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_canonical import (
    _COPY_SPECIAL, INT2_MAX, INT2_MIN, INT4_MAX, INT4_MIN, INT8_MAX, INT8_MIN, NULL, Fixed, Problem, TimestampConverter,
    _escape_special, copy_escape, copy_unescape, date_text, decode_text, excerpt, float8_text, jsonb_dumps, jsonb_text,
    numeric_text, parse_json, to_decimal, to_integer,
)

# Problem classes, in the order docs/migration.md lists them.
PROBLEM_CLASSES = ('json', 'boolean', 'enum', 'not_null', 'unique', 'orphan', 'timestamp', 'utf8', 'nul', 'type', 'length')
POLICIES = ('fail', 'skip_row', 'fix')
# Classes with a documented fix rule (docs/migration.md, "Policies").
FIXABLE = ('json', 'boolean', 'enum', 'not_null', 'orphan', 'utf8', 'nul')

_TRUE_WORDS = ('true', 't', 'yes', 'y', 'on')
_FALSE_WORDS = ('false', 'f', 'no', 'n', 'off')
_INT_RANGES = {'smallint': (INT2_MIN, INT2_MAX), 'integer': (INT4_MIN, INT4_MAX), 'bigint': (INT8_MIN, INT8_MAX)}
NUMERIC_MAX_INTEGER_DIGITS = 131072
NUMERIC_MAX_SCALE = 16383
# Rows converted column by column at a time (TableChecker.batches).
BATCH_ROWS = 1000


class MigrationError(Exception):
    """A run cannot go on; ``details`` is merged into the module result."""

    def __init__(self, msg, **details):
        super(MigrationError, self).__init__(msg)
        self.msg = msg
        self.details = details


Column = collections.namedtuple('Column', [
    'name',          # target column
    'source',        # SQL expression read from SQLite (normally the quoted source column)
    'kind',          # converter kind: integer, smallint, bigint, text, boolean, timestamptz, date, jsonb, numeric, float8, bytea
    'not_null',      # target column is NOT NULL
    'default',       # canonical text of the target default (used by fix rules), or None
    'null_default',  # canonical text a NULL source value loads as without a problem (booleans), or None
    'length',        # varchar(n) limit, or None
    'allowed',       # tuple of allowed values (enum domain), or None
    'bounds',        # (low, high) inclusive CHECK range for numbers, or None
    'scale',         # numeric scale, or None
    'shape',         # 'array' or 'object' for JSON columns, or None
    'fix_map',       # dict used by the enum fix rule (e.g. model_map), or None
    'required',      # text that is empty or only whitespace is missing: a not_null problem (Strapi's required)
    'fill_from',     # under fix, a NULL takes this column's value of the same row when it has one, else ``default``
])


def column(name, kind, source=None, not_null=False, default=None, null_default=None, length=None,
           allowed=None, bounds=None, scale=None, shape=None, fix_map=None, required=False, fill_from=None):
    """Build a :data:`Column` with keyword defaults."""
    return Column(name, source if source is not None else quote_ident(name), kind, not_null, default, null_default,
                  length, tuple(allowed) if allowed else None, bounds, scale, shape, fix_map, required, fill_from)


ForeignKey = collections.namedtuple('ForeignKey', ['columns', 'parent', 'parent_columns', 'on_delete', 'name'])


class TableSpec(object):
    """One table to move: where it comes from, its columns, keys and foreign keys."""

    def __init__(self, name, source, columns, pk=('id',), uniques=(), fks=(), identity=None, source_order=None, row_id=None):
        self.name = name
        self.source = source
        self.columns = list(columns)
        self.pk = tuple(pk)
        self.uniques = [tuple(cols) for cols in uniques]
        self.fks = list(fks)
        self.identity = identity
        self.source_order = source_order
        # A table without a primary key: the SQLite name of its rowid, read after the columns to name rows in problems.
        self.row_id = row_id

    @property
    def key_name(self):
        """What names a row in messages: the primary key's columns, else the rowid's name, else 'row'."""
        return '/'.join(self.pk) or self.row_id or 'row'

    @property
    def column_names(self):
        return [col.name for col in self.columns]

    def index_of(self, name):
        return self.column_names.index(name)

    def key_kinds(self):
        """Converter kinds of the primary key columns (decides how keys sort)."""
        return [self.columns[self.index_of(name)].kind for name in self.pk]

    def source_sql(self):
        """The SELECT that streams the source rows in primary key order."""
        order = self.source_order or ', '.join('%s COLLATE BINARY' % quote_ident(name) if kind not in _INT_RANGES else quote_ident(name)
                                               for name, kind in zip(self.pk, self.key_kinds()))
        select = ', '.join([col.source for col in self.columns] + ([self.row_id] if self.row_id else []))
        sql = 'SELECT %s FROM %s' % (select, quote_ident(self.source))
        return sql + (' ORDER BY ' + order if order else '')


def quote_ident(name):
    """Quote an SQL identifier (same rule for SQLite and PostgreSQL)."""
    return '"%s"' % name.replace('"', '""')


def qualified(schema, table):
    """schema.table, both quoted."""
    return '%s.%s' % (quote_ident(schema), quote_ident(table))


def key_function(kinds):
    """Function turning the canonical texts of key columns into a sortable Python key.

    Integer keys compare as numbers and text keys as code points, which is the order of both
    SQLite's BINARY collation and PostgreSQL's "C" collation, so both sides stream in one order.
    """
    if len(kinds) == 1 and kinds[0] in _INT_RANGES:
        return lambda fields: int(fields[0])
    converters = [int if kind in _INT_RANGES else copy_unescape for kind in kinds]
    return lambda fields: tuple(conv(field) for conv, field in zip(converters, fields))


def sortable_key(kinds):
    """True when streamed keys sort the same way on both sides (integer or text key columns)."""
    return bool(kinds) and all(kind in _INT_RANGES or kind == 'text' for kind in kinds)


# ---------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------

def resolve_policies(policies, defaults=None):
    """Full class -> policy mapping from the user's partial one; raise MigrationError if invalid.

    Classes the user does not name take ``defaults`` (a mode's own, e.g. the app mapping's), else fail.
    """
    resolved = dict((cls, 'fail') for cls in PROBLEM_CLASSES)
    resolved.update(defaults or {})
    for cls, policy in (policies or {}).items():
        if cls not in PROBLEM_CLASSES:
            raise MigrationError('policies: unknown problem class %r; known classes: %s' % (cls, ', '.join(PROBLEM_CLASSES)))
        if policy not in POLICIES:
            raise MigrationError('policies: %s must be one of %s, got %r' % (cls, ', '.join(POLICIES), policy))
        if policy == 'fix' and cls not in FIXABLE:
            raise MigrationError('policies: %s has no fix rule; use fail or skip_row (classes with a fix rule: %s)'
                                 % (cls, ', '.join(FIXABLE)))
        resolved[cls] = policy
    return resolved


# ---------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------

def _text_converter(col):
    length = col.length
    allowed = col.allowed
    required = col.required
    special = _COPY_SPECIAL.search

    def convert(value):
        if value.__class__ is bytes:
            try:
                text = value.decode('utf-8')
            except UnicodeDecodeError:
                text = decode_text(value)
        else:
            text = decode_text(value)
        if '\x00' in text:
            raise Problem('nul', 'text contains a NUL character', value)
        if required and (not text or text.isspace()):
            raise Problem('not_null', '%s is %s but the column is required' % (col.name, 'whitespace only' if text else 'empty'), value)
        if length is not None and len(text) > length:
            raise Problem('length', 'longer than %d characters (%d)' % (length, len(text)), value)
        if allowed is not None and text not in allowed:
            raise Problem('enum', '%s not in (%s)' % (col.name, ', '.join(allowed)), value)
        if special(text) is None:
            return text
        return _escape_special(text)
    return convert


def _integer_converter(col):
    low, high = _INT_RANGES[col.kind]
    bounds = col.bounds

    def convert(value):
        if value.__class__ is int and low <= value <= high:
            number = value
        else:
            number = to_integer(value, low, high)
        if bounds is not None and not bounds[0] <= number <= bounds[1]:
            raise Problem('enum', '%s outside %s..%s' % (col.name, bounds[0], bounds[1]), value)
        return str(number)
    return convert


def _boolean_converter(col):
    def convert(value):
        if value.__class__ in (int, float) and value in (0, 1):
            return 't' if value else 'f'
        raise Problem('boolean', 'boolean not in {0, 1, NULL}', value)
    return convert


def _numeric_converter(col):
    scale = col.scale
    bounds = col.bounds
    limit = decimal.Decimal(10) ** (col.length - (scale or 0)) if col.length else None

    def convert(value):
        number = to_decimal(value)
        if number is None:
            raise Problem('type', 'not a number', value)
        # PostgreSQL's numeric holds up to 131072 digits before the point and 16383 after it.
        if ((number.adjusted() >= NUMERIC_MAX_INTEGER_DIGITS and not number.is_zero())
                or (scale is None and -number.as_tuple().exponent > NUMERIC_MAX_SCALE)):
            raise Problem('type', 'value overflows numeric format', value)
        try:
            text = numeric_text(number, scale)
        except decimal.InvalidOperation:  # rounding to the scale needs more than 28 digits
            raise Problem('type', 'numeric field overflow (scale %d)' % scale, value)
        if limit is not None and abs(decimal.Decimal(text)) >= limit:
            raise Problem('type', 'numeric field overflow (precision %d, scale %d)' % (col.length, scale or 0), value)
        if bounds is not None and not bounds[0] <= decimal.Decimal(text) <= bounds[1]:
            raise Problem('enum', '%s outside %s..%s' % (col.name, bounds[0], bounds[1]), value)
        return text
    return convert


def _float_converter(col):
    def convert(value):
        if value.__class__ is float:
            return float8_text(value)
        if value.__class__ is int:
            return float8_text(float(value))
        number = to_decimal(value)
        if number is None:
            raise Problem('type', 'not a number', value)
        real = float(number)
        # PostgreSQL refuses text that overflows to infinity or underflows to zero (float8in).
        if math.isinf(real) or (real == 0 and not number.is_zero()):
            raise Problem('type', 'out of range for type double precision', value)
        return float8_text(real)
    return convert


def _timestamp_converter(col):
    return TimestampConverter()


def _date_converter(col):
    return date_text


def _jsonb_converter(col):
    shape = col.shape

    def convert(value):
        return copy_escape(jsonb_text(value, shape))
    return convert


def _bytea_converter(col):
    def convert(value):
        if isinstance(value, str):
            value = value.encode('utf-8')
        elif not isinstance(value, bytes):
            value = str(value).encode('ascii')
        return '\\\\x' + value.hex()
    return convert


_BASE = {
    'text': _text_converter, 'integer': _integer_converter, 'smallint': _integer_converter,
    'bigint': _integer_converter, 'boolean': _boolean_converter, 'numeric': _numeric_converter,
    'float8': _float_converter, 'timestamptz': _timestamp_converter, 'date': _date_converter,
    'jsonb': _jsonb_converter, 'bytea': _bytea_converter,
}


def _fixed_value(col, problem, value, base):
    """Canonical text after the documented fix rule for ``problem``, or None if no rule applies."""
    cls = problem.cls
    if cls == 'not_null':
        return col.default
    if cls == 'utf8' and isinstance(value, bytes):
        return base(value.decode('utf-8', 'replace'))
    if cls == 'nul':
        text = decode_text(value.replace(b'\x00', b'') if isinstance(value, bytes) else value.replace('\x00', ''))
        return base(text)
    if cls == 'json':
        text = decode_text(value)
        if not text.strip():
            return col.default if col.default is not None else (None if col.not_null else NULL)
        return None
    if cls == 'boolean':
        word = decode_text(value).strip().lower() if isinstance(value, (bytes, str)) else None
        if word in _TRUE_WORDS:
            return 't'
        if word in _FALSE_WORDS:
            return 'f'
        return None
    if cls == 'enum':
        if col.allowed is not None:
            text = decode_text(value)
            mapped = (col.fix_map or {}).get(text)
            if mapped is None:
                mapped = text.strip().lower()
            return copy_escape(mapped) if mapped in col.allowed else None
        if col.bounds is not None:
            number = to_decimal(value)
            low, high = col.bounds
            return base(low if number < low else high) if number is not None else None
    return None


def make_converter(col, policies):
    """Converters for one column: ``(base, none_text, full)``.

    ``full(value)`` returns the canonical text, raising Problem, or Fixed under a fix policy.
    ``base`` and ``none_text`` are the fast path used for clean rows: ``base`` converts a
    non-NULL value (raising Problem on any rule), ``none_text`` is the text a NULL loads as,
    or None when a NULL is itself a problem; the caller then falls back to ``full``.
    """
    base = _BASE[col.kind](col)
    not_null = col.not_null
    null_default = col.null_default

    def apply_fix(problem, value):
        problem.column = col.name
        if policies[problem.cls] != 'fix':
            raise problem
        try:
            text = _fixed_value(col, problem, value, base)
        except Problem as second:
            second.column = col.name
            raise second
        if text is None:
            problem.rule += ' (no fix rule applies)'
            raise problem
        if problem.cls == 'not_null':
            shown = {'t': 'true', 'f': 'false'}.get(text) if col.kind == 'boolean' else repr(copy_unescape(text))
            problem.rule += '; filled with %s' % (shown if col.fill_from is None else
                                                  '%s, or %s when that is NULL too' % (col.fill_from, copy_unescape(text)))
        raise Fixed(problem, text)

    def full(value):
        if value is None:
            if null_default is not None:
                return null_default
            if not_null:
                apply_fix(Problem('not_null', '%s is NULL but the target column is NOT NULL' % col.name, None), None)
            return NULL
        try:
            return base(value)
        except Problem as problem:
            apply_fix(problem, value)

    if null_default is not None:
        none_text = null_default
    else:
        none_text = None if not_null else NULL
    return base, none_text, full


def batch_converter(col, base, none_text):
    """The column's converter for a batch of values (:mod:`migration_batch`): same texts as ``base``."""
    if col.kind in _INT_RANGES and col.bounds is None:
        low, high = _INT_RANGES[col.kind]
        return migration_batch.integers(base, none_text, low, high)
    if col.kind == 'text':
        return migration_batch.texts(base, none_text, col.length, col.allowed, col.required)
    if col.kind == 'timestamptz':
        return migration_batch.timestamps(base, none_text)
    return migration_batch.each(base, none_text)


# ---------------------------------------------------------------------------
# Problem and reject sinks
# ---------------------------------------------------------------------------

class ProblemLog(object):
    """Keeps the first ``limit`` problems and counts all of them per class and per action.

    Problems under the fail policy are also counted per class, each class with its first one
    (kept whatever ``limit`` is), for the headline of a failed run (:meth:`headline`).
    """

    def __init__(self, limit=1000):
        self.limit = limit
        self.items = []
        self.total = 0
        self.by_class = collections.Counter()
        self.by_action = collections.Counter()
        self.fatal_by_class = collections.Counter()
        self.first_fatal = {}

    def add(self, table, pk, problem, action):
        self.total += 1
        self.by_class[problem.cls] += 1
        self.by_action[action] += 1
        item = None
        if len(self.items) < self.limit:
            item = self._item(table, pk, problem, action)
            self.items.append(item)
        if action == 'fail':
            self.fatal_by_class[problem.cls] += 1
            if problem.cls not in self.first_fatal:
                self.first_fatal[problem.cls] = item or self._item(table, pk, problem, action)

    @staticmethod
    def _item(table, pk, problem, action):
        return {'table': table, 'pk': pk, 'column': problem.column, 'value_excerpt': excerpt(problem.value),
                'rule': problem.rule, 'class': problem.cls, 'action': action}

    def headline(self, keys=None):
        """The problems under the fail policy by class, most frequent first, each with its first example.

        ``keys`` maps a table to the name of its key shown in the examples (default ``pk``).
        """
        parts = []
        for cls, count in sorted(self.fatal_by_class.items(), key=lambda pair: (-pair[1], PROBLEM_CLASSES.index(pair[0]))):
            item = self.first_fatal[cls]
            example = '%s (%s=%s) %s: %s [%s]' % (item['table'], (keys or {}).get(item['table'], 'pk'), item['pk'],
                                                  item['column'], item['rule'], item['class'])
            parts.append('%s %d (first: %s)' % (cls, count, example))
        return '; '.join(parts)

    @property
    def fatal(self):
        return self.by_action.get('fail', 0)

    def summary(self):
        return {'total': self.total, 'by_class': dict(self.by_class), 'by_action': dict(self.by_action),
                'truncated': self.total > len(self.items)}


class RejectLog(object):
    """Writes each skipped (or FK-nulled) row as one JSON line to a file object, if any."""

    def __init__(self, stream=None):
        self.stream = stream
        self.rows = 0

    def add(self, table, pk, action, reasons, source_columns, row):
        self.rows += 1
        if self.stream is None:
            return
        record = {
            'table': table, 'pk': pk, 'action': action, 'reasons': reasons,
            'row': dict((name, _json_safe(value)) for name, value in zip(source_columns, row)),
        }
        self.stream.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + '\n')


def _json_safe(value):
    if isinstance(value, bytes):
        return value.decode('utf-8', 'backslashreplace')
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return repr(value)
    return value


# ---------------------------------------------------------------------------
# Per-table checks
# ---------------------------------------------------------------------------

def _numeric_key(text):
    """numeric compares by value: 1.5, 1.50 and 15E-1 are one key."""
    return str(decimal.Decimal(text).normalize())


def _float_key(text):
    """double precision compares 0 and -0 equal."""
    return '0' if text == '-0' else text


def _number_by_value(number):
    text = str(decimal.Decimal(number).normalize())
    return '0' if text == '-0' else text


def _jsonb_key(text):
    """jsonb compares numbers by value at any depth: {"a": 1.0} and {"a": 1} are one key."""
    return jsonb_dumps(parse_json(copy_unescape(text)), number=_number_by_value)


# What PostgreSQL's UNIQUE compares, from a column's canonical text, where that is not the text itself.
_UNIQUE_KEYS = {'numeric': _numeric_key, 'float8': _float_key, 'jsonb': _jsonb_key}


def unique_key_function(spec, cols, policies):
    """The key a UNIQUE constraint on ``cols`` compares, as a function of their raw source values.

    Each value goes through its column's converter (a fix included) and then the comparison
    PostgreSQL makes, so values SQLite keeps apart but that load as equal (1 and '1' in an
    untyped column, 1.251 and 1.25 in numeric(8,2), one instant written two ways in a
    timestamp column) get the same key.  None when a value is NULL or has a problem: such a
    row has no key to collide with.
    """
    parts = []
    for name in cols:
        col = spec.columns[spec.index_of(name)]
        parts.append((make_converter(col, policies)[2], _UNIQUE_KEYS.get(col.kind)))

    def key(*values):
        texts = []
        for (convert, normal), value in zip(parts, values):
            try:
                text = convert(value)
            except Fixed as fixed:
                text = fixed.text
            except Problem:
                return None
            if text == NULL:
                return None
            texts.append(normal(text) if normal is not None else text)
        return '\x00'.join(texts)  # no canonical text holds a NUL
    return key


# Storage classes on which a kind's conversion is one to one (no fix involved), so equal keys mean equal raw values.
_ONE_TO_ONE = {'text': frozenset(('text', 'null')), 'smallint': frozenset(('integer', 'null')),
               'integer': frozenset(('integer', 'null')), 'bigint': frozenset(('integer', 'null'))}


def raw_values_decide(col, policies, storage):
    """Whether raw equality is exactly key equality for ``col``, whose values SQLite stores as ``storage``.

    True for text stored as text and integers stored as integers, when no fix can rewrite a value and a
    NULL does not load as a default: the conversion is then one to one, so SQLite may group the raw values
    itself, and :func:`unique_key_function` (a Python call per row) is not needed.
    """
    allowed = _ONE_TO_ONE.get(col.kind)
    if allowed is None or not set(storage) <= allowed or col.null_default is not None:
        return False
    if col.kind == 'text':
        fixes = ['utf8', 'nul'] + (['enum'] if col.allowed else [])
        return not any(policies[cls] == 'fix' for cls in fixes)
    return True


class KeyRegistry(object):
    """Keys of parent rows kept, skipped and failed, per (table, referenced columns).

    Only columns that some foreign key references are registered, so a large child table
    such as tasks costs no memory here.
    """

    def __init__(self, base=None, tables=()):
        self._sets = {}
        self._base = base
        self._tables = frozenset(tables)

    def sets(self, table, columns):
        """(kept, dropped, failed) key sets for ``table``'s ``columns``."""
        if self._base is not None and table not in self._tables:
            return self._base.sets(table, columns)
        key = (table, tuple(columns))
        if key not in self._sets:
            self._sets[key] = (set(), set(), set())
        return self._sets[key]

    def overlay(self, tables):
        """A scratch registry of its own for ``tables`` that reads every other table's keys from this one."""
        return KeyRegistry(self, tables)

    def predict_drops(self, edges):
        """Move to dropped (or failed) the keys of kept rows that relied on a parent row not kept after all.

        ``edges`` are :class:`TableChecker`'s ``forward_edges``: (parent, parent key, the row's own
        [((table, columns), key)]).  A skipped parent makes such a row skipped, a failed one makes it
        fail, and so on down the chain, all in memory; the next pass over the source confirms it.
        """
        children = collections.defaultdict(list)
        for parent, key, own in edges:
            children[(parent, key)].append(own)
        work = [node for node in children if node[1] not in self.sets(*node[0])[0]]
        while work:
            parent, key = work.pop()
            _kept, dropped, failed = self.sets(*parent)
            fate = 1 if key in dropped else 2 if key in failed else None
            for own in children.pop((parent, key), ()) if fate else ():
                for which, child_key in own:
                    sets = self.sets(*which)
                    if child_key in sets[0]:
                        sets[0].discard(child_key)
                        sets[fate].add(child_key)
                        if (which, child_key) in children:
                            work.append((which, child_key))


class TableChecker(object):
    """Checks and converts the rows of one table; iterate :meth:`lines` to get what to load.

    ``referenced`` lists the column tuples of this table that foreign keys point at (their
    values are registered for the FK checks of child tables); ``provisional`` maps a
    (parent, columns) not loaded yet to the (kept, dropped, failed) keys its load will have,
    read ahead from the source (self references and cycles); ``unique_candidates`` holds, per
    entry of ``spec.uniques``, the raw source values that occur more than once (computed by
    SQLite with GROUP BY ... HAVING count(*) > 1), so only those rows are tracked in memory.
    ``forward_edges``, a list or None, collects for each kept row that relies on a parent row
    not loaded yet (and would be dropped without it) that parent's key and the row's own
    registered keys, for :meth:`KeyRegistry.predict_drops`.
    """

    def __init__(self, spec, policies, problems, rejects, registry, referenced=(), unique_candidates=None, provisional=None,
                 forward_edges=None):
        self.spec = spec
        self.policies = policies
        self.problems = problems
        self.rejects = rejects
        self.registry = registry
        converters = [make_converter(col, policies) for col in spec.columns]
        self.converters = [conv[2] for conv in converters]
        self.batch_converters = [batch_converter(col, base, none_text) for col, (base, none_text, _full)
                                 in zip(spec.columns, converters)]
        self.pk_index = [spec.index_of(name) for name in spec.pk]
        self.fill_index = dict((i, spec.index_of(col.fill_from)) for i, col in enumerate(spec.columns) if col.fill_from)
        self.source_columns = [col.name for col in spec.columns]
        self.registrations = []  # (column indexes, the registry's key sets, (table, columns))
        for cols in referenced:
            idx = tuple(spec.index_of(name) for name in cols)
            self.registrations.append((idx, registry.sets(spec.name, cols), (spec.name, tuple(cols))))
        self.forward_edges = forward_edges
        self.fk_checks = []
        for fk in spec.fks:
            nullable = all(not spec.columns[spec.index_of(name)].not_null for name in fk.columns)
            early = (provisional or {}).get((fk.parent, tuple(fk.parent_columns)))
            self.fk_checks.append((fk, tuple(spec.index_of(name) for name in fk.columns), nullable,
                                   registry.sets(fk.parent, fk.parent_columns), early))
        candidates = unique_candidates or [set() for _cols in spec.uniques]
        self.unique_checks = [({}, tuple(spec.index_of(name) for name in cols), cands,
                               tuple(_UNIQUE_KEYS.get(spec.columns[spec.index_of(name)].kind) for name in cols))
                              for cols, cands in zip(spec.uniques, candidates) if cands]
        self.source_rows = 0
        self.kept_rows = 0
        self.skipped_rows = 0
        self.fixed_rows = 0
        self.failed_rows = 0

    def _pk(self, values, row=None):
        if not self.pk_index and self.spec.row_id and row is not None:
            return str(row[len(self.spec.columns)])
        if len(self.pk_index) == 1:
            return copy_unescape(values[self.pk_index[0]])
        return ','.join(copy_unescape(values[i]) or '' for i in self.pk_index)

    def _slow_convert(self, row):
        """Convert column by column, collecting every problem (the path taken for bad rows)."""
        values, found, filled = [], [], []
        for i, (conv, value, col) in enumerate(zip(self.converters, row, self.spec.columns)):
            try:
                values.append(conv(value))
            except Fixed as fixed:
                values.append(fixed.text)
                found.append((fixed.problem, 'fix'))
                if col.fill_from is not None and value is None:
                    filled.append(i)
            except Problem as problem:
                problem.column = problem.column or col.name
                values.append(NULL)
                policy = self.policies[problem.cls]
                # A problem that escapes its converter under ``fix`` had no applicable rule.
                found.append((problem, 'fail' if policy == 'fix' else policy))
        for i in filled:  # a NULL filled from another column of the row, where that one holds a clean value
            j = self.fill_index[i]
            if row[j] is not None and not any(problem.column == self.spec.columns[j].name for problem, _a in found):
                values[i] = values[j]
        return values, found

    def _check_fks(self, values, found, relied=None):
        """Orphan checks, and cascades from parent rows that were skipped or failed.

        Keys of parent rows not loaded yet that the row relies on are appended to ``relied``.
        """
        for fk, idx, nullable, (parent_kept, parent_dropped, parent_failed), early in self.fk_checks:
            key = _key(values, idx)
            if key is None or key in parent_kept:
                continue
            if early is not None and key not in parent_dropped and key not in parent_failed:
                # A parent row not loaded yet (a cycle, or a later row of this table): what its load will do.
                if key in early[0]:
                    if relied is not None and not (fk.on_delete == 'SET NULL' and nullable):
                        relied.append(((fk.parent, tuple(fk.parent_columns)), key))
                    continue
                parent_dropped, parent_failed = early[1], early[2]
            shown = key if len(idx) == 1 else ','.join(key)
            where = '%s(%s)=%s' % (fk.parent, ','.join(fk.parent_columns), shown)
            columns = ','.join(fk.columns)
            if key in parent_failed:
                found.append((Problem('orphan', 'parent %s failed its checks' % where, shown, columns), 'cascade'))
            elif key in parent_dropped:
                action = 'skip_row'
                if fk.on_delete == 'SET NULL' and nullable:
                    for i in idx:
                        values[i] = NULL
                    action = 'set_null'
                found.append((Problem('orphan', 'parent %s was skipped (ON DELETE %s)' % (where, fk.on_delete), shown, columns),
                              action))
            else:
                problem = Problem('orphan', 'no %s row with %s = %s' % (fk.parent, ','.join(fk.parent_columns), shown),
                                  shown, columns)
                policy = self.policies['orphan']
                if policy == 'fix':
                    if nullable:
                        for i in idx:
                            values[i] = NULL
                    else:
                        problem.rule += ' (no fix rule: the column is NOT NULL)'
                        policy = 'fail'
                found.append((problem, policy))

    def _check_uniques(self, row, values, found):
        """Duplicate checks for the rows whose keys :func:`unique_key_function` found more than once."""
        for seen, idx, candidates, normals in self.unique_checks:
            if tuple(row[i] for i in idx) not in candidates:
                continue
            key = _unique_key(values, idx, normals)
            if key is None:
                continue
            first = seen.get(key)
            if first is None:
                continue
            names = ','.join(self.spec.columns[i].name for i in idx)
            shown = ','.join(copy_unescape(values[i]) for i in idx)
            found.append((Problem('unique', 'duplicate %s, first used by %s %s' % (names, self.spec.key_name, first),
                                  shown, names), self.policies['unique']))

    def _remember_uniques(self, row, values):
        for seen, idx, candidates, normals in self.unique_checks:
            if tuple(row[i] for i in idx) in candidates:
                key = _unique_key(values, idx, normals)
                if key is not None:
                    seen.setdefault(key, self._pk(values, row))

    def _register(self, which, values):
        for idx, sets, _which in self.registrations:
            key = _key(values, idx)
            if key is not None:
                sets[which].add(key)

    def lines(self, rows):
        """Yield the canonical line of every row to load, in source order."""
        for batch in self.batches(rows):
            yield from batch

    def batches(self, rows, size=None):
        """Yield lists of the canonical lines to load, in source order, a batch of rows at a time.

        Each column of a batch goes through its batch converter (:mod:`migration_batch`); rows
        that come out whole, with every single-column parent key already kept, are loaded as
        they are.  Every other row takes the per-row checks (:meth:`_check_row`), in source
        order, so problems, policies and key registrations are the same as row by row.
        """
        size = size or BATCH_ROWS
        rows = iter(rows)
        converters = self.batch_converters
        # Foreign keys on one column are checked per batch; tables with anything else (several-column
        # foreign keys, references to rows not loaded yet, candidate duplicates) take the per-row checks.
        inline_fks = [(idx[0], sets[0]) for _fk, idx, _nullable, sets, early in self.fk_checks if len(idx) == 1 and early is None]
        per_row = len(inline_fks) != len(self.fk_checks) or bool(self.unique_checks)
        registrations = [(idx, sets[0]) for idx, sets, _which in self.registrations]
        join = '\t'.join
        while True:
            batch = list(itertools.islice(rows, size))
            if not batch:
                return
            count = len(batch)
            self.source_rows += count
            if per_row:
                out = [line for line in (self._check_row(row) for row in batch) if line is not None]
                self.kept_rows += len(out)
                yield out
                continue
            columns = [convert(values) for convert, values in zip(converters, zip(*batch))]
            flagged = set()
            for values in columns:
                if None in values:
                    flagged.update(i for i, text in enumerate(values) if text is None)
            for i, kept in inline_fks:
                values = columns[i]
                orphans = set(values)
                orphans.difference_update(kept)
                orphans.discard(NULL)
                orphans.discard(None)
                if orphans:
                    flagged.update(j for j, text in enumerate(values) if text in orphans)
            if not flagged:
                for idx, kept in registrations:
                    _register_all(kept, columns, idx)
                out = list(map(join, zip(*columns)))
            else:
                out = []
                for j, texts in enumerate(zip(*columns)):
                    if j in flagged:
                        line = self._check_row(batch[j])
                        if line is None:
                            continue
                    else:
                        line = join(texts)
                        self._register(0, texts)
                    out.append(line)
            self.kept_rows += len(out)
            yield out

    def _check_row(self, row):
        """Per-row checks of one row: its line to load, or None if it is skipped or failed."""
        values, found = self._slow_convert(row)
        relied = None if self.forward_edges is None else []
        self._check_fks(values, found, relied)
        if not _drops(found):
            self._check_uniques(row, values, found)
        if _drops(found):
            self._drop(row, values, found)
            return None
        if found:
            self._note(row, values, found)
            self.fixed_rows += 1
        self._remember_uniques(row, values)
        self._register(0, values)
        if relied:  # only a row that other rows can reference passes a skip on
            own = [(which, key) for which, key in ((which, _key(values, idx)) for idx, _sets, which in self.registrations) if key is not None]
            if own:
                self.forward_edges.extend((parent, key, own) for parent, key in relied)
        return '\t'.join(values)

    def _note(self, row, values, found):
        pk = self._pk(values, row)
        for problem, action in found:
            if action != 'cascade':
                self.problems.add(self.spec.name, pk, problem, action)
        if any(action == 'set_null' for _p, action in found):
            self.rejects.add(self.spec.name, pk, 'set_null', [_reason(p, a) for p, a in found], self.source_columns, row)
        return pk

    def _drop(self, row, values, found):
        pk = self._note(row, values, found)
        actions = set(action for _p, action in found)
        if actions & set(('fail', 'cascade')):
            self.failed_rows += 1
            self._register(2, values)
        else:
            self.skipped_rows += 1
            self._register(1, values)
            self.rejects.add(self.spec.name, pk, 'skip_row', [_reason(p, a) for p, a in found], self.source_columns, row)

    def counts(self):
        return {'source_rows': self.source_rows, 'kept_rows': self.kept_rows, 'skipped_rows': self.skipped_rows,
                'fixed_rows': self.fixed_rows, 'failed_rows': self.failed_rows}


def _register_all(kept, columns, idx):
    """Add the keys at ``idx`` of every row of a batch's ``columns`` to ``kept`` (NULL keys are not keys)."""
    if len(idx) == 1:
        kept.update(columns[idx[0]])
        kept.discard(NULL)
        return
    kept.update(key for key in zip(*(columns[i] for i in idx)) if NULL not in key)


def _unique_key(values, idx, normals):
    """The key a UNIQUE constraint compares for ``values`` at ``idx``; None if any is NULL."""
    key = _key(values, idx)
    if key is None or not any(normals):
        return key
    parts = [key] if len(idx) == 1 else list(key)
    parts = [normal(part) if normal is not None else part for normal, part in zip(normals, parts)]
    return parts[0] if len(idx) == 1 else tuple(parts)


def _key(values, idx):
    """Canonical key of ``values`` at ``idx`` (a str, or a tuple for several columns); None if NULL."""
    if len(idx) == 1:
        key = values[idx[0]]
        return None if key == NULL else key
    key = tuple(values[i] for i in idx)
    return None if NULL in key else key


def _drops(found):
    return any(action in ('fail', 'cascade', 'skip_row') for _p, action in found)


def _reason(problem, action):
    return {'class': problem.cls, 'column': problem.column, 'rule': problem.rule,
            'value_excerpt': excerpt(problem.value), 'action': action}
