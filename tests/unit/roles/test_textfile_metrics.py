# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for roles/exporters/files/agent_ui_textfile_metrics.py, the node exporter's textfile metrics.

The pure functions on sample openssl and ``pgbackrest --output=json info`` output; then main() end to end on real
certificates (made here with the cryptography package) through the real openssl binary. Every sample line must parse
as the Prometheus text format.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import importlib.util
import os
import pathlib
import re
import shutil
import stat

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
SCRIPT = REPO / 'roles' / 'exporters' / 'files' / 'agent_ui_textfile_metrics.py'

_spec = importlib.util.spec_from_file_location('agent_ui_textfile_metrics', str(SCRIPT))
metrics = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(metrics)

# name{label="value",...} value: label values escape backslash, double quote and newline.
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:%s)(?:,%s)*)?\} (\S+)$' % (_LABEL, _LABEL))
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
UNESCAPE = {'\\\\': '\\', '\\"': '"', '\\n': '\n'}


def parse(lines):
    """The samples of text-format lines: [(name, {label: value}, float)]; comments must be HELP or TYPE."""
    samples = []
    for line in lines:
        assert '\n' not in line, line
        if line.startswith('#'):
            assert re.match(r'^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* \S', line), line
            continue
        match = SAMPLE.match(line)
        assert match, 'not a sample: %r' % line
        labels = dict((key, re.sub(r'\\[\\"n]', lambda m: UNESCAPE[m.group(0)], value))
                      for key, value in LABEL.findall(match.group(2) or ''))
        samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def values(lines, name):
    """{frozenset of label items: value} of the samples named ``name``."""
    return dict((frozenset(labels.items()), value) for sample_name, labels, value in parse(lines) if sample_name == name)


# ---------------------------------------------------------------------------
# label_value and sample
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('text, escaped', [
    ('/etc/ssl/certs/pg1.crt', '/etc/ssl/certs/pg1.crt'),
    ('a"b', 'a\\"b'),
    ('a\\b', 'a\\\\b'),
    ('line\nbreak', 'line\\nbreak'),
    ('\\"\n', '\\\\\\"\\n'),
    (42, '42'),
    (u'h\u00f4te', u'h\u00f4te'),
])
def test_label_value_escapes_backslash_quote_and_newline(text, escaped):
    assert metrics.label_value(text) == escaped


def test_a_label_value_reads_back_as_it_was():
    text = 'C:\\certs\\"odd"\nname.crt'
    [(name, labels, value)] = parse([metrics.sample('x_y', {'path': text, 'a': 'b'}, 3)])
    assert (name, labels, value) == ('x_y', {'path': text, 'a': 'b'}, 3.0)


def test_sample_sorts_labels_and_writes_integers_and_floats():
    assert metrics.sample('m', {'b': '2', 'a': '1'}, 7) == 'm{a="1",b="2"} 7'
    assert metrics.sample('m', {'a': '1'}, 1.5) == 'm{a="1"} 1.5'
    assert metrics.sample('m', {'a': '1'}, -1) == 'm{a="1"} -1'


# ---------------------------------------------------------------------------
# parse_x509_text
# ---------------------------------------------------------------------------

CA_TEXT = 'notAfter=Jun  5 12:30:00 2034 GMT\nX509v3 Basic Constraints: critical\n    CA:TRUE\n'
CA_PATHLEN_TEXT = 'notAfter=Jun  5 12:30:00 2034 GMT\nX509v3 Basic Constraints: critical\n    CA:TRUE, pathlen:0\n'
LEAF_TEXT = 'notAfter=Dec 12 08:01:05 2026 GMT\nX509v3 Basic Constraints: \n    CA:FALSE\n'
PLAIN_TEXT = 'notAfter=Dec 12 08:01:05 2026 GMT\n'
JUNE_5_2034 = int(datetime.datetime(2034, 6, 5, 12, 30, tzinfo=datetime.timezone.utc).timestamp())
DECEMBER_12_2026 = int(datetime.datetime(2026, 12, 12, 8, 1, 5, tzinfo=datetime.timezone.utc).timestamp())


@pytest.mark.parametrize('text, expected', [
    (CA_TEXT, (JUNE_5_2034, True)),
    (CA_PATHLEN_TEXT, (JUNE_5_2034, True)),
    (LEAF_TEXT, (DECEMBER_12_2026, False)),
    (PLAIN_TEXT, (DECEMBER_12_2026, False)),
    ('X509v3 Basic Constraints: critical\n    CA:TRUE\nnotAfter=Jun  5 12:30:00 2034 GMT', (JUNE_5_2034, True)),
])
def test_parse_x509_text(text, expected):
    assert metrics.parse_x509_text(text) == expected
    assert isinstance(metrics.parse_x509_text(text)[0], int)


