# cohort.rollout — progressive delivery for VM fleets.
#   make demo    set up, bring the sandbox up, run the main job, say where to look
#   make test    set up, then lint, sanity, unit, molecule, integration, fleet and EE tests
#   make ee      build (or reuse) the execution environment localhost/cohort-rollout-ee (docs/awx.md)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PLAYBOOK := $(BIN)/ansible-playbook
SANITY_ROOT := $(or $(TMPDIR),/tmp)/cohort-rollout-sanity/ansible_collections/cohort/rollout

.PHONY: setup sandbox sandbox-down fleet fleet-down ee ee-test demo test lint sanity unit molecule integration fleet-test bench build clean

setup:
	@scripts/setup.sh

sandbox: setup
	$(PLAYBOOK) playbooks/provision.yml

sandbox-down:
	@if [ -x $(PLAYBOOK) ]; then $(PLAYBOOK) playbooks/teardown.yml; else echo "nothing set up"; fi

# The test fleet: Debian 12 hosts with systemd on 127.0.0.N, reached over SSH (docs/fleet.md).
fleet: setup
	scripts/fleet.sh up

fleet-down:
	scripts/fleet.sh down

# The execution environment localhost/cohort-rollout-ee:<version> (+ :latest), built with podman from
# execution-environment.yml on a local Debian 12 base, no registry (docs/awx.md); reused when unchanged.
ee: setup
	scripts/ee.sh build

# Jobs run as AWX runs them: ansible-runner with process isolation in the EE, against a fleet of its own.
ee-test: setup
	scripts/ee-test.sh

demo: sandbox
	scripts/demo.sh

lint: setup
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production --strict -q

# ansible-test must run from a path ending in ansible_collections/cohort/rollout,
# outside this git work tree (inside it, git ls-files hides an ignored copy):
# copy the tracked tree there and run the sanity tests on the copy.
sanity: setup
	rm -rf $(SANITY_ROOT) && mkdir -p $(SANITY_ROOT)
	git ls-files -co --exclude-standard -z | grep -zv '^collections/ansible_collections' \
	  | rsync -a --from0 --files-from=- ./ $(SANITY_ROOT)/
	cd $(SANITY_ROOT) && $(BIN)/ansible-test sanity --python 3.11 --venv --color no

unit: setup
	$(BIN)/pytest -q tests/unit apps/cohort_analyzer/tests

molecule: setup
	scripts/molecule-all.sh

integration: setup
	scripts/integration.sh

fleet-test: setup
	scripts/fleet-test.sh

bench: sandbox
	scripts/bench.sh

build: setup
	$(BIN)/ansible-galaxy collection build --force --output-path .sandbox/dist

# Each tier in turn (the first failure stops), with its wall time, so that where the time goes is on record.
TIERS := lint sanity unit molecule integration fleet-test ee-test
test: setup
	@total=$$(date +%s); for tier in $(TIERS); do start=$$(date +%s); $(MAKE) --no-print-directory $$tier; \
	  echo "== make $$tier: passed in $$(( $$(date +%s) - start )) s"; done; \
	  echo "== make test: every tier passed in $$(( $$(date +%s) - total )) s"

clean: sandbox-down
	rm -rf .sandbox
