# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Benchmark: a no-change re-run of site.yml on the lab, the old way and the new way, in one run.

Run from the checkout after ``make lab``::

    python3 benchmarks/converge.py              # one round: podman, then SSH with new and with kept connections
    python3 benchmarks/converge.py --rounds 3   # three rounds, round robin; the median of each mode is reported
    python3 benchmarks/converge.py --json out.json

The modes run the same ``ansible-playbook -i inventories/lab site.yml``:

1. ``podman``: the old way, over the containers.podman.podman connection with interpreter discovery, as the lab
   inventory had it (a second inventory source sets both for the ``postgresql`` group). The plugin cannot pipeline: every task costs several
   ``podman exec`` calls (make a temporary directory, copy the module, run it, remove the directory).
2. ``ssh-new``: the new way, over SSH with pipelining, but in a control directory of its own, so every host's
   first task opens a new connection: what a first run after ten idle minutes costs.
3. ``ssh``: the new way as an operator re-running site.yml meets it: the master connections that ControlPersist
   keeps open are reused.

A warm-up run over SSH comes first (not timed): it converges the lab, so that every timed run is a no-change run.
Each timed run must report changed=0 on every host, or the benchmark fails. It prints the wall time of each mode,
the ratio of the old way to the new, and the ten slowest tasks of the new way next to their time over podman.
A task's time is from its start to the last host's result (the linear strategy runs the hosts in lockstep),
taken from the ansible.posix.json callback.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, '.venv', 'bin')
TARGET_SECONDS = 30.0

# The old way, as a second inventory source: group vars of `postgresql` win over the lab's `all` vars. Not `-e`:
# extra vars would also send the tasks delegated to localhost (the managed CA) through podman.
PODMAN_OVERRIDE = """---
postgresql:
  vars:
    ansible_connection: containers.podman.podman
    ansible_python_interpreter: auto_silent
"""

# mode -> label
MODES = (
    ('podman', 'podman exec (before)'),
    ('ssh-new', 'SSH, new connections'),
    ('ssh', 'SSH, kept connections (after)'),
)


def parse_time(text):
    """The callback's timestamps: ISO 8601 in UTC with a trailing Z."""
    return datetime.datetime.strptime(text.rstrip('Z'), '%Y-%m-%dT%H:%M:%S.%f')


def summarise(report):
    """Per-task seconds and per-host counts from the ansible.posix.json callback's document.

    Returns a dict: ``tasks`` (a list of ``{'key', 'name', 'seconds'}`` in run order; ``key`` is the task's file and
    line, so the same task matches across modes), ``changed`` (host -> count) and ``failed`` (host -> failures plus
    unreachable).
    """
    tasks = []
    errors = []
    for play in report['plays']:
        for entry in play['tasks']:
            task = entry['task']
            errors.extend('%s on %s: %s' % (task['name'], host, result.get('msg', result)) for host, result in entry['hosts'].items()
                          if result.get('failed') or result.get('unreachable'))
            duration = task.get('duration', {})
            if 'end' not in duration:
                continue  # no host ran it (every host skipped by a play-level condition)
            seconds = (parse_time(duration['end']) - parse_time(duration['start'])).total_seconds()
            tasks.append({'key': task.get('path') or task['name'], 'name': task['name'], 'seconds': seconds})
    stats = report['stats']
    return {
        'tasks': tasks,
        'changed': dict((host, counts['changed']) for host, counts in stats.items()),
        'failed': dict((host, counts['failures'] + counts['unreachable']) for host, counts in stats.items()),
        'errors': errors,
    }


def slowest(tasks, count):
    """The ``count`` slowest tasks, slowest first; a task run twice (a handler, an included file) is summed."""
    totals = {}
    names = {}
    for task in tasks:
        totals[task['key']] = totals.get(task['key'], 0.0) + task['seconds']
        names[task['key']] = task['name']
    ranked = sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))[:count]
    return [{'key': key, 'name': names[key], 'seconds': seconds} for key, seconds in ranked]


def environment():
    env = dict(os.environ)
    env['PATH'] = VENV_BIN + os.pathsep + env.get('PATH', '')
    env.setdefault('ANSIBLE_CONFIG', os.path.join(ROOT, 'ansible.cfg'))
    env.setdefault('CONTAINERS_CONF', os.path.join(ROOT, '.config', 'containers.conf'))
    env.setdefault('LAB_CACHE_DIR', os.path.join(ROOT, '.cache'))
    env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.posix.json'
    env.pop('ANSIBLE_CALLBACKS_ENABLED', None)
    env['ANSIBLE_NOCOLOR'] = '1'
    return env


def run_playbook(env, inventories):
    """One run of site.yml: (wall seconds, summary). Raises RuntimeError when the run fails."""
    argv = ['ansible-playbook'] + ['-i%s' % inventory for inventory in inventories] + [os.path.join(ROOT, 'site.yml')]
    start, cpu_start = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    wall, cpu_end = time.monotonic() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        summary = summarise(json.loads(proc.stdout[proc.stdout.index('{'):]))
    except ValueError as error:
        raise RuntimeError('%s exited %d without a report:\n%s\n%s' % (
            ' '.join(argv), proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])) from error
    # The controller's CPU (ansible and the ssh or podman processes it starts): less swayed by a busy machine than wall
    # time. The work inside the hosts is not in it.
    summary['cpu'] = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    if proc.returncode != 0 or any(summary['failed'].values()):
        raise RuntimeError('%s exited %d; failed or unreachable: %s\n%s\n%s' % (
            ' '.join(argv), proc.returncode, summary['failed'], '\n'.join(summary['errors'])[-3000:], proc.stderr[-3000:]))
    return wall, summary