@pytest.mark.parametrize('text', ['', 'X509v3 Basic Constraints: critical\n    CA:TRUE\n', 'No extensions in certificate\n'])
def test_parse_x509_text_without_not_after_raises(text):
    with pytest.raises(ValueError, match='no notAfter'):
        metrics.parse_x509_text(text)


# ---------------------------------------------------------------------------
# certificate_lines
# ---------------------------------------------------------------------------

def test_certificate_lines():
    lines = metrics.certificate_lines([
        ('/etc/pki/z-leaf.crt', DECEMBER_12_2026, False),
        ('/etc/pki/a-ca.crt', JUNE_5_2034, True),
        ('/etc/pki/m-broken.crt', None, 'Could not read certificate from /etc/pki/m-broken.crt'),
    ])
    samples = parse(lines)
    assert [(name, labels['path']) for name, labels, _value in samples] == [
        ('agent_ui_tls_certificate_not_after_timestamp_seconds', '/etc/pki/a-ca.crt'),
        ('agent_ui_tls_certificate_read_error', '/etc/pki/a-ca.crt'),
        ('agent_ui_tls_certificate_read_error', '/etc/pki/m-broken.crt'),
        ('agent_ui_tls_certificate_not_after_timestamp_seconds', '/etc/pki/z-leaf.crt'),
        ('agent_ui_tls_certificate_read_error', '/etc/pki/z-leaf.crt'),
    ]
    assert values(lines, 'agent_ui_tls_certificate_not_after_timestamp_seconds') == {
        frozenset({'path': '/etc/pki/a-ca.crt', 'ca': 'true'}.items()): JUNE_5_2034,
        frozenset({'path': '/etc/pki/z-leaf.crt', 'ca': 'false'}.items()): DECEMBER_12_2026}
    assert values(lines, 'agent_ui_tls_certificate_read_error') == {
        frozenset({'path': '/etc/pki/a-ca.crt'}.items()): 0, frozenset({'path': '/etc/pki/m-broken.crt'}.items()): 1,
        frozenset({'path': '/etc/pki/z-leaf.crt'}.items()): 0}
    # The error's text is not a label: it would make a new series for every message.
    assert not any('Could not read' in line for line in lines)
    for name in ('agent_ui_tls_certificate_not_after_timestamp_seconds', 'agent_ui_tls_certificate_read_error'):
        assert '# TYPE %s gauge' % name in lines and any(line.startswith('# HELP %s ' % name) for line in lines)


def test_certificate_lines_without_certificates_are_only_comments():
    lines = metrics.certificate_lines([])
    assert lines and all(line.startswith('# ') for line in lines) and parse(lines) == []


# ---------------------------------------------------------------------------
# backup_lines
# ---------------------------------------------------------------------------

def backup(kind, start, stop, error=False, label=None):
    """One backup as pgbackrest info --output=json lists it."""
    entry = {'archive': {'start': '000000010000000000000004', 'stop': '000000010000000000000004'},
             'backrest': {'format': 5, 'version': '2.54.2'},
             'database': {'id': 1, 'repo-key': 1},
             'info': {'delta': 25000000, 'size': 25000000, 'repository': {'delta': 3000000, 'size': 3000000}},
             'label': label or '20240101-010101F',
             'lsn': {'start': '0/4000028', 'stop': '0/4000100'},
             'prior': None, 'reference': None,
             'timestamp': {'start': start, 'stop': stop},
             'type': kind}
    if error is not None:
        entry['error'] = error
    return entry


def stanza(name, backups, code=0, message='ok'):
    """One stanza as pgbackrest info --output=json lists it."""
    return {'archive': [{'database': {'id': 1, 'repo-key': 1}, 'id': '15-1',
                         'max': '000000010000000000000010', 'min': '000000010000000000000001'}],
            'backup': backups,
            'cipher': 'none',
            'db': [{'id': 1, 'repo-key': 1, 'system-id': 7300000000000000000, 'version': '15'}],
            'name': name,
            'repo': [{'cipher': 'none', 'key': 1, 'status': {'code': code, 'message': message}}],
            'status': {'code': code, 'lock': {'backup': {'held': False}, 'restore': {'held': False}}, 'message': message}}


INFO = [
    stanza('other', [backup('full', 100, 9999999999)]),
    stanza('main', [
        backup('full', 1704070800, 1704070900),
        backup('incr', 1704157200, 1704157260),
        backup('diff', 1704243600, 1704243700),
        backup('full', 1704330000, 1704330400),
        backup('incr', 1704416400, 1704416460),
        backup('incr', 1704502800, 1704509999, error=True),  # failed: ignored
        backup('full', 1704589200, 1704599999, error=True),
        backup('diff', 1704589200, 1704589300, error=None),  # older pgbackrest: no error key
    ]),
]


