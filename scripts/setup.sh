#!/usr/bin/env bash
# One-command setup: Debian packages, the .venv with pinned requirements, and the
# offline get-pip replacement that `ansible-test sanity` needs. Idempotent: every
# step is skipped when its stamp says it is already done, so a second run takes
# seconds. Works as root (CI) and as a normal user with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

# Debian packages the project runs or tests with.
# podman, runc and mmdebstrap run the test fleet (scripts/fleet.sh, docs/fleet.md) and build the
# execution environment (make ee, scripts/ee.sh; ansible-builder and ansible-runner are in requirements.txt);
# chromium (and a font) runs the HTML report's browser test (tests/integration/test_report_browser.py).
debs=(haproxy redis-server redis-tools prometheus prometheus-alertmanager
      sqlite3 curl jq rsync python3-venv procps iproute2 shellcheck
      podman runc mmdebstrap openssh-client chromium fonts-dejavu-core)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  # policy-rc.d keeps Debian's maintainer scripts from starting the services we
  # install: the project starts its own, bound to loopback, and stops them again.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The controller's Python environment.
python=${PYTHON:-python3}
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt apps/cohort_analyzer/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating .venv with pinned requirements"
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip wheel setuptools
  .venv/bin/python -m pip install -q -r requirements.txt
  if [ -f apps/cohort_analyzer/pyproject.toml ]; then
    # The reference payload, editable, so tests and the load generator use the checkout.
    .venv/bin/python -m pip install -q --no-deps -e apps/cohort_analyzer
  fi
  echo "$want" > "$stamp"
fi

# ansible-test sanity downloads get-pip from the internet, which is unreachable
# here: put an offline stand-in in its cache (ensurepip, then pip install).
getpip="$HOME/.ansible/test/cache/get_pip_24_2.py"
if [ ! -f "$getpip" ] || ! cmp -s scripts/get_pip_offline.py "$getpip"; then
  mkdir -p "$(dirname "$getpip")"
  cp scripts/get_pip_offline.py "$getpip"
fi
version=$(.venv/bin/ansible --version)   # read it all: `| head -1` breaks ansible's pipe
echo "setup: ready (.venv: ${version%%$'\n'*})"
