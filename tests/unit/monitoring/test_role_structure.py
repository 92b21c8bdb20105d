"""The monitoring role's Grafana templates, rendered by Ansible's own templar: the dashboard's panels query the
datasource the role provisions.

(Argument specs against defaults and the README's variable list are checked for every role, this one
included, in tests/unit/test_role_argument_specs.py.)

The templates are rendered in a fresh interpreter where Ansible's collection loader resolves the
``cohort.rollout.*`` filters from this checkout, as ansible-playbook does (in this test process the
checkout is imported as a plain package, which that loader cannot take over).
"""
import json
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
ROLE = ROOT / 'roles' / 'monitoring'
DEFAULTS = yaml.safe_load((ROLE / 'defaults' / 'main.yml').read_text())
OTHER_UID = 'another-prometheus'

RENDER = r'''
import json, sys, yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
root, uids = sys.argv[1], sys.argv[2:]
_AnsibleCollectionFinder(paths=[root + '/collections'])._install()
defaults = yaml.safe_load(open(root + '/roles/monitoring/defaults/main.yml'))
spec = yaml.safe_load(open(root + '/playbooks/group_vars/all/rollout_spec.yml'))['rollout_spec_defaults']
out = {}
for uid in uids:
    variables = {k: v for k, v in defaults.items() if not (isinstance(v, str) and '{{' in v)}
    variables.update(rollout_spec_defaults=spec, monitoring_prometheus_url='http://127.0.0.1:19090',
                     ansible_managed='managed by test', monitoring_grafana_datasource_uid=uid)
    templar = Templar(loader=DataLoader(), variables=variables)
    variables['monitoring_rollout_spec'] = templar.template(
        trust_as_template('{{ rollout_spec_defaults | cohort.rollout.rollout_spec }}'))
    templar = Templar(loader=DataLoader(), variables=variables)
    out[uid] = {name: str(templar.template(trust_as_template(open(root + '/roles/monitoring/templates/' + name).read())))
                for name in ('dashboard.json.j2', 'grafana_datasource.yml.j2')}
print(json.dumps(out))
'''


@pytest.fixture(scope='module')
def rendered():
    uids = [DEFAULTS['monitoring_grafana_datasource_uid'], OTHER_UID]
    proc = subprocess.run([sys.executable, '-c', RENDER, str(ROOT)] + uids, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize('uid', [DEFAULTS['monitoring_grafana_datasource_uid'], OTHER_UID])
def test_every_panel_queries_the_provisioned_datasource(rendered, uid):
    dashboard = json.loads(rendered[uid]['dashboard.json.j2'])
    sources = yaml.safe_load(rendered[uid]['grafana_datasource.yml.j2'])['datasources']
    assert len(sources) == 1 and sources[0]['uid'] == uid and sources[0]['type'] == 'prometheus'
    assert sources[0]['url'] == 'http://127.0.0.1:19090'
    assert len(dashboard['panels']) >= 9
    for panel in dashboard['panels']:
        assert panel['datasource'] == {'type': 'prometheus', 'uid': uid}, panel['title']
        assert panel['targets'] and all(t['datasource']['uid'] == uid for t in panel['targets']), panel['title']


def test_dashboard_has_the_fixed_uid_and_title_of_the_role(rendered):
    for uid in rendered:
        dashboard = json.loads(rendered[uid]['dashboard.json.j2'])
        assert dashboard['uid'] == DEFAULTS['monitoring_grafana_dashboard_uid']
        assert dashboard['title'] == DEFAULTS['monitoring_grafana_dashboard_title']
