"""The metric_gate action plugin end to end with a fake Prometheus transport and a fake clock."""

import json
import os
import stat
from unittest import mock
from urllib.parse import parse_qs

import pytest

from ansible.errors import AnsibleActionFail

from ansible_collections.cohort.rollout.plugins.action import metric_gate as action_mod
from ansible_collections.cohort.rollout.plugins.module_utils.prometheus import TransportError
from ansible_collections.cohort.rollout.tests.unit.action_support import action_under_test

BAD_DATA = '1:9: parse error: unexpected right parenthesis \')\''


class FakeClock(object):
    def __init__(self, start=1800000000.0):
        self.now = start

    def wall(self):
        return self.now

    def mono(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class FakePrometheus(object):
    """A scripted Prometheus: per expression a list of answers (one per call, last repeats)."""

    def __init__(self, script, clock=None):
        self.script = script
        self.calls = {}
        self.urls = []
        self.clock = clock

    def __call__(self, method, url, headers, data, timeout, validate_certs, ca_path):
        self.urls.append(url)
        if '/api/v1/' not in url:  # a JSON source
            answer = self.script[url]
            if isinstance(answer, Exception):
                raise answer
            return 200, json.dumps(answer).encode()
        form = parse_qs(data.decode())
        expr = form['query'][0]
        if 'query_range' in url:
            return 200, json.dumps(self.script[('range', expr)](form)).encode()
        seq = self.script[expr]
        n = self.calls.get(expr, 0)
        self.calls[expr] = n + 1
        answer = seq[min(n, len(seq) - 1)]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, tuple):
            status, body = answer
            return status, json.dumps(body).encode()
        values = [] if answer is None else (answer if isinstance(answer, list) else [answer])
        return 200, json.dumps({'status': 'success', 'data': {'resultType': 'vector', 'result': [
            {'metric': {'n': str(i)}, 'value': [0, str(v)]} for i, v in enumerate(values)]}}).encode()


def make_action(args, check_mode=False):
    return action_under_test(action_mod, 'metric_gate', args, check_mode)


def run(args, script, check_mode=False, clock=None):
    clock = clock or FakeClock()
    fake = FakePrometheus(script, clock)
    action = make_action(args, check_mode)
    action.transport = fake
    action.clock = clock
    lines = []
    with mock.patch.object(action_mod.display, 'display', side_effect=lambda msg, *a, **k: lines.append(msg)):
        result = action.run(task_vars={})
    return result, lines, fake, clock


def base(**over):
    args = dict(prometheus_url='http://127.0.0.1:28401', phase='canary', interval='10s', duration='1m',
                checks=[dict(name='error_rate', query='err', op='lt', threshold=0.01)])
    args.update(over)
    return args


def test_pass_writes_report_and_prints_lines(tmp_path):
    path = str(tmp_path / 'report.json')
    (tmp_path / 'report.json').write_text(json.dumps({'canary': {'weights': {'ultra_fast': 0.01}}, 'preflight': {'ok': 1}}))
    result, lines, unused_2, unused_3 = run(base(report_path=path, extra_report={'note': 'x'}), {'err': [0.001]})
    assert result['verdict'] == 'passed' and not result['failed']
    assert len([ln for ln in lines if 'error_rate=0.001 <0.01 ok' in ln]) == 7
    doc = json.loads(open(path).read())
    assert doc['preflight'] == {'ok': 1}
    assert doc['canary']['weights'] == {'ultra_fast': 0.01} and doc['canary']['note'] == 'x'
    assert doc['canary']['status'] == 'passed' and doc['canary']['verdict'] == {'result': 'passed', 'reasons': []}
    assert len(doc['canary']['samples']) == 7 and doc['canary']['gates']['error_rate']['passes'] == 7
    assert doc['canary']['started_at'].endswith('Z') and doc['canary']['ended_at'].endswith('Z')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_bad_promql_fails_before_the_bake_with_prometheus_text(tmp_path):
    path = str(tmp_path / 'report.json')
    err = (400, {'status': 'error', 'errorType': 'bad_data', 'error': BAD_DATA})
    result, lines, fake, clock = run(base(report_path=path, initial_delay='1h'), {'err': [err]})
    assert result['failed'] and result['verdict'] == 'failed'
    assert BAD_DATA in result['msg'] and 'error_rate' in result['msg']
    assert clock.now == 1800000000.0  # no waiting
    assert len(fake.urls) == 1 and not os.path.exists(path)


def test_prometheus_unreachable_before_bake_is_a_clear_failure():
    result, unused_1, unused_2, clock = run(base(), {'err': [TransportError('connection', '[Errno 111] Connection refused')]})
    assert result['failed'] and result['verdict'] == 'inconclusive'
    assert 'Prometheus unreachable' in result['msg'] and 'Connection refused' in result['msg']
    assert clock.now == 1800000000.0


