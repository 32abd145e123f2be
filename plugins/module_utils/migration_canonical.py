# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Value conversions and the canonical form used to load and to checksum rows.

The canonical form of a row is the line PostgreSQL itself writes for that row with
``COPY ... TO STDOUT`` (text format) when the session runs with ``DateStyle = 'ISO, YMD'``,
``TimeZone = 'UTC'``, ``extra_float_digits = 1`` and ``client_encoding = 'UTF8'``: the
columns in the documented order, separated by a tab, ``\\N`` for NULL, and the COPY
text escapes.  The converters below turn a SQLite value into exactly the text PostgreSQL
prints for the converted value, so one string is both the COPY input line and the
canonical form, and the row checksum is the MD5 of its UTF-8 bytes (docs/migration.md).

Each converter raises :class:`Problem` for a value that breaks a rule, or :class:`Fixed`
when a ``fix`` policy repaired it.  Everything here is pure Python with no I/O, and
imports without Ansible so unit tests can load it directly.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import decimal
import hashlib
import json
import math
import re
import struct

NULL = '\\N'
EXCERPT_CHARS = 60

# COPY text format: the characters COPY TO escapes.
_COPY_SPECIAL = re.compile('[\\\\\b\f\n\r\t\v]')
_COPY_RARE = re.compile('[\b\f\v]')
_COPY_UNESCAPES = {'\\': '\\', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v'}
_COPY_ESCAPED = re.compile(r'\\(.)')

INT4_MIN, INT4_MAX = -2 ** 31, 2 ** 31 - 1
INT2_MIN, INT2_MAX = -2 ** 15, 2 ** 15 - 1
INT8_MIN, INT8_MAX = -2 ** 63, 2 ** 63 - 1
_TWO_53 = float(2 ** 53)

# Epoch numbers whose magnitude is at least this are milliseconds, smaller ones seconds:
# 1e11 seconds is the year 5138, 1e11 milliseconds is March 1973.
EPOCH_MS_THRESHOLD = 100000000000
EPOCH = datetime.datetime(1970, 1, 1)
_EPOCH_DATE = datetime.date(1970, 1, 1)
_FLOAT_FAST_LIMIT = 9000000000.0
# '.123' style fractions without trailing zeros, by millisecond.
_MS_FRACTIONS = [''] + [('.%03d' % ms).rstrip('0') for ms in range(1, 1000)]
_MICRO = decimal.Decimal(1000000)
_MILLI = decimal.Decimal(1000)

_ISO_RE = re.compile(
    r'^(\d{4})-(\d{2})-(\d{2})'
    r'(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?'
    r' ?(Z|z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?\Z', re.ASCII)
_FAST_TS_RE = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\Z', re.ASCII)
_JS_TS_RE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z', re.ASCII)
_ISO_OFFSET_RE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d\Z', re.ASCII)
_EPOCH_RE = re.compile(r'^[+-]?\d+(?:\.\d+)?\Z', re.ASCII)
_DATE_CACHE_LIMIT = 100000

JSON_ARRAY = 'array'
JSON_OBJECT = 'object'


class Problem(Exception):
    """A value breaks a rule.  ``cls`` is the problem class a policy applies to."""

    def __init__(self, cls, rule, value=None, column=None):
        super(Problem, self).__init__(rule)
        self.cls = cls
        self.rule = rule
        self.value = value
        self.column = column


class Fixed(Exception):
    """A ``fix`` policy repaired a value: ``text`` is the canonical text to load."""

    def __init__(self, problem, text):
        super(Fixed, self).__init__(problem.rule)
        self.problem = problem
        self.text = text


def excerpt(value, limit=EXCERPT_CHARS):
    """A short printable excerpt of a raw SQLite value for problem reports."""
    if value is None:
        return None
    if isinstance(value, bytes):
        text = value.decode('utf-8', 'backslashreplace')
    else:
        text = value if isinstance(value, str) else repr(value)
    text = text.replace('\x00', '\\x00')
    if len(text) > limit:
        return text[:limit] + '...'
    return text


# ---------------------------------------------------------------------------
# COPY text helpers
# ---------------------------------------------------------------------------

def copy_escape(text):
    """Escape ``text`` the way COPY TO writes a text column."""
    if _COPY_SPECIAL.search(text) is None:
        return text
    return _escape_special(text)


def _escape_special(text):
    text = text.replace('\\', '\\\\').replace('\t', '\\t').replace('\n', '\\n').replace('\r', '\\r')
    if _COPY_RARE.search(text) is None:
        return text
    return text.replace('\b', '\\b').replace('\f', '\\f').replace('\v', '\\v')


def copy_unescape(field):
    """Inverse of :func:`copy_escape` for one field of a COPY line (None for NULL)."""
    if field == NULL:
        return None
    if '\\' not in field:
        return field
    return _COPY_ESCAPED.sub(lambda m: _COPY_UNESCAPES.get(m.group(1), m.group(1)), field)


def row_checksum(line):
    """The per-row checksum: MD5 (hex) of the canonical line's UTF-8 bytes."""
    return hashlib.md5(line.encode('utf-8')).hexdigest()


# ---------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------

def decode_text(value):
    """Return ``value`` as text; raise a utf8 or nul Problem for invalid text."""
    if isinstance(value, bytes):
        try:
            value = value.decode('utf-8')
        except UnicodeDecodeError as exc:
            raise Problem('utf8', 'text is not valid UTF-8 (byte %d)' % exc.start, value)
    elif not isinstance(value, str):
        value = format_number(value)
    if '\x00' in value:
        raise Problem('nul', 'text contains a NUL character', value)
    return value


def format_number(value):
    """Text for a SQLite INTEGER or REAL stored in a text column."""
    if isinstance(value, float):
        return float8_text(value)
    return str(value)


def float8_text(value):
    """Text PostgreSQL prints for a double precision value (extra_float_digits = 1)."""
    if -1e15 < value < 1e15:
        text = repr(value)
        return text[:-2] if text.endswith('.0') else text
    if math.isnan(value):
        return 'NaN'
    if value in (float('inf'), float('-inf')):
        return 'Infinity' if value > 0 else '-Infinity'
    if abs(value) >= _TWO_53:
        return _float8_large(value)
    text = repr(value)
    if 'e' in text:
        return text
    if text.endswith('.0'):
        text = text[:-2]
    sign = ''
    if text.startswith('-'):
        sign, text = '-', text[1:]
    whole = text.split('.')[0]
    if len(whole) <= 15 or whole == '0':
        return sign + text
    # Python prints 1e15 <= |x| < 1e16 in fixed notation, PostgreSQL in exponent notation.
    digits = (whole + text[len(whole) + 1:]).rstrip('0')
    mantissa = digits[0] + ('.' + digits[1:] if len(digits) > 1 else '')
    return '%s%se+%02d' % (sign, mantissa, len(whole) - 1)


def _float_neighbours(value):
    bits = struct.unpack('>q', struct.pack('>d', value))[0]
    below = struct.unpack('>d', struct.pack('>q', bits - 1))[0]
    above = struct.unpack('>d', struct.pack('>q', bits + 1))[0] if bits + 1 < 0x7ff0000000000000 else None
    return below, above


def _float8_large(value):
    """PostgreSQL's output for |x| >= 2**53: the shortest decimal strictly inside the rounding interval.

    PostgreSQL's Ryu build does not accept the interval's bounds, while Python's repr() does
    when the bound rounds back to the same double (7e22 prints as 7.0000000000000004e+22 in
    PostgreSQL).  Only integers this large can sit on a bound, so smaller values use repr().
    """
    sign = '-' if value < 0 else ''
    value = abs(value)
    below, above = _float_neighbours(value)
    with decimal.localcontext() as ctx:
        ctx.prec = 800
        exact = decimal.Decimal(value)
        low = (exact + decimal.Decimal(below)) / 2
        high = (exact + decimal.Decimal(above)) / 2 if above is not None else exact + (exact - low)
        for digits in range(1, 18):
            quantum = decimal.Decimal(1).scaleb(exact.adjusted() - digits + 1)
            inside = [c for c in (exact.quantize(quantum, decimal.ROUND_FLOOR), exact.quantize(quantum, decimal.ROUND_CEILING))
                      if low < c < high]
            if inside:
                best = min(inside, key=lambda c: (abs(c - exact), int(c.scaleb(-c.as_tuple().exponent)) % 2))
                break
        coefficient = ''.join(str(d) for d in best.as_tuple().digits).rstrip('0')
        exponent = best.adjusted()
    mantissa = coefficient[0] + ('.' + coefficient[1:] if len(coefficient) > 1 else '')
    return '%s%se+%02d' % (sign, mantissa, exponent)


def numeric_text(number, scale=None):
    """Text PostgreSQL prints for a numeric built from a Decimal (optionally numeric(p, s))."""
    if scale is not None:
        number = number.quantize(decimal.Decimal(1).scaleb(-scale), rounding=decimal.ROUND_HALF_UP)
    if number.is_zero():
        number = abs(number)
    return format(number, 'f')


def to_decimal(value):
    """Decimal for an int, a float (its shortest repr) or numeric text; None if not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return decimal.Decimal(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return decimal.Decimal(repr(value))
    if isinstance(value, bytes):
        try:
            value = value.decode('ascii')
        except UnicodeDecodeError:
            return None
    if isinstance(value, str):
        text = value.strip()
        if not _EPOCH_RE.match(text) and not re.match(r'^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z', text, re.ASCII):
            return None
        try:
            return decimal.Decimal(text)
        except decimal.InvalidOperation:
            return None
    return None


def to_integer(value, low, high):
    """An int within [low, high] from an int, an integral float or integer text."""
    number = value
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, (bytes, str)):
        dec = to_decimal(value)
        if dec is None or dec != dec.to_integral_value():
            raise Problem('type', 'not an integer', value)
        number = int(dec)
    if not isinstance(number, int) or isinstance(number, bool):
        raise Problem('type', 'not an integer', value)
    if number < low or number > high:
        raise Problem('type', 'integer out of range %d..%d' % (low, high), value)
    return number


# ---------------------------------------------------------------------------
# Timestamps
# ---------------------------------------------------------------------------

def _utc_text(moment):
    """PostgreSQL's ISO output of a UTC timestamptz: fraction without trailing zeros, '+00'."""
    text = moment.isoformat(' ')
    if moment.microsecond:
        text = text.rstrip('0')
    return text + '+00'


def _from_epoch(number, value):
    """A naive UTC datetime from epoch seconds or milliseconds (a Decimal), to the microsecond."""
    factor = _MILLI if abs(number) >= EPOCH_MS_THRESHOLD else _MICRO
    micros = int((number * factor).to_integral_value(rounding=decimal.ROUND_HALF_UP))
    try:
        return EPOCH + datetime.timedelta(microseconds=micros)
    except OverflowError:
        raise Problem('timestamp', 'epoch value out of the range 0001..9999', value)


_OFFSETS = {None: 0, 'Z': 0, 'z': 0, 'UTC': 0, 'GMT': 0}


def _offset(zone, value):
    """Seconds east of UTC for a zone suffix (Z, UTC, +HH, +HHMM, +HH:MM); valid offsets are cached."""
    offset = _OFFSETS.get(zone)
    if offset is not None:
        return offset
    sign = -1 if zone[0] == '-' else 1
    digits = zone[1:].replace(':', '')
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 15 or minutes > 59:
        raise Problem('timestamp', 'time zone offset out of range', value)
    offset = sign * (hours * 3600 + minutes * 60)
    if len(_OFFSETS) < 1000:
        _OFFSETS[zone] = offset
    return offset


def _fraction_micros(fraction):
    """Microseconds from the digits after the decimal point, rounded half up."""
    if not fraction:
        return 0
    if len(fraction) <= 6:
        return int(fraction.ljust(6, '0'))
    return int(decimal.Decimal('0.' + fraction).scaleb(6).to_integral_value(rounding=decimal.ROUND_HALF_UP))


def _parse_iso(text, value):
    match = _ISO_RE.match(text)
    if match is None:
        raise Problem('timestamp', 'not an ISO-8601 timestamp, epoch seconds or epoch milliseconds', value)
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError as exc:
        raise Problem('timestamp', 'invalid date or time (%s)' % exc, value)
    try:
        return moment + datetime.timedelta(microseconds=_fraction_micros(fraction), seconds=-_offset(zone, value))
    except OverflowError:
        raise Problem('timestamp', 'timestamp out of the range 0001..9999', value)


class TimestampConverter(object):
    """Convert any accepted timestamp form to PostgreSQL's UTC text.

    The common forms take fast paths that avoid datetime arithmetic: epoch numbers are split
    into a day (whose date text is cached) and a time of day, and ISO text with an offset is
    turned into epoch seconds through a cache of validated dates.  Every other form goes
    through the general parser.  All paths give the same text (unit-tested against each other
    and against PostgreSQL).
    """

    def __init__(self):
        self._dates = {}  # days since 1970-01-01 -> 'YYYY-MM-DD'
        self._days = {}   # validated 'YYYY-MM-DD' -> days since 1970-01-01

    def _day_number(self, date, value):
        """Days since 1970-01-01 of a 'YYYY-MM-DD' text (validated once, then cached)."""
        days = self._days.get(date)
        if days is None:
            try:
                days = (datetime.date(int(date[:4]), int(date[5:7]), int(date[8:10])) - _EPOCH_DATE).days
            except ValueError as exc:
                raise Problem('timestamp', 'invalid date (%s)' % exc, value)
            if len(self._days) > _DATE_CACHE_LIMIT:
                self._days.clear()
            self._days[date] = days
        return days

    def _date(self, day, value):
        """'YYYY-MM-DD' of ``day`` days since 1970-01-01 (computed once, then cached)."""
        date = self._dates.get(day)
        if date is None:
            try:
                date = (_EPOCH_DATE + datetime.timedelta(days=day)).isoformat()
            except OverflowError:
                raise Problem('timestamp', 'timestamp out of the range 0001..9999', value)
            if len(self._dates) > _DATE_CACHE_LIMIT:
                self._dates.clear()
            self._dates[day] = date
        return date

    def _text(self, seconds, fraction, value):
        """Canonical text of ``seconds`` since the epoch plus a fraction text ('' or '.123')."""
        day, second = divmod(seconds, 86400)
        date = self._date(day, value)
        hour, second = divmod(second, 3600)
        minute, second = divmod(second, 60)
        return '%s %02d:%02d:%02d%s+00' % (date, hour, minute, second, fraction)

    def _epoch_float(self, value):
        if math.isnan(value) or math.isinf(value):
            raise Problem('timestamp', 'not a finite epoch value', value)
        if -_FLOAT_FAST_LIMIT < value < _FLOAT_FAST_LIMIT:
            text = repr(value)
            point = text.find('.')
            if 'e' not in text and point >= 0 and len(text) - point - 1 <= 6:
                # At most 6 decimals and |x| < 9e9: x * 1e6 rounds to the exact microsecond count.
                seconds, micros = divmod(int(round(value * 1000000)), 1000000)
                return self._text(seconds, ('.%06d' % micros).rstrip('0') if micros else '', value)
        return _utc_text(_from_epoch(decimal.Decimal(repr(value)), value))

    def __call__(self, value):
        """Canonical text for ``value`` (never None: callers handle NULL)."""
        cls = value.__class__
        if cls is int:
            if -EPOCH_MS_THRESHOLD < value < EPOCH_MS_THRESHOLD:
                return self._text(value, '', value)
            seconds, millis = divmod(value, 1000)
            return self._text(seconds, _MS_FRACTIONS[millis], value)
        if cls is bytes:
            try:
                text = value.decode('utf-8')
            except UnicodeDecodeError:
                text = decode_text(value)
        elif cls is str:
            text = value
        elif cls is float:
            return self._epoch_float(value)
        else:
            raise Problem('timestamp', 'not a timestamp', value)
        size = len(text)
        # Fast paths: SQLite's CURRENT_TIMESTAMP, JavaScript's toISOString(), ISO with an offset.
        if size == 19 and _FAST_TS_RE.match(text):
            if text[:10] not in self._days:
                self._day_number(text[:10], value)
            if text[11:13] < '24' and text[14:16] < '60' and text[17:19] < '60':
                return text + '+00'
            raise Problem('timestamp', 'invalid time of day', value)
        if size == 24 and _JS_TS_RE.match(text):
            if text[:10] not in self._days:
                self._day_number(text[:10], value)
            if text[11:13] < '24' and text[14:16] < '60' and text[17:19] < '60':
                return '%s %s%s+00' % (text[:10], text[11:19], _MS_FRACTIONS[int(text[20:23])])
            raise Problem('timestamp', 'invalid time of day', value)
        if size == 29 and _ISO_OFFSET_RE.match(text):
            days = self._days.get(text[:10])
            if days is None:
                days = self._day_number(text[:10], value)
            if text[11:13] > '23' or text[14:16] > '59' or text[17:19] > '59':
                raise Problem('timestamp', 'invalid time of day', value)
            offset = _OFFSETS.get(text[23:])
            if offset is None:
                offset = _offset(text[23:], value)
            seconds = days * 86400 + int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19]) - offset
            return self._text(seconds, _MS_FRACTIONS[int(text[20:23])], value)
        text = text.strip()
        if '\x00' in text:
            raise Problem('nul', 'text contains a NUL character', value)
        if _EPOCH_RE.match(text):
            return _utc_text(_from_epoch(decimal.Decimal(text), value))
        return _utc_text(_parse_iso(text, value))


