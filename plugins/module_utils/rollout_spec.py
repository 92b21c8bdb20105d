# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout spec: validation, normalisation and the gates of a phase (no Ansible at run time).

The spec (playbooks/group_vars/all/rollout_spec.yml) is the one source of truth; the
filters in plugins/filter/rollout.py are thin wrappers around this module,
module_utils/prometheus_rules.py and module_utils/dashboard.py. The service's metric
names and its variant label are part of the spec (``metrics``), so a service whose
metrics are named differently needs only a spec change.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping

from ansible_collections.cohort.rollout.plugins.module_utils.durations import (
    DurationError, parse_duration, prometheus_duration,
)
from ansible_collections.cohort.rollout.plugins.module_utils import judge as judge_utils
from ansible_collections.cohort.rollout.plugins.module_utils.merge import deep_merge

# ---------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------
OPS = ('lt', 'le', 'gt', 'ge')
PROMQL_OP = {'lt': '<', 'le': '<=', 'gt': '>', 'ge': '>='}
# The comparison that means "this gate is violated".
VIOLATION_OP = {'lt': '>=', 'le': '>', 'gt': '<=', 'ge': '<'}
UNITS = ('ratio', 'ms', 'bytes', 'percent', 'per_second', 'count')
GRAFANA_UNIT = {'ratio': 'percentunit', 'ms': 'ms', 'bytes': 'bytes', 'percent': 'percent',
                'per_second': 'reqps', 'count': 'short'}
ACTIONS = ('rollback', 'investigate')
SEVERITIES = ('info', 'warning', 'critical')
_NAME_RE = re.compile(r'^[a-z][a-z0-9_]*$')
_VARIANT_PLACEHOLDER = '$variant'

TOP_KEYS = {'baseline', 'candidate', 'rate_window', 'metrics', 'gates', 'judge_metrics', 'phases', 'alerts'}
JUDGE_METRIC_KEYS = {'metric', 'query', 'direction', 'effect', 'effect_abs', 'statistic', 'unit', 'title', 'description'}
PHASE_JUDGE_KEYS = {'interval', 'step', 'confidence', 'pass_score', 'marginal_score', 'min_points', 'metrics'}
PHASE_JUDGE_METRIC_KEYS = {'weight', 'critical', 'direction', 'effect', 'effect_abs', 'statistic'}
_METRIC_NAME_RE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*$')
_LABEL_RE = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*$')
# The service's raw series the recording rules are built from (rollout_spec.metrics). Each
# counter/histogram/gauge must carry the variant label (metrics.variant_label).
METRIC_KEYS = {
    'variant_label': 'label that holds the variant (baseline or candidate) on every series',
    'requests_total': 'counter of answered requests',
    'errors_total': 'counter of requests answered 5xx',
    'latency_ms': 'histogram of request latency in ms (base name, without _bucket)',
    'learners_total': 'counter of work items processed (throughput)',
    'cache_hits_total': 'counter of cache hits',
    'cache_misses_total': 'counter of cache misses',
    'memory_bytes': 'gauge of resident memory per process',
    'cpu_seconds_total': 'counter of CPU seconds per process',
    'db_pool_in_use': 'gauge of database connections in use',
    'db_pool_size': 'gauge of the database connection pool size',
    'db_query_latency_ms': 'histogram of database query latency in ms (base name)',
    'lb_responses_total': "the load balancer's counter of responses by code (HAProxy exporter)",
    'lb_server_weight': "the load balancer's gauge of server weight (HAProxy exporter)",
}
GATE_KEYS = {'metric', 'query', 'op', 'unit', 'title', 'description'}
PHASE_KEYS = {'order', 'weight', 'bake', 'interval', 'initial_delay', 'min_requests',
              'inconclusive_limit', 'failure_limit', 'gates', 'judge', 'description'}
PHASE_GATE_KEYS = {'threshold', 'sustain', 'action', 'failure_limit'}
ALERT_KEYS = {'gate', 'op', 'threshold', 'for', 'severity', 'summary'}


