# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The batch fast path (migration_batch.py, TableChecker.batches) against the per-value and per-row checks.

A batch converter must give, for every value, exactly what the column's per-value converter
gives, or None where that converter raises a Problem; and a table checked a batch at a time
must load the same lines and report the same problems, rejects and counts as the same rows
checked one by one.  Both are shown on random values, including every kind of bad one.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import datetime
import io
import json
import math
import re

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_canonical import NULL, Fixed, Problem, TimestampConverter
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_checks import (
    FIXABLE, POLICIES, PROBLEM_CLASSES, ForeignKey, KeyRegistry, ProblemLog, RejectLog, TableChecker, TableSpec, batch_converter,
    column, make_converter, resolve_policies,
)

SPECIAL_BYTES = [b'', b'plain', b'pending', b'running', b'completed', b'a\\b', b'tab\there', b'line\nbreak', b'cr\r',
                 b'\x08\x0c\x0b', b'nul\x00byte', b'\xff\xfe', b'\xc3', b'\xa9', b'caf\xc3\xa9', b'\xe6\x95\xb0',
                 b'\xf0\x9f\x98\x80', b'12345', b'123456', b'2024-01-02 03:04:05']
INTEGERS = st.one_of(st.integers(-5, 5), st.integers(-2 ** 64, 2 ** 64),
                     st.sampled_from([2 ** 15 - 1, 2 ** 15, -2 ** 15, -2 ** 15 - 1, 2 ** 31 - 1, 2 ** 31, -2 ** 31,
                                      -2 ** 31 - 1, 2 ** 63 - 1, 2 ** 63, -2 ** 63, -2 ** 63 - 1]))
BYTES = st.one_of(st.sampled_from(SPECIAL_BYTES), st.binary(max_size=8),
                  st.text(max_size=8).map(lambda text: text.encode('utf-8', 'surrogatepass')))
ANY_VALUE = st.one_of(st.none(), INTEGERS, BYTES, st.floats(), st.text(max_size=6))

COLUMNS = [
    column('i4', 'integer'), column('i4_nn', 'integer', not_null=True), column('i2', 'smallint'), column('i8', 'bigint'),
    column('t', 'text'), column('t_nn', 'text', not_null=True), column('t_len', 'text', length=5),
    column('t_enum', 'text', not_null=True, default='pending', allowed=('pending', 'running', 'completed')),
    column('f8', 'float8'), column('b', 'boolean', not_null=True, default='t', null_default='t'),
    column('ts', 'timestamptz', not_null=True), column('j', 'jsonb', shape='array', default='[]'),
    column('n', 'numeric', not_null=True, default='0.00', scale=2, bounds=(0, 100)),
    column('t_req', 'text', not_null=True, required=True),
]


def per_value(col, values):
    """What the per-value converter gives: its text, none_text for NULL, None where it raises."""
    base, none_text, _full = make_converter(col, resolve_policies({}))
    out = []
    for value in values:
        if value is None:
            out.append(none_text)
            continue
        try:
            out.append(base(value))
        except Problem:
            out.append(None)
    return out


def batch(col, values):
    base, none_text, _full = make_converter(col, resolve_policies({}))
    return batch_converter(col, base, none_text)(values)


@pytest.mark.parametrize('col', COLUMNS, ids=[col.name for col in COLUMNS])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_batch_converter_equals_per_value_converter(col, data):
    kind = data.draw(st.sampled_from(['mixed', 'ints', 'bytes']))
    values = data.draw(st.lists({'mixed': ANY_VALUE, 'ints': st.one_of(st.none(), INTEGERS),
                                 'bytes': st.one_of(st.none(), BYTES)}[kind], max_size=12))
    assert batch(col, values) == per_value(col, values)


