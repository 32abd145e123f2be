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

from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_canonical import (
    _COPY_SPECIAL, Problem, _escape_special,
)

_NONE = type(None)
_INTS = frozenset((int,))
_INTS_OR_NULL = frozenset((int, _NONE))
_BYTES = frozenset((bytes,))
_BYTES_OR_NULL = frozenset((bytes, _NONE))
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


def integers(base, none_text, low, high):
    """Integer columns without a CHECK range: SQLite INTEGERs within the type's range print with str()."""
    fallback = each(base, none_text)

    def convert(values):
        kinds = set(map(type, values))
        if kinds == _INTS:
            present = values
        elif kinds == _INTS_OR_NULL:
            present = [value for value in values if value is not None]
        elif kinds == _NULLS or not kinds:
            return [none_text] * len(values)
        else:
            return fallback(values)
        if min(present) < low or max(present) > high:
            return fallback(values)
        return _with_nulls(values, present, list(map(str, present)), none_text)
    return convert


def texts(base, none_text, length=None, allowed=None):
    """Text columns read as bytes: decode, check and escape a whole batch at once.

    The values are joined with NUL.  If the join holds exactly one NUL per gap, no value
    contains one; if it decodes as UTF-8, every value does (NUL is not a continuation byte,
    so an invalid sequence cannot be completed across a gap).  The COPY escapes replace
    single characters, so escaping the join and splitting it gives each value's escape.
    """
    fallback = each(base, none_text)
    allowed = frozenset(allowed) if allowed is not None else None
    special = _COPY_SPECIAL.search

    def convert(values):
        kinds = set(map(type, values))
        if kinds == _BYTES:
            present = values
        elif kinds == _BYTES_OR_NULL:
            present = [value for value in values if value is not None]
        elif kinds == _NULLS or not kinds:
            return [none_text] * len(values)
        else:
            return fallback(values)
        joined = b'\x00'.join(present)
        if joined.count(b'\x00') != len(present) - 1:
            return fallback(values)
        try:
            text = joined.decode('utf-8')
        except UnicodeDecodeError:
            return fallback(values)
        parts = text.split('\x00')
        if length is not None and max(map(len, parts)) > length:
            return fallback(values)
        if allowed is not None and not allowed.issuperset(parts):
            return fallback(values)
        if special(text) is not None:
            parts = _escape_special(text).split('\x00')
        return _with_nulls(values, present, parts, none_text)
    return convert
