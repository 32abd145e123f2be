# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""pgBackRest: the configuration file of each kind of host, and what ``pgbackrest info`` says.

Pure functions, unit-tested without Ansible or pgBackRest. Three kinds of host:

``repo``   the repository host: holds the repository, runs the TLS server the PostgreSQL hosts push WAL to, and
           reaches every PostgreSQL host's TLS server to take backups (it finds the primary itself).
``pg``     a PostgreSQL host whose repository is on a repository host, over TLS.
``local``  a PostgreSQL host that keeps its repository on a local path (a standalone server).

The repository's cipher passphrase is never part of these files: the role writes it to a drop-in of its own
(``conf.d``), readable by the pgBackRest user alone, so that the main file can be shown in a diff.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import calendar
import datetime
import re
import time

from ansible_collections.agent_ui.postgresql.plugins.module_utils.pg_cluster import parse_lsn

KINDS = ('repo', 'pg', 'local')
_STANZA = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')
_OPTION = re.compile(r'^[a-z0-9][a-z0-9-]*$')
# What the operator cannot set through the free-form options: the role manages it, or it is a secret.
_MANAGED = re.compile(r'^(repo1-(path|host.*|cipher-.*|retention-.*)|pg[0-9]+-.*|tls-server-.*|archive-async|spool-path|'
                      r'archive-push-queue-max|backup-standby|log-path)$')
CIPHER_TYPES = ('none', 'aes-256-cbc')
# backup-standby: y fails a backup when no standby streams; prefer (pgBackRest 2.54 and later) takes it from the
# primary then.
STANDBY_CHOICES = (None, False, True, 'prefer')


def _text(value, what):
    """One configuration value as pgBackRest reads it: booleans as y/n, no line breaks."""
    if isinstance(value, bool):
        return 'y' if value else 'n'
    if value is None:
        raise ValueError('%s has no value' % what)
    text = str(value)
    if '\n' in text or '\r' in text or text != text.strip() or text == '':
        raise ValueError('%s must be one line without leading or trailing blanks, not %r' % (what, text))
    return text


def _require(mapping, key, where):
    value = (mapping or {}).get(key)
    if value in (None, ''):
        raise ValueError('%s needs %s' % (where, key))
    return value


def _pg_options(index, pg, remote, tls):
    """The pg<N>-* options of one PostgreSQL host, as seen from the host whose file this is."""
    prefix = 'pg%d-' % index
    options = [(prefix + 'path', _require(pg, 'path', 'a PostgreSQL host')),
               (prefix + 'port', pg.get('port') or 5432)]
    if pg.get('socket_path'):
        options.append((prefix + 'socket-path', pg['socket_path']))
    if remote:
        options += [(prefix + 'host', _require(pg, 'host', 'a remote PostgreSQL host')),
                    (prefix + 'host-type', 'tls'),
                    (prefix + 'host-port', pg.get('tls_port') or tls.get('port') or 8432),
                    (prefix + 'host-ca-file', tls['ca']),
                    (prefix + 'host-cert-file', tls['cert']),
                    (prefix + 'host-key-file', tls['key'])]
    return options


def _tls_server(tls):
    auth = tls.get('auth') or []
    if isinstance(auth, str) or not auth:
        raise ValueError('the TLS server needs auth: the list of client certificate names it lets in')
    return [('tls-server-address', tls.get('address') or '*'),
            ('tls-server-port', tls.get('port') or 8432),
            ('tls-server-ca-file', tls['ca']),
            ('tls-server-cert-file', tls['cert']),
            ('tls-server-key-file', tls['key'])]


def _repo_options(repo):
    """repo1-* options of a host that holds the repository itself (repo or local)."""
    cipher = repo.get('cipher_type') or 'none'
    if cipher not in CIPHER_TYPES:
        raise ValueError('repo cipher_type must be one of %s, not %r' % (', '.join(CIPHER_TYPES), cipher))
    options = [('repo1-path', _require(repo, 'path', 'the repository')),
               ('repo1-retention-full-type', 'count'),
               ('repo1-retention-full', int(_require(repo, 'retention_full', 'the repository')))]
    if repo.get('retention_diff'):
        options.append(('repo1-retention-diff', int(repo['retention_diff'])))
    if cipher != 'none':
        options.append(('repo1-cipher-type', cipher))
    return options