def last_completion(lines):
    return dict((labels['type'], value) for name, labels, value in parse(lines)
                if name == 'agent_ui_pgbackrest_backup_last_completion_timestamp_seconds')


def single(lines, name):
    [(labels, value)] = [(labels, value) for sample_name, labels, value in parse(lines) if sample_name == name]
    return labels, value


def test_backup_lines_give_the_last_completion_of_each_type_and_of_any():
    lines = metrics.backup_lines('main', INFO, 93600)
    assert last_completion(lines) == {'full': 1704330400, 'diff': 1704589300, 'incr': 1704416460, 'any': 1704589300}
    assert all(labels['stanza'] == 'main' for _name, labels, _value in parse(lines))
    assert single(lines, 'agent_ui_pgbackrest_backup_max_age_seconds') == ({'stanza': 'main'}, 93600)
    assert single(lines, 'agent_ui_pgbackrest_stanza_status_code') == ({'stanza': 'main'}, 0)


def test_any_is_the_latest_of_every_type():
    info = [stanza('main', [backup('full', 10, 20), backup('incr', 30, 40), backup('diff', 25, 35)])]
    assert last_completion(metrics.backup_lines('main', info, 60)) == {'full': 20, 'diff': 35, 'incr': 40, 'any': 40}


def test_a_backup_with_an_error_is_ignored():
    info = [stanza('main', [backup('full', 10, 20), backup('full', 30, 40, error=True), backup('incr', 50, 60, error=True)])]
    assert last_completion(metrics.backup_lines('main', info, 60)) == {'full': 20, 'any': 20}


def test_a_stanza_without_backups_has_any_0():
    for backups in ([], None, [backup('full', 1, 2, error=True)]):
        lines = metrics.backup_lines('main', [stanza('main', backups, code=2, message='no valid backups')], 3600)
        assert last_completion(lines) == {'any': 0}
        assert single(lines, 'agent_ui_pgbackrest_stanza_status_code')[1] == 2
        assert single(lines, 'agent_ui_pgbackrest_backup_max_age_seconds')[1] == 3600


def test_a_failed_info_gives_status_minus_1_and_any_0():
    lines = metrics.backup_lines('main', None, 93600)
    assert last_completion(lines) == {'any': 0}
    assert single(lines, 'agent_ui_pgbackrest_stanza_status_code') == ({'stanza': 'main'}, -1)
    assert single(lines, 'agent_ui_pgbackrest_backup_max_age_seconds') == ({'stanza': 'main'}, 93600)


def test_an_unknown_stanza_gives_status_minus_1():
    lines = metrics.backup_lines('missing', INFO, 93600)
    assert last_completion(lines) == {'any': 0}
    assert single(lines, 'agent_ui_pgbackrest_stanza_status_code') == ({'stanza': 'missing'}, -1)


def test_a_stanza_name_is_escaped():
    lines = metrics.backup_lines('we"ird\\', [stanza('we"ird\\', [backup('full', 1, 2)])], 60)
    assert set(labels['stanza'] for _name, labels, _value in parse(lines)) == {'we"ird\\'}


def test_backup_lines_are_comments_then_samples_with_help_and_type():
    lines = metrics.backup_lines('main', INFO, 93600)
    for name in ('agent_ui_pgbackrest_backup_last_completion_timestamp_seconds', 'agent_ui_pgbackrest_backup_max_age_seconds',
                 'agent_ui_pgbackrest_stanza_status_code'):
        assert '# TYPE %s gauge' % name in lines and any(line.startswith('# HELP %s ' % name) for line in lines)


# ---------------------------------------------------------------------------
# write_atomically
# ---------------------------------------------------------------------------

def test_write_atomically_writes_0644_with_a_final_newline(tmp_path):
    metrics.write_atomically(str(tmp_path), 'x.prom', ['# TYPE a gauge', 'a{b="c"} 1'])
    assert os.listdir(str(tmp_path)) == ['x.prom']
    assert (tmp_path / 'x.prom').read_text() == '# TYPE a gauge\na{b="c"} 1\n'
    assert stat.S_IMODE((tmp_path / 'x.prom').stat().st_mode) == 0o644
    metrics.write_atomically(str(tmp_path), 'x.prom', ['a{b="c"} 2'])
    assert os.listdir(str(tmp_path)) == ['x.prom'] and (tmp_path / 'x.prom').read_text() == 'a{b="c"} 2\n'


