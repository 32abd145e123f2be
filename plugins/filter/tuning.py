# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""PostgreSQL tuning filters: pgtune-style settings, a memory budget and size parsing.

The formulas follow pgtune (https://github.com/le0pard/pgtune,
src/features/configuration/configurationSlice.js at commit 7d204bdb) for PostgreSQL
on Linux.  Every place where this module deliberately differs from pgtune is marked
with ``Deviation from pgtune`` and explained in docs/tuning.md.

All functions are pure: no I/O and no module-level mutable state.  The module also
imports without Ansible installed so that unit tests can load it by file path.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import re
from collections.abc import Mapping

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # Imported as a plain module, e.g. by unit tests without Ansible.
    class AnsibleFilterError(ValueError):
        """Stand-in for ansible.errors.AnsibleFilterError when Ansible is absent."""


KB_PER_MB = 1024
KB_PER_GB = 1024 * KB_PER_MB

# Bytes per PostgreSQL memory unit, in the order PostgreSQL documents them.
MEMORY_UNITS = (('B', 1), ('kB', 1024), ('MB', 1024 ** 2), ('GB', 1024 ** 3), ('TB', 1024 ** 4))

REQUIRED_HOST_KEYS = ('memory_mb', 'cpus', 'storage', 'profile', 'max_connections')
DEFAULT_VERSION = 16
MIN_VERSION = 11  # first release with every setting pg_tune writes (max_parallel_maintenance_workers)

# Defaults shared by pg_tune (to keep its own output within budget) and pg_memory_budget.
DEFAULT_AUTOVACUUM_MAX_WORKERS = 3  # PostgreSQL's default
DEFAULT_WORK_MEM_FACTOR = 2  # work_mem allocations assumed per connection, see docs/tuning.md

# PostgreSQL minimums and pgtune's caps, in kB.
MIN_WORK_MEM_KB = 64
MIN_MAINTENANCE_WORK_MEM_KB = 1024
MIN_WAL_BUFFERS_KB = 32
WAL_BUFFERS_CAP_KB = 16 * KB_PER_MB
WAL_BUFFERS_ROUND_UP_KB = 14 * KB_PER_MB
MAINTENANCE_WORK_MEM_CAP_KB = 2 * KB_PER_GB
XLOG_BLOCK_KB = 8
PG_DEFAULT_MAX_WORKER_PROCESSES = 8
PARALLEL_WORKERS_CAP = 4

ProfileRules = collections.namedtuple(
    'ProfileRules',
    ['work_mem_divisor', 'maintenance_divisor', 'min_wal_mb', 'max_wal_mb', 'statistics_target', 'cap_workers_per_gather'],
)
StorageRules = collections.namedtuple('StorageRules', ['random_page_cost', 'effective_io_concurrency'])
HostSpec = collections.namedtuple('HostSpec', ['memory_mb', 'cpus', 'storage', 'profile', 'max_connections', 'version'])

# pgtune's per-workload constants ('desktop' is not offered: it is not a server profile).
PROFILE_RULES = (
    ('web', ProfileRules(1, 16, 1024, 4096, 100, True)),
    ('oltp', ProfileRules(1, 16, 2048, 8192, 100, True)),
    ('mixed', ProfileRules(2, 16, 1024, 4096, 100, True)),
    ('dw', ProfileRules(2, 8, 4096, 16384, 500, False)),
)
# pgtune's storage constants for Linux ('san' is not offered by this collection).
STORAGE_RULES = (
    ('ssd', StorageRules(1.1, 200)),
    ('hdd', StorageRules(4.0, 2)),
)
PROFILES = tuple(name for name, _rules in PROFILE_RULES)
STORAGE_TYPES = tuple(name for name, _rules in STORAGE_RULES)

# PostgreSQL's base unit for the memory settings pg_memory_budget reads: a bare
# number in postgresql.conf means this many units.
BUDGET_BASE_UNITS = (
    ('shared_buffers', '8kB'),
    ('work_mem', 'kB'),
    ('maintenance_work_mem', 'kB'),
    ('autovacuum_work_mem', 'kB'),
)

