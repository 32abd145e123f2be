# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Conversion rules and the canonical form (plugins/module_utils/migration_canonical.py).

The pure tests pin each rule; the ``postgresql_server`` tests prove that the Python canonical
text is byte for byte what PostgreSQL itself prints (COPY TO) for the converted values, which
is what makes the per-row checksums of both sides comparable.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import decimal
import hashlib
import io
import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.agent_ui.postgresql.plugins.module_utils import migration_canonical as canon
from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_canonical import Problem


def problem_class(func, *args):
    with pytest.raises(Problem) as info:
        func(*args)
    return info.value.cls


# ---------------------------------------------------------------------------
# COPY text escaping and the checksum
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('text, escaped', [
    ('plain', 'plain'),
    ('tab\there', 'tab\\there'),
    ('new\nline', 'new\\nline'),
    ('cr\rlf', 'cr\\rlf'),
    ('back\\slash', 'back\\\\slash'),
    ('\b\f\v', '\\b\\f\\v'),
    ('\x01 stays raw', '\x01 stays raw'),
    ('ünï ✓ 数据 👩\u200d💻', 'ünï ✓ 数据 👩\u200d💻'),
])
def test_copy_escape_matches_copy_to(text, escaped):
    assert canon.copy_escape(text) == escaped
    assert canon.copy_unescape(escaped) == text


def test_copy_unescape_null():
    assert canon.copy_unescape('\\N') is None


def test_row_checksum_is_md5_of_utf8_line():
    line = '1\tünï\t\\N'
    assert canon.row_checksum(line) == hashlib.md5(line.encode('utf-8')).hexdigest()


# ---------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------

def test_decode_text_accepts_utf8_bytes_and_numbers():
    assert canon.decode_text('café ✓'.encode('utf-8')) == 'café ✓'
    assert canon.decode_text(12) == '12'
    assert canon.decode_text(1.5) == '1.5'


def test_decode_text_rejects_invalid_utf8():
    assert problem_class(canon.decode_text, b'Hello \xff world') == 'utf8'


def test_decode_text_rejects_nul():
    assert problem_class(canon.decode_text, 'before\x00after') == 'nul'
    assert problem_class(canon.decode_text, b'before\x00after') == 'nul'


def test_excerpt_is_short_and_printable():
    assert canon.excerpt('x' * 100).endswith('...')
    assert len(canon.excerpt('x' * 100)) == canon.EXCERPT_CHARS + 3
    assert canon.excerpt(b'bad \xff') == 'bad \\xff'
    assert canon.excerpt('a\x00b') == 'a\\x00b'
    assert canon.excerpt(None) is None


# ---------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('value, text', [
    (0.0, '0'), (-0.0, '-0'), (1.0, '1'), (1.5, '1.5'), (0.1 + 0.2, '0.30000000000000004'),
    (100000000000000.0, '100000000000000'), (1e15, '1e+15'), (1234567890123456.0, '1.234567890123456e+15'),
    (1e22, '1e+22'), (1e-05, '1e-05'), (0.0001, '0.0001'), (1.5e-05, '1.5e-05'), (-2.5e300, '-2.5e+300'),
    (float('inf'), 'Infinity'), (float('-inf'), '-Infinity'), (float('nan'), 'NaN'),
    # PostgreSQL excludes the rounding interval's bounds that Python's repr() may use
    (7e22, '7.0000000000000004e+22'), (1e23, '9.999999999999999e+22'), (6.396239876731322e+16, '6.3962398767313216e+16'),
    (2.0 ** 53, '9.007199254740992e+15'), (1.7976931348623157e308, '1.7976931348623157e+308'),
])
def test_float8_text_is_postgresql_output(value, text):
    assert canon.float8_text(value) == text


@pytest.mark.parametrize('value, scale, text', [
    ('87.5', 2, '87.50'), ('33.335', 2, '33.34'), ('-0.005', 2, '-0.01'), ('-0.004', 2, '0.00'), ('100', 2, '100.00'),
    ('1.50', None, '1.50'), ('1e2', None, '100'), ('1.5e1', None, '15'), ('1E-3', None, '0.001'), ('-0.0', None, '0.0'),
    ('0e5', None, '0'),
])
def test_numeric_text_rounds_half_away_from_zero_and_keeps_scale(value, scale, text):
    assert canon.numeric_text(decimal.Decimal(value), scale) == text


