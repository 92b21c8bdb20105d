"""The execution environment definition: `ansible-builder create` makes a complete build context.

Building the image needs the base image from a registry (not reachable here); the
context it would be built from is generated and checked instead.
"""
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDER = os.path.join(os.path.dirname(sys.executable), 'ansible-builder')


def _read(*parts):
    with open(os.path.join(*parts), encoding='utf-8') as handle:
        return handle.read()


@pytest.fixture(scope='module')
def context(tmp_path_factory):
    out = tmp_path_factory.mktemp('ee-context')
    run = subprocess.run([BUILDER, 'create', '--file', 'execution-environment.yml', '--context', str(out),
                          '--output-filename', 'Containerfile'],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def test_definition_is_builder_v3_and_uses_the_collection_meta_files():
    ee = yaml.safe_load(_read(ROOT, 'execution-environment.yml'))
    assert ee['version'] == 3
    deps = ee['dependencies']
    assert deps['galaxy'] == 'collections/requirements.yml'
    meta = yaml.safe_load(_read(ROOT, 'meta', 'execution-environment.yml'))
    # The EE and the collection's own EE metadata name the same requirement files.
    assert deps['python'] == 'meta/' + meta['dependencies']['python']
    assert deps['system'] == 'meta/' + meta['dependencies']['system']


def test_controller_versions_match_the_tested_ones():
    ee = yaml.safe_load(_read(ROOT, 'execution-environment.yml'))
    pins = dict(line.split('==') for line in _read(ROOT, 'requirements.txt').splitlines()
                if '==' in line and not line.startswith('#'))
    assert ee['dependencies']['ansible_core']['package_pip'] == 'ansible-core==' + pins['ansible-core']
    assert ee['dependencies']['ansible_runner']['package_pip'] == 'ansible-runner==' + pins['ansible-runner']


def test_context_copies_every_requirement_file(context):
    build = context / '_build'
    assert (build / 'requirements.yml').read_text() == _read(ROOT, 'collections', 'requirements.yml')
    assert (build / 'requirements.txt').read_text() == _read(ROOT, 'meta', 'ee-requirements.txt')
    assert (build / 'bindep.txt').read_text() == _read(ROOT, 'meta', 'ee-bindep.txt')
    for script in ('assemble', 'install-from-bindep', 'introspect.py', 'check_galaxy', 'check_ansible'):
        assert (build / 'scripts' / script).is_file(), script


def test_containerfile_installs_what_the_definition_asks(context):
    text = (context / 'Containerfile').read_text()
    ee = yaml.safe_load(_read(ROOT, 'execution-environment.yml'))
    assert 'ARG EE_BASE_IMAGE="%s"' % ee['images']['base_image']['name'] in text
    assert 'ansible-core==2.19.14 ansible-runner==2.4.3' in text
    # Collections from collections/requirements.yml, Python and system packages from the meta files.
    assert 'ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml' in text
    assert 'COPY _build/requirements.txt requirements.txt' in text
    assert 'COPY _build/bindep.txt bindep.txt' in text
    assert '--user-pip=requirements.txt --user-bindep=bindep.txt' in text
    assert 'install-from-bindep' in text
    assert 'RUN ansible --version && ansible-galaxy collection list community.general' in text


def test_requirement_files_are_installable_specs():
    """Every line of the Python list parses as a requirement; bindep lines name a package."""
    from packaging.requirements import Requirement

    python = [ln for ln in _read(ROOT, 'meta', 'ee-requirements.txt').splitlines() if ln and not ln.startswith('#')]
    assert python
    for line in python:
        Requirement(line)
    system = [ln for ln in _read(ROOT, 'meta', 'ee-bindep.txt').splitlines() if ln and not ln.startswith('#')]
    assert system
    from bindep.depends import Depends
    Depends('\n'.join(system) + '\n')
