"""The status view (module_utils/rollout_status.py) and its action plugin (cohort.rollout.rollout_status)."""

import json
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.cohort.rollout.plugins.action import rollout_status as action_mod
from ansible_collections.cohort.rollout.plugins.module_utils import rollout_status as st
from ansible_collections.cohort.rollout.plugins.module_utils.prometheus import TransportError
from ansible_collections.cohort.rollout.tests.unit.action_support import action_under_test

PHASES = ['canary', 'ramp', 'rollout']
SHARES = st.shares_view(dict(shares=dict(original=0.99, ultra_fast=0.01), weights={'original-a': 99}))
FREE = [dict(item='lb-1', held=False, path='/s/rollout.lock', changed=False)]
HELD = [dict(item='lb-1', held=True, stale=False, holder=dict(id='ctl:1:2', controller='ctl', pid=1, user='ops',
                                                              phase='canary', acquired_at='2026-12-01T10:00:00Z'))]
UP = {'analyzer-ultra-fast-1': dict(status=200, url='http://127.0.0.1:18082/readyz', json=dict(variant='ultra_fast'))}
DOWN = {'analyzer-ultra-fast-1': dict(status=-1, url='http://127.0.0.1:18082/readyz',
                                      msg='Status code was -1 and not [200, 503]: Request failed: '
                                          '<urlopen error [Errno 111] Connection refused>')}


def sample(n, at, error, status='pass'):
    return dict(n=n, at=at, values=dict(error_rate=dict(value=error, status=status),
                                        memory_bytes=dict(value=None, status='inconclusive', note='no data')))


def running_report():
    return dict(canary=dict(
        status='running', phase_started_at='2026-12-01T10:00:00Z', started_at='2026-12-01T10:00:02Z',
        shares=dict(original=0.99, ultra_fast=0.01), gate_config=dict(sample_count=24),
        gates=dict(error_rate=dict(op='lt', threshold=0.01), memory_bytes=dict(op='lt', threshold=1e9)),
        samples=[sample(1, '2026-12-01T10:05:00Z', 0.001), sample(2, '2026-12-01T10:10:00Z', 0.003)]))


def status(report, shares=None, locks=None, probes=None, problems=None):
    return st.build_status(report, problems or [], SHARES if shares is None else shares, st.lock_view(HELD if locks is None else locks),
                           st.candidate_view(UP if probes is None else probes), 'original', 'ultra_fast', PHASES,
                           '/s/report.json')


def test_candidate_view_from_the_hosts_own_probe():
    assert st.candidate_view(UP)[0]['state'] == 'running' and 'ultra_fast' in st.candidate_view(UP)[0]['detail']
    down = st.candidate_view(DOWN)[0]
    assert down['state'] == 'stopped' and 'Connection refused' in down['detail']
    busy = st.candidate_view({'h': dict(status=503, json=dict(status='not ready', reason='data not loaded'))})[0]
    assert busy['state'] == 'running' and 'HTTP 503' in busy['detail'] and 'data not loaded' in busy['detail']
    assert st.candidate_view({'h': dict(unreachable=True, msg='ssh: timeout')})[0]['state'] == 'unknown'
    assert st.candidate_view({'h': dict(skipped=True)})[0]['state'] == 'unknown'


def test_lock_view():
    assert st.lock_view(FREE) == [dict(host='lb-1', ok=True, held=False, path='/s/rollout.lock')]
    held = st.lock_view(HELD)[0]
    assert held['held'] and held['holder']['user'] == 'ops' and held['holder']['phase'] == 'canary'
    failed = st.lock_view([dict(item='lb-2', failed=True, msg='permission denied')])[0]
    assert failed == dict(host='lb-2', ok=False, error='permission denied')


def test_running_phase_shows_the_latest_sample_of_each_gate():
    doc = status(running_report())
    assert doc['headline'].startswith('phase canary RUNNING: sample 2 of 24')
    assert 'traffic now original 99%, ultra_fast 1%' in doc['headline']
    latest = doc['phases'][0]['latest']
    assert latest['error_rate'] == dict(value=0.003, status='pass', note=None, at='2026-12-01T10:10:00Z', n=2, op='lt',
                                        threshold=0.01)
    assert latest['memory_bytes']['status'] == 'inconclusive'
    assert doc['warnings'] == []
    text = st.render_text(doc)
    assert any(line.strip().startswith('error_rate') and '0.003' in line and 'ok' in line for line in text)
    assert any(line.strip().startswith('memory_bytes') and 'NO DATA' in line for line in text)
    assert 'lock on lb-1: held by ops@ctl pid 1, phase canary, since 2026-12-01T10:00:00Z' in text
    assert 'candidate ultra_fast on analyzer-ultra-fast-1: RUNNING, ready (ultra_fast)' in text


def test_what_needs_a_human_is_said():
    doc = status(running_report(), locks=FREE, probes=DOWN)
    assert any('"running" in the report but no run holds the lock' in w for w in doc['warnings'])
    assert any('ultra_fast gets 1% of the traffic but no ultra_fast analyzer answers' in w for w in doc['warnings'])
    stale = [dict(HELD[0], stale=True)]
    assert any('STALE' in w for w in status(running_report(), locks=stale)['warnings'])
    no_lb = status(running_report(), shares=st.shares_view(None, 'connection: refused'))
    assert any('did not say its shares: connection: refused' in w for w in no_lb['warnings'])
    assert 'traffic (load balancer): UNKNOWN - connection: refused' in st.render_text(no_lb)