class SpecError(ValueError):
    """A rollout spec that does not validate; the message names every bad path."""


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def plain(value):
    """A plain-Python copy of templated data: new dicts and lists, native scalars.

    ansible-core 2.19 hands filters lazy containers whose values carry tags (origin, trust);
    ``copy.deepcopy`` of those re-templates and copies every tag, which made one call of this
    filter cost ~1 s instead of ~1 ms (docs/performance.md). Copy once, plainly, at the entry.
    """
    if isinstance(value, Mapping):
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def format_number(value):
    """A number as PromQL/YAML text: integral values without a trailing .0."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def camel(name):
    return ''.join(part[:1].upper() + part[1:] for part in re.split(r'[_\-]+', name) if part)


def threshold_text(value, unit):
    if unit == 'ratio':
        return '%s%%' % format_number(round(value * 100, 6))
    if unit == 'ms':
        return '%s ms' % format_number(value)
    if unit == 'bytes':
        for suffix, size in (('GiB', 1 << 30), ('MiB', 1 << 20), ('KiB', 1 << 10)):
            if value >= size:
                return '%s %s' % (format_number(round(value / size, 3)), suffix)
        return '%s bytes' % format_number(value)
    return format_number(value)


class _Validator(object):
    def __init__(self):
        self.errors = []

    def error(self, path, message):
        self.errors.append('%s: %s' % (path, message))

    def mapping(self, value, path, allowed=None, required=()):
        if not isinstance(value, dict):
            self.error(path, 'expected a mapping, got %r' % (value,))
            return False
        for key in required:
            if key not in value:
                self.error('%s.%s' % (path, key), 'is required')
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    self.error('%s.%s' % (path, key), 'unknown key (allowed: %s)' % ', '.join(sorted(allowed)))
        return True

    def number(self, value, path, low=None, high=None):
        if not is_number(value):
            self.error(path, 'expected a number, got %r' % (value,))
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            self.error(path, 'expected a number in [%s, %s], got %r' % (low, high, value))
            return None
        return value

    def integer(self, value, path, low=0):
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, 'expected an integer, got %r' % (value,))
            return None
        if value < low:
            self.error(path, 'expected an integer >= %d, got %r' % (low, value))
            return None
        return value

    def string(self, value, path, choices=None, pattern=None):
        if not isinstance(value, str) or not value.strip():
            self.error(path, 'expected a non-empty string, got %r' % (value,))
            return None
        if choices is not None and value not in choices:
            self.error(path, 'expected one of %s, got %r' % (', '.join(choices), value))
            return None
        if pattern is not None and not pattern.match(value):
            self.error(path, 'expected a name matching %s, got %r' % (pattern.pattern, value))
            return None
        return value

    def duration(self, value, path, positive=False):
        try:
            seconds = parse_duration(value, path)
        except DurationError as exc:
            self.error(path, 'expected a non-negative duration, got %r' % (value,) if exc.negative
                       else 'expected a duration like 30s, 5m, 2h, 7d, got %r' % (value,))
            return None
        if positive and seconds <= 0:
            self.error(path, 'expected a duration greater than zero, got %r' % (value,))
            return None
        return seconds


def validate_spec(spec, root='rollout_spec'):
    """Validate a merged spec; return the normalised copy or raise SpecError naming every bad path."""
    v = _Validator()
    if not v.mapping(spec, root, TOP_KEYS, required=('baseline', 'candidate', 'rate_window', 'metrics', 'gates', 'phases')):
        raise SpecError('; '.join(v.errors))
    out = copy.deepcopy(spec)
    out.setdefault('alerts', {})
    v.string(spec.get('baseline'), root + '.baseline', pattern=_NAME_RE)
    v.string(spec.get('candidate'), root + '.candidate', pattern=_NAME_RE)
    if spec.get('baseline') == spec.get('candidate') and spec.get('baseline') is not None:
        v.error(root + '.candidate', 'must differ from baseline %r' % spec.get('baseline'))
    window = v.duration(spec.get('rate_window'), root + '.rate_window', positive=True)
    if window is not None:
        out['rate_window'] = prometheus_duration(window)
        out['rate_window_seconds'] = window

    # The service's metric names and variant label.
    metrics = spec.get('metrics')
    if v.mapping(metrics, root + '.metrics', set(METRIC_KEYS), required=sorted(METRIC_KEYS)):
        for key in sorted(METRIC_KEYS):
            if key in metrics:
                v.string(metrics[key], '%s.metrics.%s' % (root, key),
                         pattern=_LABEL_RE if key == 'variant_label' else _METRIC_NAME_RE)

    # The gate catalog.
    gates = spec.get('gates')
    catalog = {}
    if v.mapping(gates, root + '.gates') and not gates:
        v.error(root + '.gates', 'must define at least one gate')
    for name, gate in (gates or {}).items() if isinstance(gates, dict) else ():
        path = '%s.gates.%s' % (root, name)
        v.string(name, path, pattern=_NAME_RE)
        if not v.mapping(gate, path, GATE_KEYS, required=('op',)):
            continue
        if 'metric' not in gate and 'query' not in gate:
            v.error(path, 'needs a metric (a recording rule by variant) or a query')
        if 'metric' in gate:
            v.string(gate['metric'], path + '.metric', pattern=_METRIC_NAME_RE)
        if 'query' in gate:
            v.string(gate['query'], path + '.query')
        v.string(gate.get('op'), path + '.op', choices=OPS)
        if 'unit' in gate:
            v.string(gate['unit'], path + '.unit', choices=UNITS)
        norm = out['gates'][name]
        norm.setdefault('unit', 'count')
        norm.setdefault('title', name.replace('_', ' ').capitalize())
        catalog[name] = norm

    # The judge's metric catalog: what a phase's judge may compare.
    judge_metrics = spec.get('judge_metrics', {})
    out.setdefault('judge_metrics', {})
    if v.mapping(judge_metrics, root + '.judge_metrics'):
        for name, jm in judge_metrics.items():
            path = '%s.judge_metrics.%s' % (root, name)
            v.string(name, path, pattern=_NAME_RE)
            if not v.mapping(jm, path, JUDGE_METRIC_KEYS):
                continue
            if ('metric' in jm) == ('query' in jm):
                v.error(path, 'needs either a metric (a recording rule by variant) or a query with $variant')
            if 'metric' in jm:
                v.string(jm['metric'], path + '.metric', pattern=_METRIC_NAME_RE)
            if 'unit' in jm:
                v.string(jm['unit'], path + '.unit', choices=UNITS)
            out['judge_metrics'][name].setdefault('title', name.replace('_', ' ').capitalize())

    # The phases.
    phases = spec.get('phases')
    if v.mapping(phases, root + '.phases') and not phases:
        v.error(root + '.phases', 'must define at least one phase')
    orders = {}
    for name, phase in (phases or {}).items() if isinstance(phases, dict) else ():
        path = '%s.phases.%s' % (root, name)
        v.string(name, path, pattern=_NAME_RE)
        if not v.mapping(phase, path, PHASE_KEYS, required=('order', 'weight', 'bake', 'interval', 'gates')):
            continue
        norm = out['phases'][name]
        norm['name'] = name
        order = v.integer(phase.get('order'), path + '.order', low=1) if 'order' in phase else None
        if order is not None:
            if order in orders:
                v.error(path + '.order', 'order %d is also used by phase %s' % (order, orders[order]))
            orders[order] = name
        if 'weight' in phase:
            v.number(phase['weight'], path + '.weight', 0, 1)
        for key, default, positive in (('bake', None, True), ('interval', None, True), ('initial_delay', 0, False)):
            if key not in phase:
                if default is None:
                    continue
                norm[key] = prometheus_duration(default)
                norm[key + '_seconds'] = float(default)
                continue
            seconds = v.duration(phase[key], '%s.%s' % (path, key), positive=positive)
            if seconds is not None:
                norm[key] = prometheus_duration(seconds)
                norm[key + '_seconds'] = seconds
        for key, default in (('min_requests', 0), ('inconclusive_limit', 0), ('failure_limit', 0)):
            if key in phase:
                v.integer(phase[key], '%s.%s' % (path, key))
            else:
                norm[key] = default
        pgates = phase.get('gates')
        if 'gates' in phase and (not isinstance(pgates, dict) or not pgates):
            v.error(path + '.gates', 'a phase needs at least one gate, got %r' % (pgates,))
            continue
        for gname, gconf in (pgates or {}).items():
            gpath = '%s.gates.%s' % (path, gname)
            if isinstance(gates, dict) and gname not in gates:
                v.error(gpath, 'unknown gate %r (the catalog rollout_spec.gates has: %s)'
                        % (gname, ', '.join(sorted(gates))))
                continue
            if not v.mapping(gconf, gpath, PHASE_GATE_KEYS, required=('threshold',)):
                continue
            if 'threshold' in gconf:
                v.number(gconf['threshold'], gpath + '.threshold')
            gnorm = norm['gates'][gname]
            if 'action' in gconf:
                v.string(gconf['action'], gpath + '.action', choices=ACTIONS)
            else:
                gnorm['action'] = 'rollback'
            if 'failure_limit' in gconf:
                v.integer(gconf['failure_limit'], gpath + '.failure_limit')
            if 'sustain' in gconf:
                seconds = v.duration(gconf['sustain'], gpath + '.sustain')
                if seconds is not None:
                    gnorm['sustain'] = prometheus_duration(seconds)
                    gnorm['sustain_seconds'] = seconds
        if phase.get('judge') is not None:
            _validate_phase_judge(v, spec, name, phase, path + '.judge')

    # The alerts.
    alerts = out.get('alerts')
    if v.mapping(alerts, root + '.alerts'):
        for name, alert in alerts.items():
            path = '%s.alerts.%s' % (root, name)
            v.string(name, path, pattern=re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$'))
            if not v.mapping(alert, path, ALERT_KEYS, required=('gate', 'op', 'threshold', 'severity')):
                continue
            if isinstance(gates, dict) and alert.get('gate') not in gates:
                v.error(path + '.gate', 'unknown gate %r (the catalog rollout_spec.gates has: %s)'
                        % (alert.get('gate'), ', '.join(sorted(gates))))
            v.string(alert.get('op'), path + '.op', choices=OPS)
            if 'threshold' in alert:
                v.number(alert['threshold'], path + '.threshold')
            v.string(alert.get('severity'), path + '.severity', choices=SEVERITIES)
            seconds = v.duration(alert.get('for', 0), path + '.for')
            if seconds is not None:
                alerts[name]['for'] = prometheus_duration(seconds)

    if v.errors:
        raise SpecError('invalid rollout spec: ' + '; '.join(v.errors))
    for name, phase in out['phases'].items():
        if phase.get('judge') is None:
            phase.pop('judge', None)
    out['phase_order'] = sorted(out['phases'], key=lambda name: out['phases'][name]['order'])
    out['validated'] = True
    return out


def _validate_phase_judge(v, spec, phase_name, phase, path):
    """A phase's judge: known keys, metrics from the catalog, then the judge's own checks (module_utils/judge.py)."""
    judge = phase['judge']
    if not v.mapping(judge, path, PHASE_JUDGE_KEYS, required=('step', 'metrics')):
        return
    catalog = spec.get('judge_metrics') if isinstance(spec.get('judge_metrics'), dict) else {}
    metrics = judge.get('metrics')
    if not isinstance(metrics, dict) or not metrics:
        v.error(path + '.metrics', 'a judge needs at least one metric, got %r' % (metrics,))
        return
    ok = True
    for mname, mconf in metrics.items():
        mpath = '%s.metrics.%s' % (path, mname)
        if mname not in catalog:
            v.error(mpath, 'unknown judge metric %r (the catalog rollout_spec.judge_metrics has: %s)'
                    % (mname, ', '.join(sorted(catalog)) or 'nothing'))
            ok = False
            continue
        if mconf is not None and not v.mapping(mconf, mpath, PHASE_JUDGE_METRIC_KEYS):
            ok = False
    if not ok or not isinstance(spec.get('metrics'), dict) or 'variant_label' not in spec['metrics']:
        return
    try:
        judge_utils.normalize_judge(_judge_raw(spec, phase, judge), label=path)
    except judge_utils.JudgeSpecError as exc:
        v.errors.append(str(exc))


def _judge_raw(spec, phase, judge):
    """The arguments of metric_gate's ``judge`` option for one phase (catalog entries merged with the phase's)."""
    metrics = []
    for mname, mconf in judge['metrics'].items():
        entry = dict(spec['judge_metrics'][mname])
        entry.update(mconf or {})
        if 'metric' in entry:
            query = selector(spec, entry['metric'], _VARIANT_PLACEHOLDER)
        else:
            query = entry.get('query')
        metric = dict(name=mname, query=query)
        for key in ('direction', 'effect', 'effect_abs', 'statistic', 'weight', 'critical'):
            if key in entry:
                metric[key] = entry[key]
        metrics.append(metric)
    raw = dict(baseline=spec.get('baseline'), canary=spec.get('candidate'), metrics=metrics,
               interval=judge.get('interval', phase.get('interval')), step=judge.get('step'))
    for key in ('confidence', 'pass_score', 'marginal_score', 'min_points'):
        if key in judge:
            raw[key] = judge[key]
    return raw


def phase_spec(spec, phase):
    """The valid spec and its phase ``phase``; SpecError naming the phases when there is no such phase."""
    spec = ensure_valid(spec)
    if phase not in spec['phases']:
        raise SpecError('rollout_spec.phases: unknown phase %r (phases: %s)' % (phase, ', '.join(spec['phase_order'])))
    return spec, spec['phases'][phase]


def judge_config(spec, phase):
    """metric_gate's ``judge`` option for one phase, or None when the phase declares no judge."""
    spec, pspec = phase_spec(spec, phase)
    if not pspec.get('judge'):
        return None
    return _judge_raw(spec, pspec, pspec['judge'])


