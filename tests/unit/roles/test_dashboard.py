# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The Grafana dashboard (roles/prometheus/files/dashboards/agent_ui_postgresql.json), checked offline.

Its structure (datasource variable, ids, targets), that it reads only metrics that exist, that it covers the subjects
the monitoring must show, and the helper tests/support/dashboard.py that the live test also uses.  Whether each query
returns data is the live test's business (the molecule scenario with the monitoring host).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import pathlib

import pytest
import yaml

import dashboard as dash

REPO = pathlib.Path(__file__).resolve().parents[3]
DASHBOARD = REPO / 'roles' / 'prometheus' / 'files' / 'dashboards' / 'agent_ui_postgresql.json'
EXPORTER_QUERIES = REPO / 'roles' / 'exporters' / 'files' / 'postgres_exporter_queries.yml'
DATASOURCE = {'type': 'prometheus', 'uid': '${datasource}'}

# Written by the textfile script in roles/exporters (node exporter's textfile collector), not by postgres_exporter.
TEXTFILE_METRICS = {
    'agent_ui_tls_certificate_not_after_timestamp_seconds',
    'agent_ui_pgbackrest_backup_last_completion_timestamp_seconds',
    'agent_ui_pgbackrest_backup_max_age_seconds',
    'agent_ui_pgbackrest_stanza_status_code',
}
# Exporters' own metrics: postgres_exporter, pgbouncer_exporter, node exporter; and Prometheus' "up".
OTHER_PREFIXES = ('pg_', 'pgbouncer_', 'node_')

# Each subject the dashboard must show, as the metrics of which one panel must read at least one.
REQUIRED_SUBJECTS = {
    'connections': {'agent_ui_connections_used'},
    'transactions': {'pg_stat_database_xact_commit'},
    'cache hits': {'pg_stat_database_blks_hit'},
    'replication lag': {'agent_ui_replication_lag_seconds'},
    'archiving': {'agent_ui_archiver_failing', 'agent_ui_archiver_archived_count', 'agent_ui_archiver_failed_count',
                  'agent_ui_archiver_last_archived_age_seconds', 'agent_ui_archiver_ready_count'},
    'backups': {'agent_ui_pgbackrest_backup_last_completion_timestamp_seconds'},
    'pgbouncer pools': {'pgbouncer_pools_client_active_connections', 'pgbouncer_pools_client_waiting_connections',
                        'pgbouncer_pools_server_active_connections', 'pgbouncer_pools_server_idle_connections',
                        'pgbouncer_pools_client_maxwait_seconds'},
}


@pytest.fixture(scope='module')
def dashboard():
    return dash.load(DASHBOARD)


def exporter_metrics():
    """<query>_<column> for every column of the exporter's queries file that is not a LABEL."""
    names = set()
    for query, spec in yaml.safe_load(EXPORTER_QUERIES.read_text()).items():
        for column in spec['metrics']:
            for name, options in column.items():
                if options['usage'] != 'LABEL':
                    names.add('%s_%s' % (query, name))
    return names


def unknown_metrics(board, known_agent_ui):
    """{panel title: names it reads that no exporter produces}."""
    unknown = {}
    for title, dummy, expr in dash.queries(board):
        for name in dash.metric_names(expr):
            if name.startswith('agent_ui_'):
                ok = name in known_agent_ui
            else:
                ok = name == 'up' or name.startswith(OTHER_PREFIXES)
            if not ok:
                unknown.setdefault(title, set()).add(name)
    return unknown


def test_the_file_is_formatted(dashboard):
    text = DASHBOARD.read_text(encoding='utf-8')
    assert text.endswith('}\n')
    assert '\n  "panels": [\n' in text  # two-space indentation


def test_identity_and_schema(dashboard):
    assert dashboard['title'] == 'Claude Agent UI — PostgreSQL'
    assert dashboard['uid'] == 'agent-ui-postgresql'
    assert dashboard['schemaVersion'] == 39


def test_the_datasource_variable(dashboard):
    variables = {variable['name']: variable for variable in dashboard['templating']['list']}
    assert variables['datasource']['type'] == 'datasource'
    assert variables['datasource']['query'] == 'prometheus'
    # queries() resolves only Grafana's interval variables: another variable would break the live test.
    assert set(variables) == {'datasource'}


def test_panel_ids_are_unique_and_every_panel_is_placed(dashboard):
    every = dash.panels(dashboard, include_rows=True)
    ids = collections.Counter(panel['id'] for panel in every)
    assert [panel_id for panel_id, count in ids.items() if count > 1] == []
    assert all(isinstance(panel_id, int) for panel_id in ids)
    for panel in every:
        assert set(panel['gridPos']) >= {'h', 'w', 'x', 'y'}, panel['title']
        assert panel['gridPos']['x'] + panel['gridPos']['w'] <= 24, panel['title']


def test_panels_include_the_collapsed_rows(dashboard):
    nested = [panel for row in dashboard['panels'] if row['type'] == 'row' for panel in row['panels']]
    assert nested, 'the dashboard has a collapsed row'
    assert all(panel in dash.panels(dashboard) for panel in nested)
    assert all(panel['type'] != 'row' for panel in dash.panels(dashboard))


def test_every_panel_queries_prometheus(dashboard):
    for panel in dash.panels(dashboard):
        assert panel['type'] in ('timeseries', 'stat'), panel['title']
        assert panel['datasource'] == DATASOURCE, panel['title']
        assert panel['fieldConfig']['defaults'].get('unit'), panel['title']
        assert any(target.get('expr', '').strip() for target in panel['targets']), panel['title']
        refs = [target['refId'] for target in panel['targets']]
        assert len(refs) == len(set(refs)), panel['title']
        for target in panel['targets']:
            assert target['datasource'] == DATASOURCE, (panel['title'], target['refId'])


