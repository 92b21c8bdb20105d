"""The fleet tier (issue 13): every role, phase and drill over SSH on real systemd hosts.

`make fleet-test` (scripts/fleet-test.sh) brings the fleet up (scripts/fleet.sh), runs this
file, and tears it down. The tests run in file order: provision from fresh hosts, then the
phases and drills with load through the fleet's load balancer, then bad input. Everything
is checked from outside, as an operator would: the weights API, systemd and the sockets on
each host over SSH, the report.
"""

import json
import os
import signal
import stat
import subprocess
import time

import pytest

import candidate_quiet

from fleet_support import (BIN, ENV, FLEET_DIR, INVENTORY, ROOT, Fleet, ev, listeners, playbook, podman_exec,
                           read_report, recap, ssh)

ALL_ORIGINAL = {'original': 1.0, 'ultra_fast': 0.0}
# 1% of 150 req/s gives the canary ~7 requests per 5 s sample.
LOAD_RATE = os.environ.get('FLEET_LOAD_RATE', '150')

# What each group runs (units of the roles), and Debian's own units that must stay masked.
UNITS = {
    'analyzers_original': ['cohort-analyzer-original'],
    'loadbalancers': ['cohort-haproxy', 'cohort-lb-api', 'cohort-rollout-guard'],
    'redis': ['redis-cache'],
    'monitoring': ['cohort-prometheus', 'cohort-alertmanager', 'cohort-webhook-sink'],
}
MASKED = {
    'loadbalancers': ['haproxy'],
    'redis': ['redis-server'],
    'monitoring': ['prometheus', 'prometheus-alertmanager', 'prometheus-node-exporter'],
}


def load(action):
    subprocess.run([os.path.join(ROOT, 'scripts', 'load.sh'), action] + ([LOAD_RATE, '3600'] if action == 'start'
                                                                         else []),
                   cwd=ROOT, env=dict(ENV, LOAD_INVENTORY='inventories/fleet',
                                      LOAD_STATE_DIR=os.path.join(FLEET_DIR, 'load')), check=True)


@pytest.fixture(scope='module')
def fleet():
    return Fleet()


def test_provision_fresh_hosts_then_nothing_changes(fleet):
    first = playbook('provision.yml')
    assert first.returncode == 0, first.stdout[-6000:]
    second = playbook('provision.yml')
    assert second.returncode == 0, second.stdout[-6000:]
    counters = recap(second.stdout)
    assert set(counters) == set(fleet.hosts), counters
    changed = {host: c['changed'] for host, c in counters.items() if c.get('changed')}
    assert not changed, 'a second provision.yml changed something: %s\n%s' % (changed, second.stdout[-6000:])


def test_ssh_masters_live_in_a_short_private_directory(fleet):
    """CI's clone path once made every socket path too long for a Unix socket (108 bytes) and every
    host unreachable: the sockets live under /tmp, whatever the clone's path, found through .fleet/cp."""
    link = os.path.join(FLEET_DIR, 'cp')
    assert os.path.islink(link), link
    directory = os.path.realpath(link)
    assert directory.startswith('/tmp/cohort-ssh-'), directory
    info = os.stat(directory)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.getuid(), 0o700), directory
    sockets = [os.path.join(directory, name) for name in os.listdir(directory)
               if stat.S_ISSOCK(os.lstat(os.path.join(directory, name)).st_mode)]
    assert sockets, 'no SSH master of the provision left (ControlPersist 60s) in %s' % directory
    # ssh binds <path>.<16 random characters> while a master starts; sun_path holds 107 bytes.
    assert all(len(path) + 17 <= 107 for path in sockets), sockets


def test_every_service_is_a_systemd_unit_on_its_host_address(fleet):
    for host, info in sorted(fleet.hosts.items()):
        address = info['address']
        for group in info['groups']:
            for unit in UNITS.get(group, []):
                state = fleet.unit_state(host, unit)
                assert state['ActiveState'] == 'active', (host, unit, state)
                assert state['UnitFileState'] == 'enabled', (host, unit, state)
            for unit in MASKED.get(group, []):
                state = fleet.unit_state(host, unit)
                assert state['UnitFileState'] == 'masked' and state['ActiveState'] == 'inactive', (host, unit, state)
        sockets = listeners(address)
        assert sockets, host
        wrong = [s for s in sockets if s[0] != address]
        assert not wrong, '%s (%s) listens off its address: %s' % (host, address, wrong)
    # Services run as their own users, not root (HAProxy's master is root and drops to haproxy).
    assert fleet.unit_state('analyzer-a1', 'cohort-analyzer-original')['User'] == 'cohort-analyzer'
    assert fleet.unit_state('redis-1', 'redis-cache')['User'] == 'redis'
    assert fleet.unit_state('monitoring-1', 'cohort-prometheus')['User'] == 'prometheus'
    assert fleet.unit_state('lb-1', 'cohort-lb-api')['User'] == 'haproxy'


