# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout spec: one structure from which gates, alert rules and dashboards are derived.

Filters (FQCN cohort.rollout.<name>):

* ``rollout_spec(defaults, overrides)``   deep-merge, validate and normalise the spec.
* ``gate_checks(spec, phase)``            the checks of one phase for cohort.rollout.metric_gate.
* ``gate_min_requests(spec, phase)``      its ``min_requests`` (too little candidate traffic = inconclusive).
* ``guard_alerts(spec, phase)``           the alerts that are rollback triggers of a phase (the rollout guard's).
* ``prometheus_recording_rules(spec)``    the runbook's gauges as Prometheus recording rules.
* ``prometheus_alert_rules(spec)``        the runbook alerts plus one alert per phase gate.
* ``grafana_dashboard(spec, ...)``        the runbook's dashboard, thresholds drawn from the spec.

Every threshold lives once in the spec; the gates, the alert rules and the dashboard
thresholds are computed from it here, so they cannot disagree.
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.cohort.rollout.plugins.module_utils.report import deep_merge

# Documentation: one YAML file per filter beside this file (rollout_spec.yml, gate_checks.yml, ...).

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
_DURATION_RE = re.compile(r'^((\d+)(ms|s|m|h|d|w|y))+$')
_DURATION_PART_RE = re.compile(r'(\d+)(ms|s|m|h|d|w|y)')
_UNIT_SECONDS = {'ms': 0.001, 's': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800, 'y': 31536000}
_NAME_RE = re.compile(r'^[a-z][a-z0-9_]*$')
_VARIANT_PLACEHOLDER = '$variant'

TOP_KEYS = {'baseline', 'candidate', 'rate_window', 'gates', 'phases', 'alerts'}
GATE_KEYS = {'metric', 'query', 'op', 'unit', 'title', 'description'}
PHASE_KEYS = {'order', 'weight', 'bake', 'interval', 'initial_delay', 'min_requests',
              'inconclusive_limit', 'failure_limit', 'gates', 'description'}
PHASE_GATE_KEYS = {'threshold', 'sustain', 'action', 'failure_limit'}
ALERT_KEYS = {'gate', 'op', 'threshold', 'for', 'severity', 'summary'}


class SpecError(AnsibleFilterError):
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


def duration_seconds(value):
    """Seconds in a Prometheus-style duration ('1h30m', '500ms') or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError('expected a duration like 30s, 5m, 2h, 7d, got %r' % (value,))
    if isinstance(value, (int, float)):
        if value < 0 or math.isnan(value) or math.isinf(value):
            raise ValueError('expected a non-negative duration, got %r' % (value,))
        return float(value)
    text = str(value).strip()
    if not _DURATION_RE.match(text):
        raise ValueError('expected a duration like 30s, 5m, 2h, 7d, got %r' % (value,))
    return float(sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(text)))


def prometheus_duration(seconds):
    """The shortest Prometheus duration string for a number of seconds."""
    ms = int(round(seconds * 1000))
    if ms == 0:
        return '0s'
    parts = []
    for unit, size in (('d', 86400000), ('h', 3600000), ('m', 60000), ('s', 1000), ('ms', 1)):
        if ms >= size:
            parts.append('%d%s' % (ms // size, unit))
            ms %= size
    return ''.join(parts)


def format_number(value):
    """A number as PromQL/YAML text: integral values without a trailing .0."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _camel(name):
    return ''.join(part[:1].upper() + part[1:] for part in re.split(r'[_\-]+', name) if part)


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
        if not _is_number(value):
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
            seconds = duration_seconds(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return None
        if positive and seconds <= 0:
            self.error(path, 'expected a duration greater than zero, got %r' % (value,))
            return None
        return seconds


# ---------------------------------------------------------------------------
# rollout_spec
# ---------------------------------------------------------------------------
def validate_spec(spec, root='rollout_spec'):
    """Validate a merged spec; return the normalised copy or raise SpecError naming every bad path."""
    v = _Validator()
    if not v.mapping(spec, root, TOP_KEYS, required=('baseline', 'candidate', 'rate_window', 'gates', 'phases')):
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
            v.string(gate['metric'], path + '.metric', pattern=re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*$'))
        if 'query' in gate:
            v.string(gate['query'], path + '.query')
        v.string(gate.get('op'), path + '.op', choices=OPS)
        if 'unit' in gate:
            v.string(gate['unit'], path + '.unit', choices=UNITS)
        norm = out['gates'][name]
        norm.setdefault('unit', 'count')
        norm.setdefault('title', name.replace('_', ' ').capitalize())
        catalog[name] = norm

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
    out['phase_order'] = sorted(out['phases'], key=lambda name: out['phases'][name]['order'])
    out['validated'] = True
    return out


def rollout_spec(defaults, overrides=None):
    """The effective spec: defaults deep-merged with overrides, validated and normalised."""
    if overrides in (None, ''):
        overrides = {}
    if not isinstance(defaults, dict):
        raise SpecError('rollout_spec_defaults: expected a mapping, got %r' % (defaults,))
    if not isinstance(overrides, dict):
        raise SpecError('rollout_spec_overrides: expected a mapping, got %r' % (overrides,))
    return validate_spec(deep_merge(plain(defaults), plain(overrides), none_deletes=True))


def _ensure_valid(spec):
    if isinstance(spec, dict) and spec.get('validated'):
        return spec
    return validate_spec(spec)


def gate_query(spec, gate_name, variant=None):
    """The PromQL of one catalog gate for one variant (the candidate unless told)."""
    gate = spec['gates'][gate_name]
    variant = variant or spec['candidate']
    if 'query' in gate:
        return gate['query'].replace(_VARIANT_PLACEHOLDER, variant)
    return '%s{variant="%s"}' % (gate['metric'], variant)


def _gate_failure_limit(phase, gconf):
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
    spec = _ensure_valid(spec)
    if phase not in spec['phases']:
        raise SpecError('rollout_spec.phases: unknown phase %r (phases: %s)' % (phase, ', '.join(spec['phase_order'])))
    pspec = spec['phases'][phase]
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
            check['failure_limit'] = _gate_failure_limit(pspec, gconf)
        if details:
            check.update({'title': gate['title'], 'unit': gate['unit'], 'action': gconf['action'],
                          'sustain': gconf.get('sustain', '0s')})
        checks.append(check)
    return checks


def gate_min_requests(spec, phase):
    """metric_gate's ``min_requests``: candidate requests per sample interval, or None when the phase sets 0."""
    spec = _ensure_valid(spec)
    if phase not in spec['phases']:
        raise SpecError('rollout_spec.phases: unknown phase %r (phases: %s)' % (phase, ', '.join(spec['phase_order'])))
    pspec = spec['phases'][phase]
    if not pspec['min_requests']:
        return None
    return {'query': 'sum(increase(cohort_discovery_requests_total{variant="%s"}[%s]))'
                     % (spec['candidate'], pspec['interval']),
            'threshold': pspec['min_requests']}


# ---------------------------------------------------------------------------
# Prometheus recording rules
# ---------------------------------------------------------------------------
def recording_rules(spec):
    """(record, expr) pairs of the runbook's gauges, by variant, over the spec's rate_window."""
    w = _ensure_valid(spec)['rate_window']

    def rate(metric, by='variant'):
        return 'sum by (%s) (rate(%s[%s]))' % (by, metric, w)

    def quantile(q, hist):
        return 'histogram_quantile(%s, %s)' % (q, rate(hist + '_bucket', 'variant, le'))

    lb_responses = 'haproxy_server_http_responses_total{variant!=""}'
    return [
        ('cohort_discovery_requests_per_second', rate('cohort_discovery_requests_total')),
        ('cohort_discovery_error_rate',
         '%s / %s' % (rate('cohort_discovery_errors_total'), rate('cohort_discovery_requests_total'))),
        ('cohort_discovery_latency_p99', quantile('0.99', 'cohort_discovery_latency_ms')),
        ('cohort_discovery_latency_p999', quantile('0.999', 'cohort_discovery_latency_ms')),
        ('cohort_discovery_learners_per_second', rate('cohort_discovery_learners_total')),
        ('cache_hit_rate',
         '%s / (%s + %s)' % (rate('cache_hits_total'), rate('cache_hits_total'), rate('cache_misses_total'))),
        # Per process: the worst instance of a variant is what a gate must see.
        ('process_memory_usage_bytes', 'max by (variant) (process_resident_memory_bytes)'),
        ('process_cpu_percent', '100 * max by (variant) (rate(process_cpu_seconds_total[%s]))' % w),
        ('db_connection_pool_utilization',
         'sum by (variant) (db_connection_pool_in_use) / sum by (variant) (db_connection_pool_size)'),
        ('db_query_latency_p99', quantile('0.99', 'db_query_latency_ms')),
        # What users see, from HAProxy (the scrape config maps server/backend names to variant).
        ('cohort_lb_user_error_rate',
         'sum by (variant) (rate(haproxy_server_http_responses_total{variant!="",code="5xx"}[%s])) / %s'
         % (w, rate(lb_responses))),
        ('cohort_lb_request_share',
         '%s / ignoring (variant) group_left () sum (rate(%s[%s]))' % (rate(lb_responses), lb_responses, w)),
        ('cohort_lb_traffic_weight_share',
         'sum by (variant) (haproxy_server_weight{variant!=""})'
         ' / ignoring (variant) group_left () sum (haproxy_server_weight{variant!=""})'),
    ]


def prometheus_recording_rules(spec):
    """A Prometheus rule file (as data) with the recording rules."""
    return {'groups': [{
        'name': 'cohort_rollout_recording',
        'rules': [{'record': r, 'expr': e} for r, e in recording_rules(spec)],
    }]}


# ---------------------------------------------------------------------------
# Prometheus alert rules
# ---------------------------------------------------------------------------
_VALUE_TEMPLATE = {
    'ratio': '{{ $value | humanizePercentage }}',
    'ms': '{{ $value | printf "%.1f" }} ms',
    'bytes': '{{ $value | humanize1024 }}B',
}


def _threshold_text(value, unit):
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


def phase_active_expr(spec, phase):
    """PromQL that is non-empty while the candidate's traffic weight share lies in this phase's band.

    Bands are split at the midpoints between consecutive phase weights, so rounding of
    HAProxy's integer weights does not move a phase into its neighbour's band.
    """
    order = spec['phase_order']
    weights = [spec['phases'][p]['weight'] for p in order]
    i = order.index(phase)
    low = 0.0 if i == 0 else (weights[i - 1] + weights[i]) / 2.0
    high = None if i == len(order) - 1 else (weights[i] + weights[i + 1]) / 2.0
    share = 'cohort_lb_traffic_weight_share{variant="%s"}' % spec['candidate']
    expr = '%s > %s' % (share, format_number(low))
    if high is not None:
        expr = '(%s) <= %s' % (expr, format_number(high))
    return expr


def alert_rules(spec):
    """The alert rules (as a list of dicts): runbook alerts, then one per phase gate."""
    spec = _ensure_valid(spec)
    rules = []
    for name, alert in spec['alerts'].items():
        gate = spec['gates'][alert['gate']]
        if 'metric' in gate:
            expr = '%s %s %s' % (gate['metric'], PROMQL_OP[alert['op']], format_number(alert['threshold']))
        else:
            expr = '(%s) %s %s' % (gate_query(spec, alert['gate']), PROMQL_OP[alert['op']],
                                   format_number(alert['threshold']))
        value = _VALUE_TEMPLATE.get(gate['unit'], '{{ $value }}')
        summary = alert.get('summary') or '%s %s %s' % (
            gate['title'], PROMQL_OP[alert['op']], _threshold_text(alert['threshold'], gate['unit']))
        rules.append({
            'alert': name,
            'expr': expr,
            'for': alert['for'],
            'labels': {'severity': alert['severity'], 'gate': alert['gate'], 'source': 'runbook'},
            'annotations': {
                'summary': summary,
                'description': '%s of {{ $labels.variant }} is %s (threshold %s).'
                               % (gate['title'], value, _threshold_text(alert['threshold'], gate['unit'])),
            },
        })
    for phase in spec['phase_order']:
        pspec = spec['phases'][phase]
        for gname, gconf in pspec['gates'].items():
            gate = spec['gates'][gname]
            vop = VIOLATION_OP[gate['op']]
            limit = _gate_failure_limit(pspec, gconf)
            hold = gconf.get('sustain_seconds', limit * pspec['interval_seconds'])
            value = _VALUE_TEMPLATE.get(gate['unit'], '{{ $value }}')
            rules.append({
                'alert': gate_alert_name(phase, gname),
                'expr': '(%s) %s %s and on () (%s)' % (gate_query(spec, gname), vop, format_number(gconf['threshold']),
                                                       phase_active_expr(spec, phase)),
                'for': prometheus_duration(hold),
                'labels': {'severity': 'critical' if gconf['action'] == 'rollback' else 'warning',
                           'phase': phase, 'gate': gname, 'action': gconf['action'], 'source': 'rollout_spec'},
                'annotations': {
                    'summary': '%s gate %s failed: %s %s %s (%s)'
                               % (phase, gname, gate['title'], vop, _threshold_text(gconf['threshold'], gate['unit']),
                                  gconf['action']),
                    'description': '%s of %s is %s; the %s phase requires %s %s.'
                                   % (gate['title'], spec['candidate'], value, phase, PROMQL_OP[gate['op']],
                                      _threshold_text(gconf['threshold'], gate['unit'])),
                },
            })
    return rules


def gate_alert_name(phase, gate):
    """The alert rule of one phase gate (``CanaryGateErrorRate``)."""
    return '%sGate%s' % (_camel(phase), _camel(gate))


def guard_alerts(spec, phase):
    """The alerts that are rollback triggers of a phase (its gates with action rollback), for the guard."""
    spec = _ensure_valid(spec)
    if phase not in spec['phases']:
        raise SpecError('rollout_spec.phases: unknown phase %r (phases: %s)' % (phase, ', '.join(spec['phase_order'])))
    return [gate_alert_name(phase, gname) for gname, gconf in spec['phases'][phase]['gates'].items()
            if gconf['action'] == 'rollback']


def prometheus_alert_rules(spec):
    """A Prometheus rule file (as data) with the alert rules."""
    return {'groups': [{'name': 'cohort_rollout_alerts', 'rules': alert_rules(spec)}]}


# ---------------------------------------------------------------------------
# Grafana dashboard
# ---------------------------------------------------------------------------
# (title, recording rule, unit, description); the runbook's 3x3 grid, then what users see.
DASHBOARD_PANELS = [
    ('Requests/sec', 'cohort_discovery_requests_per_second', 'per_second', 'Discovery requests per second'),
    ('Error Rate', 'cohort_discovery_error_rate', 'ratio', 'Share of discovery requests answered with 5xx'),
    ('P99 Latency', 'cohort_discovery_latency_p99', 'ms', '99th percentile of discovery latency'),
    ('Memory Usage', 'process_memory_usage_bytes', 'bytes', 'Resident memory of the largest process'),
    ('CPU', 'process_cpu_percent', 'percent', 'CPU of the busiest process (100 = one core)'),
    ('Cache Hit Rate', 'cache_hit_rate', 'ratio', 'Redis cache hits / lookups'),
    ('DB Latency', 'db_query_latency_p99', 'ms', '99th percentile of database query latency'),
    ('Throughput', 'cohort_discovery_learners_per_second', 'count', 'Learners analysed per second'),
    ('Pool Utilization', 'db_connection_pool_utilization', 'ratio', 'Database connections in use / pool size'),
]
LB_PANELS = [
    ('Traffic share (weights)', 'cohort_lb_traffic_weight_share', 'ratio',
     'Share of HAProxy server weight per variant: the split the rollout asked for'),
    ('Traffic share (observed)', 'cohort_lb_request_share', 'ratio',
     'Share of requests HAProxy sent to each variant'),
    ('User-facing 5xx', 'cohort_lb_user_error_rate', 'ratio', '5xx share of responses as seen by HAProxy'),
]
_PHASE_COLORS = ['red', 'orange', 'yellow', 'purple', 'blue']


def _thresholds_for(spec, metric):
    """(value, label) of every phase gate and alert on this metric, for threshold lines."""
    found = []
    for phase in spec['phase_order']:
        for gname, gconf in spec['phases'][phase]['gates'].items():
            gate = spec['gates'][gname]
            if gate.get('metric') == metric:
                found.append((gconf['threshold'], '%s %s %s' % (phase, gname, gate['op']), gate['op']))
    for name, alert in spec['alerts'].items():
        gate = spec['gates'][alert['gate']]
        if gate.get('metric') == metric:
            found.append((alert['threshold'], 'alert %s' % name, alert['op']))
    return found


def dashboard_thresholds(spec, metric):
    """Grafana threshold steps for one panel: one step per distinct threshold in the spec."""
    found = _thresholds_for(spec, metric)
    values = sorted(set(item[0] for item in found))
    # "Higher is better" metrics (cache hit rate) start red and turn green above the last line.
    higher_is_better = bool(found) and all(item[2] in ('gt', 'ge') for item in found)
    if higher_is_better:
        steps = [{'color': 'red', 'value': None}]
        colors = list(reversed(_PHASE_COLORS[1:len(values)])) + ['green']
        colors = colors[-len(values):] if values else []
    else:
        steps = [{'color': 'green', 'value': None}]
        colors = list(reversed(_PHASE_COLORS[:len(values)]))
    for value, color in zip(values, colors):
        steps.append({'color': color, 'value': value})
    return steps, found


def _panel(pid, title, metric, unit, description, spec, datasource, grid):
    steps, found = dashboard_thresholds(spec, metric)
    if found:
        description += '. Thresholds from the rollout spec: ' + ', '.join(
            '%s %s' % (item[1], _threshold_text(item[0], unit)) for item in found)
    targets = []
    for ref, variant in zip('AB', (spec['baseline'], spec['candidate'])):
        targets.append({'refId': ref, 'datasource': datasource,
                        'expr': '%s{variant="%s"}' % (metric, variant), 'legendFormat': variant})
    return {
        'id': pid,
        'type': 'timeseries',
        'title': title,
        'description': description,
        'datasource': datasource,
        'gridPos': grid,
        'targets': targets,
        'fieldConfig': {
            'defaults': {
                'unit': GRAFANA_UNIT[unit],
                'custom': {'thresholdsStyle': {'mode': 'line' if found else 'off'}},
                'thresholds': {'mode': 'absolute', 'steps': steps},
            },
            'overrides': [],
        },
        'options': {'legend': {'displayMode': 'list', 'placement': 'bottom'}, 'tooltip': {'mode': 'multi'}},
    }


def grafana_dashboard(spec, uid='cohort-rollout', title='Cohort Discovery - Rollout',
                      datasource_uid='cohort-prometheus', refresh='10s'):
    """The runbook's dashboard as Grafana JSON model (a dict), original and candidate side by side."""
    spec = _ensure_valid(spec)
    datasource = {'type': 'prometheus', 'uid': datasource_uid}
    panels = []
    width, height = 8, 8
    for i, (ptitle, metric, unit, desc) in enumerate(DASHBOARD_PANELS + LB_PANELS):
        grid = {'x': (i % 3) * width, 'y': (i // 3) * height, 'w': width, 'h': height}
        panels.append(_panel(i + 1, ptitle, metric, unit, desc, spec, datasource, grid))
    return {
        'uid': uid,
        'title': title,
        'tags': ['cohort-rollout', 'generated'],
        'timezone': 'utc',
        'schemaVersion': 39,
        'version': 1,
        'editable': False,
        'refresh': refresh,
        'time': {'from': 'now-1h', 'to': 'now'},
        'templating': {'list': []},
        'annotations': {'list': []},
        'panels': panels,
    }


class FilterModule(object):
    """cohort.rollout rollout spec filters."""

    def filters(self):
        return {
            'rollout_spec': rollout_spec,
            'gate_checks': gate_checks,
            'gate_min_requests': gate_min_requests,
            'guard_alerts': guard_alerts,
            'prometheus_recording_rules': prometheus_recording_rules,
            'prometheus_alert_rules': prometheus_alert_rules,
            'grafana_dashboard': grafana_dashboard,
        }
