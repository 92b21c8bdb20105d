"""The collection builds into a tarball that installs and whose plugins ansible-doc shows."""
import os
import pathlib
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
