"""metric_gate against the sandbox Prometheus (`make sandbox`): a check-mode rehearsal over its recorded history.

Needs the sandbox up (`make integration` brings it up); fails, not skips, when its Prometheus is unreachable.
Read-only: range and instant queries, no report written.
"""

import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, '.venv', 'bin')
ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''), ANSIBLE_NOCOLOR='1',
           ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'))

CHECKS = [
    dict(name='error_rate', query='cohort_discovery_error_rate{variant="ultra_fast"}', op='lt', threshold=0.01),
    dict(name='latency_p99_ms', query='cohort_discovery_latency_p99{variant="ultra_fast"}', op='lt', threshold=200),
    dict(name='memory_bytes', query='max(process_memory_usage_bytes{variant="ultra_fast"})', op='lt',
         threshold=1073741824),
    dict(name='not_a_metric', query='cohort_gate_sandbox_metric_that_does_not_exist', op='lt', threshold=1),
]


def test_rehearsal_on_the_sandbox_recorded_history(tmp_path):
    out = tmp_path / 'result.json'
    report = tmp_path / 'report.json'
    play = [{'name': 'Rehearse', 'hosts': 'localhost', 'gather_facts': False, 'tasks': [
        {'name': 'Rehearse the canary gates', 'check_mode': True, 'register': 'gate', 'ignore_errors': True,
         'cohort.rollout.metric_gate': {
             'prometheus_url': "{{ hostvars['monitoring-1'].prometheus_url }}", 'phase': 'canary',
             'interval': '15s', 'duration': '5m', 'checks': CHECKS, 'report_path': str(report)}},
        {'name': 'Save', 'check_mode': False,
         'ansible.builtin.copy': {'content': '{{ gate | to_json }}', 'dest': str(out), 'mode': '0600'}},
    ]}]
    playbook = tmp_path / 'play.yml'
    playbook.write_text(json.dumps(play))
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), str(playbook)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120, check=False)
    assert out.exists(), proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert not result.get('failed'), result.get('msg')  # e.g. sandbox Prometheus unreachable
    reh = result['rehearsal']
    assert reh['window']['samples'] == 21
    for name, summary in reh['gates'].items():
        assert summary['passed'] + summary['failed'] + summary['no_data'] == 21, name
    assert reh['gates']['not_a_metric']['no_data'] == 21 and 'not_a_metric' in reh['gates_with_no_data']
    # the sandbox has been scraping its analyzers: memory is always there
    assert reh['gates']['memory_bytes']['passed'] + reh['gates']['memory_bytes']['failed'] > 0
    assert reh['would'] in ('failed', 'inconclusive')  # a gate with no data can never let it pass
    assert not report.exists()
    assert '[canary rehearsal] error_rate' in proc.stdout
