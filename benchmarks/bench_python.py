# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The interpreter a benchmark runs under: the checkout's venv, when the one that started it lacks a module."""
from __future__ import absolute_import, division, print_function

import importlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PYTHON = os.path.join(ROOT, '.venv', 'bin', 'python')
REEXEC_ENV = 'AGENT_UI_BENCH_REEXEC'


def missing_modules(modules):
    """The names among ``modules`` this interpreter cannot import."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def ensure_modules(script, modules):
    """Return None when every module imports; else re-run ``script`` (same argv) under the venv's python, once.

    Returns the message to fail with when even that is not possible (no venv, or already re-run).
    """
    missing = missing_modules(modules)
    if not missing:
        return None
    if os.path.exists(VENV_PYTHON) and not os.environ.get(REEXEC_ENV):
        os.environ[REEXEC_ENV] = '1'
        os.execv(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(script)] + sys.argv[1:])
    return '%s is missing: run with %s (make venv)' % (' and '.join(missing), VENV_PYTHON)