def date_text(value):
    """Canonical text of a PostgreSQL date from 'YYYY-MM-DD' (or a timestamp at midnight UTC)."""
    text = TimestampConverter()(value)
    if text[10:] not in (' 00:00:00+00',):
        raise Problem('timestamp', 'not a date (time of day is not midnight)', value)
    return text[:10]


# ---------------------------------------------------------------------------
# JSON (PostgreSQL jsonb output)
# ---------------------------------------------------------------------------

def _reject_constant(name):
    raise ValueError('%s is not valid JSON' % name)


def _json_number(text):
    number = decimal.Decimal(text)
    if number.is_finite() and abs(number.adjusted()) > 1000:
        raise ValueError('number out of the range of PostgreSQL numeric')
    return number


def _json_key(key):
    raw = key.encode('utf-8')
    return (len(raw), raw)


def _json_string(text):
    out = ['"']
    for char in text:
        if char == '"':
            out.append('\\"')
        elif char == '\\':
            out.append('\\\\')
        elif char < ' ':
            out.append({'\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t'}.get(char, '\\u%04x' % ord(char)))
        else:
            out.append(char)
    out.append('"')
    return ''.join(out)


def _plain_string(text):
    return _json_string(text) if _JSON_ESCAPE.search(text) else '"%s"' % text


