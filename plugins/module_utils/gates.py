# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gate evaluation: pure logic, no HTTP and no Ansible at run time.

A gate run ("bake") takes samples every ``interval`` for ``duration`` after an
``initial_delay``. Each sample asks every check for one value and classifies
it: ``pass``, ``fail`` or ``inconclusive`` (no data, NaN, +-Inf, an HTTP or
connection error, several series). Rules, fail-closed:

* a check whose failing samples exceed its ``failure_limit`` trips the gate at
  once: verdict ``failed``, no waiting out the bake;
* a check whose inconclusive samples exceed ``inconclusive_limit`` stops the
  bake: verdict ``inconclusive``;
* a check that never produced one conclusive sample is ``inconclusive``;
* too little traffic (``min_requests``) at the end is ``inconclusive``;
* reaching ``max_runtime`` is ``inconclusive``;
* only a bake with none of the above is ``passed``.

The checks of one sample are queried concurrently, with a deadline of
``sample_deadline`` = min(``interval``, the HTTP ``timeout``): a check with no
answer by then is inconclusive (``timeout``) and the sample goes on. A hung
Prometheus therefore fails the phase within (``inconclusive_limit`` + 1)
intervals whatever the number of gates (plus one timeout for the check of the
queries before the bake).

A check with ``sustain`` (seconds) trips only when its consecutive failing
samples cover that window, as an alert's ``for:`` does: more than
ceil(sustain / interval) failing samples in a row (a passing or inconclusive
sample ends the run). Such a check has no count-based ``failure_limit``.

Sampling, sleeping, the clock and output are injected, so the whole loop is
unit-tested with a fake clock in no real time.
"""

from __future__ import annotations

import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

from ansible_collections.cohort.rollout.plugins.module_utils import durations
from ansible_collections.cohort.rollout.plugins.module_utils import judge as judge_utils
from ansible_collections.cohort.rollout.plugins.module_utils.prometheus import redact_url
from ansible_collections.cohort.rollout.plugins.module_utils.times import iso

OPS = {
    'lt': ('<', lambda v, t: v < t),
    'le': ('<=', lambda v, t: v <= t),
    'gt': ('>', lambda v, t: v > t),
    'ge': ('>=', lambda v, t: v >= t),
}
NEGATED = {'lt': '>=', 'le': '>', 'gt': '<=', 'ge': '<'}
SOURCES = ('prometheus', 'json')
DEFAULT_INCONCLUSIVE_LIMIT = 0
MAX_SAMPLES = 100000

# The argument spec of cohort.rollout.metric_gate, shared by the action plugin
# (which validates with it) and the documentation module (which sanity checks
# against DOCUMENTATION).
CHECK_OPTIONS = dict(
    name=dict(type='str', required=True),
    source=dict(type='str', default='prometheus', choices=list(SOURCES)),
    query=dict(type='str'),
    url=dict(type='str'),
    path=dict(type='str'),
    headers=dict(type='dict', default={}, no_log=True),  # may hold Authorization
    token=dict(type='str', no_log=True),
    op=dict(type='str', required=True, choices=sorted(OPS)),
    threshold=dict(type='float', required=True),
    failure_limit=dict(type='int', default=0),
    inconclusive_limit=dict(type='int'),
    sustain=dict(type='raw', default=0),
)

ARGUMENT_SPEC = dict(
    prometheus_url=dict(type='str'),
    prometheus_username=dict(type='str'),
    prometheus_password=dict(type='str', no_log=True),
    prometheus_token=dict(type='str', no_log=True),
    validate_certs=dict(type='bool', default=True),
    ca_path=dict(type='path'),
    timeout=dict(type='float', default=10.0),
    checks=dict(type='list', elements='dict', required=True, options=CHECK_OPTIONS),
    interval=dict(type='raw', required=True),
    duration=dict(type='raw', required=True),
    initial_delay=dict(type='raw', default=0),
    inconclusive_limit=dict(type='int', default=DEFAULT_INCONCLUSIVE_LIMIT),
    min_requests=dict(type='dict', options=dict(
        query=dict(type='str', required=True),
        threshold=dict(type='float', required=True),
    )),
    phase=dict(type='str', required=True),
    report_path=dict(type='path'),
    max_runtime=dict(type='raw'),
    extra_report=dict(type='dict', default={}),
    judge=dict(type='dict', options=judge_utils.JUDGE_OPTIONS),
    validate_only=dict(type='bool', default=False),
    revert=dict(type='dict', options=dict(
        api_url=dict(type='str', required=True),
        api_token=dict(type='str', no_log=True),
        shares=dict(type='dict', required=True),
        validate_certs=dict(type='bool', default=True),
        timeout=dict(type='float', default=5.0),
        generation=dict(type='int'),
    )),
    guard=dict(type='dict', options=dict(
        urls=dict(type='list', elements='str', required=True),
        token=dict(type='str', no_log=True),
        generation=dict(type='int', required=True),
        lease_seconds=dict(type='float'),
        validate_certs=dict(type='bool', default=True),
        timeout=dict(type='float', default=2.0),
    )),
)
MUTUALLY_EXCLUSIVE = [['prometheus_token', 'prometheus_username']]
REQUIRED_TOGETHER = [['prometheus_username', 'prometheus_password']]


class GateSpecError(ValueError):
    """The gate's arguments are invalid; nothing has been queried or written."""


