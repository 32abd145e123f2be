"""After the rejected runs, the host must be exactly as it was: nothing installed, nothing written."""
from conftest import podman_hosts

testinfra_hosts = podman_hosts("postgresql")


def test_no_postgresql_package_was_installed(host):
    result = host.run("dpkg-query -W -f '${Package} ${Status}\\n' 'postgresql*' 'pgbouncer*'")
    assert "install ok installed" not in result.stdout, result.stdout


def test_no_configuration_was_written(host):
    for path in ("/etc/postgresql", "/etc/postgresql-common", "/etc/apt/sources.list.d/pgdg.sources",
                 "/etc/apt/preferences.d/pgdg.pref", "/usr/share/postgresql-common", "/etc/apt/keyrings/apt.postgresql.org.asc",
                 "/etc/pgbouncer"):
        assert not host.file(path).exists, path


def test_the_host_is_otherwise_alive(host):
    assert host.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")
