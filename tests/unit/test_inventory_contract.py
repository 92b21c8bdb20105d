"""The sandbox inventory's contract variables: present, literal, loopback, consistent with the ports."""
import json
import os
import pathlib
import subprocess
import sys
from urllib.parse import urlparse

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def _host(name):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'))
    out = subprocess.run([str(BIN / 'ansible-inventory'), '--host', name], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def test_contract_variables_are_literal_loopback_urls():
    hv = _host('lb-1')
    for var, port_var in (('lb_frontend_url', 'loadbalancer_frontend_port'), ('lb_api_url', 'loadbalancer_api_port'),
                          ('prometheus_url', 'prometheus_port')):
        url = urlparse(hv[var])
        assert '{{' not in hv[var], f'{var} must be usable as ansible-inventory shows it'
        assert url.scheme == 'http' and url.hostname == '127.0.0.1', var
        assert url.port == hv[port_var], f'{var} disagrees with {port_var}'
    assert hv['lb_api_token']
    assert hv['rollout_listen_address'] == '127.0.0.1'


def test_every_group_of_the_design_has_a_host():
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'))
    inv = json.loads(subprocess.run([str(BIN / 'ansible-inventory'), '--list'], cwd=ROOT, env=env,
                                    check=True, capture_output=True, text=True).stdout)
    for group in ('analyzers_original', 'analyzers_ultra_fast', 'loadbalancers', 'redis', 'monitoring'):
        assert inv[group]['hosts'], group
    assert set(inv['analyzers']['children']) == {'analyzers_original', 'analyzers_ultra_fast'}