def test_to_decimal_uses_shortest_float_repr():
    assert canon.to_decimal(0.1) == decimal.Decimal('0.1')
    assert canon.to_decimal(b'12.50') == decimal.Decimal('12.50')
    assert canon.to_decimal('abc') is None
    assert canon.to_decimal(True) is None
    assert canon.to_decimal(float('nan')) is None


def test_to_integer_rules():
    assert canon.to_integer(5, 0, 10) == 5
    assert canon.to_integer(5.0, 0, 10) == 5
    assert canon.to_integer(b'7', 0, 10) == 7
    assert problem_class(canon.to_integer, 5.5, 0, 10) == 'type'
    assert problem_class(canon.to_integer, b'fast', 0, 10) == 'type'
    assert problem_class(canon.to_integer, 11, 0, 10) == 'type'


# ---------------------------------------------------------------------------
# Timestamps: every accepted form -> UTC, microseconds kept
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('value, text', [
    # SQLite CURRENT_TIMESTAMP text (UTC)
    ('2024-01-02 03:04:05', '2024-01-02 03:04:05+00'),
    (b'2024-01-02 03:04:05', '2024-01-02 03:04:05+00'),
    # ISO-8601 with fraction and zones
    ('2024-01-02T03:04:05.123Z', '2024-01-02 03:04:05.123+00'),
    ('2024-01-02T03:04:05.120Z', '2024-01-02 03:04:05.12+00'),
    ('2024-01-02T03:04:05.000Z', '2024-01-02 03:04:05+00'),
    ('2024-01-02T03:04:05.123+02:00', '2024-01-02 01:04:05.123+00'),
    ('2024-01-02T03:04:05-05:30', '2024-01-02 08:34:05+00'),
    ('2024-01-02 03:04:05+0100', '2024-01-02 02:04:05+00'),
    ('2024-01-02T03:04:05+01', '2024-01-02 02:04:05+00'),
    ('2024-01-02 03:04:05 UTC', '2024-01-02 03:04:05+00'),
    ('2024-01-02T03:04:05.123456Z', '2024-01-02 03:04:05.123456+00'),
    ('2024-01-02T03:04:05.1234567Z', '2024-01-02 03:04:05.123457+00'),
    ('2024-01-02 03:04', '2024-01-02 03:04:00+00'),
    ('2024-01-02', '2024-01-02 00:00:00+00'),
    ('2024-01-01T00:30:00+01:00', '2023-12-31 23:30:00+00'),
    # epoch seconds (integer, real, text) and epoch milliseconds
    (1704164645, '2024-01-02 03:04:05+00'),
    (1704164645.123, '2024-01-02 03:04:05.123+00'),
    ('1704164645', '2024-01-02 03:04:05+00'),
    (1704164645123, '2024-01-02 03:04:05.123+00'),
    (b'1704164645123', '2024-01-02 03:04:05.123+00'),
    (0, '1970-01-01 00:00:00+00'),
    (-86400, '1969-12-31 00:00:00+00'),
    (99999999999, '5138-11-16 09:46:39+00'),
    (100000000000, '1973-03-03 09:46:40+00'),
])
def test_timestamp_forms(value, text):
    assert canon.TimestampConverter()(value) == text


@pytest.mark.parametrize('value', [
    'yesterday', '2024-02-30 10:00:00', '2024-13-01 00:00:00', '2024-01-01 24:00:00', '2024-01-01 23:60:00',
    '2024-01-01 23:59:60', '2024-01-02T03:04:05+25:00', '2024-01-02T03:04:05.123+02:61', '01/02/2024',
    float('inf'), float('nan'), 10 ** 20, True, b'2024-01-01T00:00:00.000+99:00',
    # Digits outside ASCII: Python's int() reads them, PostgreSQL does not.
    '\u0662\u0660\u0662\u0663-01-01 00:00:00', '\u0662\u0660\u0662\u0663-01-01T00:00:00.000Z',
    '2023-01-01T00:00:00.000+0\u0665:00', '\u0661\u0667\u0660\u0664\u0661\u0666\u0664\u0666\u0664\u0665',
    '2023-01-01 0\u0663:00', '\uff12\uff10\uff12\uff13-01-01',
])
def test_timestamp_rejects(value):
    assert problem_class(canon.TimestampConverter(), value) == 'timestamp'