def test_headlines():
    report = running_report()
    report['canary'].update(status='failed', rolled_back=True, verdict=dict(result='failed', reasons=['gate x tripped']))
    report['rollback'] = dict(status='rolled_back', trigger='automatic', phase='canary', reason='canary failed',
                              started_at='2026-12-01T10:11:00Z', ended_at='2026-12-01T10:11:20Z',
                              durations=dict(trip_to_shares_reverted_s=0.1, trip_to_complete_s=20.0))
    doc = status(report, locks=FREE)
    assert doc['headline'].startswith('ROLLED BACK (automatic, canary) at 2026-12-01T10:11:20Z: canary failed')
    text = st.render_text(doc)
    assert any(line.startswith('rollback ROLLED_BACK (automatic, phase canary)') and '0.1 s' in line for line in text)
    assert '    reason: gate x tripped' in text
    done = dict((p, dict(status='passed', phase_started_at='2026-12-01T1%d:00:00Z' % i)) for i, p in enumerate(PHASES))
    assert status(done, locks=FREE)['headline'].startswith('rollout COMPLETE')
    assert status({}, locks=FREE)['headline'].startswith('no rollout recorded')


def test_one_screen():
    report = running_report()
    for name in ('ramp', 'rollout'):
        report[name] = json.loads(json.dumps(report['canary']).replace('running', 'passed'))
    assert len(st.render_text(status(report))) <= 40


def make_action(args, check_mode=False):
    return action_under_test(action_mod, 'rollout_status', args, check_mode)


def run_action(args, transport, check_mode=False):
    args = dict(dict(baseline='original', candidate='ultra_fast'), **args)  # the spec's pools (status.yml passes them)
    action = make_action(args, check_mode)
    action.transport = transport
    lines = []
    with mock.patch.object(action_mod.display, 'display', side_effect=lambda msg, *a, **k: lines.append(msg)):
        result = action.run(task_vars={})
    return result, '\n'.join(lines)


def lb(calls):
    def transport(method, url, headers, data, timeout, validate_certs, ca_path):
        calls.append((method, url, headers.get('Authorization')))
        return 200, json.dumps(dict(backend='analyzers', weights={'original-a': 99, 'ultra_fast-b': 1},
                                    shares=dict(original=0.99, ultra_fast=0.01))).encode()
    return transport


def test_action_reads_the_lb_and_the_report_and_writes_json(tmp_path):
    path = tmp_path / 'report.json'
    path.write_text(json.dumps(running_report()))
    calls = []
    out = tmp_path / 'status.json'
    result, printed = run_action(dict(report_path=str(path), lb_api_url='http://127.0.0.1:18090/',
                                      lb_api_token='s3cret', locks=HELD, candidates=UP, output=str(out)),
                                 lb(calls), check_mode=True)
    assert calls == [('GET', 'http://127.0.0.1:18090/config/traffic-weights', 'Bearer s3cret')]
    assert not result['changed'] and result['status']['shares']['shares'] == dict(original=0.99, ultra_fast=0.01)
    assert printed.startswith('ROLLOUT STATUS  phase canary RUNNING')
    assert json.loads(out.read_text()) == result['status']
    assert 's3cret' not in printed and 's3cret' not in out.read_text()
    assert result['status']['html']['path'] == str(tmp_path / 'report.html')
    assert action_mod.ARGUMENT_SPEC['lb_api_token']['no_log'] is True


def test_action_json_format_and_bad_report(tmp_path):
    path = tmp_path / 'report.json'
    path.write_text('{"canary": {"status": "runn')
    result, printed = run_action(dict(report_path=str(path), lb_api_url='http://127.0.0.1:18090', format='json'),
                                 lb([]))
    doc = json.loads(printed)
    assert doc['report_readable'] is False
    assert any('is not valid JSON, maybe truncated' in w and str(path) in w for w in doc['warnings'])
    assert result['status'] == doc


def test_action_unreachable_lb_is_said_not_fatal(tmp_path):
    def refused(*args):
        raise TransportError('connection', 'Connection refused')
    result, printed = run_action(dict(report_path=str(tmp_path / 'none.json'), lb_api_url='http://127.0.0.1:1'),
                                 refused)
    assert 'traffic (load balancer): UNKNOWN' in printed and 'Connection refused' in printed
    assert any('does not exist' in w for w in result['status']['warnings'])


def test_action_rejects_bad_arguments(tmp_path):
    with pytest.raises(AnsibleActionFail, match='format'):
        run_action(dict(report_path=str(tmp_path / 'r.json'), format='yaml'), lb([]))


def test_action_shows_the_fleets_copy_when_it_is_newer_and_writes_nothing(tmp_path):
    """The last phase ran from another controller (an AWX job): this one has no report, the fleet a copy."""
    import base64
    copy = running_report()
    copy['canary']['phase_started_epoch'] = 1796119200.0
    entry = dict(item='lb-1', content=base64.b64encode(json.dumps(copy).encode()).decode(), failed=False)
    broken = dict(item='lb-2', content=base64.b64encode(b'{"canary"').decode(), failed=False)
    path = tmp_path / 'none.json'
    result, printed = run_action(dict(report_path=str(path), lb_api_url='http://127.0.0.1:18090',
                                      copies=[dict(item='lb-0', failed=True, msg='file not found'), broken, entry]),
                                 lb([]))
    assert 'ROLLOUT STATUS  phase canary RUNNING' in printed, printed
    assert 'the copy of the report on lb-2 is not used' in printed  # a warning, and lb-1's copy is shown
    assert "report: the copy kept on lb-1 (newer than this controller's)" in printed
    assert result['status']['report_source'] == 'lb-1' and not path.exists()
    assert not any('does not exist' in w for w in result['status']['warnings'])