def test_write_atomically_leaves_no_temporary_file_when_the_rename_fails(tmp_path, monkeypatch):
    (tmp_path / 'x.prom').write_text('old\n')

    def refuse(source, destination):
        assert os.path.exists(source) and os.path.basename(source).startswith('.x.prom.')
        raise OSError(5, 'Input/output error')
    monkeypatch.setattr(metrics.os, 'rename', refuse)
    with pytest.raises(OSError, match='Input/output error'):
        metrics.write_atomically(str(tmp_path), 'x.prom', ['a 1'])
    assert os.listdir(str(tmp_path)) == ['x.prom'] and (tmp_path / 'x.prom').read_text() == 'old\n'


def test_write_atomically_leaves_no_temporary_file_when_the_writing_fails(tmp_path):
    with pytest.raises(TypeError):
        metrics.write_atomically(str(tmp_path), 'x.prom', ['a 1', None])
    assert os.listdir(str(tmp_path)) == []


# ---------------------------------------------------------------------------
# main, end to end: real certificates through the real openssl
# ---------------------------------------------------------------------------

def make_certificates(directory):
    """A CA (BasicConstraints ca=True) and a leaf it signed (no BasicConstraints) in ``directory``; their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, u'agent_ui test CA')])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, u'pg1.internal')])).issuer_name(ca_name)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=397, seconds=7))
            .sign(ca_key, hashes.SHA256()))
    paths = {}
    for name, certificate in (('ca', ca), ('leaf', leaf)):
        path = directory / ('%s.crt' % name)
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        paths[name] = (str(path), int(certificate.not_valid_after_utc.timestamp()))
    return paths


@pytest.mark.skipif(shutil.which('openssl') is None, reason='no openssl binary')
def test_main_writes_the_certificates_metrics_through_openssl(tmp_path):
    certs, out = tmp_path / 'certs', tmp_path / 'textfile'
    certs.mkdir()
    out.mkdir()
    paths = make_certificates(certs)
    (certs / 'garbage.crt').write_text('-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n')
    (certs / 'ignored.pem').write_text('not matched by the glob\n')
    assert metrics.main(['--output', str(out), '--certificates', str(certs / '*.crt')]) == 0

    assert os.listdir(str(out)) == ['agent_ui_tls.prom']  # no temporary file left, no pgbackrest file
    text = (out / 'agent_ui_tls.prom').read_text()
    assert text.endswith('\n')
    lines = text.splitlines()
    ca_path, ca_not_after = paths['ca']
    leaf_path, leaf_not_after = paths['leaf']
    garbage = str(certs / 'garbage.crt')
    assert values(lines, 'agent_ui_tls_certificate_not_after_timestamp_seconds') == {
        frozenset({'path': ca_path, 'ca': 'true'}.items()): ca_not_after,
        frozenset({'path': leaf_path, 'ca': 'false'}.items()): leaf_not_after}
    assert values(lines, 'agent_ui_tls_certificate_read_error') == {
        frozenset({'path': ca_path}.items()): 0, frozenset({'path': leaf_path}.items()): 0,
        frozenset({'path': garbage}.items()): 1}


@pytest.mark.skipif(shutil.which('openssl') is None, reason='no openssl binary')
def test_read_certificate_reports_a_missing_file_as_an_error(tmp_path):
    path, not_after, error = metrics.read_certificate(str(tmp_path / 'missing.crt'))
    assert path == str(tmp_path / 'missing.crt') and not_after is None and error


def test_main_with_a_stanza_writes_the_pgbackrest_metrics_too(tmp_path, monkeypatch):
    calls = []

    def info(name, user):
        calls.append((name, user))
        return INFO
    monkeypatch.setattr(metrics, 'read_pgbackrest', info)
    assert metrics.main(['--output', str(tmp_path), '--pgbackrest-stanza', 'main', '--pgbackrest-max-age', '7200']) == 0
    assert calls == [('main', 'postgres')]
    assert sorted(os.listdir(str(tmp_path))) == ['agent_ui_pgbackrest.prom', 'agent_ui_tls.prom']
    lines = (tmp_path / 'agent_ui_pgbackrest.prom').read_text().splitlines()
    assert last_completion(lines)['any'] == 1704589300
    assert single(lines, 'agent_ui_pgbackrest_backup_max_age_seconds')[1] == 7200
    assert parse((tmp_path / 'agent_ui_tls.prom').read_text().splitlines()) == []


def test_a_failing_pgbackrest_is_a_metric_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path / 'nowhere'))  # neither pgbackrest nor runuser: OSError
    assert metrics.read_pgbackrest('main', 'postgres') is None
    assert metrics.read_pgbackrest('main', 'root') is None
    assert metrics.main(['--output', str(tmp_path), '--pgbackrest-stanza', 'main']) == 0
    lines = (tmp_path / 'agent_ui_pgbackrest.prom').read_text().splitlines()
    assert single(lines, 'agent_ui_pgbackrest_stanza_status_code')[1] == -1
    assert last_completion(lines) == {'any': 0}