def test_timestamp_rejects_nul_and_bad_utf8():
    assert problem_class(canon.TimestampConverter(), 'x\x002024') == 'nul'
    assert problem_class(canon.TimestampConverter(), b'\xff2024') == 'utf8'


def test_epoch_threshold_is_documented_value():
    assert canon.EPOCH_MS_THRESHOLD == 100000000000


def test_date_text():
    assert canon.date_text('2024-01-02') == '2024-01-02'
    assert canon.date_text('2024-01-02 00:00:00') == '2024-01-02'
    assert problem_class(canon.date_text, '2024-01-02 10:00:00') == 'timestamp'


# ---------------------------------------------------------------------------
# JSON: PostgreSQL jsonb output
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('source, text', [
    ('[]', '[]'), ('{}', '{}'), ('[1,2,3]', '[1, 2, 3]'),
    ('{"b":1,"aa":2,"a":3}', '{"a": 3, "b": 1, "aa": 2}'),
    ('{"ä":1,"aa":2,"z":3}', '{"z": 3, "aa": 2, "ä": 1}'),
    ('{"a":1,"a":2}', '{"a": 2}'),
    ('[1.50, 1e2, -0.0, 1E-3, 0e5, -0, 12345678901234567890]', '[1.50, 100, 0.0, 0.001, 0, 0, 12345678901234567890]'),
    ('["x\\u0001y\\"z\\\\/é", "\\u00e9", "\\ud83d\\ude80", "tab\\t"]', '["x\\u0001y\\"z\\\\/é", "é", "🚀", "tab\\t"]'),
    ('  {"nested": {"k": [true, false, null]}}  ', '{"nested": {"k": [true, false, null]}}'),
])
def test_jsonb_text_is_postgresql_output(source, text):
    assert canon.jsonb_text(source) == text


@pytest.mark.parametrize('source', [
    '[unclosed', '', '   ', 'NaN', '[Infinity]', '{"a":1,}', "{'a':1}", '["\\u0000"]', '["\\ud800"]', '[1e1001]', '01',
])
def test_jsonb_text_rejects(source):
    assert problem_class(canon.jsonb_text, source) == 'json'


def test_jsonb_shapes():
    assert canon.jsonb_text('[1]', canon.JSON_ARRAY) == '[1]'
    assert problem_class(canon.jsonb_text, '{}', canon.JSON_ARRAY) == 'json'
    assert problem_class(canon.jsonb_text, '[]', canon.JSON_OBJECT) == 'json'


# ---------------------------------------------------------------------------
# Against the real PostgreSQL: the Python canonical form is what COPY TO prints
# ---------------------------------------------------------------------------

COLUMNS = 'id integer, t text, i bigint, f double precision, ts timestamptz, j jsonb, b boolean, n numeric(12,2)'

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 20, 10 ** 20)
    | st.decimals(allow_nan=False, allow_infinity=False, places=None, min_value=-10 ** 12, max_value=10 ** 12)
    | st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\x00')),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\x00'), max_size=8), children, max_size=4),
    max_leaves=10)
safe_text = st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\x00'), max_size=40)
timestamps = st.one_of(
    st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30)).map(
        lambda d: d.isoformat(' ')[:19]),
    st.integers(-62135596800 + 86400, 99999999999),
    st.integers(100000000000, 253402214400000),
    st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30)).map(
        lambda d: d.isoformat() + 'Z'),
)


