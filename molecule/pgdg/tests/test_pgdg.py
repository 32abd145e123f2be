"""The server came from the local signed PGDG mirror through the role's key, source and pin."""
from conftest import podman_hosts

testinfra_hosts = podman_hosts("postgresql")

KEY = "/etc/apt/keyrings/apt.postgresql.org.asc"


def test_source_is_deb822_and_signed_by_the_pgdg_key(host):
    sources = host.file("/etc/apt/sources.list.d/pgdg.sources").content_string
    assert "URIs: http://127.0.0.1:8080/repo" in sources
    assert "Suites: bookworm-pgdg" in sources
    assert "Signed-By: " + KEY in sources


def test_key_fingerprint_is_the_mirror_key(host):
    fingerprint = host.file("/srv/pgdg/repo/fingerprint").content_string.strip()
    shown = host.run("gpg --batch --show-keys --with-colons " + KEY).stdout
    assert "fpr:::::::::{}:".format(fingerprint) in shown


def test_pin_prefers_the_pgdg_origin(host):
    policy = host.run("apt-cache policy").stdout
    assert "500 http://127.0.0.1:8080/repo bookworm-pgdg/main" in policy
    assert "o=apt.postgresql.org" in policy


def sources_of_installed_version(policy):
    """The archive lines listed under the installed (***) version of `apt-cache policy PKG`."""
    sources, inside = [], False
    for line in policy.splitlines():
        if line.startswith(" *** "):
            inside = True
        elif inside and line.startswith("     ") and not line.startswith("        "):
            break
        elif inside:
            sources.append(line.strip())
    return sources


def test_installed_server_is_offered_by_the_mirror(host):
    for package in ("postgresql-15", "postgresql-common", "libpq5"):
        sources = sources_of_installed_version(host.run("apt-cache policy " + package).stdout)
        assert any("http://127.0.0.1:8080/repo bookworm-pgdg/main" in s for s in sources), (package, sources)


def test_server_runs_from_the_pgdg_install(host):
    """The running postmaster is postgresql-15's binary, at the version the mirror publishes."""
    pid = host.run("systemctl show -p MainPID --value postgresql@15-main").stdout.strip()
    assert pid not in ("", "0"), "postgresql@15-main has no main process"
    binary = host.file("/proc/{}/cmdline".format(pid)).content.split(b"\0")[0].decode()
    assert host.run("dpkg -S " + binary).stdout.split(":")[0] == "postgresql-15", binary
    installed = host.run("dpkg-query -W -f '${Version}' postgresql-15").stdout.strip()
    published = host.run("cat /srv/pgdg/repo/dists/bookworm-pgdg/main/binary-*/Packages").stdout
    assert "Package: postgresql-15\nVersion: {}\n".format(installed) in published, installed
    out = host.run("runuser -u postgres -- psql -XAtc 'SHOW server_version'").stdout.strip()
    assert out.split()[0] == installed.split("-")[0].split("+")[0], (out, installed)
