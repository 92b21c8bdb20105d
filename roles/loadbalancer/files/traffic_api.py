# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runbook's load balancer API, in front of HAProxy's admin socket.

    POST /config/traffic-weights   {"original": 0.99, "ultra_fast": 0.01}  (JSON whatever the Content-Type;
                                   ?check=true plans without applying)
    GET  /config/traffic-weights   current server weights and pool shares
    GET  /metrics                  JSON: requests, errorRate, latency {p50,p99,p999} (ms), per pool, weights
    GET  /healthz                  200 when HAProxy's admin socket answers (no token needed)

Fencing (with --guard-state, the rollout guard's state file on this host): a POST carrying
``X-Rollout-Generation: N`` is refused (409, nothing changed) when N is below the guard's fence, i.e. when
the phase that armed generation N was superseded or rolled back (an orphaned worker, a second controller).
A POST without the header (an operator's curl, a rollback) is not fenced.

Every endpoint but /healthz requires ``Authorization: Bearer <token>``. The token is
read from the environment variable LB_API_TOKEN or from --token-file, never argv.

Weights are applied by ``traffic.apply_shares`` over ``haproxy.HAProxySocket``, the
module_utils of the cohort.rollout collection that the role ships next to this file:
the same code as the ``cohort.rollout.traffic_weights`` module.

``requests``/``errorRate`` come from HAProxy's own per-server counters (``show stat``:
responses hrsp_1xx..hrsp_5xx and hrsp_other, errors = hrsp_5xx), as the difference
over the last --window seconds (snapshots every --sample-interval seconds). ``latency``
is HAProxy's %Ta (total active time of a request, from its arrival at HAProxy to the
end of the response, in ms) of each request of that window, which HAProxy sends to
this program as a log line over a Unix datagram socket (--log-socket); percentiles
are nearest-rank. With no request in the window the values are null, never 0.

Also: ``traffic_api.py save-state --socket S --state-file F`` writes HAProxy's
``show servers state`` to F (used by the role before a reload or stop).
"""

from __future__ import annotations

import argparse
import collections
import hmac
import json
import math
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:  # on the LB host: the role copies the module_utils next to this file
    import guard_state  # type: ignore[import-not-found]
    import haproxy  # type: ignore[import-not-found]
    import traffic  # type: ignore[import-not-found]
except ImportError:  # in a checkout of the collection
    from ansible_collections.cohort.rollout.plugins.module_utils import guard_state, haproxy, traffic

MAX_BODY = 64 * 1024
MAX_SAMPLES = 200000


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, int(math.ceil(q * len(sorted_values))))
    return sorted_values[rank - 1]


class LatencyWindow:
    """Per-request (time, pool, status, Ta ms) samples from HAProxy's log lines."""

    def __init__(self, window):
        self.window = window
        self.samples = collections.deque(maxlen=MAX_SAMPLES)
        self.lock = threading.Lock()
        self.dropped = 0

    def add_line(self, line, now=None):
        # log-format "cohort-lb %b %s %ST %Ta"
        parts = line.strip().split()
        if len(parts) != 5 or parts[0] != 'cohort-lb':
            self.dropped += 1
            return
        server, status, ta = parts[2:]
        try:
            status, ta = int(status), int(ta)
        except ValueError:
            self.dropped += 1
            return
        with self.lock:
            self.samples.append((now or time.time(), traffic.pool_of(server) if server != '<NOSRV>' else None, status, ta))

    def summary(self, now=None):
        now = now or time.time()
        cutoff = now - self.window
        with self.lock:
            while self.samples and self.samples[0][0] < cutoff:
                self.samples.popleft()
            samples = list(self.samples)
        out = {}
        for pool in [None] + sorted({s[1] for s in samples if s[1]}):
            values = sorted(s[3] for s in samples if pool is None or s[1] == pool)
            out[pool] = {
                'p50': percentile(values, 0.50), 'p99': percentile(values, 0.99), 'p999': percentile(values, 0.999),
                'samples': len(values), 'unit': 'ms', 'measure': 'haproxy Ta (total active time)',
            }
        return out


class Counters:
    """Snapshots of HAProxy's per-server response counters, to report a window."""

    def __init__(self, client, backend, window, interval):
        self.client = client
        self.backend = backend
        self.window = window
        self.interval = interval
        self.snapshots = collections.deque()
        self.lock = threading.Lock()

    def read(self):
        rows = [r for r in self.client.stat() if r.get('pxname') == self.backend]
        if not rows:
            raise haproxy.HAProxyError('HAProxy has no backend %r' % self.backend)
        snap = {}
        for row in rows:
            responses = sum(int(row.get(k) or 0) for k in ('hrsp_1xx', 'hrsp_2xx', 'hrsp_3xx', 'hrsp_4xx', 'hrsp_5xx', 'hrsp_other'))
            snap[row['svname']] = (responses, int(row.get('hrsp_5xx') or 0))
        return snap

    def sample(self):
        snap = self.read()
        now = time.time()
        with self.lock:
            self.snapshots.append((now, snap))
            while len(self.snapshots) > 1 and self.snapshots[1][0] <= now - self.window:
                self.snapshots.popleft()
        return now, snap

    def run(self, stop):
        while not stop.wait(self.interval):
            try:
                self.sample()
            except haproxy.HAProxyError:
                pass

    def window_totals(self):
        """``(seconds covered, {server|BACKEND: (requests, errors)})`` over the window, and totals since start."""
        now, snap = self.sample()
        with self.lock:
            base_time, base = self.snapshots[0]
        delta = {}
        for name, (req, err) in snap.items():
            breq, berr = base.get(name, (0, 0))
            if req < breq or err < berr:  # HAProxy restarted: its counters began again
                breq, berr = 0, 0
            delta[name] = (req - breq, err - berr)
        return now - base_time, delta, snap