def _dump(value):
    """JSON text that keeps Decimal digits exactly (json.dumps would turn them into floats)."""
    import json
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, list):
        return '[' + ','.join(_dump(v) for v in value) + ']'
    if isinstance(value, dict):
        return '{' + ','.join('%s:%s' % (json.dumps(k), _dump(v)) for k, v in value.items()) + '}'
    return json.dumps(value)


def _canonical_row(row):
    from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_checks import column, make_converter, resolve_policies
    policies = resolve_policies(None)
    cols = [column('id', 'integer'), column('t', 'text'), column('i', 'bigint'), column('f', 'float8'),
            column('ts', 'timestamptz'), column('j', 'jsonb'), column('b', 'boolean'), column('n', 'numeric', scale=2)]
    return '\t'.join(make_converter(col, policies)[2](value) for col, value in zip(cols, row))


@pytest.fixture(scope='module')
def scratch_db(postgresql_server):
    name = postgresql_server.create_database('canon')
    yield name
    postgresql_server.drop_database(name)


def _round_trip(server, db, lines):
    """COPY ``lines`` into a temporary table and return what COPY TO prints back, in id order."""
    conn = server.connect(db)
    try:
        cur = conn.cursor()
        cur.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 1")
        cur.execute('CREATE TEMP TABLE rt (%s)' % COLUMNS)
        cur.copy_expert('COPY rt FROM STDIN', io.BytesIO(('\n'.join(lines) + '\n').encode('utf-8')))
        out = io.BytesIO()
        cur.copy_expert('COPY (SELECT * FROM rt ORDER BY id) TO STDOUT', out)
        cur.execute('DROP TABLE rt')
        return out.getvalue().decode('utf-8').split('\n')[:-1]
    finally:
        conn.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(
    safe_text | st.none(),
    st.integers(-2 ** 63, 2 ** 63 - 1) | st.none(),
    st.floats(allow_nan=True, allow_infinity=True) | st.none(),
    timestamps | st.none(),
    json_values | st.none(),
    st.sampled_from([0, 1]) | st.none(),
    st.decimals(min_value=-9999999999, max_value=9999999999, places=3, allow_nan=False) | st.none(),
), min_size=1, max_size=20))
def test_random_rows_round_trip_with_equal_checksums(postgresql_server, scratch_db, rows):
    source_rows = []
    for i, (text, integer, real, moment, value, flag, number) in enumerate(rows):
        json_text = None if value is None else _dump(value)
        source_rows.append((i, text.encode('utf-8') if text is not None else None, integer, real, moment, json_text, flag,
                            None if number is None else float(number) if i % 2 else str(number)))
    lines = [_canonical_row(row) for row in source_rows]
    printed = _round_trip(postgresql_server, scratch_db, lines)
    assert printed == lines
    assert [canon.row_checksum(line) for line in printed] == [canon.row_checksum(line) for line in lines]


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float8_text_parses_back_exactly(value):
    text = canon.float8_text(value)
    assert float(text) == value or (math.isnan(value))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.floats(allow_nan=False) | st.floats(min_value=2.0 ** 50, max_value=2.0 ** 80), min_size=1, max_size=50))
def test_float8_text_is_what_postgresql_prints(postgresql_server, scratch_db, values):
    conn = postgresql_server.connect(scratch_db)
    try:
        cur = conn.cursor()
        cur.execute('SET extra_float_digits = 1')
        cur.execute('SELECT v::text FROM unnest(%s::float8[]) WITH ORDINALITY AS u(v, n) ORDER BY n',
                    ([canon.float8_text(v) for v in values],))
        assert [row[0] for row in cur.fetchall()] == [canon.float8_text(v) for v in values]
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Timestamps: edges that mutation testing (make mutation) found unpinned.  The expected texts
# come from datetime arithmetic on the parts, not from the converter.
# ---------------------------------------------------------------------------

_UTC_EPOCH = datetime.datetime(1970, 1, 1)


def _text(moment, sep=' '):
    """'YYYY-MM-DD HH:MM:SS' with a four-digit year (strftime writes year 999 as '999')."""
    return '%04d-%02d-%02d%s%02d:%02d:%02d' % (moment.year, moment.month, moment.day, sep, moment.hour, moment.minute,
                                               moment.second)


