# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout guard: reverts the traffic by itself when the controller is gone or an alert fires.

A phase arms the guard before it moves traffic, with the phase name, the fallback shares, a lease and the
alerts that are rollback triggers of that phase; the gate renews the lease at every sample; the phase disarms
it when it passes or rolls back. The guard puts the traffic back to the fallback shares, through the same
code as the weights API (``traffic.apply_shares`` over ``haproxy.HAProxySocket``), when

* the lease expires (the controller died: machine, pod, or the ``ansible-playbook`` process), or
* Alertmanager posts a firing alert that the armed phase declared as a rollback trigger (``/alertmanager``).

    POST /arm         {"phase", "fallback": {pool: share}, "lease_seconds", "alerts": [...], "run": {...},
                       "generation" (optional, > the current one)}  -> {"generation", "lease_expires_at"}
    POST /renew       {"generation", "lease_seconds" (optional)}
    POST /disarm      {"generation", "outcome": "passed" | "rolled_back"}
    POST /fence       {"reason"}   a rollback: disarm whatever is armed, fence its generation off
    POST /reconciled  {"generation"}  the controller completed the rollback of a guard revert
    POST /alertmanager   Alertmanager webhook payload (version 4)
    GET  /state       the state;  GET /journal?since=<epoch>  the journal's entries
    GET  /metrics     Prometheus text format (no token: nothing secret);  GET /healthz

Every endpoint but /metrics and /healthz requires ``Authorization: Bearer <token>`` (LB_API_TOKEN or
--token-file, never argv). State: one JSON file (0600, ``guard_state.py``), so a restarted guard comes back
armed, or reverts at once if the lease expired meanwhile. Every decision, refusal included, is appended to a
JSON-lines journal (0600). Fencing: see ``guard_state.py``; the weights API enforces the same fence.
"""

from __future__ import annotations

import argparse
import calendar
import hmac
import json
import os
import re
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

MAX_BODY = 256 * 1024
MAX_LEASE = 8 * 86400
PHASE_RE = re.compile(r'^[a-z][a-z0-9_]*$')
OUTCOMES = ('passed', 'rolled_back')


_STARTS_AT = re.compile(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$')


def _fired_before_arm(alert, armed_epoch):
    """True when the alert's startsAt (RFC 3339, Alertmanager's nanoseconds) is before the arm.

    An alert without a readable startsAt counts as new: the guard then reverts (fail safe).
    """
    match = _STARTS_AT.match(str(alert.get('startsAt') or ''))
    if armed_epoch is None or not match:
        return False
    epoch = calendar.timegm(time.strptime(match.group(1), '%Y-%m-%dT%H:%M:%S'))
    epoch += float('0.' + match.group(2)) if match.group(2) else 0.0
    if match.group(3) != 'Z':
        sign = 1 if match.group(3)[0] == '+' else -1
        hours, minutes = match.group(3)[1:].split(':')
        epoch -= sign * (int(hours) * 3600 + int(minutes) * 60)
    return epoch < float(armed_epoch)


class Refused(Exception):
    """A request the guard refuses; nothing changed. ``status`` is the HTTP status."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def iso(epoch):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(epoch))


