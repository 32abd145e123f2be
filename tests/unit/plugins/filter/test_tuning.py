# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for plugins/filter/tuning.py (pg_tune, pg_memory_budget, size parsing)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.util
import re
import sys

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from ansible_collections.agent_ui.postgresql.plugins.filter import tuning


def _load_plugin():
    """Import the filter plugin again by file path, under another name (to import it without Ansible)."""
    spec = importlib.util.spec_from_file_location('agent_ui_postgresql_tuning', tuning.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FilterError = tuning.AnsibleFilterError

GB_KB = 1024 * 1024


def host(memory_mb=8192, cpus=2, storage='ssd', profile='web', max_connections=200, **extra):
    """Build a pg_tune host dict; the defaults are the 8 GB / 2 vCPU web host."""
    spec = {'memory_mb': memory_mb, 'cpus': cpus, 'storage': storage, 'profile': profile, 'max_connections': max_connections}
    spec.update(extra)
    return spec


def kb(value):
    """Shorthand for pg_size_to_kb."""
    return tuning.pg_size_to_kb(value)


# ---------------------------------------------------------------------------
# pgtune comparison
# ---------------------------------------------------------------------------

# What pgtune (le0pard/pgtune, configurationSlice.js at 7d204bdb) writes for
# "DB version 16, OS linux, DB type web, data storage ssd, 200 connections",
# worked out by hand from its formulas, in pgtune's own notation.  Settings that
# pgtune leaves out (parallel settings below 4 CPUs) are absent here.
PGTUNE_COMMON = {
    'checkpoint_completion_target': '0.9',
    'default_statistics_target': '100',
    'random_page_cost': '1.1',
    'effective_io_concurrency': '200',
    'min_wal_size': '1GB',
    'max_wal_size': '4GB',
    'wal_buffers': '16MB',  # 3% of shared_buffers is >= 14MB on all four hosts
}
PGTUNE_HOSTS = {
    # RAM 2 GB = 2097152kB; work_mem = (2097152 - 524288) / ((200 + 8) * 3) = 2520.6
    '2GB-1cpu': (host(2048, 1), dict(
        PGTUNE_COMMON, shared_buffers='512MB', effective_cache_size='1536MB', maintenance_work_mem='128MB',
        work_mem='2520kB', huge_pages='off')),
    # work_mem = (8388608 - 2097152) / ((200 + 8) * 3) = 10082.5
    '8GB-2cpu': (host(8192, 2), dict(
        PGTUNE_COMMON, shared_buffers='2GB', effective_cache_size='6GB', maintenance_work_mem='512MB',
        work_mem='10082kB', huge_pages='off')),
    # work_mem = (33554432 - 8388608) / ((200 + 8) * 3) = 40329.8; maintenance 2GB is the cap
    '32GB-8cpu': (host(32768, 8), dict(
        PGTUNE_COMMON, shared_buffers='8GB', effective_cache_size='24GB', maintenance_work_mem='2GB',
        work_mem='40329kB', huge_pages='try', max_worker_processes='8', max_parallel_workers_per_gather='4',
        max_parallel_workers='8', max_parallel_maintenance_workers='4')),
    # work_mem = (134217728 - 33554432) / ((200 + 32) * 3) = 144631.2
    '128GB-32cpu': (host(131072, 32), dict(
        PGTUNE_COMMON, shared_buffers='32GB', effective_cache_size='96GB', maintenance_work_mem='2GB',
        work_mem='144631kB', huge_pages='try', max_worker_processes='32', max_parallel_workers_per_gather='4',
        max_parallel_workers='32', max_parallel_maintenance_workers='4')),
}
# PostgreSQL 16 defaults, which apply where pgtune writes nothing.
PG_PARALLEL_DEFAULTS = {
    'max_worker_processes': '8', 'max_parallel_workers': '8',
    'max_parallel_workers_per_gather': '2', 'max_parallel_maintenance_workers': '2',
}
MEMORY_SETTINGS = ('shared_buffers', 'effective_cache_size', 'work_mem', 'maintenance_work_mem',
                   'wal_buffers', 'min_wal_size', 'max_wal_size')
# Documented deviations from pgtune, asserted separately below.
DEVIATING_SETTINGS = ('huge_pages',)


def _comparable(name, value):
    """Memory settings compare as kB, everything else as text."""
    return kb(value) if name in MEMORY_SETTINGS else value


@pytest.mark.parametrize('name', sorted(PGTUNE_HOSTS))
def test_matches_pgtune_except_documented_deviations(name):
    spec, expected = PGTUNE_HOSTS[name]
    result = tuning.pg_tune(spec)
    for setting, value in expected.items():
        if setting not in DEVIATING_SETTINGS:
            assert _comparable(setting, result[setting]) == _comparable(setting, value), setting


@pytest.mark.parametrize('name', sorted(PGTUNE_HOSTS))
def test_deviation_huge_pages_is_always_try(name):
    spec, expected = PGTUNE_HOSTS[name]
    assert expected['huge_pages'] == ('try' if spec['memory_mb'] >= 32768 else 'off')
    assert tuning.pg_tune(spec)['huge_pages'] == 'try'


@pytest.mark.parametrize('name', ['2GB-1cpu', '8GB-2cpu'])
def test_deviation_parallel_settings_below_four_cpus(name):
    spec, expected = PGTUNE_HOSTS[name]
    assert not set(PG_PARALLEL_DEFAULTS) & set(expected)  # pgtune leaves PostgreSQL's defaults
    result = tuning.pg_tune(spec)
    cpus = str(spec['cpus'])
    assert result['max_worker_processes'] == PG_PARALLEL_DEFAULTS['max_worker_processes']
    assert result['max_parallel_workers'] == cpus  # instead of 8 workers on 1-2 vCPUs
    assert result['max_parallel_workers_per_gather'] == '1'  # instead of 2
    assert result['max_parallel_maintenance_workers'] == '1'  # instead of 2


@pytest.mark.parametrize('cpus', [4, 5, 6, 7])
def test_deviation_max_worker_processes_never_below_default(cpus):
    # pgtune: max_worker_processes = cpus, and work_mem divides by (connections + cpus).
    result = tuning.pg_tune(host(16384, cpus))
    assert result['max_worker_processes'] == '8'
    assert result['max_parallel_workers'] == str(cpus)
    assert kb(result['work_mem']) == (16384 * 1024 * 3 // 4) // ((200 + 8) * 3)
    pgtune_work_mem = (16384 * 1024 * 3 // 4) // ((200 + cpus) * 3)
    assert kb(result['work_mem']) < pgtune_work_mem


def test_deviation_wal_buffers_is_whole_8kb_pages():
    # 1 GB RAM: pgtune writes 3% of 262144kB = 7864kB, which is 983 pages exactly.
    assert tuning.pg_tune(host(1024))['wal_buffers'] == '7864kB'
    # 333 MB RAM: pgtune writes 3% of 85248kB = 2557kB, which is not a whole page.
    assert tuning.pg_tune(host(333))['wal_buffers'] == '2552kB'


@pytest.mark.parametrize('shared_buffers_kb,expected_kb', [(477867, 14336), (477900, 16384)])
def test_wal_buffers_rounds_up_to_16mb_only_above_14mb(shared_buffers_kb, expected_kb):
    # pgtune: 3% of shared_buffers, and 16MB once that is above 14MB.  No RAM in whole MB gives exactly 14MB,
    # so the edge is checked on the helper.
    assert tuning._wal_buffers_kb(shared_buffers_kb) == expected_kb


def test_deviation_maintenance_work_mem_shrinks_to_fit_budget():
    # dw, 512 MB, 2000 connections: pgtune writes maintenance_work_mem = 512MB / 8 = 64MB,
    # and 128MB + 2000 * 64kB * 2 + 3 * 64MB = 570MB > 512MB.
    spec = host(512, 1, profile='dw', max_connections=2000)
    result = tuning.pg_tune(spec)
    assert result['work_mem'] == '64kB'
    unbudgeted = 512 * 1024 - 128 * 1024 - 2000 * 64 * 2
    assert kb(result['maintenance_work_mem']) == unbudgeted // 4 < 64 * 1024
    assert tuning.pg_memory_budget(result, 512, 2000)['fits']


# ---------------------------------------------------------------------------
# Formulas over several host sizes
# ---------------------------------------------------------------------------

SIZES_MB = [512, 1024, 2048, 7821, 8192, 31395, 65536, 262144, 1048576]


@pytest.mark.parametrize('memory_mb', SIZES_MB)
def test_shared_buffers_and_effective_cache_size(memory_mb):
    result = tuning.pg_tune(host(memory_mb))
    ram_kb = memory_mb * 1024
    assert _rounded(ram_kb // 4) == kb(result['shared_buffers'])
    assert _rounded(ram_kb * 3 // 4) == kb(result['effective_cache_size'])


def _rounded(value_kb):
    """Rounding of memory values: whole MB from 1 GB on."""
    return value_kb - value_kb % 1024 if value_kb >= GB_KB else value_kb


def test_odd_fact_memory_is_rounded_to_whole_megabytes():
    # ansible_memtotal_mb of an "8 GB" VM is below 8192.
    result = tuning.pg_tune(host(7821))
    assert result['shared_buffers'] == '1955MB'  # 1955.25MB
    assert result['effective_cache_size'] == '5865MB'  # 5865.75MB
    assert result['maintenance_work_mem'] == '500544kB'  # 488.8MB, below 1 GB: exact kB


@pytest.mark.parametrize('profile,divisor', [('web', 1), ('oltp', 1), ('mixed', 2), ('dw', 2)])
@pytest.mark.parametrize('memory_mb,cpus,connections', [(1024, 1, 100), (8192, 4, 200), (65536, 16, 500), (262144, 64, 1000)])
def test_work_mem(profile, divisor, memory_mb, cpus, connections):
    result = tuning.pg_tune(host(memory_mb, cpus, profile=profile, max_connections=connections))
    ram_kb = memory_mb * 1024
    expected = (ram_kb - ram_kb // 4) // ((connections + max(cpus, 8)) * 3 * divisor)
    assert kb(result['work_mem']) == _rounded(max(64, expected))


def test_work_mem_minimum_is_64kb():
    assert tuning.pg_tune(host(512, 1, profile='mixed', max_connections=2000))['work_mem'] == '64kB'


@pytest.mark.parametrize('profile,divisor', [('web', 16), ('oltp', 16), ('mixed', 16), ('dw', 8)])
@pytest.mark.parametrize('memory_mb', [1024, 8192, 16384, 32768, 1048576])
def test_maintenance_work_mem(profile, divisor, memory_mb):
    result = tuning.pg_tune(host(memory_mb, 8, profile=profile, max_connections=100))
    assert kb(result['maintenance_work_mem']) == min(memory_mb * 1024 // divisor, 2 * GB_KB)


@pytest.mark.parametrize('memory_mb,expected', [(128, '976kB'), (512, '3928kB'), (1800, '13824kB'), (1900, '16MB'), (65536, '16MB')])
def test_wal_buffers(memory_mb, expected):
    # 3% of shared_buffers, capped at 16MB; 1800 MB gives 13824kB (<= 14MB), 1900 MB gives 14592kB,
    # which is above 14MB and rounded up to 16MB.
    assert tuning.pg_tune(host(memory_mb))['wal_buffers'] == expected


@pytest.mark.parametrize('cpus,workers,per_gather,per_gather_dw,maintenance', [
    (1, '1', '1', '1', '1'),
    (3, '3', '2', '2', '2'),
    (8, '8', '4', '4', '4'),
    (12, '12', '4', '6', '4'),
    (31, '31', '4', '16', '4'),
    (128, '128', '4', '64', '4'),
])
def test_parallel_settings(cpus, workers, per_gather, per_gather_dw, maintenance):
    web = tuning.pg_tune(host(16384, cpus))
    dw = tuning.pg_tune(host(16384, cpus, profile='dw'))
    assert web['max_worker_processes'] == str(max(cpus, 8))
    assert web['max_parallel_workers'] == workers
    assert web['max_parallel_workers_per_gather'] == per_gather
    assert dw['max_parallel_workers_per_gather'] == per_gather_dw
    assert web['max_parallel_maintenance_workers'] == maintenance == dw['max_parallel_maintenance_workers']


@pytest.mark.parametrize('storage,random_page_cost,io_concurrency', [('ssd', '1.1', '200'), ('hdd', '4', '2')])
def test_storage(storage, random_page_cost, io_concurrency):
    result = tuning.pg_tune(host(storage=storage))
    assert result['random_page_cost'] == random_page_cost
    assert result['effective_io_concurrency'] == io_concurrency


@pytest.mark.parametrize('profile,min_wal,max_wal,statistics', [
    ('web', '1024MB', '4096MB', '100'),
    ('oltp', '2048MB', '8192MB', '100'),
    ('mixed', '1024MB', '4096MB', '100'),
    ('dw', '4096MB', '16384MB', '500'),
])
def test_profile_wal_and_statistics(profile, min_wal, max_wal, statistics):
    result = tuning.pg_tune(host(profile=profile))
    assert (result['min_wal_size'], result['max_wal_size']) == (min_wal, max_wal)
    assert result['default_statistics_target'] == statistics
    assert result['checkpoint_completion_target'] == '0.9'


def test_output_keys_and_order():
    assert list(tuning.pg_tune(host())) == [
        'shared_buffers', 'effective_cache_size', 'work_mem', 'maintenance_work_mem', 'wal_buffers',
        'max_worker_processes', 'max_parallel_workers', 'max_parallel_workers_per_gather',
        'max_parallel_maintenance_workers', 'random_page_cost', 'effective_io_concurrency',
        'checkpoint_completion_target', 'min_wal_size', 'max_wal_size', 'default_statistics_target', 'huge_pages',
    ]


def test_version_and_digit_strings_are_accepted():
    expected = tuning.pg_tune(host())
    assert tuning.pg_tune(host(version=13)) == expected
    assert tuning.pg_tune(host(memory_mb='8192', cpus='2', max_connections=' 200 ')) == expected


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('key', ['memory_mb', 'cpus', 'storage', 'profile', 'max_connections'])
def test_missing_key(key):
    spec = host()
    del spec[key]
    with pytest.raises(FilterError, match=r"^pg_tune: host is missing the required key '%s' \(required keys: 'memory_mb', "
                                          r"'cpus', 'storage', 'profile', 'max_connections'\)$" % key):
        tuning.pg_tune(spec)


@pytest.mark.parametrize('key,value,message', [
    ('profile', 'desktop', "host.profile must be one of 'web', 'oltp', 'mixed', 'dw', got 'desktop'"),
    ('profile', 'WEB', "host.profile must be one of"),
    ('storage', 'nvme', "host.storage must be one of 'ssd', 'hdd', got 'nvme'"),
    ('storage', None, "host.storage must be one of"),
    ('memory_mb', 0, 'host.memory_mb must be an integer >= 1, got 0'),
    ('memory_mb', -2048, 'host.memory_mb must be an integer >= 1'),
    ('memory_mb', '8GB', 'host.memory_mb must be an integer >= 1'),
    ('memory_mb', 8192.5, 'host.memory_mb must be an integer >= 1'),
    ('cpus', 0, 'host.cpus must be an integer >= 1'),
    ('cpus', True, 'host.cpus must be an integer >= 1'),
    ('max_connections', 0, 'host.max_connections must be an integer >= 1'),
    ('max_connections', -1, 'host.max_connections must be an integer >= 1'),
    ('version', 9, 'host.version must be an integer >= 11'),
])
def test_invalid_values(key, value, message):
    # Every message starts with the filter's name: the operator reads it in a failed task.
    with pytest.raises(FilterError, match='^pg_tune: ' + re.escape(message)):
        tuning.pg_tune(host(**{key: value}))


@pytest.mark.parametrize('bad_host', [None, 'ssd', ['memory_mb']])
def test_host_must_be_a_dict(bad_host):
    with pytest.raises(FilterError, match='^pg_tune: host must be a dict, got %s$' % type(bad_host).__name__):
        tuning.pg_tune(bad_host)


def test_imports_and_raises_without_ansible(monkeypatch):
    monkeypatch.setitem(sys.modules, 'ansible', None)  # makes "import ansible.errors" fail
    monkeypatch.setitem(sys.modules, 'ansible.errors', None)
    plain = _load_plugin()
    assert issubclass(plain.AnsibleFilterError, ValueError)
    with pytest.raises(plain.AnsibleFilterError, match="host.profile must be one of"):
        plain.pg_tune(host(profile='desktop'))


# ---------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------

def test_overrides_replace_and_add_settings_as_strings():
    default = tuning.pg_tune(host())
    result = tuning.pg_tune(host(), {'shared_buffers': '3GB', 'effective_io_concurrency': 300, 'random_page_cost': 1.5,
                                     'jit': 'off'})
    assert result['shared_buffers'] == '3GB'
    assert result['effective_io_concurrency'] == '300'
    assert result['random_page_cost'] == '1.5'
    assert result['jit'] == 'off'
    assert list(result) == list(default) + ['jit']  # replaced keys keep their place
    assert {k: v for k, v in result.items() if k not in ('shared_buffers', 'effective_io_concurrency', 'random_page_cost', 'jit')} == \
        {k: v for k, v in default.items() if k not in ('shared_buffers', 'effective_io_concurrency', 'random_page_cost')}


def test_empty_or_missing_overrides():
    assert tuning.pg_tune(host(), {}) == tuning.pg_tune(host()) == tuning.pg_tune(host(), None)


def test_overrides_must_be_a_dict():
    with pytest.raises(FilterError, match='^pg_tune: overrides must be a dict, got list$'):
        tuning.pg_tune(host(), ['shared_buffers=1GB'])


# ---------------------------------------------------------------------------
# Memory budget
# ---------------------------------------------------------------------------

def test_budget_fits_on_32gb_host():
    settings = tuning.pg_tune(host(32768, 8))
    budget = tuning.pg_memory_budget(settings, 32768, 200)
    # 8192MB + 200 * 40329kB * 2 (15753.5MB) + 3 * 2048MB = 30089.5MB
    assert budget == {
        'memory_mb': 32768, 'budget_mb': 30090, 'fits': True,
        'shared_buffers_mb': 8192.0, 'connections_mb': 15753.5, 'maintenance_mb': 6144.0,
    }


def test_fixed_2gb_shared_buffers_does_not_fit_on_2gb_host():
    settings = tuning.pg_tune(host(2048, 1), {'shared_buffers': '2GB'})
    budget = tuning.pg_memory_budget(settings, 2048, 200)
    assert budget['budget_mb'] == 2048 + 985 + 384  # 2048 + 984.4 + 384, rounded up
    assert not budget['fits']


def test_shared_buffers_larger_than_ram_does_not_fit():
    settings = tuning.pg_tune(host(8192, 2), {'shared_buffers': '16GB'})
    assert not tuning.pg_memory_budget(settings, 8192, 200)['fits']


def test_budget_parameters():
    settings = {'shared_buffers': '1GB', 'work_mem': '4MB', 'maintenance_work_mem': '256MB'}
    budget = tuning.pg_memory_budget(settings, 4096, 100, autovacuum_max_workers=5, work_mem_factor=3)
    assert budget['connections_mb'] == 1200.0 and budget['maintenance_mb'] == 1280.0
    assert budget['budget_mb'] == 1024 + 1200 + 1280 and budget['fits']
    assert tuning.pg_memory_budget(settings, 3503, 100, 5, 3)['fits'] is False
    assert tuning.pg_memory_budget(settings, 4096, 100, work_mem_factor=1.5)['connections_mb'] == 600.0


def test_budget_fits_when_it_equals_the_ram():
    settings = {'shared_buffers': '1GB', 'work_mem': '4MB', 'maintenance_work_mem': '256MB'}
    # 1024 + 100 * 4 * 2 + 3 * 256 = 2592 MB
    assert tuning.pg_memory_budget(settings, 2592, 100)['fits'] is True
    assert tuning.pg_memory_budget(settings, 2591, 100)['fits'] is False


def test_budget_accepts_any_positive_work_mem_factor():
    settings = {'shared_buffers': '1GB', 'work_mem': '4MB', 'maintenance_work_mem': '256MB'}
    assert tuning.pg_memory_budget(settings, 4096, 100, work_mem_factor=1)['connections_mb'] == 400.0
    assert tuning.pg_memory_budget(settings, 4096, 100, work_mem_factor=0.5)['connections_mb'] == 200.0


def test_budget_parts_are_rounded_to_a_tenth_of_a_megabyte():
    # 1000kB = 0.9765625 MB; 10 * 1000kB * 2 = 19.53125 MB; 3 * 1000kB = 2.9296875 MB
    settings = {'shared_buffers': '1000kB', 'work_mem': '1000kB', 'maintenance_work_mem': '1000kB'}
    budget = tuning.pg_memory_budget(settings, 1024, 10)
    assert (budget['shared_buffers_mb'], budget['connections_mb'], budget['maintenance_mb']) == (1.0, 19.5, 2.9)
    assert budget['budget_mb'] == 24  # 23.4375, rounded up


def test_budget_uses_autovacuum_work_mem_when_set():
    settings = {'shared_buffers': '1GB', 'work_mem': '4MB', 'maintenance_work_mem': '1GB', 'autovacuum_work_mem': '128MB'}
    assert tuning.pg_memory_budget(settings, 4096, 10)['maintenance_mb'] == 384.0
    settings['autovacuum_work_mem'] = -1
    assert tuning.pg_memory_budget(settings, 4096, 10)['maintenance_mb'] == 3072.0


def test_budget_reads_bare_numbers_in_postgresql_base_units():
    # shared_buffers = 262144 means 262144 pages of 8kB in postgresql.conf.
    settings = {'shared_buffers': '262144', 'work_mem': 4096, 'maintenance_work_mem': '65536'}
    budget = tuning.pg_memory_budget(settings, 4096, 100)
    assert (budget['shared_buffers_mb'], budget['connections_mb'], budget['maintenance_mb']) == (2048.0, 800.0, 192.0)


@pytest.mark.parametrize('args,message', [
    (({'work_mem': '4MB', 'maintenance_work_mem': '64MB'}, 1024, 10), "settings has no 'shared_buffers'"),
    (({'shared_buffers': 'lots', 'work_mem': '4MB', 'maintenance_work_mem': '64MB'}, 1024, 10), "settings\\['shared_buffers'\\]"),
    (('shared_buffers=1GB', 1024, 10), 'settings must be a dict'),
    (({}, 0, 10), 'memory_mb must be an integer >= 1'),
    (({}, 1024, 0), 'max_connections must be an integer >= 1'),
    (({}, 1024, 10, -1), 'autovacuum_max_workers must be an integer >= 0'),
    (({}, 1024, 10, 3, 0), 'work_mem_factor must be a number > 0'),
    (({}, 1024, 10, 3, '2'), "work_mem_factor must be a number > 0, got '2'$"),
    (({'shared_buffers': '1GB', 'maintenance_work_mem': '64MB'}, 1024, 10), "settings has no 'work_mem'; pass the output of pg_tune$"),
    (({'shared_buffers': '1GB', 'work_mem': '4MB'}, 1024, 10), "settings has no 'maintenance_work_mem'"),
    (({'shared_buffers': '1GB', 'work_mem': '4MB', 'maintenance_work_mem': '1GB', 'autovacuum_work_mem': '1 PB'}, 1024, 10),
     "settings\\['autovacuum_work_mem'\\]: pg_size_to_kb: "),
])
def test_budget_errors(args, message):
    with pytest.raises(FilterError, match='^pg_memory_budget: ' + message):
        tuning.pg_memory_budget(*args)


# ---------------------------------------------------------------------------
# Size parsing
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('value,expected', [
    ('128kB', 128), ('16MB', 16384), ('6GB', 6 * GB_KB), ('1TB', 1024 * GB_KB), ('4369kB', 4369),
    ('64', 64), (64, 64), (' 16 MB ', 16384), ('1.5GB', 1536 * 1024), ('8192B', 8), ('1536B', 2), ('0', 0),
])
def test_pg_size_to_kb(value, expected):
    assert tuning.pg_size_to_kb(value) == expected


@pytest.mark.parametrize('value', ['16mb', '16 M', '1 PB', '-1', '', 'GB', None, True, '1,5GB', '16MB8'])
def test_pg_size_to_kb_rejects(value):
    with pytest.raises(FilterError, match='^pg_size_to_kb: '):
        tuning.pg_size_to_kb(value)


@pytest.mark.parametrize('value,message', [
    ('-1', "'-1' is not a PostgreSQL memory size; expected a non-negative number with an optional unit "
           "('B', 'kB', 'MB', 'GB', 'TB'), e.g. 16MB"),
    (True, "True is not a PostgreSQL memory size;"),
    ('16mb', "unknown memory unit 'mb' (valid units: 'B', 'kB', 'MB', 'GB', 'TB'; they are case-sensitive)"),
])
def test_pg_size_to_kb_messages(value, message):
    with pytest.raises(FilterError) as info:
        tuning.pg_size_to_kb(value)
    assert str(info.value).startswith('pg_size_to_kb: ' + message), str(info.value)


@pytest.mark.parametrize('value,expected', [('511B', 0), ('511.5B', 0), ('512B', 1), ('1535B', 1), ('1536B', 2)])
def test_sizes_round_to_the_nearest_kb_half_up(value, expected):
    assert tuning.pg_size_to_kb(value) == expected


@given(st.integers(min_value=0, max_value=2 ** 40))
def test_size_round_trips(value):
    assert tuning.pg_size_to_kb('%dkB' % value) == value
    assert tuning.pg_size_to_kb('%dMB' % value) == value * 1024
    assert tuning.pg_size_to_kb('%dGB' % value) == value * GB_KB
    assert tuning.pg_size_to_kb('%dTB' % (value % 4096)) == (value % 4096) * 1024 * GB_KB


@pytest.mark.parametrize('setting,unit,expected', [
    ('16384', '8kB', 131072),  # shared_buffers = 128MB
    ('4096', 'kB', 4096),  # work_mem
    ('1024', 'MB', GB_KB),  # min_wal_size
    ('16777216', 'B', 16384),  # wal_segment_size
    ('2', '16MB', 32768),
    ('16MB', None, 16384),
    (4096, '', 4096),
])
def test_pg_setting_to_kb(setting, unit, expected):
    assert tuning.pg_setting_to_kb(setting, unit) == expected


@pytest.mark.parametrize('setting,unit', [('-1', 'kB'), ('16MB', '8kB'), ('on', 'kB'), ('16', 'ms'), ('16', 'mb'), ('16', 8)])
def test_pg_setting_to_kb_rejects(setting, unit):
    with pytest.raises(FilterError, match='^pg_setting_to_kb: '):
        tuning.pg_setting_to_kb(setting, unit)


@pytest.mark.parametrize('setting,unit,message', [
    ('-1', 'kB', "setting '-1' is not a non-negative number"),
    (True, 'kB', "setting True is not a non-negative number"),
    ('16', 8, "unit 8 is not a PostgreSQL memory unit such as 8kB, kB or MB"),
    ('16', 'mb', "unknown memory unit 'mb' (valid units: 'B', 'kB', 'MB', 'GB', 'TB'; they are case-sensitive)"),
])
def test_pg_setting_to_kb_messages(setting, unit, message):
    with pytest.raises(FilterError) as info:
        tuning.pg_setting_to_kb(setting, unit)
    assert str(info.value) == 'pg_setting_to_kb: ' + message


@pytest.mark.parametrize('memory_mb', SIZES_MB)
def test_pg_tune_memory_values_match_pg_settings_units(memory_mb):
    """What the server reports in pg_settings equals what pg_tune wrote."""
    result = tuning.pg_tune(host(memory_mb))
    for name, unit in (('shared_buffers', '8kB'), ('effective_cache_size', '8kB'), ('wal_buffers', '8kB'),
                       ('work_mem', 'kB'), ('maintenance_work_mem', 'kB'), ('min_wal_size', 'MB'), ('max_wal_size', 'MB')):
        unit_kb = tuning.pg_setting_to_kb('1', unit)
        value_kb = kb(result[name])
        assert value_kb % unit_kb == 0, name
        assert tuning.pg_setting_to_kb(str(value_kb // unit_kb), unit) == value_kb


def test_filter_module_exposes_filters():
    filters = tuning.FilterModule().filters()
    assert filters == {'pg_tune': tuning.pg_tune, 'pg_memory_budget': tuning.pg_memory_budget}


# ---------------------------------------------------------------------------
# Property: every supported host gets a valid configuration that fits its RAM
# ---------------------------------------------------------------------------

@hypothesis_settings(max_examples=400, deadline=None)
@given(
    memory_mb=st.integers(min_value=512, max_value=1048576),
    cpus=st.integers(min_value=1, max_value=128),
    profile=st.sampled_from(tuning.PROFILES),
    storage=st.sampled_from(tuning.STORAGE_TYPES),
    max_connections=st.integers(min_value=10, max_value=2000),
)
def test_settings_are_valid_and_fit(memory_mb, cpus, profile, storage, max_connections):
    result = tuning.pg_tune(host(memory_mb, cpus, storage, profile, max_connections))
    ram_kb = memory_mb * 1024
    assert 128 <= kb(result['shared_buffers']) < ram_kb
    assert kb(result['shared_buffers']) < kb(result['effective_cache_size']) < ram_kb
    assert kb(result['work_mem']) >= 64
    assert 1024 <= kb(result['maintenance_work_mem']) <= 2 * GB_KB
    assert 32 <= kb(result['wal_buffers']) <= 16 * 1024 and kb(result['wal_buffers']) % 8 == 0
    assert kb(result['min_wal_size']) < kb(result['max_wal_size'])
    workers = int(result['max_parallel_workers'])
    assert 1 <= int(result['max_parallel_workers_per_gather']) <= workers <= int(result['max_worker_processes'])
    assert 1 <= int(result['max_parallel_maintenance_workers']) <= workers
    assert float(result['random_page_cost']) > 0 and int(result['effective_io_concurrency']) <= 1000
    assert 0 < float(result['checkpoint_completion_target']) <= 1
    budget = tuning.pg_memory_budget(result, memory_mb, max_connections)
    assert budget['fits'], budget