@pytest.mark.parametrize('col, values, expected', [
    (COLUMNS[0], [1, None, -7], ['1', NULL, '-7']),
    (COLUMNS[1], [1, None, 2], ['1', None, '2']),
    (COLUMNS[2], [2 ** 15, 1], [None, '1']),
    (COLUMNS[4], [b'a\tb', None, b'c\\d'], ['a\\tb', NULL, 'c\\\\d']),
    (COLUMNS[4], [b'ok', b'n\x00ul', b'\xff'], ['ok', None, None]),
    (COLUMNS[6], [b'12345', b'123456'], ['12345', None]),
    (COLUMNS[7], [b'running', b'sleeping', None], ['running', None, None]),
    (COLUMNS[13], [b'0', b'', b' \t', b'\xe3\x80\x80', b' x '], ['0', None, None, None, ' x ']),
    (COLUMNS[0], [], []),
    (COLUMNS[4], [None, None], [NULL, NULL]),
])
def test_batch_converter_examples(col, values, expected):
    assert batch(col, values) == expected


def test_text_batch_decodes_once_and_keeps_large_values():
    big = ('\u00e9' * 60000 + '\t').encode('utf-8')
    assert batch(COLUMNS[4], [big, b'x']) == ['\u00e9' * 60000 + '\\t', 'x']


# ---------------------------------------------------------------------------
# Independent oracles for the columns whose batch converter is the per-value converter itself
# ---------------------------------------------------------------------------
# f8, b, j and n batch through migration_batch.each(base), so comparing them with ``base`` above
# compares the code with itself.  Here the expected text comes from elsewhere: from PostgreSQL
# (what it prints for the value, under the module's session settings) for f8, j and n, and from the
# documented rule for the booleans (0, 1 and NULL only, as SQLite stores them).

# "A number" as docs/migration.md defines the input: an int, a real, or decimal text (surrounding whitespace
# ignored); no 'NaN', 'Infinity', hex or underscores in text.
NUMBER_TEXT = re.compile(r'[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z')


def _text_of(value):
    """The text of a str or bytes value, or None if it is not valid UTF-8 or holds a NUL."""
    if isinstance(value, bytes):
        try:
            value = value.decode('utf-8')
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or '\x00' in value:
        return None
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:  # a lone surrogate
        return None
    return value


def _pg(cur, sql, value):
    try:
        cur.execute(sql, (value,))
    except psycopg2.Error:
        return None
    return cur.fetchone()[0]


def _number_input(value):
    """What a numeric column's converter may read: a number, or number text (stripped); None for anything else."""
    if isinstance(value, (str, bytes)):
        text = _text_of(value)
        return text.strip() if text is not None and NUMBER_TEXT.match(text.strip()) else None
    return value if type(value) in (int, float) else None


def oracle_f8(cur, value):
    if value is None:
        return NULL
    value = _number_input(value)
    if value is None:
        return None
    return _pg(cur, 'SELECT (%s)::float8::text', value)