class Guard(object):
    """The guard's logic, without HTTP: every public method is one decision, journaled."""

    def __init__(self, state_path, journal_path, client, backend, pools, state_file=None, clock=time.time):
        self.state_path = state_path
        self.journal_path = journal_path
        self.client = client
        self.backend = backend
        self.pools = list(pools)
        self.server_state_file = state_file
        self.clock = clock
        self.mutex = threading.Lock()
        self.reverts = {}
        self.refusals = {}
        with guard_state.locked(self.state_path):
            self.state = guard_state.load(self.state_path)
        self.journal('started', armed=self.state.get('armed'), generation=self.state['generation'],
                     fence=self.state['fence'])

    # -- journal and state ------------------------------------------------------------------------
    def journal(self, event, **fields):
        now = self.clock()
        entry = dict(at=iso(now), epoch=round(now, 3), event=event)
        entry.update(fields)
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, 'a', encoding='utf-8') as handle:
            handle.write(json.dumps(entry, sort_keys=True) + '\n')
        return entry

    def refuse(self, status, event, message, **fields):
        self.refusals[event] = self.refusals.get(event, 0) + 1
        self.journal('refused', request=event, error=message, **fields)
        raise Refused(status, message)

    def _save(self):
        self.state = guard_state.save(self.state_path, self.state)

    def journal_since(self, since):
        entries = []
        try:
            with open(self.journal_path, 'r', encoding='utf-8') as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if entry.get('epoch', 0) >= since:
                        entries.append(entry)
        except FileNotFoundError:
            pass
        return entries

    def snapshot(self):
        with self.mutex:
            state = json.loads(json.dumps(self.state))
        armed = state.get('armed')
        if armed:
            armed['lease_remaining_s'] = round(armed['lease_expires_epoch'] - self.clock(), 3)
        return state

    # -- requests -----------------------------------------------------------------------------------
    def _validate_fallback(self, fallback):
        if not isinstance(fallback, dict):
            return 'fallback must be a mapping of pool to share, e.g. {"original": 1, "ultra_fast": 0}'
        unknown = sorted(set(fallback) - set(self.pools))
        missing = sorted(set(self.pools) - set(fallback))
        if unknown or missing:
            return 'fallback must give a share to each pool %s (unknown: %s, missing: %s)' % (
                ', '.join(self.pools), ', '.join(unknown) or 'none', ', '.join(missing) or 'none')
        try:
            traffic.check_shares(fallback)
        except traffic.TrafficError as exc:
            return 'fallback: %s' % exc
        return None

    def arm(self, body):
        with self.mutex:
            problems = []
            phase = body.get('phase')
            if not isinstance(phase, str) or not PHASE_RE.match(phase):
                problems.append('phase must be a phase name such as canary, got %r' % (phase,))
            problem = self._validate_fallback(body.get('fallback'))
            if problem:
                problems.append(problem)
            lease = body.get('lease_seconds')
            if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not 0 < lease <= MAX_LEASE:
                problems.append('lease_seconds must be a number in (0, %d], got %r' % (MAX_LEASE, lease))
            alerts = body.get('alerts', [])
            if not isinstance(alerts, list) or not all(isinstance(a, str) and a for a in alerts):
                problems.append('alerts must be a list of alert names, got %r' % (alerts,))
            try:
                requested = guard_state.parse_generation(body.get('generation'))
            except ValueError as exc:
                problems.append(str(exc))
                requested = None
            if problems:
                self.refuse(400, 'arm', '; '.join(problems))
            current = int(self.state['generation'])
            if requested is not None and requested <= current:
                self.refuse(409, 'arm', 'generation %d is not newer than the guard\'s generation %d' % (requested, current),
                            generation=requested)
            generation = requested or current + 1
            now = self.clock()
            previous = self.state.get('armed')
            with guard_state.locked(self.state_path):
                self.state['generation'] = generation
                self.state['fence'] = generation
                self.state['armed'] = dict(
                    phase=phase, fallback=dict((k, float(v)) for k, v in body['fallback'].items()),
                    lease_seconds=float(lease), lease_expires_epoch=round(now + lease, 3),
                    lease_expires_at=iso(now + lease), alerts=list(alerts), run=body.get('run'),
                    generation=generation, armed_epoch=round(now, 3), armed_at=iso(now))
                self.state['revert_pending'] = None
                self._save()
            self.journal('armed', phase=phase, generation=generation, lease_seconds=float(lease),
                         fallback=self.state['armed']['fallback'], alerts=list(alerts), run=body.get('run'),
                         superseded=previous['generation'] if previous else None)
            return dict(generation=generation, lease_expires_at=self.state['armed']['lease_expires_at'],
                        armed=self.state['armed'])

    def _armed_for(self, body, request):
        try:
            generation = guard_state.parse_generation(body.get('generation'))
        except ValueError as exc:
            self.refuse(400, request, str(exc))
        if generation is None:
            self.refuse(400, request, 'generation is required')
        armed = self.state.get('armed')
        try:
            guard_state.check_generation(self.state, generation)
        except guard_state.Fenced as exc:
            self.refuse(409, request, str(exc), generation=generation)
        if not armed:
            self.refuse(409, request, 'the guard is not armed (generation %d): nothing to %s' % (generation, request),
                        generation=generation)
        if armed['generation'] != generation:
            self.refuse(409, request, 'generation %d is not the armed one (%d)' % (generation, armed['generation']),
                        generation=generation)
        return armed, generation

    def renew(self, body):
        with self.mutex:
            armed, generation = self._armed_for(body, 'renew')
            lease = body.get('lease_seconds', armed['lease_seconds'])
            if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not 0 < lease <= MAX_LEASE:
                self.refuse(400, 'renew', 'lease_seconds must be a number in (0, %d], got %r' % (MAX_LEASE, lease))
            now = self.clock()
            with guard_state.locked(self.state_path):
                armed.update(lease_seconds=float(lease), lease_expires_epoch=round(now + lease, 3),
                             lease_expires_at=iso(now + lease))
                self._save()
            self.journal('renewed', phase=armed['phase'], generation=generation,
                         lease_expires_at=armed['lease_expires_at'])
            return dict(generation=generation, lease_expires_at=armed['lease_expires_at'])

    def disarm(self, body):
        with self.mutex:
            outcome = body.get('outcome')
            if outcome not in OUTCOMES:
                self.refuse(400, 'disarm', 'outcome must be one of %s, got %r' % (', '.join(OUTCOMES), outcome))
            if not self.state.get('armed'):
                try:
                    generation = guard_state.parse_generation(body.get('generation'))
                except ValueError as exc:
                    self.refuse(400, 'disarm', str(exc))
                # Idempotent: already disarmed (or reverted by the guard, which disarms).
                return dict(changed=False, generation=generation, state=self.state)
            armed, generation = self._armed_for(body, 'disarm')
            with guard_state.locked(self.state_path):
                self.state['armed'] = None
                if outcome == 'rolled_back':
                    self.state['fence'] = generation + 1
                self._save()
            self.journal('disarmed', phase=armed['phase'], generation=generation, outcome=outcome,
                         fence=self.state['fence'])
            return dict(changed=True, generation=generation, fence=self.state['fence'])

    def fence(self, body):
        """A rollback: whatever is armed is disarmed and its generation fenced off (no generation needed)."""
        with self.mutex:
            reason = body.get('reason') or 'rollback'
            armed = self.state.get('armed')
            if not armed and int(self.state['fence']) > int(self.state['generation']):
                return dict(changed=False, fence=self.state['fence'], disarmed=None)
            with guard_state.locked(self.state_path):
                self.state['armed'] = None
                self.state['revert_pending'] = None
                self.state['fence'] = int(self.state['generation']) + 1
                self._save()
            self.journal('fenced', reason=str(reason)[:300], fence=self.state['fence'],
                         disarmed=armed['phase'] if armed else None)
            return dict(changed=True, fence=self.state['fence'], disarmed=armed)

    def reconciled(self, body):
        with self.mutex:
            last = self.state.get('last_revert')
            try:
                generation = guard_state.parse_generation(body.get('generation'))
            except ValueError as exc:
                self.refuse(400, 'reconciled', str(exc))
            if not last or last.get('generation') != generation:
                self.refuse(409, 'reconciled', 'no guard revert of generation %s to reconcile' % generation)
            if last.get('reconciled'):
                return dict(changed=False, last_revert=last)
            with guard_state.locked(self.state_path):
                last.update(reconciled=True, reconciled_at=iso(self.clock()),
                            reconciled_by=body.get('by') if isinstance(body.get('by'), (str, dict)) else None)
                self._save()
            self.journal('reconciled', generation=generation, phase=last.get('phase'), by=last.get('reconciled_by'))
            return dict(changed=True, last_revert=last)

    def alert(self, body):
        """Alertmanager's webhook: a firing trigger of the armed phase reverts (see _fired_before_arm)."""
        with self.mutex:
            alerts = body.get('alerts') if isinstance(body, dict) else None
            if not isinstance(alerts, list) or not alerts or not all(
                    isinstance(a, dict) and isinstance(a.get('labels'), dict) and a['labels'].get('alertname')
                    and a.get('status') in ('firing', 'resolved') for a in alerts):
                self.refuse(400, 'alertmanager', 'not an Alertmanager webhook payload: needs "alerts", a list of '
                            '{"status": "firing"|"resolved", "labels": {"alertname": ...}}')
            firing = [a['labels'] for a in alerts if a['status'] == 'firing']
            names = sorted(set(str(labels['alertname']) for labels in firing))
            armed = self.state.get('armed')
            if not firing:
                self.journal('alert_ignored', why='only resolved alerts', alerts=names)
                return dict(reverted=False, why='only resolved alerts')
            if not armed:
                self.refuse(409, 'alertmanager', 'alert(s) %s: no phase is armed, nothing to revert'
                            % ', '.join(names), alerts=names)
            triggers = [a for a in alerts if a['status'] == 'firing' and a['labels']['alertname'] in armed['alerts']
                        and a['labels'].get('phase', armed['phase']) == armed['phase']]
            if not triggers:
                self.refuse(409, 'alertmanager', 'alert(s) %s are not rollback triggers of the armed phase %s (%s)'
                            % (', '.join(names), armed['phase'], ', '.join(armed['alerts']) or 'none'),
                            alerts=names, phase=armed['phase'])
            fresh = [a for a in triggers if not _fired_before_arm(a, armed.get('armed_epoch'))]
            if not fresh:
                # Still firing from an earlier run of the phase (Alertmanager re-sends until it resolves):
                # not about this run. This run's own gates judge it; a new alert fires with a new startsAt.
                stale = sorted(set(str(a['labels']['alertname']) for a in triggers))
                self.journal('alert_ignored', why='firing since before this arm', alerts=stale)
                return dict(reverted=False, why='alert(s) %s fired before this arm' % ', '.join(stale))
            trigger = dict((k, str(v)) for k, v in fresh[0]['labels'].items())
            return self._revert('alert', detail=dict(alert=trigger['alertname'], labels=trigger))

    # -- the revert ----------------------------------------------------------------------------------
    def _revert(self, reason, detail=None):
        """Put the fallback shares back (mutex held). On failure: keep trying at every tick."""
        armed = self.state['armed']
        started = self.clock()
        try:
            with guard_state.locked(self.state_path):
                result = traffic.apply_shares(self.client, self.backend, armed['fallback'],
                                              state_file=self.server_state_file, pools=self.pools)
                now = self.clock()
                self.state['last_revert'] = dict(
                    reason=reason, detail=detail or {}, phase=armed['phase'], generation=armed['generation'],
                    run=armed.get('run'), fallback=armed['fallback'], shares_before=result['before']['shares'],
                    shares=result['after']['shares'], changed=result['changed'], at=iso(now),
                    epoch=round(now, 3), lease_expires_epoch=armed['lease_expires_epoch'],
                    took_s=round(now - started, 3), reconciled=False)
                self.state['armed'] = None
                self.state['revert_pending'] = None
                self.state['fence'] = armed['generation'] + 1
                self._save()
        except (traffic.TrafficError, traffic.ApplyError, haproxy.HAProxyError, OSError) as exc:
            pending = self.state.get('revert_pending') or {}
            with guard_state.locked(self.state_path):
                self.state['revert_pending'] = dict(reason=reason, detail=detail or {}, error=str(exc)[:300],
                                                    since=pending.get('since') or iso(started))
                self._save()
            self.journal('revert_failed', reason=reason, phase=armed['phase'], generation=armed['generation'],
                         error=str(exc)[:300])
            return dict(reverted=False, error=str(exc))
        self.reverts[reason] = self.reverts.get(reason, 0) + 1
        self.journal('reverted', reason=reason, detail=detail or {}, phase=armed['phase'],
                     generation=armed['generation'], shares=self.state['last_revert']['shares'],
                     changed=self.state['last_revert']['changed'], fence=self.state['fence'],
                     late_s=round(self.state['last_revert']['epoch'] - armed['lease_expires_epoch'], 3)
                     if reason == 'lease_expired' else None)
        return dict(reverted=True, last_revert=self.state['last_revert'])

    def tick(self):
        """Revert when the lease has expired, or retry a revert that failed."""
        with self.mutex:
            armed = self.state.get('armed')
            if not armed:
                return None
            pending = self.state.get('revert_pending')
            if pending:
                return self._revert(pending['reason'], pending.get('detail'))
            if self.clock() >= armed['lease_expires_epoch']:
                return self._revert('lease_expired', dict(lease_expires_at=armed['lease_expires_at']))
        return None

    def metrics(self):
        state = self.snapshot()
        armed = state.get('armed')
        lines = [
            '# HELP cohort_guard_armed 1 while a phase has armed the guard.',
            '# TYPE cohort_guard_armed gauge',
            'cohort_guard_armed{phase="%s"} %d' % (armed['phase'] if armed else '', 1 if armed else 0),
            '# HELP cohort_guard_generation The newest arm generation.',
            '# TYPE cohort_guard_generation gauge',
            'cohort_guard_generation %d' % state['generation'],
            '# HELP cohort_guard_fence The lowest generation still allowed to move traffic.',
            '# TYPE cohort_guard_fence gauge',
            'cohort_guard_fence %d' % state['fence'],
            '# HELP cohort_guard_lease_remaining_seconds Seconds until the lease expires (0 when disarmed).',
            '# TYPE cohort_guard_lease_remaining_seconds gauge',
            'cohort_guard_lease_remaining_seconds %g' % (max(0.0, armed['lease_remaining_s']) if armed else 0),
            '# HELP cohort_guard_revert_pending 1 while a revert failed and is being retried.',
            '# TYPE cohort_guard_revert_pending gauge',
            'cohort_guard_revert_pending %d' % (1 if state.get('revert_pending') else 0),
            '# HELP cohort_guard_unreconciled_revert 1 while a revert by the guard awaits the controller.',
            '# TYPE cohort_guard_unreconciled_revert gauge',
            'cohort_guard_unreconciled_revert %d' % (
                1 if state.get('last_revert') and not state['last_revert'].get('reconciled') else 0),
            '# HELP cohort_guard_reverts_total Reverts by the guard since it started, by reason.',
            '# TYPE cohort_guard_reverts_total counter',
        ]
        for reason in ('lease_expired', 'alert'):
            lines.append('cohort_guard_reverts_total{reason="%s"} %d' % (reason, self.reverts.get(reason, 0)))
        lines += ['# HELP cohort_guard_refused_total Requests refused since the guard started, by request.',
                  '# TYPE cohort_guard_refused_total counter']
        for request in sorted(set(['arm', 'renew', 'disarm', 'alertmanager', 'auth']) | set(self.refusals)):
            lines.append('cohort_guard_refused_total{request="%s"} %d' % (request, self.refusals.get(request, 0)))
        return '\n'.join(lines) + '\n'


