"""inventories/fleet has the production inventory's shape, and the analyzer's lock matches what is tested."""
import json
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, '.venv', 'bin')


def inventory(name):
    out = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', os.path.join(ROOT, 'inventories', name),
                          '--list'], capture_output=True, text=True, check=True,
                         env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'))).stdout
    return json.loads(out)


def groups(data):
    return {g: sorted(b.get('hosts', [])) for g, b in data.items() if g != '_meta' and isinstance(b, dict)}


@pytest.fixture(scope='module')
def fleet():
    return inventory('fleet')


@pytest.fixture(scope='module')
def example():
    return inventory('example')


def test_same_groups_and_variables_as_the_example(fleet, example):
    assert set(groups(fleet)) == set(groups(example))
    fleet_vars = set().union(*(set(hv) for hv in fleet['_meta']['hostvars'].values()))
    example_vars = set().union(*(set(hv) for hv in example['_meta']['hostvars'].values()))
    # Everything production sets, the fleet sets too (it only adds SSH settings, test secrets, durations).
    assert example_vars <= fleet_vars, sorted(example_vars - fleet_vars)
    assert os.path.realpath(os.path.join(ROOT, 'inventories/fleet/group_vars/all/main.yml')) == \
        os.path.realpath(os.path.join(ROOT, 'inventories/example/group_vars/all/main.yml'))


def test_fleet_size_and_addresses(fleet):
    g = groups(fleet)
    assert len(g['analyzers_original']) >= 3 and len(g['analyzers_ultra_fast']) >= 2
    for group in ('loadbalancers', 'redis', 'monitoring'):
        assert len(g[group]) == 1, group
    addresses = [hv['ansible_host'] for hv in fleet['_meta']['hostvars'].values()]
    assert len(set(addresses)) == len(addresses), 'one address per host'
    for address in addresses:
        assert re.match(r'^127\.0\.0\.\d+$', address) and address != '127.0.0.1', address


def test_nothing_local_and_nothing_shared(fleet):
    for host, hv in fleet['_meta']['hostvars'].items():
        assert hv.get('ansible_connection') in (None, 'ssh'), host
        assert 'rollout_state_dir' not in hv, host
        assert hv['ansible_python_interpreter'] == '/usr/bin/python3', host


def requirements(path):
    pins = {}
    with open(os.path.join(ROOT, path), encoding='utf-8') as handle:
        for line in handle:
            line = line.split('#', 1)[0].strip()
            if line:
                name, version = line.split('==')
                pins[re.sub(r'[-_.]+', '-', name.split('[')[0]).lower()] = version.strip()
    return pins


def test_analyzer_lock_pins_what_the_controller_tests_with():
    lock = requirements('apps/cohort_analyzer/requirements.lock')
    tested = requirements('requirements.txt')
    differ = {n: (v, tested[n]) for n, v in lock.items() if n in tested and tested[n] != v}
    assert not differ, 'requirements.lock and requirements.txt disagree: %s' % differ
    with open(os.path.join(ROOT, 'apps/cohort_analyzer/pyproject.toml'), encoding='utf-8') as handle:
        text = handle.read()
    block = text.split('dependencies = [', 1)[1].split(']', 1)[0]
    deps = [re.sub(r'[-_.]+', '-', re.split(r'[<>=!~\[ ]', d.strip().strip('",'))[0]).lower()
            for d in block.split('\n') if d.strip().strip('",')]
    missing = [d for d in deps if d not in lock]
    assert not missing, 'runtime dependencies missing from the lock: %s' % missing