def rollout_spec(defaults, overrides=None):
    """The effective spec: defaults deep-merged with overrides, validated and normalised."""
    if overrides in (None, ''):
        overrides = {}
    if not isinstance(defaults, dict):
        raise SpecError('rollout_spec_defaults: expected a mapping, got %r' % (defaults,))
    if not isinstance(overrides, dict):
        raise SpecError('rollout_spec_overrides: expected a mapping, got %r' % (overrides,))
    return validate_spec(deep_merge(plain(defaults), plain(overrides), none_deletes=True))


def ensure_valid(spec):
    if isinstance(spec, dict) and spec.get('validated'):
        return spec
    return validate_spec(spec)


def selector(spec, metric, variant, extra=''):
    """``metric{<variant label>="variant"[,extra]}``: one variant's series of a metric."""
    return '%s{%s="%s"%s}' % (metric, spec['metrics']['variant_label'], variant, (',' + extra) if extra else '')


def gate_query(spec, gate_name, variant=None):
    """The PromQL of one catalog gate for one variant (the candidate unless told)."""
    gate = spec['gates'][gate_name]
    variant = variant or spec['candidate']
    if 'query' in gate:
        return gate['query'].replace(_VARIANT_PLACEHOLDER, variant)
    return selector(spec, gate['metric'], variant)


