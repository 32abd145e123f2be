# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Mutation testing of one pure module with mutmut (``make mutation``); not part of ``make test``.

    python3 tests/support/mutation.py plugins/filter/tuning.py tests/unit/plugins/filter/test_tuning.py

mutmut names each mutant after the module's import path, so the tracked files are copied to
``.cache/mutation/<module>/ansible_collections/agent_ui/postgresql`` (the checkout is never
mutated in place: other work in the tree is untouched) and mutmut runs from there on the import
path the tests use.  Only the tests that need no server run (``-m "not server"``), one mutant at a
time.  Prints mutmut's results (the survivors) and one line: ``<module>: killed K of N (score%)``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = os.path.join('ansible_collections', 'agent_ui', 'postgresql')
# mutmut from the interpreter's own environment (the venv), else from PATH.
MUTMUT = shutil.which('mutmut', path=os.path.dirname(sys.executable)) or 'mutmut'
SETUP_CFG = """[mutmut]
source_paths = {source}
also_copy =
    {prefix}/tests/
    {prefix}/pytest.ini
pytest_add_cli_args_test_selection = {tests}
pytest_add_cli_args = -m
    not server
    -p
    no:cacheprovider
"""


def copy_tree(workdir):
    """The tracked and untracked-but-not-ignored files of the checkout, under workdir/PREFIX."""
    shutil.rmtree(workdir, ignore_errors=True)
    target = os.path.join(workdir, PREFIX)
    os.makedirs(target)
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=ROOT, check=True,
                           stdout=subprocess.PIPE).stdout.decode().split('\0')
    for name in files:
        if not name or name.startswith('collections/') or not os.path.isfile(os.path.join(ROOT, name)):
            continue
        os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), os.path.join(target, name))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('source', help='the module to mutate, relative to the checkout')
    parser.add_argument('tests', nargs='+', help='the test files that should kill its mutants')
    parser.add_argument('--workdir', default=None, help='default: .cache/mutation/<module name>')
    args = parser.parse_args(argv)
    name = os.path.splitext(os.path.basename(args.source))[0]
    workdir = os.path.abspath(args.workdir or os.path.join(ROOT, '.cache', 'mutation', name))
    copy_tree(workdir)
    with open(os.path.join(workdir, 'setup.cfg'), 'w') as handle:
        handle.write(SETUP_CFG.format(source=os.path.join(PREFIX, args.source), prefix=PREFIX,
                                      tests='\n    '.join(os.path.join(PREFIX, test) for test in args.tests)))
    env = dict(os.environ, HYPOTHESIS_PROFILE='repeatable', PY_COLORS='0')
    run = subprocess.run([MUTMUT, 'run', '--max-children', os.environ.get('MUTATION_JOBS', '1')], cwd=workdir, env=env,
                         check=False)
    if run.returncode != 0:
        return run.returncode
    results = subprocess.run([MUTMUT, 'results', '--all', 'true'], cwd=workdir, env=env, check=True,
                             stdout=subprocess.PIPE, universal_newlines=True).stdout
    statuses = re.findall(r'^\s*\S+__mutmut_\d+: (\S+)', results, re.M)
    survivors = [line.strip() for line in results.splitlines() if line.rstrip().endswith(': survived')]
    print('\n'.join(survivors))
    killed = statuses.count('killed')
    print('%s: killed %d of %d (%.1f%%); %d survived, %s' % (
        args.source, killed, len(statuses), 100.0 * killed / max(1, len(statuses)), len(survivors),
        ', '.join('%d %s' % (statuses.count(s), s) for s in sorted(set(statuses)) if s not in ('killed', 'survived'))
        or 'no other status'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
