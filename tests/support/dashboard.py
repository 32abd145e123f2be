# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reading the Grafana dashboard (roles/prometheus/files/dashboards/*.json) for the tests.

Shared by the offline unit test (tests/unit/roles/test_dashboard.py) and the live test that evaluates every query
against the lab's Prometheus, so it needs only the standard library:

* :func:`load` reads a dashboard file; :func:`panels` lists its panels, also those inside collapsed rows.
* :func:`queries` gives each target's PromQL with Grafana's built-in interval variables replaced by a fixed window,
  ready for Prometheus' HTTP API, and refuses any other variable.
* :func:`metric_names` tells which metrics an expression reads.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import re

# Grafana's built-in variables that stand for a duration; each becomes the window given to queries().
INTERVAL_VARIABLES = ('__rate_interval', '__interval', '__range')
_INTERVAL = re.compile(r'\$(?:\{(%s)\}|(%s)(?![\w]))' % ('|'.join(INTERVAL_VARIABLES), '|'.join(INTERVAL_VARIABLES)))
# What is left of a Grafana variable after the substitution: $name, ${name...} or [[name]]. A "$" followed by a digit
# is no variable but a regex back-reference in a PromQL string (label_replace's "$1").
_LEFTOVER_VARIABLE = re.compile(r'\$[A-Za-z_{]|\[\[')
_DURATION = re.compile(r'^(\d+(ms|s|m|h|d|w|y))+$')

# PromQL's keywords and the words of its grammar that look like identifiers.
KEYWORDS = frozenset(('by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless',
                      'offset', 'atan2', 'inf', 'nan'))
# Clauses whose parentheses hold label names, not expressions.
_LABEL_LIST = re.compile(r'\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)', re.IGNORECASE)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r'\{[^{}]*\}')
_NAME_MATCHER = re.compile(r'\b__name__\s*=\s*"([A-Za-z_:][\w:]*)"')
_BRACKETS = re.compile(r'\[[^\[\]]*\]')
_AT = re.compile(r'@\s*[\d.]+')
_IDENTIFIER = re.compile(r'(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?')


def load(path):
    """The dashboard in the JSON file ``path``, as a dict."""
    with open(path, encoding='utf-8') as handle:
        return json.load(handle)


def panels(dashboard, include_rows=False):
    """Every panel of ``dashboard``, in order: top-level panels and those in a row's ``panels`` (a collapsed row).

    Rows themselves (type "row", which hold no query) are left out unless ``include_rows``.
    """
    found = []

    def walk(items):
        for panel in items or ():
            if panel.get('type') != 'row' or include_rows:
                found.append(panel)
            walk(panel.get('panels'))
    walk(dashboard.get('panels'))
    return found


def substitute(expr, window):
    """``expr`` with $__rate_interval, $__interval and $__range (also in the ${...} form) replaced by ``window``."""
    return _INTERVAL.sub(window, expr)


def queries(dashboard, rate_interval='1m'):
    """(panel title, refId, expr) of every target with an expression, the interval variables replaced.

    ``rate_interval`` (a Prometheus duration such as "1m") stands for $__rate_interval, $__interval and $__range, as
    Prometheus' HTTP API knows no Grafana variable.  Raises ValueError, naming the panel, for an expression that still
    holds a variable (a template variable the caller cannot resolve).
    """
    if not _DURATION.match(rate_interval):
        raise ValueError('%r is not a Prometheus duration' % (rate_interval,))
    result = []
    for panel in panels(dashboard):
        for target in panel.get('targets') or ():
            expr = (target.get('expr') or '').strip()
            if not expr:
                continue
            expr = substitute(expr, rate_interval)
            if _LEFTOVER_VARIABLE.search(expr):
                raise ValueError('panel %r (id %s), target %s: unknown variable in %r'
                                 % (panel.get('title'), panel.get('id'), target.get('refId'), expr))
            result.append((panel.get('title'), target.get('refId'), expr))
    return result


def metric_names(expr):
    """The set of metric names the PromQL expression ``expr`` reads.

    Left out: functions and aggregations (an identifier followed by "("), keywords, label names (inside {...} and in
    by/without/on/ignoring/group_left/group_right lists), strings, durations, numbers.  A selector with no name but
    {__name__="x"} counts as x.  Not a full PromQL parser, but enough for the dashboard's and the alert rules' own
    expressions.
    """
    names = set(m.group(1) for m in _NAME_MATCHER.finditer(expr))
    text = _STRING.sub('""', expr)
    for pattern in (_MATCHERS, _BRACKETS, _AT, _LABEL_LIST):
        text = pattern.sub(' ', text)
    for match in _IDENTIFIER.finditer(text):
        word, call = match.group(1), match.group(2)
        if not call and word.lower() not in KEYWORDS:
            names.add(word)
    return names
