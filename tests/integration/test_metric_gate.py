"""cohort.rollout.metric_gate through ansible-playbook / ansible-runner against a real Prometheus.

A real `prometheus` (Debian binary) on 127.0.0.1:28410 scrapes, every second, a tiny exporter on
127.0.0.1:28411 whose gauges the tests set. A second Prometheus on 28412 is killed mid-bake.
Run: pytest -q tests/integration/test_metric_gate.py  (about a minute).
"""

import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'bench'))
from gate_prometheus import Exporter, Prometheus  # noqa: E402  pylint: disable=wrong-import-position

PROM_PORT, EXPORTER_PORT, PROM_KILL_PORT = 28410, 28411, 28412
BIN = os.path.join(ROOT, '.venv', 'bin')
ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''),
           ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_FORCE_COLOR='0', ANSIBLE_NOCOLOR='1',
           ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, 'collections'))

ERR = 'gate_itest_error_rate'


@pytest.fixture(scope='module')
def stack():
    exporter = Exporter(EXPORTER_PORT)
    prom = Prometheus(PROM_PORT, EXPORTER_PORT)
    try:
        prom.wait_value(ERR, lambda v: v == 0.001)
        yield exporter, prom
    finally:
        prom.stop()
        exporter.stop()


def write_playbook(tmp_path, gate_args, check_mode=False):
    """A playbook running one gate task per item of gate_args (a dict or a list) and saving the results."""
    out = tmp_path / 'result.json'
    tasks = []
    for index, args in enumerate(gate_args if isinstance(gate_args, list) else [gate_args]):
        tasks.append({'name': 'Bake under gates %d' % index, 'cohort.rollout.metric_gate': args,
                      'register': 'gate%d' % index, 'ignore_errors': True, 'check_mode': check_mode})
    names = ', '.join('gate%d' % i for i in range(len(tasks)))
    tasks.append({'name': 'Save the results', 'ansible.builtin.copy': {
        'content': '{{ [%s] | to_json }}' % names, 'dest': str(out), 'mode': '0600'}, 'check_mode': False})
    play = [{'name': 'Metric gate under test', 'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]
    path = tmp_path / 'play.yml'
    path.write_text(json.dumps(play))  # JSON is YAML
    return str(path), out


def run_playbook(tmp_path, gate_args, check_mode=False, on_line=None):
    """Run ansible-playbook, reading its stdout line by line as it comes; return (result(s), lines, rc)."""
    playbook, out = write_playbook(tmp_path, gate_args, check_mode)
    proc = subprocess.Popen([os.path.join(BIN, 'ansible-playbook'), playbook], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    for line in proc.stdout:
        lines.append((line.rstrip('\n'), proc.poll() is None, time.time()))
        if on_line:
            on_line(line)
    rc = proc.wait(120)
    text = '\n'.join(ln for ln, unused_alive, unused_at in lines)
    assert out.exists(), text
    results = json.loads(out.read_text())
    return (results if isinstance(gate_args, list) else results[0]), lines, rc


def gate(prom_url, checks, **over):
    args = dict(prometheus_url=prom_url, phase='itest', interval='1s', duration='4s', checks=checks)
    args.update(over)
    return args


def test_pass_prints_each_sample_live_and_records_the_report(stack, tmp_path):
    unused_exporter, prom = stack
    report = tmp_path / 'report.json'
    report.write_text(json.dumps({'preflight': {'status': 'ok'}, 'itest': {'weights': {'ultra_fast': 0.01}}}))
    checks = [dict(name='error_rate', query=ERR, op='lt', threshold=0.01),
              dict(name='p99', query='gate_itest_latency_p99_ms', op='lt', threshold=200),
              dict(name='cache_hit', query='gate_itest_cache_hit_rate', op='gt', threshold=0.7)]
    result, lines, rc = run_playbook(tmp_path, gate(prom.url, checks, report_path=str(report),
                                                    min_requests=dict(query='vector(50)', threshold=10)))
    assert result['verdict'] == 'passed', result
    assert not result.get('failed')
    sample_lines = [(ln, alive) for ln, alive, unused_at in lines if ln.startswith('[itest ') and '/5]' in ln]
    assert len(sample_lines) == 5, lines
    assert 'error_rate=0.001 <0.01 ok | p99=120 <200 ok | cache_hit=0.9 >0.7 ok' in sample_lines[0][0]
    # live: the first sample line was read while ansible-playbook was still running
    assert sample_lines[0][1] is True
    doc = json.loads(report.read_text())
    assert doc['preflight'] == {'status': 'ok'}
    assert doc['itest']['weights'] == {'ultra_fast': 0.01}
    assert doc['itest']['status'] == 'passed' and len(doc['itest']['samples']) == 5
    assert doc['itest']['verdict'] == {'result': 'passed', 'reasons': []}
    assert oct(os.stat(str(report)).st_mode & 0o777) == '0o600'


def test_trip_returns_well_before_duration(stack, tmp_path):
    exporter, prom = stack
    exporter.error_rate.set(0.05)
    try:
        prom.wait_value(ERR, lambda v: v == 0.05)
        started = time.time()
        result, lines, rc = run_playbook(tmp_path, gate(prom.url, [dict(name='error_rate', query=ERR, op='lt',
                                                                        threshold=0.01)],
                                                        interval='2s', duration='60s'))
        elapsed = time.time() - started
    finally:
        exporter.error_rate.set(0.001)
        # The next test reads the same series: wait until Prometheus has scraped the healthy value again.
        prom.wait_value(ERR, lambda v: v == 0.001)
    assert result['verdict'] == 'failed' and result['failed']
    assert 'gate error_rate tripped' in result['msg'] and '0.05' in result['msg'] and '< 0.01' in result['msg']
    assert len(result['samples']) == 1
    assert elapsed < 30, 'a 60 s bake must trip at its first sample, took %.1fs' % elapsed
    assert any('error_rate=0.05 >=0.01 FAIL' in ln for ln, unused_alive, unused_at in lines)


def test_no_data_and_ambiguous_queries_fail_the_phase(stack, tmp_path):
    unused_exporter, prom = stack
    (nodata, ambiguous), lines, unused_rc = run_playbook(tmp_path, [
        gate(prom.url, [dict(name='error_rate', query=ERR, op='lt', threshold=0.01),
                        dict(name='missing', query='gate_itest_does_not_exist', op='lt', threshold=1)], duration='3s'),
        gate(prom.url, [dict(name='multi', query='gate_itest_multi', op='lt', threshold=10)], duration='2s')])
    assert nodata['verdict'] == 'inconclusive' and nodata['failed']
    assert 'missing' in nodata['msg'] and 'no data' in nodata['msg']
    assert any('missing=none <1 no data' in ln for ln, unused_alive, unused_at in lines)
    assert ambiguous['verdict'] == 'inconclusive' and ambiguous['failed']
    assert 'ambiguous: 2 series' in ambiguous['msg']


def test_bad_promql_fails_with_prometheus_text_before_the_bake(stack, tmp_path):
    unused_exporter, prom = stack
    report = tmp_path / 'report.json'
    started = time.time()
    broken = [dict(name='broken', query='rate(%s[1m]))' % ERR, op='lt', threshold=1)]
    result, lines, unused_rc = run_playbook(tmp_path, gate(prom.url, broken, initial_delay='30s', duration='30s',
                                                           report_path=str(report)))
    assert result['failed'] and result['verdict'] == 'failed'
    assert 'Prometheus says' in result['msg'] and 'parse error' in result['msg'], result['msg']
    assert time.time() - started < 25  # the 30 s initial delay never started
    assert not report.exists()
    assert not any(ln.startswith('[itest ') for ln, unused_alive, unused_at in lines)


def test_prometheus_killed_mid_bake_is_inconclusive_then_failed(tmp_path):
    exporter = Exporter(EXPORTER_PORT + 10)
    prom = Prometheus(PROM_KILL_PORT, EXPORTER_PORT + 10)
    try:
        prom.wait_value(ERR, lambda v: v == 0.001)
        seen = []

        def on_line(line):
            if line.startswith('[itest ') and 'ok' in line:
                seen.append(line)
                if len(seen) == 2 and prom.proc.poll() is None:
                    prom.proc.kill()  # by its Popen handle
                    prom.proc.wait(10)
        args = gate(prom.url, [dict(name='error_rate', query=ERR, op='lt', threshold=0.01)],
                    duration='20s', inconclusive_limit=1, timeout=2)
        result, lines, unused_rc = run_playbook(tmp_path, args, on_line=on_line)
    finally:
        prom.stop()
        exporter.stop()
    assert result['verdict'] == 'inconclusive' and result['failed']
    assert 'connection' in result['msg']
    statuses = [s['values']['error_rate']['status'] for s in result['samples']]
    assert statuses[:2] == ['pass', 'pass'] and statuses[-2:] == ['inconclusive', 'inconclusive']
    assert len(statuses) < 21


def test_check_mode_rehearsal_over_recorded_history(stack, tmp_path):
    exporter, prom = stack
    report = tmp_path / 'report.json'
    # The rehearsal looks 45 s back: wait until Prometheus holds that much history of the
    # exporter (an earlier test restarts Prometheus, and the window must not reach before it).
    prom.wait_value('count_over_time(%s[50s])' % ERR, lambda v: v >= 45, timeout=90)
    exporter.error_rate.set(0.05)
    prom.wait_value(ERR, lambda v: v == 0.05)
    time.sleep(3)
    exporter.error_rate.set(0.001)
    prom.wait_value(ERR, lambda v: v == 0.001)
    time.sleep(3)
    # a 45 s window: wide enough to hold the failing stretch even if ansible-playbook starts slowly
    result, lines, unused_rc = run_playbook(tmp_path, gate(prom.url, [
        dict(name='error_rate', query=ERR, op='lt', threshold=0.01),
        dict(name='missing', query='gate_itest_does_not_exist', op='lt', threshold=1)],
        duration='45s', interval='1s', report_path=str(report)), check_mode=True)
    assert not result.get('failed') and not result.get('changed')
    reh = result['rehearsal']
    assert reh['window']['samples'] == 46
    err = reh['gates']['error_rate']
    assert err['failed'] >= 2 and err['passed'] >= 2 and err['would'] == 'failed', err
    assert err['worst'] == 0.05
    assert reh['gates']['missing']['no_data'] == 46 and reh['gates_with_no_data'] == ['missing']
    assert reh['would'] == 'failed'
    assert not report.exists()  # touches nothing
    assert any('[itest rehearsal] error_rate' in ln for ln, unused_alive, unused_at in lines)


def test_sample_lines_reach_ansible_runner_events_live(stack, tmp_path):
    import ansible_runner
    unused_exporter, prom = stack
    args = gate(prom.url, [dict(name='error_rate', query=ERR, op='lt', threshold=0.01)], duration='3s')
    playbook, unused_out = write_playbook(tmp_path, args)
    private = tmp_path / 'runner'
    private.mkdir()
    envvars = dict((k, ENV[k]) for k in ('ANSIBLE_CONFIG', 'ANSIBLE_COLLECTIONS_PATH', 'PATH'))
    runner = ansible_runner.run(private_data_dir=str(private), playbook=playbook, envvars=envvars, quiet=True,
                                project_dir=ROOT)
    assert runner.rc == 0, runner.stdout.read()
    events = [e for e in runner.events if '[itest ' in (e.get('stdout') or '') and '/4]' in e.get('stdout')]
    assert len(events) == 4, [e.get('stdout') for e in runner.events]
    assert 'error_rate=0.001 <0.01 ok' in events[0]['stdout']
    # each line is its own event, created as the sample was taken (about a second apart), not at the end
    created = [e['created'] for e in events]
    assert created == sorted(created) and created[0] < created[-1]
    task_end = [e for e in runner.events if e['event'] in ('runner_on_ok', 'runner_on_failed')
                and e['event_data'].get('task') == 'Bake under gates 0']
    assert task_end and created[0] < task_end[0]['created']
    stdout = runner.stdout.read()
    assert stdout.count('[itest ') >= 4
