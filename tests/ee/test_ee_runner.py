"""The execution environment, run the way AWX runs a job (issue 18).

`make ee-test` (scripts/ee-test.sh) builds or reuses the EE (`make ee`), brings up the EE tier's own
fleet (name `ee`, 127.0.0.200-204) and runs this file, in order:
  1. the image: tagged <version> and latest, every cohort.rollout module, action and filter
     resolves inside it, every library the plugins import is there, the host's CA bundle is not in it;
  2. the fleet is provisioned from the host (outside the EE), then the job templates' playbooks run
     with `ansible-runner run --process-isolation --process-isolation-executable podman
     --container-image localhost/cohort-rollout-ee:latest`: the project copied into the private
     data directory as AWX's project sync leaves it, the SSH key as AWX's machine credential supplies
     it, the survey defaults and the injected secrets as extra variables. preflight, canary (short
     bake, with load through the fleet's load balancer) and rollback end `successful`; a canary with
     a bad survey answer ends `failed` with the playbook's message, traffic unmoved; the ramp job, in a
     container of its own, takes the canary job's verdict from the fleet's copy of the report and passes;
  3. bad input to the build: a requirement the EE cannot satisfy fails the build with
     ansible-builder's message and tags nothing.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'bench'))
from ee_support import (CA_BUNDLE, ENV, ROOT, ee_image, in_ee, load, playbook,  # noqa: E402  pylint: disable=wrong-import-position
                        plugin_imports, plugin_names, run_job, secrets, shares, survey_defaults, wait_for_traffic)


def podman(*args, check=True):
    return subprocess.run(['podman'] + list(args), env=ENV, capture_output=True, text=True, timeout=120, check=check)


def image_id(ref):
    return podman('image', 'inspect', '--format', '{{.Id}}', ref).stdout.strip()


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('ee-jobs'))


# --- 1. The image ------------------------------------------------------------------------------------------

def test_image_is_tagged_with_the_collection_version_and_latest():
    assert image_id(ee_image(None)) == image_id(ee_image('latest'))
    labels = json.loads(podman('image', 'inspect', '--format', '{{json .Labels}}', ee_image('latest')).stdout)
    assert labels.get('ansible-execution-environment') == 'true', labels
    assert labels.get('cohort.rollout.ee.inputs'), labels


RESOLVE = r'''
import json, sys
from ansible.plugins.loader import action_loader, filter_loader, init_plugin_loader, module_loader
init_plugin_loader(['/runner/project/collections', '/usr/share/ansible/collections'])
names = json.loads(sys.argv[1])
missing = []
for name in names['module']:
    found = module_loader.find_plugin_with_context('cohort.rollout.' + name)
    if not found.resolved:
        missing.append('module ' + name)
for name in names['action']:
    if action_loader.get('cohort.rollout.' + name, None, None, None, None, None, None) is None:
        missing.append('action ' + name)
for name in names['filter']:
    if filter_loader.get('cohort.rollout.' + name) is None:
        missing.append('filter ' + name)
grafana = module_loader.find_plugin_with_context('community.grafana.grafana_dashboard')
if not grafana.resolved:
    missing.append('module community.grafana.grafana_dashboard')
print(json.dumps(missing))
'''


def test_every_module_action_and_filter_resolves_inside_the_ee():
    names = plugin_names()
    assert names['module'] and names['filter'] and names['action'], names
    proc = in_ee(RESOLVE, json.dumps(names))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [], proc.stdout + proc.stderr


IMPORTS = r'''
import importlib, json, sys
missing = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception as exc:  # anything that stops the import
        missing[name] = repr(exc)
print(json.dumps(missing))
'''


def test_every_library_the_plugins_import_is_in_the_ee():
    names = plugin_imports()
    # The list comes from the code; these are what it holds today (a check of the derivation).
    assert {'redis', 'scipy', 'matplotlib'} <= set(names), names
    proc = in_ee(IMPORTS, json.dumps(names))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}, proc.stdout + proc.stderr


def _pem_bodies(text):
    """The base64 bodies of the PEM certificates in text, without line breaks."""
    return [''.join(block.split()) for block in
            re.findall(r'-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----', text, re.S)]


def test_the_hosts_ca_bundle_is_not_baked_into_the_image():
    """The build mounts the host's CA bundle (this network intercepts TLS) for its RUN steps only: the
    certificates this machine added to it (/usr/local/share/ca-certificates, the intercepting CA
    among them) must be in no file of the image."""
    if not CA_BUNDLE:
        pytest.skip('COHORT_EE_CA_BUNDLE is empty: no bundle was mounted')
    local = []
    for name in sorted(glob.glob('/usr/local/share/ca-certificates/**/*.crt', recursive=True)):
        with open(name, encoding='utf-8') as handle:
            local += _pem_bodies(handle.read())
    if not local:
        pytest.skip('this machine added no CA of its own: nothing of it could be baked in')
    with open(CA_BUNDLE, encoding='utf-8') as handle:
        mounted = set(_pem_bodies(handle.read()))
    # The check looks for what was really mounted.
    assert set(local) <= mounted, 'the local CAs are not in %s' % CA_BUNDLE
    scan = in_ee(r'''
import json, os, sys
needles = [n.encode() for n in json.loads(sys.argv[1])]
hits = []
for top in ('/etc', '/usr', '/opt', '/root', '/runner', '/var', '/tmp', '/output', '/build'):
    for folder, _dirs, files in os.walk(top):
        if folder == '/runner/project':
            _dirs[:] = []  # the checkout, mounted for this check
            continue
        for name in files:
            path = os.path.join(folder, name)
            try:
                if os.path.islink(path) or os.path.getsize(path) > 50_000_000:
                    continue
                with open(path, 'rb') as handle:
                    flat = handle.read().replace(b'\n', b'')
            except OSError:
                continue
            if any(n in flat for n in needles):
                hits.append(path)
print(json.dumps(hits))
''', json.dumps([body[-120:] for body in local]))
    assert scan.returncode == 0, scan.stderr
    assert json.loads(scan.stdout.strip().splitlines()[-1]) == [], scan.stdout


# --- 2. Jobs as AWX runs them ------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def provisioned():
    """The EE tier's fleet, provisioned from the host (AWX has no job template for this)."""
    proc = playbook('provision.yml')
    assert proc.returncode == 0, proc.stdout[-6000:]
    return True


