"""A sample's queries run concurrently under a deadline: a hung Prometheus fails the bake on time.

Real sockets, real time: a local HTTP server that accepts connections and never answers (as a
SIGSTOPped Prometheus does), and one that answers every query but a slow one. The Prometheus client
is the real one (module_utils/prometheus.py), through the metric_gate action plugin's Sampler.
"""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from ansible_collections.cohort.rollout.plugins.action.metric_gate import Sampler
from ansible_collections.cohort.rollout.plugins.module_utils import gates


@pytest.fixture()
def hung_server():
    """Accepts TCP connections (the kernel's backlog does) and never reads or answers."""
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    sock.listen(64)
    yield 'http://127.0.0.1:%d' % sock.getsockname()[1]
    sock.close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers['Content-Length'])).decode()
        query = parse_qs(body)['query'][0]
        if 'slow' in query:
            time.sleep(self.server.slow_seconds)
        answer = json.dumps({'status': 'success', 'data': {'resultType': 'vector', 'result': [
            {'metric': {}, 'value': [time.time(), '0.001']}]}}).encode()
        try:
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:
            pass


@pytest.fixture()
def partly_slow_server():
    server = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    server.daemon_threads = True
    server.slow_seconds = 4.0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield 'http://127.0.0.1:%d' % server.server_address[1]
    server.shutdown()
    server.server_close()


def params(url, checks, **over):
    out = dict(prometheus_url=url, validate_certs=True, timeout=3.0, phase='canary', interval=1.0, duration=10.0,
               initial_delay=0, inconclusive_limit=1,
               checks=[dict(name=name, query=query, op='lt', threshold=1.0) for name, query in checks])
    out.update(over)
    return out


def bake(p):
    spec = gates.normalize_spec(p)
    lines = []
    started = time.monotonic()
    result = gates.Bake(spec, Sampler(p), emit=lines.append).run()
    return result, time.monotonic() - started, lines


def test_hung_prometheus_fails_within_limit_plus_one_intervals_whatever_the_number_of_gates(hung_server):
    """Six gates, 3 s HTTP timeout, 1 s interval, inconclusive_limit 1: inconclusive after 2 samples (~2 s).

    One query after another, the same bake took 6 x 3 s = 18 s per sample (issue 14).
    """
    p = params(hung_server, [('g%d' % i, 'up%d' % i) for i in range(6)])
    result, elapsed, lines = bake(p)
    assert result['verdict'] == 'inconclusive', result['reasons']
    assert len(result['samples']) == 2
    assert elapsed < (p['inconclusive_limit'] + 1) * p['interval'] + 0.75, elapsed
    for value in result['samples'][-1]['values'].values():
        assert value['status'] == 'inconclusive' and value['note'].startswith('timeout')
    assert 'timeout' in lines[-2]


def test_deadline_is_the_http_timeout_when_shorter_than_the_interval(hung_server):
    p = params(hung_server, [('a', 'up')], interval=5.0, duration=10.0, timeout=0.5, inconclusive_limit=0)
    spec = gates.normalize_spec(p)
    assert spec['sample_deadline'] == 0.5
    result, elapsed, _lines = bake(p)
    assert result['verdict'] == 'inconclusive' and elapsed < 1.5, elapsed


def test_one_slow_query_does_not_hold_the_others(partly_slow_server):
    p = params(partly_slow_server, [('fast1', 'up'), ('slow', 'slow_query'), ('fast2', 'up')],
               duration=1.0, inconclusive_limit=5)
    result, elapsed, _lines = bake(p)
    first = result['samples'][0]['values']
    assert first['fast1'] == {'value': 0.001, 'status': 'pass'}
    assert first['fast2'] == {'value': 0.001, 'status': 'pass'}
    assert first['slow']['status'] == 'inconclusive' and first['slow']['note'].startswith('timeout')
    # Two samples (t=0, t=1 s), each bounded by the 1 s deadline although the slow query takes 4 s.
    assert len(result['samples']) == 2 and elapsed < 2.75, elapsed
    assert result['verdict'] == 'inconclusive'
    assert result['reasons'] == ['gate slow never returned data (2 inconclusive sample(s))']


def test_a_bake_that_answers_on_time_is_not_affected(partly_slow_server):
    p = params(partly_slow_server, [('a', 'up'), ('b', 'up')], duration=2.0, inconclusive_limit=0)
    result, _elapsed, _lines = bake(p)
    assert result['verdict'] == 'passed' and len(result['samples']) == 3
