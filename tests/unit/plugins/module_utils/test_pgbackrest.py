# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for plugins/module_utils/pgbackrest.py: the configuration of each kind of host, and info read.

The info samples are the shape pgBackRest 2.55 prints for ``pgbackrest info --output=json`` (captured from the lab's
repository host, then shortened).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import configparser

import pytest

from ansible_collections.agent_ui.postgresql.plugins.module_utils.pgbackrest import (
    archive_settings, config_sections, info_summary, render_ini, restore_plan,
)

TLS = {'ca': '/etc/pgbackrest/tls/ca.crt', 'cert': '/etc/pgbackrest/tls/host.crt', 'key': '/etc/pgbackrest/tls/host.key'}
PG = {'path': '/var/lib/postgresql/17/main', 'port': 5432, 'socket_path': '/var/run/postgresql'}
REPO = {'path': '/var/lib/pgbackrest', 'retention_full': 2, 'retention_diff': 6, 'cipher_type': 'aes-256-cbc'}


def repo_spec(**changes):
    spec = {'kind': 'repo', 'stanza': 'agent-ui', 'tls': dict(TLS, auth=['pg1', 'pg2', 'pg3']), 'repo': dict(REPO),
            'pg': [dict(PG, name=name, host=name) for name in ('pg1', 'pg2', 'pg3')]}
    spec.update(changes)
    return spec


def pg_spec(**changes):
    spec = {'kind': 'pg', 'stanza': 'agent-ui', 'tls': dict(TLS, auth=['backup1']), 'repo': {'host': 'backup1'},
            'pg': [dict(PG, name='pg1')]}
    spec.update(changes)
    return spec


def parsed(spec):
    """The file as an INI parser reads it; repeated keys (tls-server-auth) are collected apart."""
    text = render_ini(config_sections(spec))
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string('\n'.join(line for line in text.splitlines() if not line.startswith('tls-server-auth=')))
    auth = [line.split('=', 1)[1] for line in text.splitlines() if line.startswith('tls-server-auth=')]
    return parser, auth, text


def test_the_repository_host_reaches_every_postgresql_host_over_tls_and_lets_each_push_to_the_stanza():
    conf, auth, _text = parsed(repo_spec())
    assert conf['global']['repo1-path'] == '/var/lib/pgbackrest'
    assert conf['global']['repo1-cipher-type'] == 'aes-256-cbc'
    assert conf['global']['repo1-retention-full'] == '2' and conf['global']['repo1-retention-diff'] == '6'
    assert conf['global']['tls-server-address'] == '*' and conf['global']['tls-server-port'] == '8432'
    assert auth == ['pg1=agent-ui', 'pg2=agent-ui', 'pg3=agent-ui']
    stanza = conf['agent-ui']
    for index, name in enumerate(('pg1', 'pg2', 'pg3'), start=1):
        assert stanza['pg%d-host' % index] == name
        assert stanza['pg%d-host-type' % index] == 'tls'
        assert stanza['pg%d-host-cert-file' % index] == TLS['cert']
        assert stanza['pg%d-path' % index] == PG['path']
    assert 'pg4-host' not in stanza
    assert 'repo1-host' not in conf['global']


def test_a_postgresql_host_pushes_to_the_repository_host_and_lets_only_it_in():
    conf, auth, _text = parsed(pg_spec())
    assert conf['global']['repo1-host'] == 'backup1' and conf['global']['repo1-host-type'] == 'tls'
    assert conf['global']['repo1-host-ca-file'] == TLS['ca']
    assert 'repo1-path' not in conf['global'] and 'repo1-cipher-type' not in conf['global']
    assert auth == ['backup1=agent-ui']
    assert dict(conf['agent-ui']) == {'pg1-path': PG['path'], 'pg1-port': '5432', 'pg1-socket-path': PG['socket_path']}


def test_a_local_repository_needs_no_tls_server():
    conf, auth, _text = parsed({'kind': 'local', 'stanza': 'agent-ui', 'repo': dict(REPO, cipher_type='none'),
                                'pg': [dict(PG, name='db1')]})
    assert auth == [] and not any(key.startswith('tls-') for key in conf['global'])
    assert 'repo1-cipher-type' not in conf['global']
    assert conf['agent-ui']['pg1-path'] == PG['path']