class Handler(BaseHTTPRequestHandler):
    server_version = 'cohort-rollout-guard/1'
    protocol_version = 'HTTP/1.1'
    guard = None  # set by serve()
    token = b''

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        sys.stderr.write('%s %s\n' % (self.address_string(), format % args))

    def reply(self, code, payload, content_type='application/json'):
        if content_type == 'application/json':
            body = (json.dumps(payload, sort_keys=True) + '\n').encode('utf-8')
        else:
            body = payload.encode('utf-8')
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Cache-Control', 'no-store')
        self.end_headers()
        self.wfile.write(body)

    def authorized(self):
        header = self.headers.get('Authorization') or ''
        if header.startswith('Bearer ') and hmac.compare_digest(header[7:].strip().encode('utf-8'), self.token):
            return True
        self.guard.refusals['auth'] = self.guard.refusals.get('auth', 0) + 1
        self.guard.journal('refused', request='auth', path=urlsplit(self.path).path,
                           error='missing or wrong bearer token')
        self.reply(401, {'error': 'missing or wrong bearer token (Authorization: Bearer <token>)'})
        return False

    def do_GET(self):  # noqa: N802 - http.server naming
        parts = urlsplit(self.path)
        path = parts.path.rstrip('/') or '/'
        if path == '/healthz':
            self.reply(200, {'status': 'ok'})
            return
        if path == '/metrics':
            self.reply(200, self.guard.metrics(), content_type='text/plain; version=0.0.4')
            return
        if path not in ('/state', '/journal'):
            self.reply(404, {'error': 'no such endpoint: %s' % path})
            return
        if not self.authorized():
            return
        if path == '/state':
            self.reply(200, self.guard.snapshot())
            return
        try:
            since = float(parse_qs(parts.query).get('since', ['0'])[0])
        except ValueError:
            self.reply(400, {'error': 'since must be epoch seconds'})
            return
        self.reply(200, {'entries': self.guard.journal_since(since)})

    def do_POST(self):  # noqa: N802 - http.server naming
        path = urlsplit(self.path).path.rstrip('/')
        actions = {'/arm': self.guard.arm, '/renew': self.guard.renew, '/disarm': self.guard.disarm,
                   '/fence': self.guard.fence, '/reconciled': self.guard.reconciled, '/alertmanager': self.guard.alert}
        if path not in actions:
            self.reply(404, {'error': 'no such endpoint: %s' % path})
            return
        if not self.authorized():
            return
        try:
            length = int(self.headers.get('Content-Length', ''))
        except ValueError:
            self.reply(411, {'error': 'Content-Length required'})
            return
        if length < 0 or length > MAX_BODY:
            self.reply(413, {'error': 'body larger than %d bytes' % MAX_BODY})
            return
        try:
            body = json.loads(self.rfile.read(length).decode('utf-8') or '{}')
            if not isinstance(body, dict):
                raise ValueError('expected a JSON object')
        except (ValueError, UnicodeDecodeError) as exc:
            request = path.lstrip('/')
            self.guard.refusals[request] = self.guard.refusals.get(request, 0) + 1
            self.guard.journal('refused', request=request, error='body is not a JSON object: %s' % exc)
            self.reply(400, {'error': 'body is not a JSON object: %s' % exc})
            return
        try:
            self.reply(200, actions[path](body))
        except Refused as exc:
            self.reply(exc.status, {'error': exc.message})
        except guard_state.GuardStateError as exc:
            self.reply(500, {'error': str(exc)})


