"""The collection builds into a tarball that installs, whose plugins ansible-doc shows, and that provisions the sandbox."""
import hashlib
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def run(*argv, **kw):
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True, **kw)


def test_build_install_and_document(tmp_path):
    # Outside this checkout's ansible.cfg: its collections_path already holds cohort.rollout (the
    # symlink), and ansible-galaxy would then skip the install as "already installed".
    env = {k: v for k, v in os.environ.items() if k != 'ANSIBLE_CONFIG'}
    env['ANSIBLE_COLLECTIONS_PATH'] = str(tmp_path / 'installed')
    run(BIN / 'ansible-galaxy', 'collection', 'build', '--output-path', tmp_path, ROOT, cwd=tmp_path, env=env)
    tarballs = list(tmp_path.glob('cohort-rollout-*.tar.gz'))
    assert len(tarballs) == 1
    listing = run('tar', '-tzf', tarballs[0]).stdout.split()
    assert 'plugins/modules/daemon.py' in listing
    assert not any(n.startswith(('.sandbox', '.venv', 'tests/', 'bench/', 'collections/ansible_collections')) for n in listing)

    dest = tmp_path / 'installed'
    run(BIN / 'ansible-galaxy', 'collection', 'install', '--no-deps', '--force', '-p', dest, tarballs[0],
        cwd=tmp_path, env=env)
    assert (dest / 'ansible_collections' / 'cohort' / 'rollout' / 'MANIFEST.json').exists()
    for plugin_type, name in (('module', 'cohort.rollout.daemon'), ('module', 'cohort.rollout.traffic_weights'),
                              ('module', 'cohort.rollout.metric_gate'), ('module', 'cohort.rollout.cache_warm')):
        out = run(BIN / 'ansible-doc', '-t', plugin_type, name, env=env, cwd=tmp_path).stdout
        assert name.rsplit('.', maxsplit=1)[-1].upper() in out.upper() and 'EXAMPLES' in out


def tree_digest(top):
    """Every file under top with its mode and content hash: what a run would change if it wrote there."""
    digest = {}
    for path in sorted(pathlib.Path(top).rglob('*')):
        if path.is_file() and not path.is_symlink():
            digest[str(path.relative_to(top))] = (path.stat().st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return digest


def test_provision_from_the_installed_tarball_writes_nothing_into_it(tmp_path):
    """provision.yml against the sandbox with cohort.rollout resolved from the built tarball, installed into a
    fresh path: every role finds what it ships (the weights API's module_utils, the analyzer's wheelhouse
    build outside the collection) and the installed collection is byte-identical afterwards."""
    env = {k: v for k, v in os.environ.items() if k != 'ANSIBLE_CONFIG'}
    dest = tmp_path / 'installed'
    env['ANSIBLE_COLLECTIONS_PATH'] = str(dest)
    run(BIN / 'ansible-galaxy', 'collection', 'build', '--output-path', tmp_path, ROOT, cwd=tmp_path, env=env)
    tarball = next(tmp_path.glob('cohort-rollout-*.tar.gz'))
    run(BIN / 'ansible-galaxy', 'collection', 'install', '--no-deps', '--force', '-p', dest, tarball,
        cwd=tmp_path, env=env)
    installed = dest / 'ansible_collections' / 'cohort' / 'rollout'
    before = tree_digest(installed)
    assert 'roles/loadbalancer/files/traffic_api.py' in before and 'plugins/module_utils/guard_state.py' in before

    # The checkout's configuration (sandbox inventory) with the collection search path replaced: the
    # environment variable wins over ansible.cfg's collections_path, which holds the checkout's symlink.
    env['ANSIBLE_CONFIG'] = str(ROOT / 'ansible.cfg')
    env['PATH'] = str(BIN) + os.pathsep + env.get('PATH', '')
    doc = run(BIN / 'ansible-doc', '-t', 'module', 'cohort.rollout.daemon', env=env, cwd=ROOT).stdout
    assert str(installed) in doc, doc[:400]  # ansible-doc names the file it read
    proc = subprocess.run([str(BIN / 'ansible-playbook'), 'playbooks/provision.yml'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r'^lb-1\s+:\s+ok=\d+.*failed=0', proc.stdout, re.M), proc.stdout[-2000:]
    assert tree_digest(installed) == before, 'provision.yml wrote into the installed collection'