def config_sections(spec):
    """The sections of pgbackrest.conf for one host, as [(section, [(key, text)])], in file order.

    ``spec``: kind (repo, pg or local), stanza, tls {ca, cert, key, port, address, auth: [client names]} (not for
    local), repo {path, retention_full, retention_diff, cipher_type} (repo, local) or {host, port} (pg), pg: the
    PostgreSQL hosts [{name, host, path, port, socket_path, tls_port}] (repo: all of them; pg and local: itself),
    archive {async, spool_path, push_queue_max, process_max}, backup_standby, log_path, options {key: value}:
    more [global] options (the managed ones and the cipher passphrase are refused).
    """
    kind = spec.get('kind')
    if kind not in KINDS:
        raise ValueError('kind must be one of %s, not %r' % (', '.join(KINDS), kind))
    stanza = spec.get('stanza') or ''
    if not _STANZA.match(stanza):
        raise ValueError('the stanza name %r must be letters, digits, "_", "-" or "." (not first)' % stanza)
    tls = spec.get('tls') or {}
    repo = spec.get('repo') or {}
    pgs = spec.get('pg') or []
    archive = spec.get('archive') or {}
    if not pgs:
        raise ValueError('no PostgreSQL host for stanza %s' % stanza)
    if kind != 'repo' and len(pgs) != 1:
        raise ValueError('a %s host configures its own PostgreSQL only, not %d' % (kind, len(pgs)))
    if kind != 'local':
        for key in ('ca', 'cert', 'key'):
            _require(tls, key, 'TLS')

    options = [('log-path', spec.get('log_path') or '/var/log/pgbackrest'),
               ('log-level-console', 'info'),
               ('log-level-file', 'detail')]
    if kind == 'pg':
        options += [('repo1-host', _require(repo, 'host', 'the repository host')),
                    ('repo1-host-type', 'tls'),
                    ('repo1-host-port', repo.get('port') or 8432),
                    ('repo1-host-ca-file', tls['ca']),
                    ('repo1-host-cert-file', tls['cert']),
                    ('repo1-host-key-file', tls['key'])]
    else:
        options += _repo_options(repo)
    if kind != 'local':
        options += _tls_server(tls)
    if archive.get('async'):
        options += [('archive-async', True), ('spool-path', archive.get('spool_path') or '/var/spool/pgbackrest')]
    if archive.get('push_queue_max') not in (None, ''):
        options.append(('archive-push-queue-max', archive['push_queue_max']))
    standby = spec.get('backup_standby')
    if standby not in STANDBY_CHOICES:
        raise ValueError('backup_standby must be false, true or prefer, not %r' % (standby,))
    if kind == 'repo' and standby:
        if len(pgs) < 2:
            raise ValueError('backup_standby needs a standby: the stanza has one PostgreSQL host')
        options.append(('backup-standby', True if standby is True else 'prefer'))
    extra = spec.get('options') or {}
    for key in sorted(extra):
        if not _OPTION.match(str(key)):
            raise ValueError('option name %r is not a pgBackRest option name (lower case, digits and "-")' % (key,))
        if 'cipher-pass' in key:
            raise ValueError('%s is a secret: set pgbackrest_repo_cipher_pass (from vault) instead' % key)
        if _MANAGED.match(key):
            raise ValueError('%s is set by the role from its own variables; it cannot be overridden in options' % key)
        options.append((key, extra[key]))
    global_lines = []
    for key, value in options:
        if isinstance(value, (list, tuple)):
            global_lines += [(key, _text(item, key)) for item in value]
        else:
            global_lines.append((key, _text(value, key)))
    if kind != 'local':
        # Which client may use which stanza: one line per client certificate name.
        global_lines += [('tls-server-auth', _text('%s=%s' % (client, stanza), 'tls-server-auth')) for client in tls['auth']]

    stanza_lines = []
    if kind == 'repo':
        for index, pg in enumerate(pgs, start=1):
            stanza_lines += [(key, _text(value, key)) for key, value in _pg_options(index, pg, True, tls)]
    else:
        stanza_lines += [(key, _text(value, key)) for key, value in _pg_options(1, pgs[0], False, tls)]
    return [('global', global_lines), (stanza, stanza_lines)]


def render_ini(sections, header=None):
    """pgbackrest.conf text from config_sections()."""
    lines = []
    if header:
        lines += ['# ' + line if line else '#' for line in header.splitlines()]
    for name, entries in sections:
        if lines:
            lines.append('')
        lines.append('[%s]' % name)
        lines += ['%s=%s' % (key, value) for key, value in entries]
    return '\n'.join(lines) + '\n'


