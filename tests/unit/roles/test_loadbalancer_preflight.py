"""The load balancer role refuses an admin socket path HAProxy cannot bind, and changes nothing.

Found when the sandbox was brought up from a clone with a long path: `haproxy -c` rejected the
configuration ("socket path too long (max 97)") and the run said only "failed to validate".
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(sys.executable).parent

PLAY = '''---
- name: The load balancer role
  hosts: lb
  gather_facts: false
  vars_files:
    - %s
  roles:
    - role: cohort.rollout.loadbalancer
'''


def run_role(tmp_path, state_dir):
    inventory = {'all': {'children': {
        'lb': {'hosts': {'lb-test': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}}},
        'analyzers_original': {'hosts': {'a-test': {'ansible_connection': 'local'}}}}}}
    (tmp_path / 'inventory.json').write_text(json.dumps(inventory))
    (tmp_path / 'play.yml').write_text(PLAY % (ROOT / 'playbooks' / 'group_vars' / 'all' / 'rollout_spec.yml'))
    variables = {'loadbalancer_state_dir': str(state_dir), 'loadbalancer_service_manager': 'daemon',
                 'loadbalancer_manage_user': False, 'lb_api_token': 'a-test-token-not-secret'}
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'))
    return subprocess.run([str(BIN / 'ansible-playbook'), '-i', str(tmp_path / 'inventory.json'),
                           str(tmp_path / 'play.yml'), '-e', json.dumps(variables)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_a_socket_path_haproxy_cannot_bind_is_refused_before_anything_changes(tmp_path):
    state_dir = tmp_path / ('s' * (120 - len(str(tmp_path))))
    socket_path = '%s/haproxy/admin.sock' % state_dir
    assert len(socket_path) > 97
    result = run_role(tmp_path, state_dir)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "HAProxy's admin socket %s is %d characters long; HAProxy takes at most 97" % (
        socket_path, len(socket_path)) in ' '.join(result.stdout.split()), result.stdout[-3000:]
    assert 'changed=0' in result.stdout.split('PLAY RECAP')[-1], result.stdout[-3000:]
    assert not state_dir.exists()