def test_the_cipher_passphrase_is_never_in_the_file():
    _conf, _auth, text = parsed(repo_spec())
    assert 'cipher-pass' not in text
    with pytest.raises(ValueError, match='repo1-cipher-pass is a secret'):
        config_sections(repo_spec(options={'repo1-cipher-pass': 'secret'}))


@pytest.mark.parametrize('key', ['repo1-path', 'pg1-path', 'tls-server-auth', 'archive-push-queue-max', 'backup-standby'])
def test_options_cannot_override_what_the_role_manages(key):
    with pytest.raises(ValueError, match='set by the role'):
        config_sections(repo_spec(options={key: 'x'}))


def test_free_options_are_rendered_with_booleans_as_y_or_n():
    conf, _auth, _text = parsed(repo_spec(options={'compress-type': 'zst', 'start-fast': True, 'delta': False,
                                                   'process-max': 2}))
    assert (conf['global']['compress-type'], conf['global']['start-fast'], conf['global']['delta']) == ('zst', 'y', 'n')
    assert conf['global']['process-max'] == '2'


def test_async_archiving_and_a_queue_limit_only_when_asked():
    conf, _auth, _text = parsed(pg_spec())
    assert 'archive-async' not in conf['global'] and 'archive-push-queue-max' not in conf['global']
    conf, _auth, _text = parsed(pg_spec(archive={'async': True, 'push_queue_max': '4GiB'}))
    assert conf['global']['archive-async'] == 'y' and conf['global']['spool-path'] == '/var/spool/pgbackrest'
    assert conf['global']['archive-push-queue-max'] == '4GiB'


def test_backup_from_a_standby_needs_one():
    conf, _auth, _text = parsed(repo_spec(backup_standby=True))
    assert conf['global']['backup-standby'] == 'y'
    conf, _auth, _text = parsed(repo_spec(backup_standby='prefer'))
    assert conf['global']['backup-standby'] == 'prefer'
    assert 'backup-standby' not in parsed(repo_spec(backup_standby=False))[0]['global']
    with pytest.raises(ValueError, match='needs a standby'):
        config_sections(repo_spec(backup_standby=True, pg=[dict(PG, name='pg1', host='pg1')]))
    with pytest.raises(ValueError, match='false, true or prefer'):
        config_sections(repo_spec(backup_standby='yes'))


@pytest.mark.parametrize('spec, message', [
    (repo_spec(kind='ssh'), 'kind must be one of'),
    (repo_spec(stanza='bad stanza'), 'stanza name'),
    (repo_spec(stanza=''), 'stanza name'),
    (repo_spec(pg=[]), 'no PostgreSQL host'),
    (pg_spec(pg=[dict(PG, name='pg1'), dict(PG, name='pg2')]), 'its own PostgreSQL only'),
    (repo_spec(tls=dict(TLS, auth=[])), 'auth'),
    (repo_spec(tls={'ca': TLS['ca']}), 'TLS needs cert'),
    (repo_spec(repo=dict(REPO, cipher_type='aes-128')), 'cipher_type must be one of'),
    (repo_spec(repo=dict(REPO, path='')), 'the repository needs path'),
    (pg_spec(repo={}), 'the repository host needs host'),
    (repo_spec(options={'Bad_Key': 1}), 'not a pgBackRest option name'),
    (repo_spec(options={'compress-type': 'zst\nrepo1-path=/tmp'}), 'one line'),
    (repo_spec(options={'compress-type': ''}), 'one line'),
], ids=['kind', 'stanza-blank', 'stanza-empty', 'no-pg', 'pg-many', 'no-auth', 'no-cert', 'cipher', 'repo-path',
        'repo-host', 'option-name', 'newline', 'empty-value'])
def test_bad_input_is_refused_with_a_message(spec, message):
    with pytest.raises(ValueError, match=message):
        config_sections(spec)


def test_render_ini_puts_the_header_first_as_comments():
    text = render_ini([('global', [('a', '1')]), ('s', [('b', '2')])], header='Managed by Ansible\n\nDo not edit')
    assert text == '# Managed by Ansible\n#\n# Do not edit\n\n[global]\na=1\n\n[s]\nb=2\n'