def parse_duration(value, name):
    """Seconds in a number or a duration string (module_utils/durations.py: the one grammar)."""
    try:
        return durations.parse_duration(value, name)
    except durations.DurationError as exc:
        raise GateSpecError(str(exc))


format_duration = durations.format_duration


def normalize_spec(params):
    """Validate already type-checked arguments; return the spec the run uses.

    Raises GateSpecError listing every problem found.
    """
    errors = []

    def duration(name, value, allow_zero):
        try:
            seconds = durations.parse_duration(value, name)
        except durations.DurationError as exc:
            errors.append('%s must be %s, got %r' % (name, 'zero or more' if allow_zero else 'greater than zero', value)
                          if exc.negative else str(exc))
            return None
        if seconds == 0 and not allow_zero:
            errors.append('%s must be %s, got %r' % (name, 'zero or more' if allow_zero else 'greater than zero', value))
            return None
        return seconds

    interval = duration('interval', params.get('interval'), False)
    bake = duration('duration', params.get('duration'), False)
    initial_delay = duration('initial_delay', params.get('initial_delay') or 0, True)
    max_runtime = None
    if params.get('max_runtime') not in (None, ''):
        max_runtime = duration('max_runtime', params.get('max_runtime'), False)
    if interval and bake and interval > bake:
        errors.append('interval (%gs) must not be longer than duration (%gs)' % (interval, bake))
    if interval and bake and bake / interval > MAX_SAMPLES:
        errors.append('duration/interval gives more than %d samples' % MAX_SAMPLES)

    inconclusive_limit = params.get('inconclusive_limit')
    if inconclusive_limit is None:
        inconclusive_limit = DEFAULT_INCONCLUSIVE_LIMIT
    if inconclusive_limit < 0:
        errors.append('inconclusive_limit must be zero or more')

    checks = params.get('checks') or []
    if not checks:
        errors.append('checks must list at least one check')
    names = set()
    uses_prometheus = False
    norm_checks = []
    for index, check in enumerate(checks):
        label = 'checks[%d]' % index
        name = (check.get('name') or '').strip()
        if not name:
            errors.append('%s: name must not be empty' % label)
        elif name in names:
            errors.append('%s: duplicate check name %r' % (label, name))
        elif not re.match(r'^[A-Za-z0-9_.:-]+$', name):
            errors.append('%s: name %r may only use letters, digits and _ . : -' % (label, name))
        names.add(name)
        label = 'check %r' % (name or index)
        op = check.get('op')
        if op not in OPS:
            errors.append('%s: op must be one of %s, got %r' % (label, ', '.join(sorted(OPS)), op))
        threshold = check.get('threshold')
        if threshold is None or isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or \
                math.isnan(float(threshold)) or math.isinf(float(threshold)):
            errors.append('%s: threshold must be a finite number, got %r' % (label, threshold))
        source = check.get('source') or 'prometheus'
        if source not in SOURCES:
            errors.append('%s: source must be one of %s' % (label, ', '.join(SOURCES)))
        if source == 'prometheus':
            uses_prometheus = True
            if not (check.get('query') or '').strip():
                errors.append('%s: a prometheus check needs a query' % label)
            for key in ('url', 'path'):
                if check.get(key):
                    errors.append('%s: %s is only for source json' % (label, key))
        elif source == 'json':
            if not re.match(r'^https?://', check.get('url') or ''):
                errors.append('%s: a json check needs an http(s) url' % label)
            if not (check.get('path') or '').strip():
                errors.append('%s: a json check needs a path such as latency.p99' % label)
            if check.get('query'):
                errors.append('%s: query is only for source prometheus' % label)
        failure_limit = check.get('failure_limit')
        failure_limit = 0 if failure_limit is None else failure_limit
        if failure_limit < 0:
            errors.append('%s: failure_limit must be zero or more' % label)
        sustain = duration('%s: sustain' % label, check.get('sustain') or 0, True)
        if sustain and failure_limit:
            errors.append('%s: use either sustain (consecutive failing samples) or failure_limit (failing samples '
                          'in the whole bake), not both' % label)
        check_inconclusive = check.get('inconclusive_limit')
        if check_inconclusive is not None and check_inconclusive < 0:
            errors.append('%s: inconclusive_limit must be zero or more' % label)
        norm_checks.append(dict(
            name=name, source=source, query=(check.get('query') or '').strip(),
            url=check.get('url'), path=check.get('path'), headers=dict(check.get('headers') or {}),
            token=check.get('token'), op=op,
            threshold=float(threshold) if isinstance(threshold, (int, float)) and not isinstance(threshold, bool) else None,
            failure_limit=failure_limit, sustain=sustain or 0.0,
            sustain_samples=int(math.ceil(sustain / interval - 1e-9)) if sustain and interval else 0,
            inconclusive_limit=inconclusive_limit if check_inconclusive is None else check_inconclusive,
        ))

    judge = None
    if params.get('judge'):
        uses_prometheus = True
        try:
            judge = judge_utils.normalize_judge(params['judge'])
        except judge_utils.JudgeSpecError as exc:
            errors.append(str(exc))
        if judge is not None and judge['interval'] is None and interval:
            judge['interval'] = interval
        if judge is not None and not judge_utils.HAS_SCIPY:
            errors.append('judge: scipy is not installed on the controller (requirements.txt pins it)')

    min_requests = params.get('min_requests')
    if min_requests:
        uses_prometheus = True
        if not (min_requests.get('query') or '').strip():
            errors.append('min_requests.query must not be empty')
    if uses_prometheus and not params.get('prometheus_url'):
        errors.append('prometheus_url is required for prometheus checks and min_requests')
    if params.get('prometheus_url') and not re.match(r'^https?://[^/]', params['prometheus_url']):
        errors.append('prometheus_url must be an http(s) URL')
    if params.get('timeout') is not None and not params['timeout'] > 0:
        errors.append('timeout must be greater than zero')
    phase = (params.get('phase') or '').strip()
    if not phase:
        errors.append('phase must not be empty')

    if errors:
        raise GateSpecError('; '.join(errors))

    if max_runtime is None:
        # The schedule plus slack for slow queries; a cap always exists.
        max_runtime = initial_delay + bake + max(60.0, interval)
    count = int(math.floor(bake / interval + 1e-9)) + 1
    timeout = float(params.get('timeout') or interval)
    return dict(
        phase=phase, checks=norm_checks, interval=interval, duration=bake,
        timeout=timeout, sample_deadline=min(interval, timeout),
        initial_delay=initial_delay, max_runtime=max_runtime, sample_count=count,
        inconclusive_limit=inconclusive_limit,
        min_requests=dict(query=min_requests['query'].strip(), threshold=float(min_requests['threshold']))
        if min_requests else None,
        judge=judge,
    )


