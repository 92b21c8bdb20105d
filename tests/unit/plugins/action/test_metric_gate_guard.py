"""metric_gate and the rollout guard: the lease is renewed before every sample; a fenced generation or a dead
controller stops the bake and leaves the traffic alone. A real local HTTP server stands in for the guard."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.cohort.rollout.plugins.action.metric_gate import ActionModule
from ansible_collections.cohort.rollout.plugins.module_utils import gates, guard_api


class _Guard(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        self.server.renewals.append((self.path, body, self.headers.get('Authorization')))
        status, answer = (409, {'error': 'generation 3 is fenced off'}) if len(self.server.renewals) > \
            self.server.allow else (200, {'generation': body['generation']})
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self.server.reads.append((self.path, self.headers.get('Authorization')))
        data = json.dumps(self.server.state).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)


LEASE_REVERT = dict(generation=4, fence=4, armed=None, last_revert=dict(
    reason='lease_expired', detail={}, phase='canary', generation=3, at='2026-12-01T10:00:00Z',
    epoch=1800000016.5, lease_expires_epoch=1800000015.0))


@pytest.fixture()
def guard_server():
    server = ThreadingHTTPServer(('127.0.0.1', 0), _Guard)
    server.renewals, server.allow, server.reads, server.state = [], 2, [], LEASE_REVERT
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, 'http://127.0.0.1:%d' % server.server_address[1]
    server.shutdown()
    server.server_close()


def guard(url):
    return dict(urls=[url], token='t0ken', generation=3, lease_seconds=15.0, validate_certs=True, timeout=2.0)


def test_renewals_then_fenced_stops_the_bake(guard_server):
    server, url = guard_server
    fenced = []
    assert ActionModule._renew(guard(url), 'canary', fenced, os.getppid()) is None
    assert ActionModule._renew(guard(url), 'canary', fenced, os.getppid()) is None
    stop = ActionModule._renew(guard(url), 'canary', fenced, os.getppid())
    assert stop and 'fenced' in stop and fenced
    # The verdict names why: the guard's own record of its revert, read with the same token.
    assert 'the guard reverted generation 3 of phase canary at 2026-12-01T10:00:00Z: its lease expired' in stop
    assert 'reverted 1.5 s after expiry' in stop
    assert server.reads == [('/state', 'Bearer t0ken')]
    assert [r[0] for r in server.renewals] == ['/renew'] * 3
    assert server.renewals[0][1] == {'generation': 3, 'lease_seconds': 15.0}
    assert server.renewals[0][2] == 'Bearer t0ken'


@pytest.mark.parametrize('state, by, named', [
    (dict(fence=4, armed=None, last_revert=dict(reason='alert', detail=dict(alert='HighErrorRate'), phase='canary',
                                                generation=3, at='T')),
     'guard', 'the guard reverted generation 3 of phase canary at T: the rollback alert HighErrorRate fired'),
    (dict(fence=5, armed=dict(generation=5, phase='ramp'), last_revert=None),
     'superseded', 'a later run armed generation 5 (phase ramp)'),
    (dict(fence=4, armed=None, last_revert=dict(reason='alert', generation=2)),
     'rollback', 'a rollback or a disarm fenced it off'),
])
def test_a_fenced_verdict_names_the_guards_reason_and_who_fenced(guard_server, state, by, named):
    # fenced_by decides the phase's rescue: only a revert by the guard is left for it to complete.
    server, url = guard_server
    server.allow, server.state = 0, state
    fenced = []
    stop = ActionModule._renew(guard(url), 'canary', fenced, os.getppid())
    assert named in stop, stop
    assert fenced == [by]


def test_a_guard_that_cannot_say_why_is_unknown():
    # Nothing listens on port 9: the state cannot be read, so the rescue treats it as it always did.
    assert guard_api.fence_cause('http://127.0.0.1:9', 3, timeout=2.0)[0] == 'unknown'


def test_an_orphaned_worker_renews_nothing(guard_server):
    server, url = guard_server
    fenced = []
    stop = ActionModule._renew(guard(url), 'canary', fenced, controller=os.getppid() + 12345)
    assert 'orphaned worker' in stop and not server.renewals and fenced == ['controller_gone']


def test_an_unreachable_guard_is_a_warning_not_a_stop():
    assert ActionModule._renew(guard('http://127.0.0.1:9'), 'canary', [], os.getppid()) is None


def test_a_stop_ends_the_bake_as_failed_before_the_next_sample():
    spec = gates.normalize_spec(dict(prometheus_url='http://127.0.0.1:9', phase='canary', interval=1, duration=3,
                                     checks=[dict(name='e', query='q', op='lt', threshold=1)]))
    calls = []
    answers = iter([None, None, 'fenced: stop'])
    result = gates.Bake(spec, lambda check: (calls.append(1) or 0.5, ''), emit=lambda line: None,
                        clock=_Clock(), before_sample=lambda: next(answers)).run()
    assert result['verdict'] == 'failed' and result['reasons'] == ['fenced: stop'] and len(calls) == 1


class _Clock(object):
    now = 1800000000.0

    def wall(self):
        return self.now

    def mono(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