def test_prometheus_dies_mid_bake_is_inconclusive(tmp_path):
    path = str(tmp_path / 'r.json')
    refused = TransportError('connection', 'refused')
    result, lines, unused_2, unused_3 = run(base(report_path=path, inconclusive_limit=1), {'err': [0.001, 0.001, 0.002, refused]})
    assert result['verdict'] == 'inconclusive' and result['failed']
    assert len(result['samples']) == 4  # validation used the first answer; samples 3 and 4 refused
    assert 'connection' in lines[-2]
    assert json.load(open(path))['canary']['status'] == 'inconclusive'


def test_timeouts_are_inconclusive():
    result, lines, unused_2, unused_3 = run(base(), {'err': [0.001, TransportError('timeout', 'timed out after 10s')]})
    assert result['verdict'] == 'inconclusive'
    assert 'timeout' in result['msg']


def test_ambiguous_series_and_empty_vector():
    result, unused_1, unused_2, unused_3 = run(base(), {'err': [0.001, [0.001, 0.002]]})
    assert result['verdict'] == 'inconclusive' and 'ambiguous: 2 series' in result['msg']
    result, unused_1, unused_2, unused_3 = run(base(), {'err': [None]})
    assert result['verdict'] == 'inconclusive' and 'no data' in result['msg']


def test_trip_returns_early_and_names_everything(tmp_path):
    result, lines, unused_2, clock = run(base(duration='2h', interval='5m'), {'err': [0.001, 0.001, 0.001, 0.04]})
    assert result['verdict'] == 'failed'
    assert clock.now - 1800000000.0 == 2 * 300  # third sample, not two hours
    assert 'gate error_rate tripped' in result['msg'] and '0.04' in result['msg'] and '< 0.01' in result['msg']
    assert result['samples'][-1]['at'] in result['msg']


def test_json_source_with_token_not_in_output():
    url = 'http://127.0.0.1:28402/metrics'
    args = base(prometheus_url=None, checks=[dict(name='lb_p99', source='json', url=url, path='latency.p99',
                                                  token='tok-secret', op='lt', threshold=200)])
    result, lines, fake, unused_3 = run(args, {url: {'latency': {'p99': 150}}})
    assert result['verdict'] == 'passed'
    assert 'tok-secret' not in json.dumps(result) and 'tok-secret' not in ''.join(lines)
    result, unused_1, unused_2, unused_3 = run(args, {url: {'latency': {}}})
    assert result['verdict'] == 'inconclusive'


def test_min_requests_through_action():
    args = base(min_requests=dict(query='sum(req)', threshold=100))
    result, unused_1, unused_2, unused_3 = run(args, {'err': [0.001], 'sum(req)': [5]})
    assert result['verdict'] == 'inconclusive' and 'only 5 requests' in result['msg']
    result, unused_1, unused_2, unused_3 = run(args, {'err': [0.001], 'sum(req)': [500]})
    assert result['verdict'] == 'passed' and result['min_requests']['value'] == 500


@pytest.mark.parametrize('over,needle', [
    (dict(checks=[dict(name='e', query='q', op='eq', threshold=1)]), 'value of op must be one of'),
    (dict(interval=0), 'interval must be greater than zero'),
    (dict(interval='2m', duration='1m'), 'must not be longer than duration'),
    (dict(checks=[]), 'checks must list at least one check'),
    (dict(prometheus_token='t', prometheus_username='u', prometheus_password='p'), 'mutually exclusive'),
    (dict(bogus=1), 'bogus'),
])
def test_argument_errors(over, needle):
    with pytest.raises(AnsibleActionFail) as err:
        run(base(**over), {'err': [0.001]})
    assert needle in str(err.value)


def test_rehearsal_uses_range_queries_and_writes_nothing(tmp_path):
    path = str(tmp_path / 'report.json')

    def err_range(form):
        start, end, step = float(form['start'][0]), float(form['end'][0]), float(form['step'][0].rstrip('s'))
        values, t, i = [], start, 0
        while t <= end:
            values.append([t, '0.05' if i in (2, 3) else '0.001'])
            t += step
            i += 1
        return {'status': 'success', 'data': {'resultType': 'matrix', 'result': [{'metric': {}, 'values': values}]}}

    def empty_range(form):
        return {'status': 'success', 'data': {'resultType': 'matrix', 'result': []}}
    args = base(report_path=path, checks=[dict(name='error_rate', query='err', op='lt', threshold=0.01, failure_limit=1),
                                          dict(name='p99', query='p99', op='lt', threshold=200)])
    result, lines, fake, clock = run(args, {'err': [0.001], 'p99': [None], ('range', 'err'): err_range,
                                            ('range', 'p99'): empty_range}, check_mode=True)
    assert result['failed'] is False and result['changed'] is False
    reh = result['rehearsal']
    assert reh['window']['samples'] == 7
    assert reh['gates']['error_rate']['failed'] == 2 and reh['gates']['error_rate']['would'] == 'failed'
    assert reh['gates']['p99']['no_data'] == 7 and reh['gates']['p99']['would'] == 'inconclusive'
    assert reh['gates_with_no_data'] == ['p99'] and reh['would'] == 'failed'
    assert not os.path.exists(path)
    assert clock.now == 1800000000.0  # no waiting
    assert any('rehearsal' in ln and 'error_rate' in ln for ln in lines)