def _utc(moment, micros=0):
    """PostgreSQL's text of a naive UTC datetime (trailing zeros of the fraction dropped)."""
    fraction = ('.%06d' % micros).rstrip('0') if micros else ''
    return _text(moment) + fraction + '+00'


@settings(max_examples=300, deadline=None)
@given(moment=st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30)),
       millis=st.integers(0, 999), offset_minutes=st.integers(-(15 * 60 + 59), 15 * 60 + 59))
def test_every_timestamp_form_agrees_with_datetime(moment, millis, offset_minutes):
    moment = moment.replace(microsecond=0)
    convert = canon.TimestampConverter()
    local = moment + datetime.timedelta(minutes=offset_minutes)
    sign = '-' if offset_minutes < 0 else '+'
    hours, minutes = divmod(abs(offset_minutes), 60)
    base = _text(local, 'T')
    for _round in range(2):  # the second pass goes through the converter's caches
        assert convert(_text(moment)) == _utc(moment)
        assert convert(_text(moment, 'T') + '.%03dZ' % millis) == _utc(moment, millis * 1000)
        assert convert(base + '.%03d%s%02d:%02d' % (millis, sign, hours, minutes)) == _utc(moment, millis * 1000)
        assert convert(base + '%s%02d%02d' % (sign, hours, minutes)) == _utc(moment)
        if minutes == 0:
            assert convert(base + '%s%02d' % (sign, hours)) == _utc(moment)


@pytest.mark.parametrize('text', [
    '2024-01-01 24:00:00', '2024-01-01 23:60:00', '2024-01-01 23:59:60',
    '2024-01-01T24:00:00.000Z', '2024-01-01T23:60:00.000Z', '2024-01-01T23:59:60.000Z',
    '2024-01-01T24:00:00.000+01:00', '2024-01-01T23:60:00.000+01:00', '2024-01-01T23:59:60.000+01:00',
])
def test_each_fast_path_refuses_an_invalid_time_of_day(text):
    with pytest.raises(Problem) as info:
        canon.TimestampConverter()(text)
    assert (info.value.cls, info.value.rule, info.value.value) == ('timestamp', 'invalid time of day', text)


@pytest.mark.parametrize('text,expected', [
    ('2024-01-01 23:59:59', '2024-01-01 23:59:59+00'),
    ('2024-01-01T23:59:59.999Z', '2024-01-01 23:59:59.999+00'),
    ('2024-01-01T23:59:59.999+15:59', '2024-01-01 08:00:59.999+00'),
    ('2024-01-01T00:00:00.000-15:59', '2024-01-01 15:59:00+00'),
    ('2024-01-01T00:00:00+0130', '2023-12-31 22:30:00+00'),
])
def test_the_last_valid_times_and_offsets(text, expected):
    assert canon.TimestampConverter()(text) == expected


@pytest.mark.parametrize('text', ['2024-01-01T00:00:00.000+16:00', '2024-01-01T00:00:00.000+01:60',
                                  '2024-01-01T00:00:00+1600', '2024-01-01T00:00:00-0060'])
def test_offsets_out_of_range(text):
    with pytest.raises(Problem) as info:
        canon.TimestampConverter()(text)
    assert (info.value.cls, info.value.rule, info.value.value) == ('timestamp', 'time zone offset out of range', text)


@pytest.mark.parametrize('value,rule_start', [
    (10 ** 20, 'timestamp out of the range 0001..9999'),
    ('99999999999999999', 'epoch value out of the range 0001..9999'),
    ('2024-02-30 10:00:00', 'invalid date ('),
    ('2024-02-30T10:00:00.000Z', 'invalid date ('),
    ('2024-02-30T10:00:00.000+01:00', 'invalid date ('),
    (float('inf'), 'not a finite epoch value'),
    ([2024], 'not a timestamp'),
])
def test_timestamp_problems_name_the_rule_and_keep_the_value(value, rule_start):
    with pytest.raises(Problem) as info:
        canon.TimestampConverter()(value)
    assert info.value.cls == 'timestamp' and info.value.rule.startswith(rule_start), info.value.rule
    assert info.value.value == value


