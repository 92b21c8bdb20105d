"""Helpers of the tests that run against the sandbox (`make sandbox`): paths, environment, inventory, pidfiles."""

import json
import os
import subprocess

import candidate_quiet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, '.venv', 'bin')
PROMETHEUS = 'http://127.0.0.1:19090'
ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''),
           ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_FORCE_COLOR='0', ANSIBLE_NOCOLOR='1')


def inventory(host):
    """The host's variables as the sandbox inventory gives them."""
    out = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '--host', host], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def pid_alive(pidfile, needle):
    """The pid in pidfile runs and its command line contains needle."""
    try:
        with open(pidfile, encoding='utf-8') as handle:
            pid = int(handle.read().strip())
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            cmdline = handle.read().replace(b'\0', b' ').decode()
    except (OSError, ValueError):
        return None
    return pid if needle in cmdline else None


def wait_candidate_quiet():
    """Before a sandbox canary: the previous candidate has left the rate windows (tests/candidate_quiet.py)."""
    candidate_quiet.wait_candidate_quiet(PROMETHEUS, candidate_quiet.rate_window('local'))