def oracle_n(cur, value):
    """numeric with scale 2 and the CHECK 0..100, NULL a problem (NOT NULL without null_default)."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None  # a real that is not a number is not a numeric
    value = _number_input(value)
    if value is None:
        return None
    return _pg(cur, 'SELECT CASE WHEN v BETWEEN 0 AND 100 THEN v::text END FROM (SELECT (%s)::numeric(1000, 2) AS v) s', value)


def oracle_j(cur, value):
    """jsonb that must be an array; the COPY text escapes its printed form (jsonb prints no raw control character)."""
    if value is None:
        return NULL
    text = _text_of(value)
    if text is None:
        return None
    printed = _pg(cur, "SELECT CASE WHEN jsonb_typeof(j) = 'array' THEN j::text END FROM (SELECT %s::jsonb AS j) s", text)
    return None if printed is None else printed.replace('\\', '\\\\')


def oracle_b(cur, value):
    if value is None:
        return 't'  # the column's null_default
    if type(value) in (int, float) and value == 1:
        return 't'
    if type(value) in (int, float) and value == 0:
        return 'f'
    return None


NUMBERS = st.one_of(INTEGERS, st.floats(), st.decimals(allow_nan=False, allow_infinity=False).map(str),
                    st.floats(-1000, 1000).map(lambda x: ' %r ' % x), st.sampled_from(
                        ['12.345', '99.995', '100.004', '-0.004', '1e2', '1E-400', '1e999', '.5', '5.', 'NaN', 'Infinity',
                         'inf', '1_000', '0x10', '', ' ', '+7', '--1', '1e', '１２']),
                    st.integers(-10 ** 6, 10 ** 6).map(lambda n: ('%d.%03d' % (n // 1000, n % 1000)).encode('ascii')))
JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                           max_leaves=8)
JSONS = st.one_of(JSON_VALUES.map(json.dumps), st.lists(JSON_VALUES, max_size=4).map(json.dumps).map(lambda t: t.encode('utf-8')),
                  st.sampled_from(['[1.50, 1e2, -0, 1E400]', '[{"b": 1, "a": 2, "a": 3}]', '["\\u0000"]', '["\\ud800"]',
                                   '[NaN]', '[1,]', "['x']", '["tab\\there", "back\\\\slash"]', ' [] ', '{}', '']),
                  ANY_VALUE)
ORACLES = {'f8': (oracle_f8, NUMBERS), 'n': (oracle_n, NUMBERS), 'j': (oracle_j, JSONS), 'b': (oracle_b, ANY_VALUE)}


@pytest.fixture(scope='module')
def pg_cursor(postgresql_server):
    conn = postgresql_server.connect()
    cur = conn.cursor()
    cur.execute("SET extra_float_digits = 1; SET client_encoding = 'UTF8'")  # the module's session settings
    yield cur
    conn.close()


@pytest.mark.parametrize('name', sorted(ORACLES))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_batch_converter_equals_an_independent_oracle(pg_cursor, name, data):
    col = [col for col in COLUMNS if col.name == name][0]
    oracle, values = ORACLES[name]
    values = data.draw(st.lists(values, max_size=8))
    assert batch(col, values) == [oracle(pg_cursor, value) for value in values]


# ---------------------------------------------------------------------------
# A table a batch at a time = the same rows one by one
# ---------------------------------------------------------------------------

PARENT = TableSpec('parents', 'parents', [
    column('id', 'integer', not_null=True), column('name', 'text', not_null=True, length=4),
    column('size', 'bigint'),
], uniques=[('name',)])
CHILD = TableSpec('children', 'children', [
    column('id', 'integer', not_null=True), column('parent_id', 'integer'),
    column('status', 'text', not_null=True, default='pending', allowed=('pending', 'running')),
    column('note', 'text'), column('seen', 'timestamptz', not_null=True),
], fks=[ForeignKey(('parent_id',), 'parents', ('id',), 'SET NULL', 'children_parent_id_fkey')])

IDS = st.one_of(st.integers(1, 12), st.none(), st.sampled_from([b'7', b'x', 2 ** 40]))
PARENT_ROWS = st.lists(st.tuples(IDS, st.one_of(st.sampled_from([b'ab', b'cd', b'ab', b'toolong', None, b'\xff']), BYTES),
                                 IDS), max_size=14)
CHILD_ROWS = st.lists(st.tuples(IDS, IDS, st.sampled_from([b'pending', b'running', b'done', None, b'PENDING']),
                                st.one_of(st.none(), BYTES),
                                st.sampled_from([b'2024-01-02 03:04:05', 1704164645, b'2024-02-30 00:00:00', None,
                                                 b'yesterday', 1704164645.5])), max_size=30)


def _candidates(rows, idx):
    counts = collections.Counter(tuple(row[i] for i in idx) for row in rows)
    return set(key for key, count in counts.items() if count > 1 and None not in key)


def run_tables(parents, children, policies, size):
    """Check both tables (parents first) a batch of ``size`` at a time, or row by row when size is None."""
    problems, rejects, registry = ProblemLog(100), RejectLog(io.StringIO()), KeyRegistry()
    out = {}
    for spec, rows, referenced in ((PARENT, parents, [('id',)]), (CHILD, children, [])):
        checker = TableChecker(spec, policies, problems, rejects, registry, referenced=referenced,
                               unique_candidates=[_candidates(rows, [spec.index_of(n) for n in cols]) for cols in spec.uniques])
        if size is None:
            lines = [line for line in (checker._check_row(row) for row in rows) if line is not None]
            counts = (checker.skipped_rows, checker.fixed_rows, checker.failed_rows)
        else:
            batches = list(checker.batches(rows, size))
            assert all(len(lines) <= size for lines in batches)
            lines = [line for lines in batches for line in lines]
            counts = (checker.skipped_rows, checker.fixed_rows, checker.failed_rows)
            assert checker.source_rows == len(rows)
            assert checker.kept_rows == len(lines)
        out[spec.name] = (lines, counts)
    return out, problems.items, problems.summary(), rejects.stream.getvalue()


@settings(max_examples=300, deadline=None)
@given(parents=PARENT_ROWS, children=CHILD_ROWS, size=st.integers(1, 8),
       chosen=st.lists(st.sampled_from(POLICIES), min_size=len(PROBLEM_CLASSES), max_size=len(PROBLEM_CLASSES)))
def test_batches_equal_row_by_row(parents, children, size, chosen):
    policies = resolve_policies(dict((cls, 'skip_row' if policy == 'fix' and cls not in FIXABLE else policy)
                                     for cls, policy in zip(PROBLEM_CLASSES, chosen)))
    assert run_tables(parents, children, policies, size) == run_tables(parents, children, policies, None)


def test_batches_load_clean_rows_without_the_per_row_checks(monkeypatch):
    """A clean batch never reaches the per-row checks; a bad row does, and only that row."""
    checked = []
    original = TableChecker._check_row

    def spy(self, row):
        checked.append(row[0])
        return original(self, row)
    monkeypatch.setattr(TableChecker, '_check_row', spy)
    registry = KeyRegistry()
    registry.sets('parents', ('id',))[0].update(['1', '2'])
    checker = TableChecker(CHILD, resolve_policies({'enum': 'skip_row'}), ProblemLog(), RejectLog(None), registry)
    rows = [(i, 1 + i % 2, b'pending', None, b'2024-01-02 03:04:05') for i in range(1, 8)]
    rows[4] = (5, 1, b'asleep', None, b'2024-01-02 03:04:05')
    lines = list(checker.lines(rows))
    assert checked == [5]
    assert [line.split('\t')[0] for line in lines] == ['1', '2', '3', '4', '6', '7']
    assert checker.skipped_rows == 1


# ---------------------------------------------------------------------------
# Timestamps: every form, valid and not, mixed in one batch
# ---------------------------------------------------------------------------

MOMENTS = st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30))
ZONES = st.one_of(st.sampled_from(['+00:00', '-00:00', '+05:30', '-08:00', '+14:00', '+15:59', '+16:00', '-03:61']),
                  st.from_regex(r'\A[+-][0-9]{2}:[0-9]{2}\Z'))


def _forms(moment, zone, millis, epoch, real):
    stamp = moment.strftime('%Y-%m-%d %H:%M:%S') if moment.year >= 1000 else '%04d%s' % (moment.year, moment.strftime('-%m-%d %H:%M:%S'))
    iso = stamp.replace(' ', 'T') + '.%03d' % millis
    return [stamp.encode(), (iso + 'Z').encode(), (iso + zone).encode(), epoch, epoch * 1000 + millis, real]


TIMESTAMPS = st.one_of(
    st.builds(_forms, MOMENTS, ZONES, st.integers(0, 999), st.integers(-2 ** 40, 2 ** 40),
              st.one_of(st.floats(-1e10, 1e10), st.integers(-9 * 10 ** 14, 9 * 10 ** 14).map(lambda n: n / 1000.0),
                        st.integers(-9 * 10 ** 14, 9 * 10 ** 14).map(lambda n: n / 1000000.0))).flatmap(st.sampled_from),
    st.sampled_from([b'2024-02-30 10:00:00', b'2023-02-29T00:00:00.000Z', b'2024-01-01 24:00:00', b'2024-13-01T00:00:00.000Z',
                     b'0000-01-01 00:00:00', b'0001-01-01T00:30:00.000+01:00', b'9999-12-31T23:30:00.000-01:00',
                     '\u0662\u0660\u0662\u0663-01-01 00:00:00'.encode('utf-8'), b'2024-01-01 00:00:0\xff', b'2024-01-01',
                     10 ** 20, -10 ** 20, float('nan'), float('inf'), -0.0, 0.5, 1704164645.1234567, b'x' * 24, None]),
)


@settings(max_examples=400, deadline=None)
@given(values=st.lists(TIMESTAMPS, max_size=12))
def test_timestamp_batches_equal_the_timestamp_converter(values):
    for col in (COLUMNS[10], column('ts_null', 'timestamptz')):
        assert batch(col, values) == per_value(col, values)


@pytest.mark.parametrize('values', [
    [b'2024-01-02 03:04:05', b'2024-02-29 23:59:59'],
    [b'2024-01-02T03:04:05.120Z', b'2024-01-02T03:04:05.000Z', b'2024-01-02T03:04:05.007Z'],
    [b'2024-01-01T00:30:00.100+01:00', b'2024-01-02T03:04:05.123-05:30'],
    [1704164645, -86400, 99999999999], [1704164645123, 1704164645000],
    [1704164645.5, 1704164645.123, 0.000001],
])
def test_timestamp_batches_of_one_form(values):
    """Homogeneous batches (the real-world case) take the whole-batch shortcut and agree."""
    converter = TimestampConverter()
    assert batch(COLUMNS[10], values) == [converter(value) for value in values]


# ---------------------------------------------------------------------------
# No value crashes a converter: each gives a text or a Problem (or Fixed under fix)
# ---------------------------------------------------------------------------

EVERY_KIND = COLUMNS + [
    column('d', 'date'), column('blob', 'bytea'), column('num', 'numeric'), column('num_6_3', 'numeric', scale=3, length=6),
    column('obj', 'jsonb', shape='object', default='{}'), column('any_json', 'jsonb'),
    column('enum_fix', 'text', not_null=True, default='a', allowed=('a', 'b'), fix_map={'x': 'a', 'y': 'zzz'}),
]
WILD = st.one_of(ANY_VALUE, st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                 st.sampled_from([b'1E100', b'-1e-400', b'NaN', b'inf', b'  12  ', b'0x10', b'1_000', b'{"a": 1}', b'[1, 2]',
                                  b'[1, 2', b'{"a": "\\u0000"}', b'"s"', b'null', b'true', b'yes', b'maybe', b' ', b'x', b'y',
                                  b'2024-01-01', b'2024-01-01 00:00:01', b'\xed\xa0\x80', b'\xef\xbb\xbf[]',
                                  b'[1e400]', b'{"a": NaN}', b'[' * 2000 + b']' * 2000]),
                 st.text(max_size=8).map(lambda text: text.encode('utf-8', 'surrogatepass')))


@pytest.mark.parametrize('col', EVERY_KIND, ids=[col.name for col in EVERY_KIND])
@pytest.mark.parametrize('policy', POLICIES)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=WILD)
def test_converters_never_crash(col, policy, value):
    policies = resolve_policies(dict((cls, policy if policy != 'fix' or cls in FIXABLE else 'fail') for cls in PROBLEM_CLASSES))
    _base, _none_text, full = make_converter(col, policies)
    try:
        text = full(value)
    except (Problem, Fixed) as outcome:
        text = getattr(outcome, 'text', None)
        assert text is None or isinstance(text, str)
        return
    assert isinstance(text, str)


@pytest.mark.parametrize('col, value, expected', [
    (column('f', 'float8'), b'1e999999999', 'type'), (column('f', 'float8'), b'-1e-400', 'type'),
    (column('f', 'float8'), b'9' * 400, 'type'), (column('f', 'float8'), b'4.9e-324', '5e-324'),
    (column('f', 'float8'), b'0e-500', '0'), (column('f', 'float8'), b'1e308', '1e+308'),
    (column('n', 'numeric'), b'1e999999999', 'type'), (column('n', 'numeric'), b'1e131072', 'type'),
    (column('n', 'numeric'), b'1e-16384', 'type'), (column('n', 'numeric'), b'0e-99999', 'type'), (column('n', 'numeric'), b'0e99999', '0'),
    (column('n', 'numeric'), b'1e-16383', '0.' + '0' * 16382 + '1'), (column('n', 'numeric'), b'1e3', '1000'),
    (column('n', 'numeric', scale=3, length=6), b'1e-16384', '0.000'),
])
def test_numbers_postgresql_refuses_are_type_problems(col, value, expected):
    """Text PostgreSQL's float8in and numeric_in refuse is reported, not turned into Infinity, 0 or a gigabyte of digits."""
    _base, _none_text, full = make_converter(col, resolve_policies({}))
    try:
        assert full(value) == expected
    except Problem as problem:
        assert problem.cls == expected