def test_rehearsal_still_rejects_bad_promql():
    err = (400, {'status': 'error', 'errorType': 'bad_data', 'error': BAD_DATA})
    result, unused_1, unused_2, unused_3 = run(base(), {'err': [err]}, check_mode=True)
    assert result['failed'] and BAD_DATA in result['msg']


def test_unwritable_report_fails_before_bake(tmp_path):
    blocker = tmp_path / 'a-file'
    blocker.write_text('not a directory')
    with pytest.raises(AnsibleActionFail) as err:
        run(base(report_path=str(blocker / 'r.json')), {'err': [0.001]})
    assert 'cannot write the report before the bake' in str(err.value)


class WeightsAPI(object):
    """A stand-in for the load balancer's weights API on loopback: records each POST, answers like the real one."""

    def __init__(self):
        import http.server
        import threading
        calls = self.calls = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
                calls.append(dict(path=self.path, body=body, auth=self.headers.get('Authorization')))
                answer = json.dumps(dict(changed=True, before={}, after={'shares': body}, requested=body,
                                         error=0.0)).encode()
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def weights_api():
    api = WeightsAPI()
    yield api
    api.close()


BASELINE = {'original': 1, 'ultra_fast': 0}


def test_trip_reverts_traffic_before_returning(weights_api):
    revert = dict(api_url=weights_api.url, api_token='lb-secret-token', shares=BASELINE)
    result, lines, unused_2, unused_3 = run(base(revert=revert), {'err': [0.001, 0.04]})
    assert result['verdict'] == 'failed' and result['failed']
    assert weights_api.calls == [dict(path='/config/traffic-weights', body=BASELINE, auth='Bearer lb-secret-token')]
    assert result['revert'] == dict(ok=True, changed=True, shares=BASELINE)
    assert isinstance(result['reverted_at'], float) and isinstance(result['ended_epoch'], float)
    assert 'lb-secret-token' not in json.dumps(result) and 'lb-secret-token' not in ''.join(lines)
    assert any('traffic reverted by the gate' in line for line in lines)


def test_pass_does_not_touch_traffic(weights_api):
    result, unused_1, unused_2, unused_3 = run(base(revert=dict(api_url=weights_api.url, shares=BASELINE)),
                                               {'err': [0.001]})
    assert result['verdict'] == 'passed' and 'revert' not in result and 'reverted_at' not in result
    assert weights_api.calls == []


def test_unreachable_prometheus_before_the_bake_also_reverts(weights_api):
    refused = TransportError('connection', '[Errno 111] Connection refused')
    result, unused_1, unused_2, unused_3 = run(base(revert=dict(api_url=weights_api.url, shares=BASELINE)),
                                               {'err': [refused]})
    assert result['verdict'] == 'inconclusive' and result['revert']['ok'] is True
    assert len(weights_api.calls) == 1


def test_failed_revert_is_reported_and_the_bake_still_fails():
    closed = 'http://127.0.0.1:9'  # discard port: nothing listens on loopback here
    with mock.patch.object(action_mod.display, 'warning') as warning:
        result, unused_1, unused_2, unused_3 = run(base(revert=dict(api_url=closed, shares=BASELINE, timeout=2)),
                                                   {'err': [0.04]})
    assert result['verdict'] == 'failed' and result['failed']
    assert result['revert']['ok'] is False and 'cannot reach the weights API' in result['revert']['error']
    assert 'reverted_at' not in result and warning.called


@pytest.mark.parametrize('shares', [{'original': 0.5, 'ultra_fast': 0.2}, {'original': -1, 'ultra_fast': 2},
                                    {'original': float('nan'), 'ultra_fast': 1}])
def test_invalid_revert_shares_refused_before_any_query(shares, weights_api):
    with pytest.raises(AnsibleActionFail, match='invalid arguments'):
        run(base(revert=dict(api_url=weights_api.url, shares=shares)), {'err': [0.001]})
    assert weights_api.calls == []


def test_waiting_is_reported_apart_from_the_work():
    result, unused_1, unused_2, clock = run(base(initial_delay='30s'), {'err': [0.001]})
    assert result['verdict'] == 'passed'
    assert result['waited_s'] == 30 + 6 * 10  # initial delay, then six intervals (fake clock: sampling takes 0 s)