def read_token(args):
    if args.token_file:
        with open(args.token_file, encoding='utf-8') as handle:
            token = handle.read().strip()
    else:
        token = os.environ.get('LB_API_TOKEN', '').strip()
    if not token:
        raise SystemExit('rollout_guard: no token: set LB_API_TOKEN or --token-file')
    return token


def ticker(guard, stop, every):
    while not stop.wait(every):
        try:
            guard.tick()
        except Exception as exc:  # pylint: disable=broad-except
            # The loop must outlive any one failure: it is what reverts a dead controller's traffic.
            sys.stderr.write('rollout_guard: tick failed: %s\n' % exc)


def serve(args):
    token = read_token(args)
    client = haproxy.HAProxySocket(args.socket, timeout=args.timeout)
    guard = Guard(args.state, args.journal, client, args.backend, args.pools, state_file=args.server_state_file)
    stop = threading.Event()
    guard.tick()  # a lease that expired while the guard was down reverts now
    thread = threading.Thread(target=ticker, args=(guard, stop, args.tick), daemon=True)
    thread.start()
    handler = type('BoundHandler', (Handler,), {'guard': guard, 'token': token.encode('utf-8'), 'timeout': 30})
    httpd = ThreadingHTTPServer((args.listen, args.port), handler)
    httpd.daemon_threads = True
    sys.stderr.write('rollout_guard: listening on %s:%d, backend %s, state %s\n'
                     % (args.listen, args.port, args.backend, args.state))
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        httpd.server_close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--listen', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=18091)
    parser.add_argument('--socket', required=True, help='HAProxy admin socket')
    parser.add_argument('--backend', default='analyzers')
    parser.add_argument('--pools', type=lambda v: [p for p in v.split(',') if p], default=['original', 'ultra_fast'])
    parser.add_argument('--state', required=True, help='state file (0600)')
    parser.add_argument('--journal', required=True, help='JSON-lines journal (0600)')
    parser.add_argument('--server-state-file', help="save HAProxy's server state here after a revert")
    parser.add_argument('--tick', type=float, default=0.5, help='seconds between lease checks')
    parser.add_argument('--timeout', type=float, default=10.0)
    parser.add_argument('--token-file', help='file holding the bearer token (else LB_API_TOKEN)')
    serve(parser.parse_args(argv))


if __name__ == '__main__':
    main()