def test_archive_settings_push_and_get_through_the_stanza():
    assert archive_settings('agent-ui') == {
        'archive_command': 'pgbackrest --stanza=agent-ui archive-push %p',
        'restore_command': 'pgbackrest --stanza=agent-ui archive-get %f "%p"',
    }
    assert archive_settings('s', '/etc/x.conf')['archive_command'] == 'pgbackrest --config=/etc/x.conf --stanza=s archive-push %p'
    with pytest.raises(ValueError):
        archive_settings("x'; rm -rf /")


INFO_OK = [{
    'archive': [
        {'database': {'id': 1, 'repo-key': 1}, 'id': '17-1', 'max': '000000020000000000000009',
         'min': '000000010000000000000003'},
    ],
    'backup': [
        {'archive': {'start': '000000010000000000000005', 'stop': '000000010000000000000005'},
         'backrest': {'format': 5, 'version': '2.55.1'}, 'database': {'id': 1, 'repo-key': 1}, 'error': False,
         'info': {'delta': 800, 'repository': {'delta': 100, 'size': 300}, 'size': 2400}, 'label': '20261201-222500F_20261201-223000D',
         'lsn': {'start': '0/5000028', 'stop': '0/5000120'}, 'prior': '20261201-222500F', 'reference': ['20261201-222500F'],
         'timestamp': {'start': 1796164200, 'stop': 1796164205}, 'type': 'diff'},
        {'archive': {'start': '000000010000000000000003', 'stop': '000000010000000000000003'},
         'backrest': {'format': 5, 'version': '2.55.1'}, 'database': {'id': 1, 'repo-key': 1}, 'error': False,
         'info': {'delta': 2400, 'repository': {'delta': 300, 'size': 300}, 'size': 2400}, 'label': '20261201-222500F',
         'lsn': {'start': '0/3000028', 'stop': '0/3000120'}, 'prior': None, 'reference': None,
         'timestamp': {'start': 1796163900, 'stop': 1796163910}, 'type': 'full'},
    ],
    'cipher': 'aes-256-cbc', 'db': [{'id': 1, 'repo-key': 1, 'system-id': 7340134298521411262, 'version': '17'}],
    'name': 'agent-ui', 'repo': [{'cipher': 'aes-256-cbc', 'key': 1, 'status': {'code': 0, 'message': 'ok'}}],
    'status': {'code': 0, 'lock': {'backup': {'held': False}}, 'message': 'ok'},
}]
INFO_MISSING = [{'archive': [], 'backup': [], 'cipher': 'none', 'db': [], 'name': 'agent-ui',
                 'repo': [{'cipher': 'none', 'key': 1, 'status': {'code': 1, 'message': 'missing stanza path'}}],
                 'status': {'code': 1, 'lock': {'backup': {'held': False}}, 'message': 'missing stanza path'}}]


def test_info_lists_the_backups_oldest_first_with_their_wal_range():
    summary = info_summary(INFO_OK, 'agent-ui')
    assert summary['exists'] and summary['status_code'] == 0 and summary['cipher'] == 'aes-256-cbc'
    assert (summary['db_version'], summary['system_id']) == ('17', 7340134298521411262)
    assert [backup['type'] for backup in summary['backups']] == ['full', 'diff']
    latest = summary['latest']
    assert latest['label'] == '20261201-222500F_20261201-223000D' and latest['prior'] == '20261201-222500F'
    assert (latest['wal_start'], latest['lsn_stop'], latest['repo_size']) == ('000000010000000000000005', '0/5000120', 300)
    assert (summary['archive_min'], summary['archive_max']) == ('000000010000000000000003', '000000020000000000000009')
    assert summary['timelines'][0]['timeline'] == 1


def test_info_of_a_missing_stanza():
    assert info_summary(INFO_MISSING, 'agent-ui')['exists'] is False
    other = info_summary(INFO_OK, 'other')
    assert other['exists'] is False and other['latest'] is None and 'not in the repository' in other['status']


def test_info_that_is_not_the_printed_list_is_refused():
    with pytest.raises(ValueError, match='--output=json'):
        info_summary('ok', 'agent-ui')