def classify(value, op, threshold):
    """('pass' | 'fail' | 'inconclusive', note) for one value against op/threshold."""
    if value is None:
        return 'inconclusive', 'no data'
    if math.isnan(value):
        return 'inconclusive', 'NaN'
    if math.isinf(value):
        return 'inconclusive', '+Inf' if value > 0 else '-Inf'
    return ('pass', '') if OPS[op][1](value, threshold) else ('fail', '')


def json_path_value(doc, path):
    """(float value or None, note) at a dotted path in a JSON document ('latency.p99', 'pools.0.rate')."""
    node = doc
    for part in path.split('.'):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None, 'no data'
    if node is None:
        return None, 'no data'
    if isinstance(node, bool):
        return None, 'not a number'
    if isinstance(node, (int, float)):
        return float(node), ''
    if isinstance(node, str):
        try:
            return float(node), ''
        except ValueError:
            return None, 'not a number'
    return None, 'not a number'


def ensure_json_safe(data):
    """A copy of ``data`` with NaN/Inf floats replaced by None (strict JSON for jq)."""
    if isinstance(data, dict):
        return dict((k, ensure_json_safe(v)) for k, v in data.items())
    if isinstance(data, (list, tuple)):
        return [ensure_json_safe(v) for v in data]
    if isinstance(data, float) and (math.isnan(data) or math.isinf(data)):
        return None
    return data


