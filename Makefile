# agent_ui.postgresql — the two commands a newcomer runs: `make lab` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
CACHE := $(CURDIR)/.cache
STAMPS := $(CACHE)/stamps
SCENARIOS ?= preflight default pgdg migration
# postgresql-15: a throwaway server for the module's unit tests; pgloader: the migration benchmark's peer;
# iptables: netavark (podman's network stack) needs it to set up the lab networks.
# openssh-client: Ansible reaches the lab hosts over SSH.
APT_PACKAGES := podman runc debootstrap uidmap netavark aardvark-dns iptables dpkg-dev apt-utils gnupg rsync shellcheck postgresql-15 pgloader openssh-client

export PATH := $(VENV)/bin:$(PATH)
export CONTAINERS_CONF := $(CURDIR)/.config/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export LAB_CACHE_DIR := $(CACHE)
export PY_COLORS := 0
export ANSIBLE_NOCOLOR := 1

.PHONY: help deps venv images pgdg-repo lint sanity unit molecule test lab lab-destroy clean

help:
	@echo "make lab          build the lab hosts and run site.yml against them"
	@echo "make test         lint, sanity, unit tests and every molecule scenario ($(SCENARIOS))"
	@echo "make lab-destroy  remove the lab hosts"

# --- set-up: apt packages, the venv, the images -----------------------------------------------
$(STAMPS)/apt:
	@mkdir -p $(STAMPS)
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; fi
	@touch $@

$(VENV)/.stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	@touch $@

venv: $(VENV)/.stamp
deps: $(STAMPS)/apt venv
	@mkdir -p $(CACHE)/apt-archives/bookworm/partial $(CACHE)/apt-archives/trixie/partial

images: deps
	images/recipe.sh bookworm >/dev/null
	images/recipe.sh trixie >/dev/null

pgdg-repo: images
	scripts/pgdg-repo.sh bookworm 15

# --- checks ----------------------------------------------------------------------------------------
lint: deps
	yamllint --strict .
	ansible-lint
	antsibull-changelog lint

# ansible-test wants the collection at ansible_collections/agent_ui/postgresql and lists files with git, so
# sanity runs on a copy of the tracked files with a git index of its own. Its pip bootstrap script lives on a
# host this lab cannot reach: scripts/ansible_test_get_pip.py stands in for it (see the file).
SANITY_DIR := $(CACHE)/sanity/ansible_collections/agent_ui/postgresql
GET_PIP_CACHE := $(HOME)/.ansible/test/cache/get_pip_24_2.py

sanity: deps
	@rm -rf $(CACHE)/sanity && mkdir -p $(SANITY_DIR) $(dir $(GET_PIP_CACHE))
	@test -s $(GET_PIP_CACHE) || cp scripts/ansible_test_get_pip.py $(GET_PIP_CACHE)
	git ls-files -co --exclude-standard | grep -v '^collections/' | rsync -a --files-from=- ./ $(SANITY_DIR)/
	cd $(SANITY_DIR) && git init -q && git add -A \
	  && ansible-test sanity --python 3.11 --requirements --color no

unit: deps
	HYPOTHESIS_PROFILE=repeatable pytest -q tests/unit

molecule: images pgdg-repo
	@for s in $(SCENARIOS); do \
	  echo "=== molecule test -s $$s ==="; \
	  molecule test -s $$s || exit 1; \
	done

test: lint sanity unit molecule
	@echo "make test: all checks passed"

# --- the lab -----------------------------------------------------------------------------------------
lab: images
	scripts/lab.sh up
	ansible-playbook -i inventories/lab site.yml
	scripts/lab.sh info

lab-destroy:
	scripts/lab.sh down

clean: lab-destroy
	rm -rf $(CACHE)/sanity tests/output