_JSON_ESCAPE = re.compile('["\\\\\x00-\x1f]')


def jsonb_dumps(value, number=None):
    """PostgreSQL's jsonb text output for a parsed JSON value (see :func:`parse_json`).

    ``number``, if given, writes every number (int or Decimal) instead of PostgreSQL's output.
    """
    if value is None:
        return 'null'
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    if isinstance(value, str):
        return _plain_string(value)
    if number is not None and isinstance(value, (int, decimal.Decimal)):
        return number(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return numeric_text(value)
    if isinstance(value, list):
        return '[' + ', '.join(jsonb_dumps(item, number) for item in value) + ']'
    items = sorted(value.items(), key=lambda item: _json_key(item[0]))
    return '{' + ', '.join('%s: %s' % (_plain_string(key), jsonb_dumps(item, number)) for key, item in items) + '}'


def _check_strings(value):
    """Raise ValueError for strings PostgreSQL's jsonb refuses (NUL, lone surrogates)."""
    if isinstance(value, str):
        if '\x00' in value:
            raise ValueError('JSON string contains \\u0000, which PostgreSQL cannot store')
        value.encode('utf-8')
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)


def parse_json(text):
    """Parse JSON text the way PostgreSQL's jsonb input does; raise ValueError otherwise.

    Numbers become int or Decimal (no float rounding), NaN/Infinity are refused, and a
    duplicate object key keeps its last value, as in jsonb.
    """
    value = json.loads(text, parse_float=_json_number, parse_constant=_reject_constant)
    try:
        _check_strings(value)
    except UnicodeEncodeError:
        raise ValueError('JSON string contains an unpaired surrogate escape')
    return value


def jsonb_text(value, shape=None):
    """Canonical jsonb text for a SQLite JSON column value (raises a json Problem)."""
    text = decode_text(value)
    try:
        parsed = parse_json(text)
    except (ValueError, RecursionError) as exc:
        raise Problem('json', 'invalid JSON (%s)' % str(exc).split(':', 1)[0], value)
    if shape == JSON_ARRAY and not isinstance(parsed, list):
        raise Problem('json', 'expected a JSON array', value)
    if shape == JSON_OBJECT and not isinstance(parsed, dict):
        raise Problem('json', 'expected a JSON object', value)
    return jsonb_dumps(parsed)
