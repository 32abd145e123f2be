# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Monitoring: the bcrypt hash of the scrape user's password, for the exporters' and Prometheus' web config files.

The Prometheus exporter toolkit keeps basic-auth users as bcrypt hashes. A hash salted at random would change the web
config file on every run (and restart every exporter); this one is salted with 16 bytes of SHA-256 of a seed the
caller names (the host and the user name), so the same password on the same host gives the same hash, and a host's
hash says nothing about another's. The salt does not depend on the password: knowing the host name gives an attacker
no shortcut past bcrypt's cost.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import hashlib

try:
    import bcrypt
    HAS_BCRYPT = True
except ImportError:  # Checked when the function is called: the controller needs the bcrypt package.
    HAS_BCRYPT = False

# bcrypt's own base64 alphabet, in the order of the standard one.
_STANDARD = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
_BCRYPT = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
_TO_BCRYPT = str.maketrans(_STANDARD, _BCRYPT)
# The last of the salt's 22 characters carries only 2 bits: bcrypt keeps the ones its encoding can give back.
_LAST = '.Oeu'
MIN_COST = 10
MAX_COST = 14


def bcrypt_salt(seed, cost=MIN_COST):
    """The salt (``$2b$<cost>$`` and 22 characters) that ``seed`` gives: 16 bytes of its SHA-256."""
    if not isinstance(seed, str) or not seed:
        raise ValueError('the seed must be a non-empty string')
    if isinstance(cost, bool) or not isinstance(cost, int) or not MIN_COST <= cost <= MAX_COST:
        raise ValueError('the cost must be a whole number from %d to %d, not %r' % (MIN_COST, MAX_COST, cost))
    digest = hashlib.sha256(seed.encode('utf-8')).digest()[:16]
    text = base64.b64encode(digest).decode('ascii').rstrip('=').translate(_TO_BCRYPT)
    text = text[:21] + _LAST[_BCRYPT.index(text[21]) >> 4]
    return '$2b$%02d$%s' % (cost, text)


def bcrypt_hash(password, seed, cost=MIN_COST):
    """bcrypt hash of ``password`` with the salt ``seed`` gives (bcrypt_salt); the same inputs, the same hash."""
    if not isinstance(password, str) or not password:
        raise ValueError('the password must be a non-empty string')
    encoded = password.encode('utf-8')
    if len(encoded) > 72:
        raise ValueError('the password is %d bytes long: bcrypt reads only the first 72, so it must be shorter'
                         % len(encoded))
    salt = bcrypt_salt(seed, cost)
    if not HAS_BCRYPT:
        raise ValueError('the Python package bcrypt is missing on the controller (pip install bcrypt)')
    return bcrypt.hashpw(encoded, salt.encode('ascii')).decode('ascii')
