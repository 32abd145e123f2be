"""Helpers shared by the testinfra suites of every molecule scenario."""
import importlib.util
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import testinfra
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

PROJECT = Path(__file__).resolve().parent.parent
ROLE_DEFAULTS = PROJECT / "roles" / "postgresql" / "defaults" / "main.yml"


def load_tuning():
    """Import plugins/filter/tuning.py as a plain module (the filter the role itself uses)."""
    spec = importlib.util.spec_from_file_location("tuning", PROJECT / "plugins" / "filter" / "tuning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def inventory_file():
    return os.environ["MOLECULE_INVENTORY_FILE"]


def group_hosts(group):
    """Inventory names of a group (molecule names containers after them)."""
    return sorted(AnsibleRunner(inventory_file()).get_hosts(group))


def podman_hosts(group):
    """testinfra_hosts for a group: commands go straight through `podman exec`, much faster than Ansible."""
    return ["podman://" + name for name in group_hosts(group)]


def ansible_host(name):
    """The same host through Ansible, for facts and variables."""
    return testinfra.get_host("ansible://" + name, ansible_inventory=inventory_file())


def psql(host, sql, db="postgres", check=True):
    """Run SQL as the postgres OS user over the local socket; return stripped stdout."""
    cmd = "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {} -c {}".format(shlex.quote(db), shlex.quote(sql))
    result = host.run(cmd)
    if check:
        assert result.rc == 0, result.stderr
    return result.stdout.strip()


def role_vars(name):
    """Role defaults overlaid with the inventory variables of host `name`."""
    values = yaml.safe_load(ROLE_DEFAULTS.read_text())
    inventory = AnsibleRunner(inventory_file()).get_variables(name)
    values.update({k: v for k, v in inventory.items() if k.startswith(("postgresql_", "lab_"))})
    return values


def remote_psql(client, conninfo, sql="SELECT 1", password=None):
    """Run psql on `client` with a connection string; the password goes through a 0600 passfile."""
    env = ""
    if password is not None:
        client.run("install -m 0600 /dev/null /root/.pgpass.test")
        client.run("printf '%s\\n' {} > /root/.pgpass.test".format(shlex.quote("*:*:*:*:" + password)))
        env = "PGPASSFILE=/root/.pgpass.test "
    return client.run("{}psql -XAtq {} -c {}".format(env, shlex.quote(conninfo), shlex.quote(sql)))


def pytest_configure(config):
    config.addinivalue_line("markers", "controls(*ids): the security baseline controls a test proves (docs/security.md)")


@pytest.fixture(scope="module")
def tuning():
    return load_tuning()


def run_playbook(*args):
    """Run ansible-playbook on the controller with molecule's environment and inventory."""
    cmd = ["ansible-playbook", "-i", inventory_file()] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=os.environ.copy())


RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def play_recap(stdout):
    """{host: {'ok', 'changed', 'unreachable', 'failed'}} from ansible-playbook's PLAY RECAP, in its order."""
    return dict((row[0], dict(zip(("ok", "changed", "unreachable", "failed"), map(int, row[1:]))))
                for row in RECAP.findall(stdout))


def run_unit(host, unit):
    """Start a oneshot systemd unit and wait for it; return (the start's result, the unit's journal of this run)."""
    since = host.run("date +%s").stdout.strip()
    started = host.run("systemctl start " + unit)
    journal = host.run("journalctl --no-pager -o cat -u {} --since @{}".format(unit, since)).stdout
    return started, journal