def test_no_secret_in_any_log_or_journal(fleet):
    secrets = ['fleet-token-not-secret', 'fleet-redis-not-secret']
    for host in sorted(fleet.hosts):
        proc = ssh(fleet.address(host), 'sudo -n journalctl --no-pager -q; sudo -n sh -c "cat /opt/*/log/* '
                                        '/var/lib/cohort-*/logs/* /var/lib/cohort-*/log/* 2>/dev/null"', check=False)
        for secret in secrets:
            assert secret not in proc.stdout, '%s: secret found in a log' % host


@pytest.fixture(scope='module')
def loaded(fleet):
    load('start')
    first = playbook('rollback.yml', *ev(rollout_break_lock=True, rollback_reason='fleet drills setup'))
    assert first.returncode == 0, first.stdout[-4000:]
    try:
        yield fleet
    finally:
        load('stop')


@pytest.fixture()
def drill(loaded):
    """A drill starts once the previous drill's candidate has left the fleet's rate windows (tests/candidate_quiet.py)."""
    candidate_quiet.wait_candidate_quiet('http://%s:9090' % loaded.address('monitoring-1'),
                                         candidate_quiet.rate_window('fleet'))
    return loaded


def test_preflight_passes_over_ssh(loaded):
    """Under load, as production has it: the checklist reads the baseline's database p99 from Prometheus, and
    no data is a failed item (without load it passed only while provisioning's own requests were in the
    rate window)."""
    candidate_quiet.wait_baseline_seen('http://%s:9090' % loaded.address('monitoring-1'))
    run = playbook('preflight.yml')
    assert run.returncode == 0, run.stdout[-6000:]
    assert 'Pre-deployment checklist: all' in run.stdout


def test_deploy_passes_every_phase(loaded):
    run = playbook('deploy.yml')
    assert run.returncode == 0, run.stdout[-6000:]
    report = read_report()
    for phase in ('canary', 'ramp', 'rollout'):
        assert report[phase]['status'] == 'passed', (phase, report[phase].get('verdict'))
    assert loaded.shares() == {'original': 0.0, 'ultra_fast': 1.0}
    for host in loaded.group('analyzers_ultra_fast'):
        assert loaded.unit_state(host, 'cohort-analyzer-ultra-fast')['ActiveState'] == 'active', host


def test_rollback_stops_ultra_fast_on_every_host_then_twice_changes_nothing(loaded):
    first = playbook('rollback.yml', *ev(rollback_reason='fleet rollback'))
    assert first.returncode == 0, first.stdout[-4000:]
    assert loaded.shares() == ALL_ORIGINAL
    assert loaded.ultra_fast_stopped_everywhere()
    assert loaded.original_healthy_everywhere()
    rollback = read_report()['rollback']
    assert rollback['reason'] == 'fleet rollback' and rollback['logs_archived']
    second = playbook('rollback.yml', *ev(rollback_reason='fleet rollback again'))
    assert second.returncode == 0, second.stdout[-4000:]
    counters = recap(second.stdout)
    assert all(c.get('changed', 0) == 0 for c in counters.values()), counters
    assert 'Nothing to roll back' in second.stdout
    assert loaded.shares() == ALL_ORIGINAL


def test_the_next_phase_from_another_controller_takes_the_fleets_copy_of_the_report(loaded, tmp_path):
    """The canary runs from this controller, the ramp from one with no report (an AWX job's fresh container)."""
    canary = playbook('canary.yml')
    assert canary.returncode == 0, canary.stdout[-4000:]
    other = tmp_path / 'other-controller' / 'report.json'
    ramp = playbook('ramp.yml', *ev(rollout_report_path=str(other)))
    assert ramp.returncode == 0, ramp.stdout[-4000:]
    assert 'REPORT: the controller had no report; it took the copy kept on lb-1' in ramp.stdout, ramp.stdout[-4000:]
    with open(other, encoding='utf-8') as handle:
        theirs = json.load(handle)
    assert theirs['canary']['status'] == 'passed' and theirs['ramp']['status'] == 'passed'
    assert abs(loaded.shares()['ultra_fast'] - 0.1) < 0.02, loaded.shares()
    # Back on the first controller: its report is older than the fleet's copy. status.yml shows the copy
    # (and writes nothing); the rollback takes it, archiving the older one.
    mine = read_report()
    status = playbook('status.yml')
    assert status.returncode == 0 and "report: the copy kept on lb-1 (newer than this controller's)" in status.stdout
    assert read_report() == mine
    rollback = playbook('rollback.yml', *ev(rollback_reason='after a ramp from another controller'))
    assert rollback.returncode == 0, rollback.stdout[-4000:]
    assert 'it took the copy kept on lb-1' in rollback.stdout
    report = read_report()
    assert report['ramp']['status'] == 'passed' and report['rollback']['status'] == 'rolled_back'
    assert loaded.shares() == ALL_ORIGINAL