def fmt_value(value):
    if value is None:
        return 'none'
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value).lower()
    return '%.4g' % value


def worse(op, a, b):
    """The worse of two finite values for this op (closer to failing)."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b) if op in ('lt', 'le') else min(a, b)


class RealClock(object):
    """Wall time for timestamps, monotonic time for the schedule."""

    wall = staticmethod(time.time)
    mono = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)


class Bake(object):
    """One gate run. ``run()`` returns the result dict of the task.

    sampler(check) -> (value or None, note); it must not raise for data
        problems (errors are inconclusive values with a note).
    requests_sampler() -> (value or None, note) for min_requests.
    emit(line): print one progress line (the controller's terminal).
    on_update(record): persist the phase record (the report); called at the
        start, after every sample and at the end.
    """

    def __init__(self, spec, sampler, emit, clock=None, requests_sampler=None, on_update=None, judge_runner=None,
                 before_sample=None):
        self.spec = spec
        # judge_runner(start_epoch, end_epoch) -> judgement (module_utils/judge.judge() plus 'window'); it must
        # not raise for data problems (they are nodata metrics).
        self.judge_runner = judge_runner if spec.get('judge') else None
        self.judgements = []
        self.judge_window_start = None
        self.last_judged = None
        self.sampler = sampler
        self.requests_sampler = requests_sampler
        self.emit = emit
        self.clock = clock or RealClock()
        self.on_update = on_update or (lambda record: None)
        # Called at the start and before every sample (the guard's lease renewal); a text stops the bake.
        self.before_sample = before_sample or (lambda: None)
        self.samples = []
        self.stats = dict((c['name'], dict(passes=0, failures=0, inconclusive=0, worst=None, last=None,
                                           streak=0, longest_streak=0))
                          for c in spec['checks'])
        self.executor = None
        self.started_at = None
        self.min_requests = None
        self.waited = 0.0  # seconds spent sleeping for the schedule (the bake's waiting, not its work)

    # -- helpers -------------------------------------------------------------
    def _prefix(self, number, epoch):
        stamp = time.strftime('%H:%M:%S', time.gmtime(epoch))
        return '[%s %s %d/%d]' % (self.spec['phase'], stamp, number, self.spec['sample_count'])

    def _describe(self, check, value, status, note):
        sym = OPS[check['op']][0]
        if status == 'inconclusive':
            shown = fmt_value(value) if value is not None else 'none'
            return '%s=%s %s%g %s' % (check['name'], shown, sym, check['threshold'], note or 'no data')
        if status == 'pass':
            return '%s=%s %s%g ok' % (check['name'], fmt_value(value), sym, check['threshold'])
        return '%s=%s %s%g FAIL' % (check['name'], fmt_value(value), NEGATED[check['op']], check['threshold'])

    def gates_summary(self):
        out = {}
        for check in self.spec['checks']:
            st = self.stats[check['name']]
            entry = dict(
                source=check['source'], op=check['op'], threshold=check['threshold'],
                failure_limit=check['failure_limit'], inconclusive_limit=check['inconclusive_limit'],
                passes=st['passes'], failures=st['failures'], inconclusive=st['inconclusive'],
                worst=st['worst'], last=st['last'],
            )
            if check.get('sustain'):
                entry.update(sustain=check['sustain'], sustain_samples=check['sustain_samples'],
                             longest_failing_run=st['longest_streak'])
            if check['source'] == 'prometheus':
                entry['query'] = check['query']
            else:
                entry['url'] = redact_url(check['url'])
                entry['path'] = check['path']
            out[check['name']] = entry
        return out

    def record(self, status, verdict=None, reasons=None, ended_at=None):
        rec = dict(
            status=status, started_at=self.started_at, samples=list(self.samples), gates=self.gates_summary(),
            gate_config=dict(interval=self.spec['interval'], duration=self.spec['duration'],
                             initial_delay=self.spec['initial_delay'], max_runtime=self.spec['max_runtime'],
                             sample_deadline=self.spec.get('sample_deadline'),
                             inconclusive_limit=self.spec['inconclusive_limit'],
                             sample_count=self.spec['sample_count']),
        )
        if verdict is not None:
            rec['verdict'] = dict(result=verdict, reasons=list(reasons or []))
            rec['ended_at'] = ended_at
        if self.min_requests is not None:
            rec['min_requests'] = self.min_requests
        if self.judge_runner is not None:
            rec['judge'] = self.judge_record()
        return rec

    def judge_record(self):
        """The phase's judgement for the report: the latest one on top, every one in ``judgements``."""
        cfg = self.spec['judge']
        latest = self.judgements[-1] if self.judgements else None
        return dict(
            config=dict(baseline=cfg['baseline'], canary=cfg['canary'], interval=cfg['interval'], step=cfg['step'],
                        confidence=cfg['confidence'], pass_score=cfg['pass_score'],
                        marginal_score=cfg['marginal_score'], min_points=cfg['min_points'],
                        metrics=[dict((k, m[k]) for k in ('name', 'query', 'direction', 'effect', 'effect_abs',
                                                          'statistic', 'weight', 'critical')) for m in cfg['metrics']]),
            verdict=latest['verdict'] if latest else None,
            score=latest['score'] if latest else None,
            final=bool(latest and latest.get('final')),
            reasons=list(latest['reasons']) if latest else [],
            metrics=latest['metrics'] if latest else {},
            judgements=list(self.judgements),
        )

    def run_judge(self, final):
        """One judgement over [first sample, now]; returns it (also kept, printed and persisted)."""
        now = self.clock.wall()
        start = self.judge_window_start if self.judge_window_start is not None else now
        judgement = self.judge_runner(start, now)
        judgement['final'] = bool(final)
        judgement['at'] = iso(now)
        judgement.setdefault('window', dict(start=iso(start), end=iso(now), seconds=round(now - start, 3)))
        self.judgements.append(judgement)
        self.last_judged = self.clock.mono()
        self.emit(judge_utils.summary_line(self.spec['phase'], judgement, final=final))
        return judgement

    def judge_reason(self, judgement):
        cfg = self.spec['judge']
        return ('judge %s in phase %s: score %g (pass >= %g, marginal >= %g) over %s; %s'
                % (judgement['verdict'], self.spec['phase'], judgement['score'], cfg['pass_score'],
                   cfg['marginal_score'], format_duration(round(judgement['window']['seconds'], 3)),
                   '; '.join(judgement['reasons']) or 'no metric failed'))

    def _finish(self, verdict, reasons, msg=None):
        wall = self.clock.wall()
        ended = iso(wall)
        record = self.record(verdict, verdict, reasons, ended)
        record['waited_s'] = round(self.waited, 3)
        self.on_update(record)
        self.emit('[%s] verdict: %s%s' % (self.spec['phase'], verdict.upper(),
                                          (' - ' + '; '.join(reasons)) if reasons else ''))
        result = dict(
            verdict=verdict, reasons=list(reasons), samples=list(self.samples), checks=self.gates_summary(),
            phase=self.spec['phase'], started_at=self.started_at, ended_at=ended, ended_epoch=round(wall, 3),
            waited_s=round(self.waited, 3), failed=verdict != 'passed', changed=False,
        )
        if self.min_requests is not None:
            result['min_requests'] = self.min_requests
        if self.judge_runner is not None:
            result['judge'] = self.judge_record()
        if verdict != 'passed':
            result['msg'] = msg or 'phase %s %s: %s' % (self.spec['phase'], verdict, '; '.join(reasons))
        else:
            result['msg'] = 'phase %s passed: %d samples, every gate within its limits%s' % (
                self.spec['phase'], len(self.samples),
                ', judge score %g' % self.judgements[-1]['score'] if self.judgements else '')
        return result

    # -- one sample -----------------------------------------------------------
    def take_sample(self, number):
        """Query every check once; return (sample record, trip, inconclusive_over)."""
        epoch = self.clock.wall()
        at = iso(epoch)
        values = {}
        parts = []
        trip = None
        over = None
        answers = self._query_all()
        for check in self.spec['checks']:
            value, note = answers[check['name']]
            status, cnote = classify(value, check['op'], check['threshold'])
            note = note or cnote
            st = self.stats[check['name']]
            finite = value if status != 'inconclusive' else None
            entry = dict(value=finite, status=status)
            if status == 'inconclusive':
                st['inconclusive'] += 1
                st['streak'] = 0
                entry['note'] = note or 'no data'
            elif status == 'pass':
                st['passes'] += 1
                st['streak'] = 0
            else:
                st['failures'] += 1
                st['streak'] += 1
                st['longest_streak'] = max(st['longest_streak'], st['streak'])
            if finite is not None:
                st['worst'] = worse(check['op'], st['worst'], finite)
                st['last'] = finite
            values[check['name']] = entry
            parts.append(self._describe(check, value, status, note))
            if status == 'fail' and check.get('sustain') and st['streak'] > check['sustain_samples'] and trip is None:
                trip = ('gate %s tripped in phase %s: %s=%s, not %s %g (threshold), sampled at %s '
                        '(sample %d/%d; %d failing samples in a row cover the sustain window %s)'
                        % (check['name'], self.spec['phase'], check['name'], fmt_value(value),
                           OPS[check['op']][0], check['threshold'], at, number, self.spec['sample_count'],
                           st['streak'], format_duration(check['sustain'])))
            elif status == 'fail' and not check.get('sustain') and st['failures'] > check['failure_limit'] \
                    and trip is None:
                trip = ('gate %s tripped in phase %s: %s=%s, not %s %g (threshold), sampled at %s '
                        '(sample %d/%d; %d failing sample(s) > failure_limit %d)'
                        % (check['name'], self.spec['phase'], check['name'], fmt_value(value),
                           OPS[check['op']][0], check['threshold'], at, number, self.spec['sample_count'],
                           st['failures'], check['failure_limit']))
            if status == 'inconclusive' and st['inconclusive'] > check['inconclusive_limit'] and over is None:
                over = ('gate %s inconclusive in phase %s: %d inconclusive sample(s) > inconclusive_limit %d '
                        '(last: %s at %s)' % (check['name'], self.spec['phase'], st['inconclusive'],
                                              check['inconclusive_limit'], note or 'no data', at))
        sample = dict(n=number, at=at, values=values)
        self.samples.append(sample)
        self.emit('%s %s' % (self._prefix(number, epoch), ' | '.join(parts)))
        return sample, trip, over

    def _query_all(self):
        """{check name: (value, note)}: every check queried at once, none waited for past the deadline.

        A query still running at the deadline is inconclusive (``timeout``); its thread ends with the
        HTTP timeout. The pool is sized so that such threads never delay the next samples' queries.
        """
        checks = self.spec['checks']
        deadline = self.spec.get('sample_deadline') or self.spec['interval']
        if self.executor is None:
            spare = int(math.ceil(self.spec.get('timeout', deadline) / deadline)) + 1
            self.executor = ThreadPoolExecutor(max_workers=min(256, len(checks) * spare),
                                               thread_name_prefix='metric-gate')
        futures = dict((check['name'], self.executor.submit(self.sampler, check)) for check in checks)
        wait_futures(list(futures.values()), timeout=deadline)
        answers = {}
        for name, future in futures.items():
            if future.done():
                answers[name] = future.result()  # a sampler never raises for data problems; a bug propagates
            else:
                future.cancel()
                answers[name] = (None, 'timeout: no answer within the sample deadline of %s' % format_duration(deadline))
        return answers

    # -- the bake ---------------------------------------------------------------
    def run(self):
        try:
            return self._run()
        finally:
            if self.executor is not None:
                self.executor.shutdown(wait=False, cancel_futures=True)

    def _run(self):
        spec = self.spec
        clock = self.clock
        start = clock.mono()
        deadline = start + spec['max_runtime']
        self.started_at = iso(clock.wall())
        self.on_update(self.record('running'))
        self.emit('[%s] bake: %d samples every %s over %s after an initial delay of %s (max runtime %s); gates: %s'
                  % (spec['phase'], spec['sample_count'], format_duration(spec['interval']),
                     format_duration(spec['duration']), format_duration(spec['initial_delay']),
                     format_duration(spec['max_runtime']),
                     ', '.join('%s %s %g' % (c['name'], OPS[c['op']][0], c['threshold']) for c in spec['checks'])))
        if self.judge_runner is not None:
            cfg = spec['judge']
            self.emit('[%s] judge: %s vs %s on %s, every %s and at the end (step %s, confidence %g, pass >= %g, '
                      'marginal >= %g)' % (spec['phase'], cfg['canary'], cfg['baseline'],
                                           ', '.join(m['name'] for m in cfg['metrics']),
                                           format_duration(cfg['interval']), format_duration(cfg['step']),
                                           cfg['confidence'], cfg['pass_score'], cfg['marginal_score']))
        stop = self.before_sample()
        if stop:
            return self._finish('failed', [stop], stop)
        for index in range(spec['sample_count']):
            due = start + spec['initial_delay'] + index * spec['interval']
            if due > deadline:
                return self._finish('inconclusive', [
                    'max_runtime %s reached after %d of %d samples' % (
                        format_duration(spec['max_runtime']), index, spec['sample_count'])])
            wait = due - clock.mono()
            if wait > 0:
                clock.sleep(wait)
                self.waited += wait
            if self.judge_window_start is None:
                self.judge_window_start = clock.wall()
                self.last_judged = clock.mono()
            stop = self.before_sample()
            if stop:
                return self._finish('failed', [stop], stop)
            sample, trip, over = self.take_sample(index + 1)
            self.on_update(self.record('running'))
            if trip:
                return self._finish('failed', [trip], trip)
            if over:
                return self._finish('inconclusive', [over], over)
            last = index == spec['sample_count'] - 1
            if self.judge_runner is not None and not last and \
                    clock.mono() - self.last_judged >= spec['judge']['interval'] - 1e-6:
                judgement = self.run_judge(final=False)
                self.on_update(self.record('running'))
                # During the bake only a hopeless score trips; too little data yet is no verdict.
                if judgement['verdict'] == 'fail':
                    reason = self.judge_reason(judgement)
                    return self._finish('failed', [reason], reason)
            if clock.mono() > deadline:
                return self._finish('inconclusive', [
                    'max_runtime %s reached after %d of %d samples' % (
                        format_duration(spec['max_runtime']), index + 1, spec['sample_count'])])
        reasons = []
        for check in spec['checks']:
            st = self.stats[check['name']]
            if st['passes'] + st['failures'] == 0:
                reasons.append('gate %s never returned data (%d inconclusive sample(s))'
                               % (check['name'], st['inconclusive']))
        if spec['min_requests'] and self.requests_sampler is not None:
            value, note = self.requests_sampler()
            status, cnote = classify(value, 'ge', spec['min_requests']['threshold'])
            self.min_requests = dict(value=value if status != 'inconclusive' else None,
                                     threshold=spec['min_requests']['threshold'], status=status)
            if status == 'inconclusive':
                reasons.append('min_requests: query returned %s, cannot tell whether traffic was enough'
                               % (note or cnote or 'no data'))
            elif status == 'fail':
                reasons.append('min_requests: only %s requests, fewer than %g needed for a verdict'
                               % (fmt_value(value), spec['min_requests']['threshold']))
            self.emit('[%s] min_requests: %s >=%g %s' % (
                spec['phase'], fmt_value(value), spec['min_requests']['threshold'],
                'ok' if status == 'pass' else ('too few' if status == 'fail' else (note or cnote or 'no data'))))
        if self.judge_runner is not None:
            judgement = self.run_judge(final=True)
            outcome = judge_utils.phase_outcome(judgement['verdict'])
            if outcome == 'failed':
                reason = self.judge_reason(judgement)
                return self._finish('failed', [reason] + reasons, reason)
            if outcome == 'inconclusive':
                reasons.append(self.judge_reason(judgement))
        if reasons:
            return self._finish('inconclusive', reasons)
        return self._finish('passed', [])


def rehearsal_timestamps(now, duration, interval):
    """Evaluation times of a rehearsal: ``now - duration`` .. ``now`` every ``interval``."""
    end = math.floor(now)
    count = int(math.floor(duration / interval + 1e-9)) + 1
    start = end - (count - 1) * interval
    return [start + i * interval for i in range(count)]


def rehearse_check(check, points):
    """Summarise one check over past points [(epoch, value, note)]: what the bake would have done."""
    passed = failed = no_data = 0
    worst = None
    first_failure = None
    trip_at = None
    inconclusive_over_at = None
    notes = {}
    streak = 0
    for epoch, value, note in points:
        status, cnote = classify(value, check['op'], check['threshold'])
        streak = streak + 1 if status == 'fail' else 0
        if status == 'pass':
            passed += 1
        elif status == 'fail':
            failed += 1
            if first_failure is None:
                first_failure = iso(epoch)
            if check.get('sustain'):
                tripped = streak > check['sustain_samples']
            else:
                tripped = failed > check['failure_limit']
            if tripped and trip_at is None:
                trip_at = iso(epoch)
        else:
            no_data += 1
            key = note or cnote or 'no data'
            notes[key] = notes.get(key, 0) + 1
            if no_data > check['inconclusive_limit'] and inconclusive_over_at is None:
                inconclusive_over_at = iso(epoch)
        if status != 'inconclusive':
            worst = worse(check['op'], worst, value)
    if trip_at:
        would = 'failed'
    elif inconclusive_over_at or passed == 0:
        would = 'inconclusive'
    else:
        would = 'passed'
    return dict(samples=len(points), passed=passed, failed=failed, no_data=no_data, no_data_reasons=notes,
                worst=worst, first_failure_at=first_failure, would_trip_at=trip_at,
                would_be_inconclusive_at=inconclusive_over_at, would=would)