def rate(errors, requests):
    return (errors / requests) if requests else None


class Api:
    def __init__(self, args, token):
        self.args = args
        self.token = token.encode('utf-8')
        self.client = haproxy.HAProxySocket(args.socket, timeout=args.timeout)
        self.apply_lock = threading.Lock()
        self.latency = LatencyWindow(args.window)
        self.counters = Counters(self.client, args.backend, args.window, args.sample_interval)

    def authorized(self, header):
        if not header or not header.startswith('Bearer '):
            return False
        return hmac.compare_digest(header[len('Bearer '):].strip().encode('utf-8'), self.token)

    def weights(self):
        weights = self.client.get_weights(self.args.backend)
        return {'backend': self.args.backend, 'weights': dict(sorted(weights.items())), 'shares': traffic.shares_of(weights)}

    def set_weights(self, shares, check, generation=None):
        with self.apply_lock:
            if not self.args.guard_state:
                return self._apply(shares, check)
            # The fence check and the change are atomic with respect to the guard's own revert.
            with guard_state.locked(self.args.guard_state):
                guard_state.check_generation(guard_state.load(self.args.guard_state), generation)
                return self._apply(shares, check)

    def _apply(self, shares, check):
        return traffic.apply_shares(self.client, self.args.backend, shares, check_mode=check,
                                    state_file=self.args.state_file, pools=self.args.pools)

    def metrics(self):
        seconds, delta, totals = self.counters.window_totals()
        lat = self.latency.summary()
        current = self.weights()
        servers = [s for s in delta if s != 'BACKEND']
        pools = {}
        for pool, members in traffic.group_servers(servers).items():
            req = sum(delta[s][0] for s in members)
            err = sum(delta[s][1] for s in members)
            pools[pool] = {
                'requests': req, 'errors': err, 'errorRate': rate(err, req),
                'latency': lat.get(pool, {'p50': None, 'p99': None, 'p999': None, 'samples': 0, 'unit': 'ms'}),
                'weight': sum(current['weights'].get(s, 0) for s in members),
                'share': current['shares'].get(pool),
                'servers': {s: {'requests': delta[s][0], 'errors': delta[s][1], 'weight': current['weights'].get(s)} for s in members},
            }
        b_req, b_err = delta.get('BACKEND', (0, 0))
        t_req, t_err = totals.get('BACKEND', (0, 0))
        return {
            'source': 'haproxy', 'backend': self.args.backend,
            'window_seconds': round(seconds, 3),
            'requests': b_req, 'errors': b_err, 'errorRate': rate(b_err, b_req),
            'latency': lat[None],
            'weights': current['weights'], 'shares': current['shares'],
            'pools': pools,
            'totals': {'requests': t_req, 'errors': t_err, 'errorRate': rate(t_err, t_req)},
        }