@pytest.fixture(scope='module')
def under_load(provisioned):
    """Traffic through the fleet's load balancer, as production has, until Prometheus has seen it
    (preflight's checklist reads the baseline's database p99: no data is a failed item)."""
    load('start')
    try:
        wait_for_traffic()
        yield
    finally:
        load('stop')


def assert_no_secret_in(job):
    dumped = json.dumps(job.events) + job.stdout
    for name, value in secrets().items():
        assert value not in dumped, '%s appears in the job output (AWX would store it)' % name


def test_preflight_job_succeeds_in_the_ee(under_load, workdir):
    job = run_job(workdir, 'preflight')
    assert job.status == 'successful' and job.rc == '0', job.tail()
    assert 'Pre-deployment checklist: all' in job.stdout, job.tail()
    # It ran in the EE: ansible-runner started ansible-playbook in a podman container of the image.
    assert job.command[:2] == ['podman', 'run'] and ee_image() in job.command, job.command
    assert 'ansible-playbook' in ' '.join(job.command[job.command.index(ee_image()):]), job.command
    assert job.events, job.tail()
    assert_no_secret_in(job)


def test_canary_job_succeeds_in_the_ee(under_load, workdir):
    job = run_job(workdir, 'canary')
    assert job.status == 'successful' and job.rc == '0', job.tail()
    assert '[canary] verdict: PASSED' in job.stdout, job.tail()
    assert 0 < float(shares()['ultra_fast']) < 0.5
    # The report is written on the controller: inside the job, beside its inventory.
    with open(os.path.join(job.pdd, 'report.json'), encoding='utf-8') as handle:
        assert json.load(handle)['canary']['status'] == 'passed'
    assert_no_secret_in(job)