def test_queries_substitute_the_interval_variables(dashboard):
    found = dash.queries(dashboard, rate_interval='2m')
    assert len(found) == sum(len(panel['targets']) for panel in dash.panels(dashboard))
    assert not any('$' in query[2] for query in found)
    tps = [query[2] for query in found if query[0] == 'Transactions per second']
    assert tps == ['sum by (instance) (rate(pg_stat_database_xact_commit[2m]) + '
                   'rate(pg_stat_database_xact_rollback[2m]))']


def synthetic(*exprs):
    """A dashboard with one collapsed row holding a panel per expression, and one top-level panel."""
    def panel(number, expr):
        return {'id': number, 'title': 'P%d' % number, 'type': 'timeseries',
                'targets': [{'refId': 'A', 'expr': expr}, {'refId': 'B', 'expr': ''}]}
    return {'panels': [panel(1, 'up'),
                       {'id': 2, 'type': 'row', 'title': 'R', 'collapsed': True,
                        'panels': [panel(number, expr) for number, expr in enumerate(exprs, 3)]}]}


def test_queries_on_a_synthetic_dashboard():
    board = synthetic('rate(a[$__rate_interval])', 'rate(b[${__rate_interval}]) + increase(c[$__interval])',
                      'avg_over_time(d[$__range]) * on (x) group_left label_replace(e, "y", "$1", "z", "(.*)")')
    assert [panel['title'] for panel in dash.panels(board)] == ['P1', 'P3', 'P4', 'P5']
    assert [panel['title'] for panel in dash.panels(board, include_rows=True)] == ['P1', 'R', 'P3', 'P4', 'P5']
    assert dash.queries(board, rate_interval='5m') == [
        ('P1', 'A', 'up'),
        ('P3', 'A', 'rate(a[5m])'),
        ('P4', 'A', 'rate(b[5m]) + increase(c[5m])'),
        ('P5', 'A', 'avg_over_time(d[5m]) * on (x) group_left label_replace(e, "y", "$1", "z", "(.*)")'),
    ]


@pytest.mark.parametrize('expr', ['up{instance=~"$instance"}', 'rate(a[${interval}])', 'rate(a[$__interval_ms])',
                                  'up{job="[[job]]"}', 'rate(a[${__rate_interval:text}])'])
def test_queries_reject_an_unknown_variable(expr):
    with pytest.raises(ValueError, match="panel 'P4'"):
        dash.queries(synthetic('rate(a[$__rate_interval])', expr))


def test_queries_reject_a_window_that_is_no_duration():
    with pytest.raises(ValueError):
        dash.queries(synthetic('up'), rate_interval='$__rate_interval')


@pytest.mark.parametrize('expr, names', [
    ('up', {'up'}),
    ('sum by (instance) (rate(pg_stat_database_xact_commit[5m]) + rate(pg_stat_database_xact_rollback[5m]))',
     {'pg_stat_database_xact_commit', 'pg_stat_database_xact_rollback'}),
    ('node_filesystem_avail_bytes{fstype!~"tmpfs|overlay", mountpoint="/"} / node_filesystem_size_bytes{fstype!="x"}',
     {'node_filesystem_avail_bytes', 'node_filesystem_size_bytes'}),
    ('(time() - last_completion{type="any"}) / ignoring (type) max_age > bool 1',
     {'last_completion', 'max_age'}),
    ('age and on (instance) (is_replica == 0) or on(instance) group_left(slot_name) other offset 5m',
     {'age', 'is_replica', 'other'}),
    ('max(agent_ui_x) by (instance, state) unless ignoring(job) sum without (datname) (y[10m:1m] @ 1700000000)',
     {'agent_ui_x', 'y'}),
    ('clamp_min(sum(a), 1e3) * 0x1F + -Inf < NaN', {'a'}),
    ('label_replace(up{job="node"}, "host", "$1", "instance", "(by|on):.*")', {'up'}),
    ('{__name__="recorded:rate5m", job="x"} AND BY_the_way', {'recorded:rate5m', 'BY_the_way'}),
    ('count_values("version", build_info) > 0', {'build_info'}),
])
def test_metric_names(expr, names):
    assert dash.metric_names(expr) == names


def test_every_metric_is_known(dashboard):
    assert unknown_metrics(dashboard, exporter_metrics() | TEXTFILE_METRICS) == {}


def test_the_check_finds_an_unknown_metric(dashboard):
    known = exporter_metrics() | TEXTFILE_METRICS
    board = dict(dashboard, panels=dashboard['panels'] + synthetic(
        'agent_ui_connections_usage / on (instance) mysql_up')['panels'][1:])
    assert unknown_metrics(board, known) == {'P3': {'agent_ui_connections_usage', 'mysql_up'}}


def test_the_exporter_metrics_are_read():
    # The file's own query names, so that a rename there shows here.
    assert {'agent_ui_connections_used', 'agent_ui_connections_max', 'agent_ui_replication_lag_seconds',
            'agent_ui_replication_slot_active', 'agent_ui_archiver_failing',
            'agent_ui_activity_longest_transaction_seconds'} <= exporter_metrics()
    assert not exporter_metrics() & {'agent_ui_replication_slot_slot_name', 'agent_ui_activity_state'}


@pytest.mark.parametrize('subject', sorted(REQUIRED_SUBJECTS))
def test_the_dashboard_covers(dashboard, subject):
    readers = [query[0] for query in dash.queries(dashboard)
               if dash.metric_names(query[2]) & REQUIRED_SUBJECTS[subject]]
    assert readers, 'no panel shows %s' % subject