def test_a_nul_in_timestamp_text_is_a_nul_problem_with_the_value():
    with pytest.raises(Problem) as info:
        canon.TimestampConverter()(' 2024-01-01\x00')
    assert (info.value.cls, info.value.rule, info.value.value) == ('nul', 'text contains a NUL character', ' 2024-01-01\x00')


@pytest.mark.parametrize('value', [
    100000000000, -100000000000, 99999999999, -9999999999, 1704164645123, -1, 86399, 86400, -86401,
])
def test_integer_epochs_agree_with_their_text_and_with_datetime(value):
    convert = canon.TimestampConverter()
    if abs(value) >= canon.EPOCH_MS_THRESHOLD:
        expected = _utc(_UTC_EPOCH + datetime.timedelta(milliseconds=value), (value % 1000) * 1000)
    else:
        expected = _utc(_UTC_EPOCH + datetime.timedelta(seconds=value))
    assert convert(value) == convert(str(value)) == convert(str(value).encode()) == expected


@pytest.mark.parametrize('value,expected', [
    (1.5, '1970-01-01 00:00:01.5+00'),
    (-1.5, '1969-12-31 23:59:58.5+00'),
    (1704164645.123456, '2024-01-02 03:04:05.123456+00'),
    (0.000001, '1970-01-01 00:00:00.000001+00'),
    (1e-07, '1970-01-01 00:00:00+00'),          # repr has an exponent: the exact (decimal) path
    (5e-07, '1970-01-01 00:00:00.000001+00'),   # half a microsecond rounds up
    (8999999999.5, '2255-03-14 15:59:59.5+00'),
    (9000000000.5, '2255-03-14 16:00:00.5+00'),  # at the fast path's limit
    (-8999999999.5, '1684-10-19 08:00:00.5+00'),
    (1e11, '1973-03-03 09:46:40+00'),            # a float at the threshold is milliseconds, as an integer is
])
def test_float_epochs(value, expected):
    assert canon.TimestampConverter()(value) == expected


def _problem(func, *args):
    with pytest.raises(Problem) as info:
        func(*args)
    return info.value.cls, info.value.rule, info.value.value


@pytest.mark.parametrize('func, args, expected', [
    (canon.jsonb_text, ('nope',), ('json', 'invalid JSON (Expecting value)', 'nope')),
    (canon.jsonb_text, ('[1,',), ('json', 'invalid JSON (Expecting value)', '[1,')),
    (canon.jsonb_text, ('{"a": 1}', canon.JSON_ARRAY), ('json', 'expected a JSON array', '{"a": 1}')),
    (canon.jsonb_text, ('[1]', canon.JSON_OBJECT), ('json', 'expected a JSON object', '[1]')),
    (canon.to_integer, ('1.5', -10, 10), ('type', 'not an integer', '1.5')),
    (canon.to_integer, (True, -10, 10), ('type', 'not an integer', True)),
    (canon.to_integer, (11, -10, 10), ('type', 'integer out of range -10..10', 11)),
    (canon.to_integer, ('-11', -10, 10), ('type', 'integer out of range -10..10', '-11')),
    (canon.TimestampConverter(), ('2024-01-01 25:00',), ('timestamp', 'invalid date or time (hour must be in 0..23)',
                                                         '2024-01-01 25:00')),
    (canon.TimestampConverter(), ('9999-12-31T23:00:00-05:00',), ('timestamp', 'timestamp out of the range 0001..9999',
                                                                  '9999-12-31T23:00:00-05:00')),
    (canon.TimestampConverter(), ('0001-01-01T00:00:00+05:00',), ('timestamp', 'timestamp out of the range 0001..9999',
                                                                  '0001-01-01T00:00:00+05:00')),
    (canon.TimestampConverter(), ('yesterday',), ('timestamp', 'not an ISO-8601 timestamp, epoch seconds or epoch '
                                                  'milliseconds', 'yesterday')),
])
def test_problems_name_their_rule_and_keep_the_raw_value(func, args, expected):
    # The problem report shows the rule and an excerpt of the raw value: both are the operator's only clue.
    assert _problem(func, *args) == expected


