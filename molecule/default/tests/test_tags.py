"""Every phase tag that docs/server.md and docs/app-schema.md name runs alone on a converged host and changes nothing;
skipping the preflight by tag does not skip the memory budget or the TLS checks.

The tags are read from the docs' "Order of work" tables: the docs are the one list an operator reads.
"""
import json
import re

import pytest

from conftest import PROJECT, group_hosts, play_recap, run_playbook

SITE = str(PROJECT / "playbooks" / "site.yml")
DOCS = [PROJECT / "docs" / "server.md", PROJECT / "docs" / "app-schema.md"]


def documented_tags():
    """The backticked role tags in the first column of each doc's "Order of work" table."""
    tags = []
    for doc in DOCS:
        table = doc.read_text().split("## Order of work", 1)[1].split("\n## ", 1)[0]
        for line in table.splitlines():
            cells = line.split("|")
            if len(cells) > 2:
                tags += re.findall(r"`((?:postgresql|app_schema)_[a-z_]+)`", cells[1])
    return tags


TAGS = documented_tags()


def one_host():
    return group_hosts("postgresql")[0]


def tail(result):
    return result.stdout[-6000:] + result.stderr[-2000:]


def test_the_docs_name_the_phases():
    assert "postgresql_configure" in TAGS and "app_schema_migrations" in TAGS, TAGS
    assert len(TAGS) == len(set(TAGS)) >= 10, TAGS


@pytest.mark.parametrize("tag", TAGS)
def test_a_documented_tag_runs_alone_and_changes_nothing(tag):
    result = run_playbook(SITE, "--tags", tag, "--limit", one_host())
    assert result.returncode == 0, tail(result)
    recap = play_recap(result.stdout)
    assert list(recap) == [one_host()], tail(result)
    counts = recap[one_host()]
    assert (counts["changed"], counts["unreachable"], counts["failed"]) == (0, 0, 0), tail(result)
    assert counts["ok"] > 1, tail(result)


@pytest.mark.parametrize("extra, message", [
    ({"postgresql_settings_overrides": {"shared_buffers": "64GB"}}, "The memory budget is"),
    ({"postgresql_tls_mode": "provided", "postgresql_tls_cert_content": "-----BEGIN CERTIFICATE-----",
      "postgresql_tls_ca_cert_content": "-----BEGIN CERTIFICATE-----", "postgresql_tls_key_src": "/nonexistent/server.key"},
     "postgresql_tls_key_src is '/nonexistent/server.key', which does not exist on the controller"),
], ids=["memory-budget", "tls-material"])
def test_skipping_the_preflight_tag_keeps_its_checks(extra, message):
    """--check: had the checks been skipped, the run would report changes instead of touching the host."""
    result = run_playbook(SITE, "--check", "--skip-tags", "postgresql_preflight", "--tags", "postgresql_configure",
                          "--limit", one_host(), "-e", json.dumps(extra))
    assert result.returncode != 0, tail(result)
    assert message in result.stdout + result.stderr, tail(result)


@pytest.mark.parametrize("args, message", [
    (["--skip-tags", "always", "--tags", "postgresql_configure"], "The preflight of agent_ui.postgresql.postgresql did not run"),
    (["--skip-tags", "app_schema_preflight", "--tags", "app_schema_roles"], "The preflight of agent_ui.postgresql.app_schema did not run"),
], ids=["postgresql", "app_schema"])
def test_a_skipped_preflight_stops_the_phases_that_need_it(args, message):
    result = run_playbook(SITE, "--check", "--limit", one_host(), *args)
    assert result.returncode != 0, tail(result)
    assert message in result.stdout + result.stderr, tail(result)