def check_lab(env):
    config = os.path.join(env['LAB_CACHE_DIR'], 'lab-ssh', 'config')
    if not os.path.exists(config):
        sys.exit('converge.py: %s is missing: build the lab first (make lab)' % config)


def report_table(results, top):
    lines = []
    walls = {}
    for mode, label in MODES:
        runs = results[mode]
        walls[mode] = statistics.median(run['wall'] for run in runs)
        changed = sum(sum(run['summary']['changed'].values()) for run in runs)
        lines.append('  %-32s %8.1f s   controller CPU %5.1f s   %3d tasks   changed=%d   runs: %s' % (
            label, walls[mode], statistics.median(run['summary']['cpu'] for run in runs), len(runs[0]['summary']['tasks']),
            changed, ', '.join('%.1f' % run['wall'] for run in runs)))
    lines.append('  %-32s %8.1fx' % ('before / after', walls['podman'] / walls['ssh']))
    lines.append('  %-32s %8s   %s' % ('target', '%.0f s' % TARGET_SECONDS,
                                       'met' if walls['ssh'] <= TARGET_SECONDS else 'missed'))
    # The median run of each mode gives the task times.
    median_run = dict((mode, sorted(results[mode], key=lambda run: run['wall'])[len(results[mode]) // 2])
                      for mode, _label in MODES)
    before = dict((task['key'], task['seconds']) for task in slowest(median_run['podman']['summary']['tasks'], 10 ** 6))
    lines.append('')
    lines.append('The %d slowest tasks of the new way (SSH, kept connections), and the same task over podman:' % top)
    lines.append('  %8s %8s  %s' % ('ssh s', 'podman s', 'task'))
    for task in slowest(median_run['ssh']['summary']['tasks'], top):
        lines.append('  %8.2f %8.2f  %s' % (task['seconds'], before.get(task['key'], float('nan')), task['name']))
    lines.append('')
    lines.append('The %d slowest tasks of the old way (podman):' % top)
    for task in slowest(median_run['podman']['summary']['tasks'], top):
        lines.append('  %8.2f  %s' % (task['seconds'], task['name']))
    return '\n'.join(lines), walls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('--rounds', type=int, default=1, help='timed runs of each mode, round robin (default 1)')
    parser.add_argument('--top', type=int, default=10, help='how many of the slowest tasks to list (default 10)')
    parser.add_argument('--inventory', default=os.path.join(ROOT, 'inventories', 'lab'))
    parser.add_argument('--no-warm-up', action='store_true', help='skip the untimed converging run')
    parser.add_argument('--json', metavar='FILE', help='also write every run (walls, per-task seconds) to FILE')
    args = parser.parse_args(argv)

    env = environment()
    check_lab(env)
    print('converge.py: no-change re-runs of site.yml on %s; load average at start %.2f' % (
        os.path.relpath(args.inventory, ROOT), os.getloadavg()[0]), flush=True)
    if not args.no_warm_up:
        wall, summary = run_playbook(env, [args.inventory])
        print('  warm-up over SSH: %.1f s, changed=%s' % (wall, summary['changed']), flush=True)

    results = dict((mode, []) for mode, _label in MODES)
    for round_number in range(args.rounds):
        for mode, label in MODES:
            run_env = dict(env)
            inventories = [args.inventory]
            with tempfile.TemporaryDirectory(prefix='converge-') as scratch:
                if mode == 'podman':
                    inventories.append(os.path.join(scratch, 'podman.yml'))
                    with open(inventories[-1], 'w') as handle:
                        handle.write(PODMAN_OVERRIDE)
                control_dir = os.path.join(scratch, 'cp')
                os.mkdir(control_dir)
                if mode == 'ssh-new':
                    # A control directory of its own: no master connection from an earlier run is found.
                    run_env['ANSIBLE_SSH_CONTROL_PATH_DIR'] = control_dir
                wall, summary = run_playbook(run_env, inventories)
                for socket in os.listdir(control_dir):  # close the masters this run opened
                    subprocess.run(['ssh', '-o', 'ControlPath=' + os.path.join(control_dir, socket), '-O', 'exit', 'lab'],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            results[mode].append({'wall': wall, 'summary': summary})
            print('  round %d, %-32s %6.1f s  changed=%s' % (round_number + 1, label, wall, summary['changed']),
                  flush=True)

    table, walls = report_table(results, args.top)
    print('  load average at the end %.2f (the lab hosts run on the same CPUs)' % os.getloadavg()[0])
    print('')
    print(table)
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump({'walls': walls, 'runs': results}, handle, indent=1, sort_keys=True)
    changed = [(mode, run['summary']['changed']) for mode in results for run in results[mode]
               if any(run['summary']['changed'].values())]
    if changed:
        print('\nconverge.py: not a no-change run: %s' % changed, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