@pytest.mark.parametrize('low, high', [(-10, 10), (0, 0)])
def test_integer_range_bounds_are_inclusive(low, high):
    assert canon.to_integer(low, low, high) == low and canon.to_integer(high, low, high) == high
    assert canon.to_integer(str(high), low, high) == high and canon.to_integer(float(low), low, high) == low


@pytest.mark.parametrize('zone, minutes', [
    ('+05:30', 330), ('-05:30', -330), ('+0545', 345), ('-0930', -570), ('+14', 840), ('-11', -660), ('+15:59', 959),
    ('-15:59', -959), ('+00:01', 1), ('-00:45', -45),
])
def test_offsets_computed_afresh(monkeypatch, zone, minutes):
    # The converter keeps valid offsets in a module-level cache: start from an empty one, so the arithmetic runs.
    monkeypatch.setattr(canon, '_OFFSETS', {None: 0, 'Z': 0, 'z': 0, 'UTC': 0, 'GMT': 0})
    local = datetime.datetime(2024, 6, 1, 12, 0, 0)
    expected = _utc(local - datetime.timedelta(minutes=minutes))
    convert = canon.TimestampConverter()
    assert convert('2024-06-01T12:00:00' + zone) == expected
    monkeypatch.setattr(canon, '_OFFSETS', {None: 0, 'Z': 0, 'z': 0, 'UTC': 0, 'GMT': 0})
    if len(zone) == 6:
        assert convert('2024-06-01T12:00:00.000' + zone) == expected


@pytest.mark.parametrize('zone', ['+16:00', '-16', '+01:60', '+0060'])
def test_offsets_out_of_range_computed_afresh(monkeypatch, zone):
    monkeypatch.setattr(canon, '_OFFSETS', {None: 0, 'Z': 0, 'z': 0, 'UTC': 0, 'GMT': 0})
    text = '2024-06-01T12:00:00' + zone
    assert _problem(canon.TimestampConverter(), text) == ('timestamp', 'time zone offset out of range', text)


def test_float8_infinities():
    assert (canon.float8_text(float('inf')), canon.float8_text(float('-inf'))) == ('Infinity', '-Infinity')


# What PostgreSQL 15 printed for these doubles (SET extra_float_digits = 1; SELECT v::float8::text), recorded so that
# the large-value rules are pinned without a server; test_float8_text_is_what_postgresql_prints checks more live.
POSTGRESQL_FLOAT8_TEXT = [
    (1e15, '1e+15'), (-1e15, '-1e+15'), (1234567890123456.0, '1.234567890123456e+15'),
    (-1234567890123456.0, '-1.234567890123456e+15'), (1000000000000002.0, '1.000000000000002e+15'),
    (9007199254740992.0, '9.007199254740992e+15'), (2.7021597764222976e+16, '2.7021597764222976e+16'),
    (7e22, '7.0000000000000004e+22'), (1e23, '9.999999999999999e+22'), (-7e22, '-7.0000000000000004e+22'),
    (1.7976931348623157e308, '1.7976931348623157e+308'), (9.223372036854776e18, '9.223372036854776e+18'),
    (1.2345678901234568e17, '1.2345678901234568e+17'), (5e-324, '5e-324'), (0.1, '0.1'), (-0.0, '-0'),
]


@pytest.mark.parametrize('value, text', POSTGRESQL_FLOAT8_TEXT, ids=[text for _value, text in POSTGRESQL_FLOAT8_TEXT])
def test_float8_text_equals_recorded_postgresql_output(value, text):
    assert canon.float8_text(value) == text


@pytest.mark.parametrize('value, expected', [
    (b'ab\xffcd', ('utf8', 'text is not valid UTF-8 (byte 2)', b'ab\xffcd')),
    ('a\x00b', ('nul', 'text contains a NUL character', 'a\x00b')),
    (b'a\x00b', ('nul', 'text contains a NUL character', 'a\x00b')),
])
def test_decode_text_problems(value, expected):
    assert _problem(canon.decode_text, value) == expected