def test_a_job_whose_playbook_fails_ends_failed_and_shows_why(under_load, workdir):
    before = shares()
    job = run_job(workdir, 'canary', extravars={'phase_weight': 2})
    assert job.status == 'failed' and job.rc not in ('', '0'), job.tail()
    # What the operator reads in AWX's job output: the phase's own check of the answer.
    assert 'phase_weight' in job.stdout, job.tail()
    assert shares() == before


def test_the_ramp_job_in_a_fresh_container_sees_the_canary_jobs_verdict(under_load, workdir):
    """Every AWX job is a container of its own: the canary job's report went with it. The ramp job takes
    the fleet's copy (kept on the load balancer host) and starts, as the workflow's next node does."""
    job = run_job(workdir, 'ramp')
    assert job.status == 'successful' and '[ramp] verdict: PASSED' in job.stdout, job.tail()
    assert 'it took the copy' in job.stdout and 'kept on lb-1' in job.stdout, job.tail()
    assert 0.05 < float(shares()['ultra_fast']) < 0.5
    with open(os.path.join(job.pdd, 'report.json'), encoding='utf-8') as handle:
        report = json.load(handle)
    assert report['canary']['status'] == 'passed' and report['ramp']['status'] == 'passed', list(report)


def test_rollback_job_succeeds_in_the_ee(under_load, workdir):
    job = run_job(workdir, 'rollback')
    assert job.status == 'successful' and job.rc == '0', job.tail()
    weights = shares()
    assert float(weights['original']) == 1.0 and float(weights.get('ultra_fast', 0)) == 0.0, weights
    with open(os.path.join(job.pdd, 'report.json'), encoding='utf-8') as handle:
        report = json.load(handle)
    assert report['rollback']['reason'] == survey_defaults('rollback')['rollback_reason']
    assert_no_secret_in(job)


# --- 3. Bad input to the build ------------------------------------------------------------------------------

def test_a_requirement_the_ee_cannot_satisfy_fails_the_build_and_tags_nothing(tmp_path):
    ee = tmp_path / 'ee'
    (ee / 'meta').mkdir(parents=True)
    (ee / 'collections').mkdir()
    shutil.copy(os.path.join(ROOT, 'collections', 'requirements.yml'), ee / 'collections' / 'requirements.yml')
    shutil.copy(os.path.join(ROOT, 'meta', 'ee-bindep.txt'), ee / 'meta' / 'ee-bindep.txt')
    with open(os.path.join(ROOT, 'meta', 'ee-requirements.txt'), encoding='utf-8') as handle:
        text = handle.read()
    # A version of a real package that does not exist (and conflicts with the range the file pins).
    (ee / 'meta' / 'ee-requirements.txt').write_text(text + 'redis==0.0.0.1\n')
    shutil.copy(os.path.join(ROOT, 'execution-environment.yml'), ee / 'execution-environment.yml')
    repo = 'localhost/cohort-rollout-ee-badinput'
    # The whole build output (ansible-builder -vvv): at -vv it shows only the last 20 lines of a failed build,
    # and podman 4.3's builder may panic after the failed pip step, pushing pip's reason out of those 20.
    env = dict(ENV, COHORT_EE_FILE=str(ee / 'execution-environment.yml'), COHORT_EE_IMAGE=repo,
               COHORT_EE_DIR=str(ee / '.ee'), COHORT_EE_VERBOSITY='3')
    proc = subprocess.run([os.path.join(ROOT, 'scripts', 'ee.sh'), 'build'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200, check=False)
    out = proc.stdout + proc.stderr
    try:
        assert proc.returncode != 0, out[-4000:]
        # pip's reason, then ansible-builder's own message.
        assert 'redis==0.0.0.1' in out and 'ResolutionImpossible' in out, out[-4000:]
        assert 'An error occurred (rc=' in out, out[-4000:]
        tags = podman('images', '--format', '{{.Repository}}:{{.Tag}}', repo).stdout.split()
        assert tags == [], tags
    finally:
        podman('rmi', '--force', repo + ':latest', check=False)