def archive_settings(stanza, config_path=None):
    """The PostgreSQL settings that archive WAL into the stanza and read it back in recovery."""
    if not _STANZA.match(stanza or ''):
        raise ValueError('the stanza name %r is not valid' % (stanza,))
    config = ' --config=%s' % config_path if config_path else ''
    return {
        'archive_command': 'pgbackrest%s --stanza=%s archive-push %%p' % (config, stanza),
        'restore_command': 'pgbackrest%s --stanza=%s archive-get %%f "%%p"' % (config, stanza),
    }


def _stanza_entry(info, stanza):
    if isinstance(info, dict):
        info = [info]
    if not isinstance(info, list):
        raise ValueError('pgbackrest info must be the list that --output=json prints')
    for entry in info:
        if isinstance(entry, dict) and entry.get('name') == stanza:
            return entry
    return None


def info_summary(info, stanza):
    """What ``pgbackrest info --output=json`` says of one stanza, flattened.

    {exists, db_version, system_id, status_code, status, cipher, backups: [{label, type, prior, start, stop, lsn_start, lsn_stop,
    wal_start, wal_stop, size, delta, repo_size, repo_delta, error}] oldest first, latest: the last backup or None,
    archive_min, archive_max, timelines: [{id, min, max}]}.
    ``exists`` is false when the stanza is missing (status code 1) or not listed at all.
    """
    entry = _stanza_entry(info, stanza)
    if entry is None:
        return {'exists': False, 'db_version': None, 'system_id': None, 'status_code': None,
                'status': 'stanza %s is not in the repository' % stanza,
                'cipher': None, 'backups': [], 'latest': None, 'archive_min': None, 'archive_max': None,
                'timelines': []}
    status = entry.get('status') or {}
    code = status.get('code')
    backups = []
    for backup in entry.get('backup') or []:
        timestamp = backup.get('timestamp') or {}
        lsn = backup.get('lsn') or {}
        archive = backup.get('archive') or {}
        info_block = backup.get('info') or {}
        repository = info_block.get('repository') or {}
        backups.append({
            'label': backup.get('label'), 'type': backup.get('type'), 'prior': backup.get('prior'),
            'start': timestamp.get('start'), 'stop': timestamp.get('stop'),
            'lsn_start': lsn.get('start'), 'lsn_stop': lsn.get('stop'),
            'wal_start': archive.get('start'), 'wal_stop': archive.get('stop'),
            'size': info_block.get('size'), 'delta': info_block.get('delta'),
            'repo_size': repository.get('size'), 'repo_delta': repository.get('delta'),
            'error': bool(backup.get('error')),
        })
    backups.sort(key=lambda item: (item['stop'] or 0, item['label'] or ''))
    timelines = []
    for archive in entry.get('archive') or []:
        wal_id = archive.get('id') or ''
        first, last = archive.get('min'), archive.get('max')
        timeline = int(first[:8], 16) if first and len(first) >= 8 else None
        timelines.append({'id': wal_id, 'timeline': timeline, 'min': first, 'max': last})
    archived = [item for item in timelines if item['max']]
    cipher = entry.get('cipher')
    databases = [db for db in entry.get('db') or [] if isinstance(db, dict)]
    current = databases[-1] if databases else {}
    return {
        'exists': code != 1,
        'db_version': current.get('version'),
        'system_id': current.get('system-id'),
        'status_code': code,
        'status': status.get('message'),
        'cipher': cipher,
        'backups': backups,
        'latest': backups[-1] if backups else None,
        'archive_min': min(item['min'] for item in archived) if archived else None,
        'archive_max': max(item['max'] for item in archived) if archived else None,
        'timelines': timelines,
    }


# --- Restores -------------------------------------------------------------------------------------------------------

TARGET_TYPES = ('latest', 'time', 'lsn', 'name')
_TIME = re.compile(r'^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?\s*(Z|UTC|[+-]\d{2}(:?\d{2})?)$')
_LSN = re.compile(r'^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$')
_NAME = re.compile(r'^[A-Za-z0-9_.:-]{1,63}$')


def parse_target_time(text):
    """Seconds since the epoch of a recovery target time, which must name its time zone (Z, UTC, +HH, +HH:MM)."""
    match = _TIME.match((text or '').strip())
    if not match:
        raise ValueError('the target time %r is not "YYYY-MM-DD HH:MM:SS[.ffffff]" followed by its time zone '
                         '(Z, UTC, +HH or +HH:MM), e.g. "2026-12-01 14:30:00+00"' % (text,))
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction = float(match.group(7) or 0)
    zone = match.group(8)
    offset = 0
    if zone not in ('Z', 'UTC'):
        sign = -1 if zone[0] == '-' else 1
        digits = zone[1:].replace(':', '')
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)
    try:
        datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise ValueError('the target time %r is not a date and time that exists' % (text,))
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) + fraction - offset


