# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for plugins/module_utils/monitoring.py (the scrape user's bcrypt hash) and its filter,
plugins/filter/monitoring.py (web_password_hash).

The hash must verify as bcrypt (the exporter toolkit checks it with Go's bcrypt), be the same on every run for the
same password and seed (so the web config files do not change), and its salt must depend on the seed only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import hashlib
import re

import bcrypt
import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given, settings, strategies as st

from ansible_collections.agent_ui.postgresql.plugins.filter import monitoring as monitoring_filter
from ansible_collections.agent_ui.postgresql.plugins.module_utils import monitoring
from ansible_collections.agent_ui.postgresql.plugins.module_utils.monitoring import bcrypt_hash, bcrypt_salt

SEED = 'pg1.internal/prometheus'
PASSWORD = 'correct horse battery staple'
# bcrypt's base64 alphabet, in the order of the standard one.
STANDARD_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
# $2b$, the cost in two digits, $, then 22 characters of bcrypt's base64 (the last carries 2 bits: one of .Oeu).
SALT = re.compile(r'^\$2b\$(\d\d)\$[./A-Za-z0-9]{21}[.Oeu]$')


def verifies(password, hashed):
    return bcrypt.checkpw(password.encode('utf-8'), hashed.encode('ascii'))


# ---------------------------------------------------------------------------
# bcrypt_hash
# ---------------------------------------------------------------------------

def test_the_hash_verifies_for_the_password_and_not_for_another():
    hashed = bcrypt_hash(PASSWORD, SEED)
    assert verifies(PASSWORD, hashed)
    assert not verifies(PASSWORD + '!', hashed)
    assert not verifies('another password', hashed)


def test_the_same_inputs_give_the_same_hash():
    assert bcrypt_hash(PASSWORD, SEED) == bcrypt_hash(PASSWORD, SEED)
    assert bcrypt_hash(PASSWORD, SEED, 11) == bcrypt_hash(PASSWORD, SEED, 11)


def test_another_seed_gives_another_salt_and_hash():
    other = 'pg2.internal/prometheus'
    assert bcrypt_salt(SEED) != bcrypt_salt(other)
    assert bcrypt_hash(PASSWORD, SEED) != bcrypt_hash(PASSWORD, other)
    assert verifies(PASSWORD, bcrypt_hash(PASSWORD, other))


def test_the_salt_does_not_depend_on_the_password():
    first, second = bcrypt_hash(PASSWORD, SEED), bcrypt_hash('another password', SEED)
    assert first[:29] == second[:29] == bcrypt_salt(SEED)
    assert first != second


def test_the_hash_is_made_with_the_salt_of_the_seed_and_the_cost():
    salt = bcrypt_salt(SEED, 12)
    hashed = bcrypt_hash(PASSWORD, SEED, 12)
    assert hashed.startswith('$2b$12$') and hashed[:29] == salt and len(hashed) == 60
    assert hashed == bcrypt.hashpw(PASSWORD.encode('utf-8'), salt.encode('ascii')).decode('ascii')


def test_the_default_cost_is_the_minimum():
    assert monitoring.MIN_COST == 10
    assert bcrypt_hash(PASSWORD, SEED).startswith('$2b$10$')


# ---------------------------------------------------------------------------
# bcrypt_salt
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('seed', [SEED, 'x', 'pg3/prometheus', u'h\u00f4te/\u00e9\u00e8', '\U0001f418' * 40])
def test_the_salt_is_a_valid_bcrypt_salt_of_29_characters(seed):
    salt = bcrypt_salt(seed)
    assert len(salt) == 29 and salt.startswith('$2b$10$') and SALT.match(salt), salt
    # bcrypt keeps the salt as given: its last character is one its encoding can give back.
    assert bcrypt.hashpw(b'x', salt.encode('ascii')).decode('ascii')[:29] == salt


@pytest.mark.parametrize('seed', [SEED, 'x', u'h\u00f4te/\u00e9\u00e8'])
def test_the_salt_is_16_bytes_of_the_seed_s_sha256(seed):
    # bcrypt's base64 read back through the standard alphabet.
    standard = bcrypt_salt(seed)[7:].translate(str.maketrans(BCRYPT_ALPHABET, STANDARD_ALPHABET))
    assert base64.b64decode(standard + '==') == hashlib.sha256(seed.encode('utf-8')).digest()[:16]


def test_the_salt_of_a_seed_never_changes():
    # Pinned: a change of the salt would change every host's web config files (and restart every exporter).
    assert bcrypt_salt('pg1/scrape') == '$2b$10$zkpz6ooyLzQmL9zOu7Dg5O'
    assert bcrypt_salt('pg1/scrape', 14) == '$2b$14$zkpz6ooyLzQmL9zOu7Dg5O'
    assert bcrypt_hash('secret', 'pg1/scrape') == '$2b$10$zkpz6ooyLzQmL9zOu7Dg5OBFRTQl27KYNNz1XEjhGxzh2AdJ7dN6q'


@pytest.mark.parametrize('cost', [10, 11, 14])
def test_costs_in_bounds_are_accepted(cost):
    assert bcrypt_salt(SEED, cost).startswith('$2b$%02d$' % cost)


@pytest.mark.parametrize('cost', [9, 15, 0, -1, True, False, 10.0, '10', None])
def test_costs_out_of_bounds_or_not_integers_are_refused(cost):
    with pytest.raises(ValueError, match='^the cost must be a whole number from 10 to 14, not '):
        bcrypt_salt(SEED, cost)
    with pytest.raises(ValueError, match='^the cost must be a whole number from 10 to 14'):
        bcrypt_hash(PASSWORD, SEED, cost)


@pytest.mark.parametrize('seed', ['', None, 42, b'pg1'])
def test_an_empty_or_non_string_seed_is_refused(seed):
    with pytest.raises(ValueError, match='^the seed must be a non-empty string$'):
        bcrypt_salt(seed)
    with pytest.raises(ValueError, match='^the seed must be a non-empty string$'):
        bcrypt_hash(PASSWORD, seed)


@pytest.mark.parametrize('password', ['', None, 42, b'secret'])
def test_an_empty_or_non_string_password_is_refused(password):
    with pytest.raises(ValueError, match='^the password must be a non-empty string$'):
        bcrypt_hash(password, SEED)


def test_a_password_of_72_bytes_is_accepted():
    for password in ('p' * 72, u'\u00e9' * 36):  # 72 bytes in UTF-8 both
        assert verifies(password, bcrypt_hash(password, SEED))


@pytest.mark.parametrize('password, length', [('s3cr3t-' * 10 + 'abc', 73), (u'\u00e9' * 37, 74), ('Z' * 200, 200)])
def test_a_password_longer_than_72_bytes_is_refused_without_showing_it(password, length):
    with pytest.raises(ValueError) as caught:
        bcrypt_hash(password, SEED)
    message = str(caught.value)
    assert message == ('the password is %d bytes long: bcrypt reads only the first 72, so it must be shorter' % length)
    assert password not in message and password[:8] not in message


def test_a_missing_bcrypt_package_is_a_value_error(monkeypatch):
    monkeypatch.setattr(monitoring, 'HAS_BCRYPT', False)
    with pytest.raises(ValueError, match='bcrypt is missing on the controller'):
        bcrypt_hash(PASSWORD, SEED)


PASSWORDS = st.text(min_size=1, max_size=30).filter(lambda text: len(text.encode('utf-8')) <= 72)


@settings(max_examples=25, deadline=None)
@given(seed=st.text(min_size=1, max_size=40), password=PASSWORDS)
def test_the_hash_always_verifies(seed, password):
    hashed = bcrypt_hash(password, seed)
    assert hashed[:29] == bcrypt_salt(seed) and SALT.match(hashed[:29])
    assert verifies(password, hashed)
    assert not verifies(password + 'x', hashed)


# ---------------------------------------------------------------------------
# The filter
# ---------------------------------------------------------------------------

def test_the_filters():
    assert monitoring_filter.FilterModule().filters() == {'web_password_hash': monitoring_filter.web_password_hash}


def test_the_filter_is_bcrypt_hash():
    assert monitoring_filter.web_password_hash(PASSWORD, SEED) == bcrypt_hash(PASSWORD, SEED)
    assert monitoring_filter.web_password_hash(PASSWORD, SEED, 11) == bcrypt_hash(PASSWORD, SEED, 11)


@pytest.mark.parametrize('args, message', [
    (('', SEED), 'web_password_hash: the password must be a non-empty string'),
    ((PASSWORD, ''), 'web_password_hash: the seed must be a non-empty string'),
    ((PASSWORD, SEED, 15), 'web_password_hash: the cost must be a whole number from 10 to 14, not 15'),
    (('q' * 73, SEED), 'web_password_hash: the password is 73 bytes long'),
])
def test_errors_become_filter_errors_named_after_the_filter(args, message):
    with pytest.raises(AnsibleFilterError) as caught:
        monitoring_filter.web_password_hash(*args)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value.__cause__, ValueError)


def test_imports_and_raises_without_ansible(without_ansible):
    plain = without_ansible(monitoring_filter)
    with pytest.raises(plain.AnsibleFilterError, match='^web_password_hash: '):
        plain.web_password_hash(PASSWORD, SEED, 9)