# --- restore_plan ------------------------------------------------------------------------------------------------
# The two backups of INFO_OK: the full ended at 1796163910 (2026-12-01 22:25:10 UTC) at 0/3000120, the diff at
# 1796164205 (22:30:05) at 0/5000120.
SUMMARY = info_summary(INFO_OK, 'agent-ui')
NOW = 1796170000.0


def test_latest_restores_the_newest_backup_and_all_the_wal():
    plan = restore_plan(SUMMARY, 'latest', now=NOW)
    assert plan['ok'] and plan['set'] == '20261201-222500F_20261201-223000D'
    assert plan['options'] == ['--set=20261201-222500F_20261201-223000D']


@pytest.mark.parametrize('value, chosen', [
    ('2026-12-01 22:28:00+00', '20261201-222500F'),
    ('2026-12-01 23:28:00+01:00', '20261201-222500F'),
    ('2026-12-01T22:31:00Z', '20261201-222500F_20261201-223000D'),
    ('2026-12-01 22:30:05 UTC', '20261201-222500F_20261201-223000D'),
], ids=['utc-offset', 'other-zone', 'iso-z', 'at-the-diff-end'])
def test_a_time_restores_the_newest_backup_that_ended_before_it(value, chosen):
    plan = restore_plan(SUMMARY, 'time', value, now=NOW)
    assert plan['ok'], plan['reason']
    assert plan['set'] == chosen
    assert plan['options'] == ['--set=' + chosen, '--type=time', '--target=' + value, '--target-action=promote']


@pytest.mark.parametrize('value, message', [
    ('2026-12-31 00:00:00+00', 'is in the future'),
    ('2026-12-01 22:20:00+00', 'before the end of the first backup (20261201-222500F, which ended at 2026-12-01 22:25:10+00)'),
    ('2026-12-01 22:28:00', 'time zone'),
    ('yesterday', 'time zone'),
    ('2026-02-30 10:00:00+00', 'is not a date and time that exists'),
    ('', 'needs restore_target_value'),
], ids=['future', 'before-first-backup', 'no-zone', 'words', 'no-such-day', 'empty'])
def test_a_time_that_cannot_be_reached_is_refused(value, message):
    plan = restore_plan(SUMMARY, 'time', value, now=NOW)
    assert not plan['ok'] and message in plan['reason'], plan['reason']
    assert plan['set'] is None and plan['options'] == []


def test_an_lsn_restores_the_newest_backup_that_ended_before_it():
    assert restore_plan(SUMMARY, 'lsn', '0/4000000')['set'] == '20261201-222500F'
    assert restore_plan(SUMMARY, 'lsn', '0/6000000')['set'] == '20261201-222500F_20261201-223000D'
    refused = restore_plan(SUMMARY, 'lsn', '0/2000000')
    assert not refused['ok'] and 'before the end of the first backup' in refused['reason']
    assert 'not like' in restore_plan(SUMMARY, 'lsn', 'five')['reason']


def test_a_named_restore_point_and_a_chosen_set():
    plan = restore_plan(SUMMARY, 'name', 'before_drop', backup_set='20261201-222500F')
    assert plan['ok'] and plan['options'] == ['--set=20261201-222500F', '--type=name', '--target=before_drop',
                                              '--target-action=promote']
    assert 'not a name' in restore_plan(SUMMARY, 'name', "x'; drop")['reason']
    assert 'is not in the repository' in restore_plan(SUMMARY, 'latest', backup_set='nope')['reason']
    late = restore_plan(SUMMARY, 'time', '2026-12-01 22:28:00+00', now=NOW, backup_set='20261201-222500F_20261201-223000D')
    assert not late['ok'] and 'ends after the target' in late['reason']


@pytest.mark.parametrize('summary, target, message', [
    (SUMMARY, 'immediate', 'restore_target must be one of'),
    (info_summary(INFO_MISSING, 'agent-ui'), 'latest', 'not in the repository'),
    (dict(SUMMARY, backups=[]), 'latest', 'no backup'),
], ids=['type', 'no-stanza', 'no-backup'])
def test_a_restore_that_has_nothing_to_work_with_is_refused(summary, target, message):
    plan = restore_plan(summary, target, now=NOW)
    assert not plan['ok'] and message in plan['reason']
