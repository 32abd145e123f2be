# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the collection's textfile metrics for the node exporter (installed by agent_ui.postgresql.exporters).

- agent_ui_tls.prom: when each certificate matching the globs expires, and whether it is a CA;
- agent_ui_pgbackrest.prom (with --pgbackrest-stanza): when each stanza's last backup of each type completed, the age
  after which it is overdue, and pgbackrest info's status code.

Each file is written beside its final name and renamed over it, so the node exporter never reads half a file. A
certificate that cannot be read, or a pgbackrest info that fails, is a metric too (the alerts see it), never a crash.
"""

import argparse
import glob
import json
import os
import ssl
import subprocess
import sys
import tempfile

BACKUP_TYPES = ('full', 'diff', 'incr')


def label_value(text):
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return str(text).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def sample(name, labels, value):
    """One line of the text format."""
    inner = ','.join('%s="%s"' % (key, label_value(labels[key])) for key in sorted(labels))
    return '%s{%s} %s' % (name, inner, repr(float(value)) if not isinstance(value, int) else value)


def parse_x509_text(text):
    """(not_after as Unix time, is a CA) from `openssl x509 -noout -enddate -ext basicConstraints`."""
    not_after = None
    is_ca = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('notAfter='):
            not_after = int(ssl.cert_time_to_seconds(line.split('=', 1)[1].strip()))
        elif line.replace(' ', '').upper().startswith('CA:TRUE'):
            is_ca = True
    if not_after is None:
        raise ValueError('no notAfter in the output of openssl')
    return not_after, is_ca


def certificate_lines(found):
    """The text of agent_ui_tls.prom from [(path, not_after, is_ca) or (path, None, error)]."""
    lines = ['# HELP agent_ui_tls_certificate_not_after_timestamp_seconds When the certificate expires (Unix time).',
             '# TYPE agent_ui_tls_certificate_not_after_timestamp_seconds gauge',
             '# HELP agent_ui_tls_certificate_read_error 1 when the certificate file could not be read.',
             '# TYPE agent_ui_tls_certificate_read_error gauge']
    for path, not_after, extra in sorted(found, key=lambda item: item[0]):
        if not_after is None:
            lines.append(sample('agent_ui_tls_certificate_read_error', {'path': path}, 1))
            continue
        lines.append(sample('agent_ui_tls_certificate_not_after_timestamp_seconds',
                            {'path': path, 'ca': 'true' if extra else 'false'}, not_after))
        lines.append(sample('agent_ui_tls_certificate_read_error', {'path': path}, 0))
    return lines


def read_certificate(path):
    """(path, not_after, is_ca), or (path, None, the error)."""
    try:
        result = subprocess.run(['openssl', 'x509', '-noout', '-enddate', '-ext', 'basicConstraints', '-in', path],
                                capture_output=True, text=True, check=False, timeout=30)
        if result.returncode != 0:
            return path, None, result.stderr.strip()
        not_after, is_ca = parse_x509_text(result.stdout)
        return path, not_after, is_ca
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return path, None, str(exc)


def backup_lines(stanza, info, max_age):
    """The text of agent_ui_pgbackrest.prom from `pgbackrest --output=json info` (parsed; None when it failed)."""
    lines = ['# HELP agent_ui_pgbackrest_backup_last_completion_timestamp_seconds When the stanza\'s last backup of '
             'this type completed (Unix time; 0 when it has none; type any: of every type).',
             '# TYPE agent_ui_pgbackrest_backup_last_completion_timestamp_seconds gauge',
             '# HELP agent_ui_pgbackrest_backup_max_age_seconds Age after which the last backup is overdue.',
             '# TYPE agent_ui_pgbackrest_backup_max_age_seconds gauge',
             '# HELP agent_ui_pgbackrest_stanza_status_code pgbackrest info\'s status code (0 ok; -1 info failed).',
             '# TYPE agent_ui_pgbackrest_stanza_status_code gauge']
    entry = None
    for candidate in info or []:
        if candidate.get('name') == stanza:
            entry = candidate
    code = -1 if entry is None else int((entry.get('status') or {}).get('code', -1))
    last = {}
    for backup in (entry or {}).get('backup') or []:
        if backup.get('error'):
            continue
        stop = int((backup.get('timestamp') or {}).get('stop') or 0)
        kind = backup.get('type', 'full')
        last[kind] = max(last.get(kind, 0), stop)
    for kind in BACKUP_TYPES:
        if kind in last:
            lines.append(sample('agent_ui_pgbackrest_backup_last_completion_timestamp_seconds',
                                {'stanza': stanza, 'type': kind}, last[kind]))
    lines.append(sample('agent_ui_pgbackrest_backup_last_completion_timestamp_seconds',
                        {'stanza': stanza, 'type': 'any'}, max(last.values()) if last else 0))
    lines.append(sample('agent_ui_pgbackrest_backup_max_age_seconds', {'stanza': stanza}, int(max_age)))
    lines.append(sample('agent_ui_pgbackrest_stanza_status_code', {'stanza': stanza}, code))
    return lines


def read_pgbackrest(stanza, user):
    """pgbackrest info of the stanza as the repository's user, parsed; None when it fails."""
    command = ['pgbackrest', '--stanza=' + stanza, '--output=json', 'info']
    if user and user != 'root':
        command = ['runuser', '-u', user, '--'] + command
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            sys.stderr.write('pgbackrest info failed: %s\n' % result.stderr.strip())
            return None
        return json.loads(result.stdout)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        sys.stderr.write('pgbackrest info failed: %s\n' % exc)
        return None


def write_atomically(directory, name, lines):
    """Write lines to directory/name through a temporary file in the same directory (0644)."""
    handle, temporary = tempfile.mkstemp(prefix='.' + name + '.', dir=directory)
    try:
        with os.fdopen(handle, 'w') as stream:
            stream.write('\n'.join(lines) + '\n')
        os.chmod(temporary, 0o644)
        os.rename(temporary, os.path.join(directory, name))
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output', required=True, help='the node exporter\'s textfile directory')
    parser.add_argument('--certificates', nargs='*', default=[], help='globs of certificate files')
    parser.add_argument('--pgbackrest-stanza', default='', help='a stanza of this repository host')
    parser.add_argument('--pgbackrest-user', default='postgres')
    parser.add_argument('--pgbackrest-max-age', type=int, default=93600)
    args = parser.parse_args(argv)
    paths = sorted({path for pattern in args.certificates for path in glob.glob(pattern)})
    write_atomically(args.output, 'agent_ui_tls.prom', certificate_lines([read_certificate(path) for path in paths]))
    if args.pgbackrest_stanza:
        info = read_pgbackrest(args.pgbackrest_stanza, args.pgbackrest_user)
        write_atomically(args.output, 'agent_ui_pgbackrest.prom',
                         backup_lines(args.pgbackrest_stanza, info, args.pgbackrest_max_age))
    return 0


if __name__ == '__main__':
    sys.exit(main())