class Handler(BaseHTTPRequestHandler):
    server_version = 'cohort-lb-api/1'
    protocol_version = 'HTTP/1.1'
    api = None  # set by serve()

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        sys.stderr.write('%s %s\n' % (self.address_string(), format % args))

    def reply(self, code, payload):
        body = (json.dumps(payload, sort_keys=True) + '\n').encode('utf-8')
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Cache-Control', 'no-store')
        self.end_headers()
        self.wfile.write(body)

    def route(self):
        parts = urlsplit(self.path)
        return parts.path.rstrip('/') or '/', parse_qs(parts.query)

    def guard(self):
        if not self.api.authorized(self.headers.get('Authorization')):
            self.reply(401, {'error': 'missing or wrong bearer token (Authorization: Bearer <lb_api_token>)'})
            return False
        return True

    def do_GET(self):  # noqa: N802 - http.server naming
        path, _query = self.route()
        try:
            if path == '/healthz':
                self.api.client.get_weights(self.api.args.backend)
                self.reply(200, {'status': 'ok'})
                return
            if path not in ('/config/traffic-weights', '/metrics'):
                self.reply(404, {'error': 'no such endpoint: %s' % path})
                return
            if not self.guard():
                return
            self.reply(200, self.api.weights() if path == '/config/traffic-weights' else self.api.metrics())
        except haproxy.HAProxyError as exc:
            self.reply(503, {'error': str(exc)})

    def do_POST(self):  # noqa: N802 - http.server naming
        path, query = self.route()
        if path != '/config/traffic-weights':
            self.reply(404, {'error': 'no such endpoint: %s' % path})
            return
        if not self.guard():
            return
        try:
            length = int(self.headers.get('Content-Length', ''))
        except ValueError:
            self.reply(411, {'error': 'Content-Length required'})
            return
        if length < 0 or length > MAX_BODY:
            self.reply(413, {'error': 'body larger than %d bytes' % MAX_BODY})
            return
        raw = self.rfile.read(length)
        try:
            shares = json.loads(raw.decode('utf-8'), parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            self.reply(400, {'error': 'body is not valid JSON (%s); send {"original": 0.99, "ultra_fast": 0.01}' % exc})
            return
        check = query.get('check', ['false'])[0].lower() in ('1', 'true', 'yes')
        try:
            generation = guard_state.parse_generation(self.headers.get('X-Rollout-Generation'))
        except ValueError as exc:
            self.reply(400, {'error': 'X-Rollout-Generation: %s' % exc})
            return
        try:
            result = self.api.set_weights(shares, check, generation)
        except guard_state.Fenced as exc:
            sys.stderr.write('traffic_api: refused, fenced: %s\n' % exc)
            self.reply(409, {'error': str(exc), 'fenced': True})
            return
        except guard_state.GuardStateError as exc:
            self.reply(503, {'error': str(exc)})
            return
        except traffic.TrafficError as exc:
            self.reply(400, {'error': str(exc)})
            return
        except (traffic.ApplyError, haproxy.HAProxyError) as exc:
            self.reply(502, {'error': str(exc)})
            return
        result['check'] = check
        self.reply(200, result)


def _reject_constant(name):
    raise ValueError('%s is not a number' % name)


def log_receiver(path, window, stop):
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.settimeout(0.5)
    while not stop.is_set():
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        window.add_line(data.decode('utf-8', 'replace'))
    sock.close()


def read_token(args):
    if args.token_file:
        with open(args.token_file, encoding='utf-8') as handle:
            token = handle.read().strip()
    else:
        token = os.environ.get('LB_API_TOKEN', '').strip()
    if not token:
        raise SystemExit('traffic_api: no token: set LB_API_TOKEN or --token-file')
    return token


def serve(args):
    api = Api(args, read_token(args))
    stop = threading.Event()
    threads = [threading.Thread(target=api.counters.run, args=(stop,), daemon=True)]
    if args.log_socket:
        threads.append(threading.Thread(target=log_receiver, args=(args.log_socket, api.latency, stop), daemon=True))
    try:
        api.counters.sample()
    except haproxy.HAProxyError as exc:
        sys.stderr.write('traffic_api: HAProxy not answering yet: %s\n' % exc)
    for thread in threads:
        thread.start()
    handler = type('BoundHandler', (Handler,), {'api': api, 'timeout': args.timeout})
    httpd = ThreadingHTTPServer((args.listen, args.port), handler)
    httpd.daemon_threads = True
    sys.stderr.write('traffic_api: listening on %s:%d, backend %s, socket %s\n' % (args.listen, args.port, args.backend, args.socket))
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        httpd.server_close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    sub = parser.add_subparsers(dest='command')
    srv = sub.add_parser('serve', help='serve the API (default)')
    srv.add_argument('--listen', default='127.0.0.1')
    srv.add_argument('--port', type=int, default=18090)
    srv.add_argument('--socket', required=True, help='HAProxy admin socket')
    srv.add_argument('--backend', default='analyzers')
    srv.add_argument('--pools', type=lambda v: [p for p in v.split(',') if p], default=['original', 'ultra_fast'],
                     help='comma-separated pools that exist even without servers')
    srv.add_argument('--state-file', help='save HAProxy server state here after each change')
    srv.add_argument('--log-socket', help='Unix datagram socket receiving HAProxy request logs')
    srv.add_argument('--window', type=float, default=300.0, help='seconds covered by /metrics')
    srv.add_argument('--sample-interval', type=float, default=5.0)
    srv.add_argument('--timeout', type=float, default=10.0)
    srv.add_argument('--token-file', help='file holding the bearer token (else LB_API_TOKEN)')
    srv.add_argument('--guard-state', help="the rollout guard's state file: refuse fenced generations")
    save = sub.add_parser('save-state', help="write HAProxy's server state file")
    save.add_argument('--socket', required=True)
    save.add_argument('--state-file', required=True)
    args = parser.parse_args(argv)
    if args.command == 'save-state':
        try:
            haproxy.HAProxySocket(args.socket).save_state(args.state_file)
        except haproxy.HAProxyError as exc:
            raise SystemExit('traffic_api: %s' % exc) from exc
        return
    if args.command != 'serve':
        parser.error('a command is required: serve or save-state')
    serve(args)


if __name__ == '__main__':
    main()