def gate_failure_limit(phase, gconf):
    if 'failure_limit' in gconf:
        return gconf['failure_limit']
    if 'sustain_seconds' in gconf:
        # Tolerate as many failing samples as fit in the sustain window.
        return int(math.ceil(gconf['sustain_seconds'] / phase['interval_seconds']))
    return phase['failure_limit']


def gate_checks(spec, phase, details=False):
    """The checks of one phase, in the shape of cohort.rollout.metric_gate's ``checks`` option.

    Each item is {name, query, op, threshold, failure_limit}; with details=true also
    title, unit, action and sustain (for reports and notifications).
    """
    spec, pspec = phase_spec(spec, phase)
    checks = []
    for name, gconf in pspec['gates'].items():
        gate = spec['gates'][name]
        check = {
            'name': name,
            'query': gate_query(spec, name),
            'op': gate['op'],
            'threshold': gconf['threshold'],
        }
        if 'sustain_seconds' in gconf and 'failure_limit' not in gconf:
            # Consecutive failing samples covering the window, as the alert's for: (not a count over the bake).
            check['sustain'] = gconf['sustain_seconds']
            check['failure_limit'] = 0
        else:
            check['failure_limit'] = gate_failure_limit(pspec, gconf)
        if details:
            check.update({'title': gate['title'], 'unit': gate['unit'], 'action': gconf['action'],
                          'sustain': gconf.get('sustain', '0s')})
        checks.append(check)
    return checks


def gate_min_requests(spec, phase):
    """metric_gate's ``min_requests``: candidate requests per sample interval, or None when the phase sets 0."""
    spec, pspec = phase_spec(spec, phase)
    if not pspec['min_requests']:
        return None
    return {'query': 'sum(increase(%s[%s]))'
                     % (selector(spec, spec['metrics']['requests_total'], spec['candidate']), pspec['interval']),
            'threshold': pspec['min_requests']}
