"""The execution environment definition: `ansible-builder create` makes a complete build context;
one EE name in `make ee`, awx/ and the docs; `make ee` says what is missing.

The image itself is built (`make ee`, on a local base) and run by the EE tier, tests/ee.
"""
import os
import re
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


def test_containerfile_carries_what_the_definition_asks(context):
    """Derived from the definition, not copied from ansible-builder's output: base image, pinned
    controller packages and our own final steps are in the Containerfile builder generated."""
    text = (context / 'Containerfile').read_text()
    ee = yaml.safe_load(_read(ROOT, 'execution-environment.yml'))
    deps = ee['dependencies']
    assert ee['images']['base_image']['name'] in text
    for package in (deps['ansible_core']['package_pip'], deps['ansible_runner']['package_pip']):
        assert package in text, package
    for step in ee['additional_build_steps']['append_final']:
        assert step in text, step


def test_final_step_checks_the_collection_dependencies_and_the_wheel_build():
    ee = yaml.safe_load(_read(ROOT, 'execution-environment.yml'))
    steps = ' '.join(ee['additional_build_steps']['append_final'])
    galaxy = yaml.safe_load(_read(ROOT, 'galaxy.yml'))
    for collection in galaxy.get('dependencies') or {}:
        assert 'ansible-galaxy collection list %s' % collection in steps, collection
    # $PYCMD: the Python the requirements went into (python_path on AWX's base, make ee's venv on the local one).
    assert '$PYCMD -m build --version' in steps


def test_pycmd_defaults_to_the_definitions_python(context):
    """On AWX's base image (no build args) $PYCMD is the python_path of the definition."""
    ee = yaml.safe_load(_read(ROOT, 'execution-environment.yml'))
    text = (context / 'Containerfile').read_text()
    assert 'ARG PYCMD="%s"' % ee['dependencies']['python_interpreter']['python_path'] in text


def _ee_requirements():
    from packaging.requirements import Requirement
    lines = [ln for ln in _read(ROOT, 'meta', 'ee-requirements.txt').splitlines() if ln and not ln.startswith('#')]
    return {Requirement(ln).name.lower(): Requirement(ln) for ln in lines}


def test_ee_has_what_the_roles_run_on_the_controller():
    """A role that runs `{{ ansible_playbook_python }} -m X` on the controller needs X in the EE; the analyzer's
    wheel is built with --no-isolation, so its build backend must be there too, in a version it accepts."""
    import glob
    import re

    from packaging.requirements import Requirement

    wanted = _ee_requirements()
    modules = set()
    for path in glob.glob(os.path.join(ROOT, 'roles', '*', 'tasks', '*.yml')):
        text = _read(path)
        for match in re.finditer(r'ansible_playbook_python \}\}"\s*\n\s*- -m\s*\n\s*- ([\w.]+)', text):
            modules.add(match.group(1))
    assert 'build' in modules  # roles/analyzer/tasks/install.yml
    for module in modules:
        assert module in wanted, 'the EE lacks %s (run on the controller with -m %s)' % (module, module)
    pyproject = _read(ROOT, 'apps', 'cohort_analyzer', 'pyproject.toml')
    backend = re.search(r'^requires = \[(.*)\]', pyproject, re.M).group(1)
    for item in re.findall(r'"([^"]+)"', backend):
        need = Requirement(item)
        have = wanted.get(need.name.lower())
        assert have is not None, 'the EE lacks the build backend %s' % need
        floor = [s.version for s in have.specifier if s.operator == '>=']
        assert floor and need.specifier.contains(floor[0]), (str(have), str(need))


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


EE_NAME = 'cohort-rollout-ee'


def test_one_ee_name_in_make_ee_awx_and_the_docs():
    """`make ee` tags localhost/cohort-rollout-ee:<version>; AWX registers the EE under the same name,
    from an image of the same name and version; every job template and the project run in it."""
    script = _read(ROOT, 'scripts', 'ee.sh')
    default = re.search(r'^image=\$\{COHORT_EE_IMAGE:-([^}]+)\}', script, re.M).group(1)
    assert default == 'localhost/' + EE_NAME
    version = yaml.safe_load(_read(ROOT, 'galaxy.yml'))['version']
    awx = yaml.safe_load(_read(ROOT, 'awx', 'vars', 'main.yml'))
    assert awx['awx_execution_environment_name'] == EE_NAME
    repository, tag = awx['awx_execution_environment_image'].rsplit(':', 1)
    assert repository.rsplit('/', 1)[1] == EE_NAME and tag == version, awx['awx_execution_environment_image']
    tasks = yaml.safe_load(_read(ROOT, 'awx', 'configure.yml'))[0]['tasks']
    by_module = {}
    for task in tasks:
        for key, value in task.items():
            if key.startswith('awx.awx.'):
                by_module[key] = (task, value)
    for module, field in (('awx.awx.job_template', 'execution_environment'),
                          ('awx.awx.project', 'default_environment')):
        task, args = by_module[module]
        assert args[field] == '{{ awx_execution_environment_name }}', (module, args[field])
        assert 'when' not in task, module
    ee_task, ee_args = by_module['awx.awx.execution_environment']
    assert ee_args['name'] == '{{ awx_execution_environment_name }}' and 'when' not in ee_task
    # Every image name in the docs and the definition's comments is this one.
    for parts in (('docs', 'awx.md'), ('execution-environment.yml',), ('README.md',), ('docs', 'performance.md')):
        text = _read(ROOT, *parts)
        for name in re.findall(r'[\w.\-/]*rollout[-_]ee\b', text):
            assert name.rsplit('/', 1)[-1] == EE_NAME, (parts, name)


def test_make_ee_says_what_is_missing(tmp_path):
    """Without podman, runc and mmdebstrap, `make ee` names them and `make setup`, and builds nothing."""
    import shutil as _shutil
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for tool in ('bash', 'dirname', 'sed', 'sha256sum', 'cut'):
        os.symlink(_shutil.which(tool), bin_dir / tool)
    run = subprocess.run([os.path.join(ROOT, 'scripts', 'ee.sh'), 'build'], cwd=ROOT, capture_output=True, text=True,
                         env={'PATH': str(bin_dir), 'COHORT_EE_DIR': str(tmp_path / 'ee')}, timeout=60, check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert 'missing podman runc mmdebstrap' in run.stderr and "'make setup'" in run.stderr, run.stderr
    assert not (tmp_path / 'ee').exists()