def assert_rolled_back(fleet, phase):
    assert fleet.shares() == ALL_ORIGINAL
    assert fleet.ultra_fast_stopped_everywhere()
    assert fleet.original_healthy_everywhere()
    report = read_report()
    assert report['rollback']['status'] == 'rolled_back' and report['rollback']['trigger'] == 'automatic'
    assert report['rollback']['phase'] == phase and report[phase]['rolled_back'] is True
    return report


def test_drill_error_rate_rolls_back(drill):
    run = playbook('canary.yml', '-e', 'analyzer_fault_error_rate=0.05')
    assert run.returncode != 0
    report = assert_rolled_back(drill, 'canary')
    assert any('error_rate' in r for r in report['canary']['verdict']['reasons']), report['canary']['verdict']


def test_drill_latency_rolls_back(drill):
    run = playbook('canary.yml', '-e', 'analyzer_fault_latency_ms=300')
    assert run.returncode != 0
    report = assert_rolled_back(drill, 'canary')
    assert any('latency_p99_ms' in r for r in report['canary']['verdict']['reasons']), report['canary']['verdict']


def test_drill_prometheus_down_fails_closed(drill):
    monitoring = drill.address('monitoring-1')
    ssh(monitoring, 'sudo -n systemctl stop cohort-prometheus')
    try:
        run = playbook('canary.yml')
        assert run.returncode != 0
        assert drill.shares() == ALL_ORIGINAL
        assert drill.ultra_fast_stopped_everywhere()
    finally:
        ssh(monitoring, 'sudo -n systemctl start cohort-prometheus')
    deadline = time.time() + 60
    while 'active' not in ssh(monitoring, 'systemctl is-active cohort-prometheus', check=False).stdout:
        assert time.time() < deadline, 'Prometheus did not come back'
        time.sleep(1)


def test_drill_rollback_overrides_a_live_canary(drill, tmp_path):
    """rollback.yml while a canary bakes: the rollback takes the live run's lock over on the load balancer host
    and records it; the canary, fenced, stops at its next sample as overridden, without a rollback of its own.
    It samples once a minute, so it is still live (holding the lock) when the rollback reaches the lock."""
    candidate_quiet.wait_no_rollback_alert('http://%s:9093' % drill.address('monitoring-1'))
    overrides = candidate_quiet.spec_overrides('fleet')
    overrides['phases']['canary'].update(bake='600s', interval='60s', inconclusive_limit=100)
    since = time.time()
    log = tmp_path / 'canary.log'
    with open(log, 'wb') as out:
        proc = subprocess.Popen([os.path.join(BIN, 'ansible-playbook'), '-i', INVENTORY, 'playbooks/canary.yml']
                                + ev(rollout_spec_overrides=overrides), cwd=ROOT, env=ENV, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 900
        while not baking_since(since):
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-4000:]
            time.sleep(2)
        assert drill.shares()['ultra_fast'] > 0
        run = playbook('rollback.yml', *ev(rollback_reason='fleet drill: emergency during a live canary'))
        assert run.returncode == 0, run.stdout[-4000:]
        assert drill.shares() == ALL_ORIGINAL
        assert drill.ultra_fast_stopped_everywhere()
        rollback = read_report()['rollback']
        seen = (rollback, log.read_text()[-4000:])
        assert rollback['trigger'] == 'manual' and [a['phase'] for a in rollback['guard_disarmed']] == ['canary'], seen
        overrode = rollback['overrode']
        assert len(overrode) == 1 and overrode[0]['phase'] == 'canary' and overrode[0]['holder_state'] == 'live', seen
        assert proc.wait(timeout=300) != 0
        after = read_report()
        assert after['canary']['overridden_by'] == 'rollback' and after['canary']['rolled_back'] is False
        assert after['rollback'] == rollback
        assert 'Phase canary stopped: a rollback overrode it' in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def baking_since(since):
    """The canary started after ``since`` is baking (its record has the gate configuration)."""
    try:
        canary = read_report().get('canary', {})
    except (OSError, ValueError):
        return False
    return canary.get('status') == 'running' and 'gate_config' in canary and canary.get('phase_started_epoch', 0) >= since