# ---------------------------------------------------------------------------
# Whatever a converter accepts, PostgreSQL accepts and prints back identically
# ---------------------------------------------------------------------------

WIRE = [  # (converter column, PostgreSQL type)
    (column('i2', 'smallint'), 'smallint'), (column('i4', 'integer'), 'integer'), (column('i8', 'bigint'), 'bigint'),
    (column('t', 'text'), 'text'), (column('v', 'text', length=5), 'varchar(5)'), (column('f', 'float8'), 'double precision'),
    (column('n', 'numeric'), 'numeric'), (column('n2', 'numeric', scale=2, length=5), 'numeric(5,2)'),
    (column('b', 'boolean'), 'boolean'), (column('ts', 'timestamptz'), 'timestamptz'), (column('d', 'date'), 'date'),
    (column('j', 'jsonb'), 'jsonb'), (column('blob', 'bytea'), 'bytea'),
]


@pytest.fixture(scope='module')
def wire_db(postgresql_server):
    name = postgresql_server.create_database('wire')
    yield name
    postgresql_server.drop_database(name)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(st.lists(st.one_of(WILD, TIMESTAMPS), min_size=len(WIRE), max_size=len(WIRE)), min_size=1, max_size=25))
def test_accepted_values_load_and_print_back_identically(postgresql_server, wire_db, rows):
    converters = [make_converter(col, resolve_policies({}))[2] for col, _type in WIRE]
    lines = []
    for number, row in enumerate(rows):
        texts = [str(number)]
        for convert, value in zip(converters, row):
            try:
                texts.append(convert(value))
            except Problem:
                texts.append(NULL)  # refused here: PostgreSQL never sees it
        lines.append('\t'.join(texts))
    conn = postgresql_server.connect(wire_db)
    try:
        cur = conn.cursor()
        cur.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 1; SET bytea_output = 'hex'")
        cur.execute('CREATE TEMP TABLE wire (id integer, %s)' % ', '.join('%s %s' % (col.name, kind) for col, kind in WIRE))
        cur.copy_expert('COPY wire FROM STDIN', io.BytesIO(('\n'.join(lines) + '\n').encode('utf-8')))
        out = io.BytesIO()
        cur.copy_expert('COPY (SELECT * FROM wire ORDER BY id) TO STDOUT', out)
        cur.execute('DROP TABLE wire')
    finally:
        conn.close()
    assert out.getvalue().decode('utf-8').split('\n')[:-1] == lines
