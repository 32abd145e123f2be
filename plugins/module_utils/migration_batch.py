# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Column-at-a-time conversion of a batch of source rows: the fast path of the row checks.

A batch converter takes the values of one column for a batch of rows and returns a list of
the same length: for each value either exactly the text the column's per-value converter
(``base`` in :func:`migration_checks.make_converter`) returns, or None when that converter
would raise a :class:`Problem`, or when the value is NULL and NULL is itself a problem.  A
row with a None anywhere goes through the per-row checks, which report its problems and
apply the policies; every other row is loaded as the batch produced it.

The saving comes from doing per-batch what the per-value converters do per value: one
``decode`` and one escape of all of a text column's values joined by NUL (which no clean
value contains), one range check of an integer column with ``min``/``max``.  Whenever a
batch is not of the plain shape these shortcuts need, the converter falls back to calling
``base`` on each value, so the result is the same either way (unit-tested against ``base``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import itertools
import operator
import re

from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_canonical import (
    _COPY_SPECIAL, _FLOAT_FAST_LIMIT, _MS_FRACTIONS, EPOCH_MS_THRESHOLD, Problem,
    _escape_special, _offset,
)

_NONE = type(None)
_NULLS = frozenset((_NONE,))


def each(base, none_text):
    """The plain batch converter: ``base`` on every value, None where it raises a Problem."""

    def convert(values):
        try:
            return [none_text if value is None else base(value) for value in values]
        except Problem:
            pass
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
    return convert


def _with_nulls(values, present, texts, none_text):
    """Put ``none_text`` back where ``values`` held NULL; ``texts`` are those of ``present``."""
    if present is values:
        return texts
    it = iter(texts)
    return [none_text if value is None else next(it) for value in values]


def _typed(kind, none_text, fallback, convert_present):
    """Batch converter for a column whose values are all ``kind`` or NULL.

    ``convert_present`` gets the non-NULL values and returns their texts, or None when the
    batch needs the per-value ``fallback`` (which also takes any batch with other types).
    """
    only, or_null = frozenset((kind,)), frozenset((kind, _NONE))

    def convert(values):
        kinds = set(map(type, values))
        if kinds == only:
            present = values
        elif kinds == or_null:
            present = [value for value in values if value is not None]
        elif kinds == _NULLS or not kinds:
            return [none_text] * len(values)
        else:
            return fallback(values)
        texts = convert_present(present)
        if texts is None:
            return fallback(values)
        return _with_nulls(values, present, texts, none_text)
    return convert


def integers(base, none_text, low, high):
    """Integer columns without a CHECK range: SQLite INTEGERs within the type's range print with str()."""

    def present_texts(present):
        if min(present) < low or max(present) > high:
            return None
        return list(map(str, present))
    return _typed(int, none_text, each(base, none_text), present_texts)


def texts(base, none_text, length=None, allowed=None, required=False):
    """Text columns read as bytes: decode, check and escape a whole batch at once.

    The values are joined with NUL.  If the join holds exactly one NUL per gap, no value
    contains one; if it decodes as UTF-8, every value does (NUL is not a continuation byte,
    so an invalid sequence cannot be completed across a gap).  The COPY escapes replace
    single characters, so escaping the join and splitting it gives each value's escape.
    """
    allowed = frozenset(allowed) if allowed is not None else None
    special = _COPY_SPECIAL.search

    def present_texts(present):
        joined = b'\x00'.join(present)
        if joined.count(b'\x00') != len(present) - 1:
            return None
        try:
            text = joined.decode('utf-8')
        except UnicodeDecodeError:
            return None
        parts = text.split('\x00')
        if length is not None and max(map(len, parts)) > length:
            return None
        if allowed is not None and not allowed.issuperset(parts):
            return None
        if required and not all(part and not part.isspace() for part in parts):
            return None
        if special(text) is not None:
            parts = _escape_special(text).split('\x00')
        return parts
    return _typed(bytes, none_text, each(base, none_text), present_texts)


def _grouped(values, labels, convert):
    """Texts of ``values`` converted group by group: ``convert(label, group)`` for each distinct label."""
    out = [None] * len(values)
    for label in set(labels):
        where = list(itertools.compress(range(len(values)), map(operator.eq, labels, itertools.repeat(label))))
        for i, text in zip(where, convert(label, list(map(values.__getitem__, where)))):
            out[i] = text
    return out


# ---------------------------------------------------------------------------
# Timestamps
# ---------------------------------------------------------------------------

_DAY = r'[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])'
_TIME = r'(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]'


def _run_of(pattern):
    """A bytes pattern matching one or more ``pattern`` values joined by NUL."""
    return re.compile(('(?:%s\x00)*%s' % (pattern, pattern)).encode('ascii'))


# SQLite's CURRENT_TIMESTAMP, JavaScript's toISOString() and ISO 8601 with a millisecond and an offset.
_SQLITE_RUN = _run_of(_DAY + ' ' + _TIME)
_JS_RUN = _run_of(_DAY + 'T' + _TIME + r'\.[0-9]{3}Z')
_OFFSET_RUN = _run_of(_DAY + 'T' + _TIME + r'\.[0-9]{3}[+-][0-9]{2}:[0-9]{2}')
# Trailing zeros of a millisecond fraction before its 'Z', dropped as PostgreSQL prints it.
_MS_ZEROS = [re.compile(r'(?<=\.[0-9][0-9])0(?=Z)'), re.compile(r'(?<=\.[0-9])0(?=Z)'), re.compile(r'\.0(?=Z)')]
_DATE_PART = operator.itemgetter(slice(0, 10))
_HEAD = operator.itemgetter(slice(0, 19))
_MILLIS = operator.itemgetter(slice(19, 23))
_ZONE = operator.itemgetter(slice(23, None))
_FRACTION_PART = operator.itemgetter(2)
_FORMAT = '%s %02d:%02d:%02d%s+00'.__mod__


def _js_texts(text):
    """Canonical texts of NUL-joined, validated 'YYYY-MM-DDTHH:MM:SS.mmmZ' values."""
    for zeros in _MS_ZEROS:
        text = zeros.sub('', text)
    return text.replace('T', ' ').replace('Z', '+00').split('\x00')


class _Timestamps(object):
    """Batch converter of a timestamptz column: each form of a batch converted at once.

    Values are grouped by type (and byte strings by length); each group of a form that has a
    shortcut is converted with a few whole-group operations, with the same validity rules
    and the same text as :class:`TimestampConverter`, whose caches of validated dates it
    shares.  A group that breaks any rule, and every other form, goes through the converter
    value by value.
    """

    def __init__(self, converter, none_text):
        self.converter = converter
        self.none_text = none_text
        self.fallback = each(converter, none_text)
        self.by_length = {19: self._sqlite, 24: self._js, 29: self._offset}

    def __call__(self, values):
        kinds = set(map(type, values))
        if len(kinds) == 1 and _NONE not in kinds:
            return self._group(kinds.pop(), values)
        return _grouped(values, list(map(type, values)), self._group)

    def _group(self, kind, values):
        if kind is _NONE:
            return [self.none_text] * len(values)
        texts = None
        if kind is bytes:
            texts = _grouped(values, list(map(len, values)), self._bytes)
        elif kind is int:
            texts = _grouped(values, list(map(operator.lt, map(abs, values), itertools.repeat(EPOCH_MS_THRESHOLD))),
                             self._ints)
        elif kind is float:
            texts = self._floats(values)
        return texts if texts is not None else self.fallback(values)

    def _bytes(self, size, values):
        form = self.by_length.get(size)
        texts = form(values) if form is not None else None
        return texts if texts is not None else self.fallback(values)

    def _ints(self, seconds, values):
        """Epoch seconds, or epoch milliseconds (told apart by magnitude, as TimestampConverter does)."""
        if seconds:
            texts = self._epoch(values, itertools.repeat(''))
        else:
            whole, millis = zip(*map(divmod, values, itertools.repeat(1000)))
            texts = self._epoch(whole, map(_MS_FRACTIONS.__getitem__, millis))
        return texts if texts is not None else self.fallback(values)

    def _valid_dates(self, parts):
        days = self.converter._days
        try:
            for date in set(map(_DATE_PART, parts)).difference(days):
                self.converter._day_number(date, date)
        except Problem:
            return False
        return True

    @staticmethod
    def _joined(values, run):
        """The values joined by NUL and decoded, if every one is of the form ``run`` matches; else None."""
        joined = b'\x00'.join(values)
        return joined.decode('ascii') if run.fullmatch(joined) is not None else None

    def _sqlite(self, values):
        text = self._joined(values, _SQLITE_RUN)
        if text is None or not self._valid_dates(text.split('\x00')):
            return None
        return (text.replace('\x00', '+00\x00') + '+00').split('\x00')

    def _js(self, values):
        text = self._joined(values, _JS_RUN)
        if text is None or not self._valid_dates(text.split('\x00')):
            return None
        return _js_texts(text)

    def _offset(self, values):
        text = self._joined(values, _OFFSET_RUN)
        if text is None:
            return None
        parts = text.split('\x00')
        zones = {}
        try:
            for zone in set(map(_ZONE, parts)):
                zones[zone] = datetime.timedelta(seconds=_offset(zone, zone))
            moments = list(map(operator.sub, map(datetime.datetime.fromisoformat, map(_HEAD, parts)),
                               map(zones.__getitem__, map(_ZONE, parts))))
        except (Problem, ValueError, OverflowError):
            return None
        heads = map(operator.methodcaller('isoformat', 'T'), moments)
        return _js_texts('Z\x00'.join(map(operator.add, heads, map(_MILLIS, parts))) + 'Z')

    def _floats(self, values):
        reprs = list(map(repr, values))
        joined = '\x00'.join(reprs)
        if 'e' in joined or 'n' in joined or not -_FLOAT_FAST_LIMIT < min(values) <= max(values) < _FLOAT_FAST_LIMIT:
            return None
        if max(map(len, map(_FRACTION_PART, map(operator.methodcaller('partition', '.'), reprs)))) > 6:
            return None
        # As TimestampConverter: at most 6 decimals and |x| < 9e9, so x * 1e6 rounds to the microseconds.
        seconds, micros = zip(*map(divmod, map(round, map(operator.mul, values, itertools.repeat(1000000.0))),
                                   itertools.repeat(1000000)))
        fractions = ['' if fraction == '.' else fraction
                     for fraction in map(operator.methodcaller('rstrip', '0'), map('.%06d'.__mod__, micros))]
        return self._epoch(seconds, fractions)

    def _epoch(self, seconds, fractions):
        """Canonical texts of epoch ``seconds`` plus fraction texts, as TimestampConverter._text."""
        days, rest = zip(*map(divmod, seconds, itertools.repeat(86400)))
        try:
            dates = dict((day, self.converter._date(day, day)) for day in set(days))
        except Problem:
            return None
        hours = map(operator.floordiv, rest, itertools.repeat(3600))
        minutes = map(operator.floordiv, map(operator.mod, rest, itertools.repeat(3600)), itertools.repeat(60))
        secs = map(operator.mod, rest, itertools.repeat(60))
        return list(map(_FORMAT, zip(map(dates.__getitem__, days), hours, minutes, secs, fractions)))


def timestamps(converter, none_text):
    """Batch converter of a timestamptz column whose per-value converter is ``converter``."""
    return _Timestamps(converter, none_text)