def _utc(epoch):
    return time.strftime('%Y-%m-%d %H:%M:%S+00', time.gmtime(epoch))


def restore_plan(summary, target, value=None, now=None, backup_set=None):
    """Which backup set to restore and the pgBackRest options for a recovery target, or why not.

    ``summary``: info_summary() of the stanza. ``target``: latest, time, lsn or name; ``value``: the time (with its
    zone), the LSN or the restore point's name. ``now``: seconds since the epoch (the controller's clock), to refuse a
    time in the future. ``backup_set``: a label chosen by the operator instead.
    Returns {ok, reason, set, set_stop, target, value, options: [pgbackrest restore options]}.
    """
    plan = {'ok': False, 'reason': '', 'set': None, 'set_stop': None, 'target': target, 'value': value, 'options': []}
    if target not in TARGET_TYPES:
        plan['reason'] = 'restore_target must be one of %s, not %r.' % (', '.join(TARGET_TYPES), target)
        return plan
    if not summary or not summary.get('exists'):
        plan['reason'] = 'the stanza is not in the repository (%s).' % ((summary or {}).get('status') or 'no info')
        return plan
    backups = [backup for backup in summary.get('backups') or [] if not backup.get('error')]
    if not backups:
        plan['reason'] = 'the stanza has no backup to restore from.'
        return plan
    first = backups[0]
    if target != 'latest' and value in (None, ''):
        plan['reason'] = 'restore_target=%s needs restore_target_value (%s).' % (
            target, {'time': 'a time with its zone', 'lsn': 'an LSN like 0/5000028', 'name': 'a restore point name'}[target])
        return plan
    candidates = backups
    if target == 'time':
        try:
            when = parse_target_time(value)
        except ValueError as exc:
            plan['reason'] = '%s.' % exc
            return plan
        if now is not None and when > now:
            plan['reason'] = 'the target time %s is in the future (it is %s now on the controller).' % (_utc(when), _utc(now))
            return plan
        if when < (first.get('stop') or 0):
            plan['reason'] = ('the target time %s is before the end of the first backup (%s, which ended at %s): nothing in '
                              'the repository can be restored to it. The earliest time is %s.'
                              % (_utc(when), first['label'], _utc(first['stop']), _utc(first['stop'])))
            return plan
        candidates = [backup for backup in backups if (backup.get('stop') or 0) <= when]
        plan['options'] = ['--type=time', '--target=%s' % value.strip()]
    elif target == 'lsn':
        if not _LSN.match(value.strip()):
            plan['reason'] = 'the target LSN %r is not like 0/5000028.' % (value,)
            return plan
        wanted = parse_lsn(value.strip())
        candidates = [backup for backup in backups if backup.get('lsn_stop') and parse_lsn(backup['lsn_stop']) <= wanted]
        if not candidates:
            plan['reason'] = ('the target LSN %s is before the end of the first backup (%s, at %s): nothing in the '
                              'repository can be restored to it.' % (value.strip(), first['label'], first.get('lsn_stop')))
            return plan
        plan['options'] = ['--type=lsn', '--target=%s' % value.strip()]
    elif target == 'name':
        if not _NAME.match(value.strip()):
            plan['reason'] = 'the restore point name %r is not a name pg_create_restore_point() would take here.' % (value,)
            return plan
        plan['options'] = ['--type=name', '--target=%s' % value.strip()]
    if backup_set:
        chosen = [backup for backup in backups if backup['label'] == backup_set]
        if not chosen:
            plan['reason'] = 'backup_set %s is not in the repository (it has: %s).' % (
                backup_set, ', '.join(backup['label'] for backup in backups))
            return plan
        if chosen[0] not in candidates:
            plan['reason'] = 'backup_set %s ends after the target: it cannot be restored to it.' % backup_set
            return plan
        candidates = chosen
    chosen = candidates[-1]
    plan.update(ok=True, set=chosen['label'], set_stop=chosen.get('stop'))
    plan['options'] = ['--set=%s' % chosen['label']] + plan['options']
    if target != 'latest':
        # Stop at the target and open for writes there (a drill or a disaster), not pause.
        plan['options'].append('--target-action=promote')
    return plan