_NUMBER_RE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*$')
_SIZE_RE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$')
_UNIT_RE = re.compile(r'^\s*(\d*)\s*([A-Za-z]+)\s*$')


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def _error(func, message):
    """Build the exception raised by every filter, prefixed with the filter name."""
    return AnsibleFilterError('%s: %s' % (func, message))


def _quoted(values):
    """Render allowed values for an error message: 'a', 'b', 'c'."""
    return ', '.join(repr(value) for value in values)


def _ceil_div(numerator, denominator):
    """Integer division rounding up (works for positive ints and floats)."""
    return -(-numerator // denominator)


def _is_number(value):
    """True for int and float values, but not for booleans."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_int(value, name, func, minimum):
    """Return ``value`` as an int >= ``minimum``; accepts ints and digit strings."""
    number = value
    if isinstance(value, str) and re.match(r'^\s*-?\d+\s*$', value):
        number = int(value)
    if not isinstance(number, int) or isinstance(number, bool) or number < minimum:
        raise _error(func, '%s must be an integer >= %d, got %r' % (name, minimum, value))
    return number


def _choice(value, name, allowed, func):
    """Return ``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise _error(func, '%s must be one of %s, got %r' % (name, _quoted(allowed), value))
    return value


def _require_mapping(value, name, func):
    """Fail unless ``value`` is a dict-like object."""
    if not isinstance(value, Mapping):
        raise _error(func, '%s must be a dict, got %s' % (name, type(value).__name__))


def _format_kb(value_kb):
    """Format a memory amount the way pg_tune writes it into postgresql.conf.

    Amounts of 1 GB and more are rounded down to whole MB; smaller amounts are
    written in MB when that is exact and in kB otherwise.
    """
    value_kb = int(value_kb)
    if value_kb >= KB_PER_GB or value_kb % KB_PER_MB == 0:
        return '%dMB' % (value_kb // KB_PER_MB)
    return '%dkB' % value_kb


def _format_number(value):
    """Format a float without a trailing '.0' (1.1 -> '1.1', 4.0 -> '4')."""
    return '{0:g}'.format(value)


def _bytes_to_kb(value_bytes):
    """Round a byte count to the nearest kB, half up, as PostgreSQL does."""
    return int((value_bytes * 2 + 1024) // 2048)


def _unit_bytes(unit, func):
    """Bytes in one PostgreSQL memory unit ('B', 'kB', 'MB', 'GB' or 'TB')."""
    for name, size in MEMORY_UNITS:
        if name == unit:
            return size
    raise _error(func, 'unknown memory unit %r (valid units: %s; they are case-sensitive)'
                 % (unit, _quoted(name for name, _size in MEMORY_UNITS)))


def _parse_number(text):
    """Parse '16' as int 16 and '1.5' as float 1.5."""
    return float(text) if '.' in text else int(text)


# ---------------------------------------------------------------------------
# Size parsing
# ---------------------------------------------------------------------------

def pg_size_to_kb(value):
    """Convert a PostgreSQL memory size ('128kB', '16MB', '6GB', '1TB') to int kB.

    A bare number (int or digit string) is taken as kB.  Note that PostgreSQL reads
    a bare number in its own base unit, which is 8kB pages for shared_buffers,
    effective_cache_size and wal_buffers; use pg_setting_to_kb for those.
    Fractions are rounded to the nearest kB like PostgreSQL does ('1.5MB' = 1536).
    """
    func = 'pg_size_to_kb'
    text = value if isinstance(value, str) else str(value)
    match = _SIZE_RE.match(text) if not isinstance(value, bool) else None
    if not match:
        raise _error(func, '%r is not a PostgreSQL memory size; expected a non-negative number with an optional unit '
                           '(%s), e.g. 16MB' % (value, _quoted(name for name, _size in MEMORY_UNITS)))
    number, unit = match.groups()
    return _bytes_to_kb(_parse_number(number) * _unit_bytes(unit or 'kB', func))


def pg_setting_to_kb(setting, unit):
    """Convert a pg_settings row (``setting`` text and ``unit``) to int kB.

    ``unit`` is the pg_settings.unit column, e.g. '8kB' (shared_buffers), 'kB'
    (work_mem), 'MB' (max_wal_size) or 'B'.  With ``unit`` None or empty the
    setting is parsed by pg_size_to_kb, so '16MB' and bare kB numbers work too.
    """
    func = 'pg_setting_to_kb'
    if unit is None or unit == '':
        return pg_size_to_kb(setting)
    text = setting if isinstance(setting, str) else str(setting)
    number_match = _NUMBER_RE.match(text) if not isinstance(setting, bool) else None
    unit_match = _UNIT_RE.match(unit) if isinstance(unit, str) else None
    if not number_match:
        raise _error(func, 'setting %r is not a non-negative number' % (setting,))
    if not unit_match:
        raise _error(func, 'unit %r is not a PostgreSQL memory unit such as 8kB, kB or MB' % (unit,))
    multiplier, base_unit = unit_match.groups()
    unit_bytes = int(multiplier or 1) * _unit_bytes(base_unit, func)
    return _bytes_to_kb(_parse_number(number_match.group(1)) * unit_bytes)


# ---------------------------------------------------------------------------
# pg_tune
# ---------------------------------------------------------------------------

def _validate_host(host):
    """Check the pg_tune input and return it as a HostSpec."""
    func = 'pg_tune'
    _require_mapping(host, 'host', func)
    for key in REQUIRED_HOST_KEYS:
        if key not in host:
            raise _error(func, 'host is missing the required key %r (required keys: %s)' % (key, _quoted(REQUIRED_HOST_KEYS)))
    return HostSpec(
        memory_mb=_as_int(host['memory_mb'], 'host.memory_mb', func, 1),
        cpus=_as_int(host['cpus'], 'host.cpus', func, 1),
        storage=_choice(host['storage'], 'host.storage', STORAGE_TYPES, func),
        profile=_choice(host['profile'], 'host.profile', PROFILES, func),
        max_connections=_as_int(host['max_connections'], 'host.max_connections', func, 1),
        version=_as_int(host.get('version', DEFAULT_VERSION), 'host.version', func, MIN_VERSION),
    )


def _parallel_settings(cpus, rules):
    """Worker-process settings, in the order pg_tune returns them.

    Deviation from pgtune: pgtune writes nothing below 4 CPUs (leaving PostgreSQL's
    8/8/2/2, which oversubscribes a 1-2 vCPU host); the formulas are applied to
    every CPU count here.  max_worker_processes also serves logical replication and
    extensions, so it never drops below PostgreSQL's default of 8.
    """
    workers_per_gather = _ceil_div(cpus, 2)
    if rules.cap_workers_per_gather:
        workers_per_gather = min(workers_per_gather, PARALLEL_WORKERS_CAP)
    return (
        ('max_worker_processes', max(cpus, PG_DEFAULT_MAX_WORKER_PROCESSES)),
        ('max_parallel_workers', cpus),
        ('max_parallel_workers_per_gather', workers_per_gather),
        ('max_parallel_maintenance_workers', min(_ceil_div(cpus, 2), PARALLEL_WORKERS_CAP)),
    )


def _work_mem_kb(ram_kb, shared_buffers_kb, max_connections, worker_processes, rules):
    """pgtune: (RAM - shared_buffers) / ((max_connections + max_worker_processes) * 3).

    Halved for the mixed and dw profiles, never below PostgreSQL's 64kB minimum.
    """
    processes = (max_connections + worker_processes) * 3 * rules.work_mem_divisor
    return max(MIN_WORK_MEM_KB, (ram_kb - shared_buffers_kb) // processes)


def _maintenance_work_mem_kb(ram_kb, rules, unbudgeted_kb):
    """pgtune: RAM / 16 (RAM / 8 for dw), capped at 2GB.

    Deviation from pgtune: also capped so that the autovacuum workers plus one manual
    maintenance operation fit into ``unbudgeted_kb`` (RAM left after shared_buffers
    and the connections' work_mem budget).  This only bites on small hosts with very
    many connections, where pgtune's output would not fit in RAM.
    """
    value = min(ram_kb // rules.maintenance_divisor, MAINTENANCE_WORK_MEM_CAP_KB)
    fitting = unbudgeted_kb // (DEFAULT_AUTOVACUUM_MAX_WORKERS + 1)
    return max(MIN_MAINTENANCE_WORK_MEM_KB, min(value, fitting))


def _wal_buffers_kb(shared_buffers_kb):
    """pgtune: 3% of shared_buffers, capped at 16MB, rounded up to 16MB above 14MB.

    Deviation from pgtune: rounded down to whole 8kB WAL pages, so the value written
    is exactly what the server reports back in pg_settings.
    """
    value = min(3 * shared_buffers_kb // 100, WAL_BUFFERS_CAP_KB)
    if value > WAL_BUFFERS_ROUND_UP_KB:
        value = WAL_BUFFERS_CAP_KB
    value -= value % XLOG_BLOCK_KB
    return max(MIN_WAL_BUFFERS_KB, value)


def _compute_settings(spec):
    """Compute every setting for a validated HostSpec, as postgresql.conf strings."""
    profile = dict(PROFILE_RULES)[spec.profile]
    storage = dict(STORAGE_RULES)[spec.storage]
    ram_kb = spec.memory_mb * KB_PER_MB
    shared_buffers_kb = ram_kb // 4
    parallel = _parallel_settings(spec.cpus, profile)
    worker_processes = dict(parallel)['max_worker_processes']
    work_mem_kb = _work_mem_kb(ram_kb, shared_buffers_kb, spec.max_connections, worker_processes, profile)
    unbudgeted_kb = ram_kb - shared_buffers_kb - spec.max_connections * work_mem_kb * DEFAULT_WORK_MEM_FACTOR

    settings = {}
    settings['shared_buffers'] = _format_kb(shared_buffers_kb)
    settings['effective_cache_size'] = _format_kb(ram_kb * 3 // 4)
    settings['work_mem'] = _format_kb(work_mem_kb)
    settings['maintenance_work_mem'] = _format_kb(_maintenance_work_mem_kb(ram_kb, profile, unbudgeted_kb))
    settings['wal_buffers'] = _format_kb(_wal_buffers_kb(shared_buffers_kb))
    for name, value in parallel:
        settings[name] = str(value)
    settings['random_page_cost'] = _format_number(storage.random_page_cost)
    settings['effective_io_concurrency'] = str(storage.effective_io_concurrency)
    settings['checkpoint_completion_target'] = '0.9'
    settings['min_wal_size'] = _format_kb(profile.min_wal_mb * KB_PER_MB)
    settings['max_wal_size'] = _format_kb(profile.max_wal_mb * KB_PER_MB)
    settings['default_statistics_target'] = str(profile.statistics_target)
    # Deviation from pgtune ('off' below 32GB of RAM): 'try' is PostgreSQL's default
    # and falls back to normal pages when the kernel has no huge pages reserved.
    settings['huge_pages'] = 'try'
    return settings


def _apply_overrides(settings, overrides):
    """Replace or add settings from ``overrides``; values are converted with str()."""
    if overrides is None:
        return settings
    _require_mapping(overrides, 'overrides', 'pg_tune')
    for name, value in overrides.items():
        settings[str(name)] = str(value)
    return settings


def pg_tune(host, overrides=None):
    """Compute postgresql.conf settings for a host, pgtune-style.

    ``host`` has the keys memory_mb, cpus, storage ('ssd' or 'hdd'), profile
    ('web', 'oltp', 'mixed' or 'dw'), max_connections and optionally version
    (PostgreSQL major, default 16).  Returns an ordered dict of setting name to the
    string written into postgresql.conf; ``overrides`` replaces or adds settings.
    """
    return _apply_overrides(_compute_settings(_validate_host(host)), overrides)


# ---------------------------------------------------------------------------
# pg_memory_budget
# ---------------------------------------------------------------------------

def _setting_kb(settings, name, func):
    """Read a memory setting from a pg_tune-style dict as kB.

    A bare number is read in PostgreSQL's base unit for that setting (8kB pages
    for shared_buffers), as the server would.
    """
    if name not in settings:
        raise _error(func, 'settings has no %r; pass the output of pg_tune' % (name,))
    value = settings[name]
    try:
        if _NUMBER_RE.match(str(value)):
            return pg_setting_to_kb(value, dict(BUDGET_BASE_UNITS)[name])
        return pg_size_to_kb(value)
    except AnsibleFilterError as exc:
        raise _error(func, 'settings[%r]: %s' % (name, exc)) from exc


def _autovacuum_work_mem_kb(settings, func):
    """autovacuum_work_mem, which defaults to (-1 means) maintenance_work_mem."""
    if str(settings.get('autovacuum_work_mem', '-1')).strip() == '-1':
        return _setting_kb(settings, 'maintenance_work_mem', func)
    return _setting_kb(settings, 'autovacuum_work_mem', func)


def _positive_number(value, name, func):
    """Return ``value`` if it is an int or float > 0."""
    if not _is_number(value) or value <= 0:
        raise _error(func, '%s must be a number > 0, got %r' % (name, value))
    return value


def pg_memory_budget(settings, memory_mb, max_connections,
                     autovacuum_max_workers=DEFAULT_AUTOVACUUM_MAX_WORKERS, work_mem_factor=DEFAULT_WORK_MEM_FACTOR):
    """Worst-case memory use of a configuration compared with the host's RAM.

    budget = shared_buffers + max_connections * work_mem * work_mem_factor
             + autovacuum_max_workers * autovacuum_work_mem (default: maintenance_work_mem)

    Returns memory_mb, budget_mb (rounded up), fits (budget_mb <= memory_mb) and the
    three parts shared_buffers_mb, connections_mb and maintenance_mb (rounded to 0.1).
    """
    func = 'pg_memory_budget'
    _require_mapping(settings, 'settings', func)
    memory_mb = _as_int(memory_mb, 'memory_mb', func, 1)
    max_connections = _as_int(max_connections, 'max_connections', func, 1)
    autovacuum_max_workers = _as_int(autovacuum_max_workers, 'autovacuum_max_workers', func, 0)
    work_mem_factor = _positive_number(work_mem_factor, 'work_mem_factor', func)

    shared_buffers_kb = _setting_kb(settings, 'shared_buffers', func)
    connections_kb = max_connections * _setting_kb(settings, 'work_mem', func) * work_mem_factor
    maintenance_kb = autovacuum_max_workers * _autovacuum_work_mem_kb(settings, func)
    budget_mb = int(_ceil_div(shared_buffers_kb + connections_kb + maintenance_kb, KB_PER_MB))
    return {
        'memory_mb': memory_mb,
        'budget_mb': budget_mb,
        'fits': budget_mb <= memory_mb,
        'shared_buffers_mb': round(shared_buffers_kb / KB_PER_MB, 1),
        'connections_mb': round(connections_kb / KB_PER_MB, 1),
        'maintenance_mb': round(maintenance_kb / KB_PER_MB, 1),
    }


class FilterModule(object):
    """PostgreSQL tuning filters, documented in pg_tune.yml and pg_memory_budget.yml next to this file.

    pg_size_to_kb and pg_setting_to_kb are helpers of these filters and of the molecule tests,
    which import them; no role uses them in a template, so they are not filters.
    """

    def filters(self):
        """Map Jinja filter names to functions."""
        return {
            'pg_tune': pg_tune,
            'pg_memory_budget': pg_memory_budget,
        }