def test_rollback_with_nothing_deployed_changes_nothing(loaded):
    run = playbook('rollback.yml', *ev(rollback_reason='nothing deployed'))
    assert run.returncode == 0, run.stdout[-4000:]
    assert all(c.get('changed', 0) == 0 for c in recap(run.stdout).values())
    assert loaded.shares() == ALL_ORIGINAL


# Bad input: a clear failure naming the host and the step, and traffic never moved.

def extra_host_inventory(tmp_path, name, address, key):
    path = tmp_path / 'extra.yml'
    path.write_text(
        'all:\n  children:\n    analyzers:\n      children:\n        analyzers_ultra_fast:\n          hosts:\n'
        '            %s:\n              ansible_host: %s\n              ansible_ssh_private_key_file: %s\n'
        '              ansible_ssh_common_args: "-F /dev/null -o UserKnownHostsFile=%s -o ConnectTimeout=3"\n'
        % (name, address, key, os.path.join(FLEET_DIR, 'known_hosts')))
    return str(path)


def test_unreachable_host_stops_the_phase_before_traffic_moves(loaded, tmp_path):
    extra = extra_host_inventory(tmp_path, 'analyzer-b9', '127.0.0.99', os.path.join(FLEET_DIR, 'id_ed25519'))
    run = playbook('canary.yml', inventory=[os.path.join(ROOT, 'inventories', 'fleet'), extra])
    assert run.returncode != 0
    assert 'analyzer-b9' in run.stdout and 'UNREACHABLE' in run.stdout, run.stdout[-3000:]
    assert loaded.shares() == ALL_ORIGINAL
    assert loaded.ultra_fast_stopped_everywhere()


def test_wrong_ssh_key_fails_naming_the_hosts(loaded, tmp_path):
    key = tmp_path / 'wrong_key'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(key)], check=True)
    # No control master: one left by an earlier run (ControlPersist) would log in without any key.
    run = playbook('canary.yml', *ev(
        ansible_ssh_private_key_file=str(key),
        ansible_ssh_common_args='-F /dev/null -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes '
                                '-o ControlMaster=no -o ControlPath=none' % os.path.join(FLEET_DIR, 'known_hosts')))
    assert run.returncode != 0
    assert 'UNREACHABLE' in run.stdout and 'Permission denied' in run.stdout, run.stdout[-3000:]
    assert 'analyzer-b1' in run.stdout
    assert loaded.shares() == ALL_ORIGINAL


def test_sudo_asking_for_a_password_fails_naming_the_host(loaded):
    podman_exec('analyzer-b1', 'echo "deploy ALL=(ALL) PASSWD: ALL" > /etc/sudoers.d/zz-drill && '
                               'chmod 0440 /etc/sudoers.d/zz-drill')
    try:
        run = playbook('canary.yml')
    finally:
        podman_exec('analyzer-b1', 'rm -f /etc/sudoers.d/zz-drill')
    assert run.returncode != 0
    assert 'analyzer-b1' in run.stdout and 'password' in run.stdout.lower(), run.stdout[-3000:]
    assert loaded.shares() == ALL_ORIGINAL
    assert loaded.ultra_fast_stopped_everywhere()


def test_broken_apt_source_fails_naming_the_host_and_step(loaded):
    podman_exec('analyzer-b2', 'echo "deb http://127.0.0.1:9/debian bookworm main" > '
                               '/etc/apt/sources.list.d/broken.list && rm -rf /var/lib/apt/lists/* '
                               '/var/lib/apt/periodic/update-success-stamp && touch -d "2 days ago" /var/lib/apt/lists')
    try:
        run = playbook('canary.yml')
    finally:
        podman_exec('analyzer-b2', 'rm -f /etc/apt/sources.list.d/broken.list && apt-get update -qq')
    assert run.returncode != 0
    assert 'analyzer-b2' in run.stdout and 'Install the packages' in run.stdout, run.stdout[-4000:]
    assert loaded.shares() == ALL_ORIGINAL
    assert loaded.ultra_fast_stopped_everywhere()
