# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for the get-pip.py that ansible-test downloads to bootstrap pip in its sanity venvs.

ansible-test fetches that script from a host this lab cannot reach, and looks for a cached copy at
~/.ansible/test/cache/get_pip_<version>.py first; `make sanity` puts this file there. It bootstraps the pip
bundled with Python (ensurepip), then installs the pip version ansible-test asked for from the package index.
"""
from __future__ import absolute_import, division, print_function

import subprocess
import sys

__metaclass__ = type

GET_PIP_ONLY_OPTIONS = ("--no-setuptools", "--no-wheel")


def main():
    """Bootstrap pip, then pass ansible-test's arguments to `pip install`."""
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
    subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)


if __name__ == "__main__":
    main()
