# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus rules from the rollout spec: the runbook's gauges (recording rules) and alerts.

Recording rules are built from the service's raw series named in ``rollout_spec.metrics``
(names and variant label); their own names (``cohort_discovery_error_rate``, ...) are the
runbook's gauges that gates, the judge and the dashboard read.
"""

from __future__ import annotations

from ansible_collections.cohort.rollout.plugins.module_utils.rollout_spec import (
    PROMQL_OP, VIOLATION_OP, SpecError, camel, ensure_valid, format_number, gate_failure_limit, gate_query, selector,
    threshold_text,
)
from ansible_collections.cohort.rollout.plugins.module_utils.durations import prometheus_duration


def recording_rules(spec):
    """(record, expr) pairs of the runbook's gauges, by variant, over the spec's rate_window."""
    spec = ensure_valid(spec)
    w = spec['rate_window']
    m = spec['metrics']
    v = m['variant_label']

    def rate(metric, by=v):
        return 'sum by (%s) (rate(%s[%s]))' % (by, metric, w)

    def quantile(q, hist):
        return 'histogram_quantile(%s, %s)' % (q, rate(hist + '_bucket', '%s, le' % v))

    lb_responses = '%s{%s!=""}' % (m['lb_responses_total'], v)
    lb_weight = '%s{%s!=""}' % (m['lb_server_weight'], v)
    return [
        ('cohort_discovery_requests_per_second', rate(m['requests_total'])),
        ('cohort_discovery_error_rate', '%s / %s' % (rate(m['errors_total']), rate(m['requests_total']))),
        ('cohort_discovery_latency_p99', quantile('0.99', m['latency_ms'])),
        ('cohort_discovery_latency_p50', quantile('0.5', m['latency_ms'])),
        ('cohort_discovery_latency_p999', quantile('0.999', m['latency_ms'])),
        ('cohort_discovery_learners_per_second', rate(m['learners_total'])),
        ('cache_hit_rate',
         '%s / (%s + %s)' % (rate(m['cache_hits_total']), rate(m['cache_hits_total']), rate(m['cache_misses_total']))),
        # Per process: the worst instance of a variant is what a gate must see.
        ('process_memory_usage_bytes', 'max by (%s) (%s)' % (v, m['memory_bytes'])),
        ('process_cpu_percent', '100 * max by (%s) (rate(%s[%s]))' % (v, m['cpu_seconds_total'], w)),
        ('db_connection_pool_utilization',
         'sum by (%s) (%s) / sum by (%s) (%s)' % (v, m['db_pool_in_use'], v, m['db_pool_size'])),
        ('db_query_latency_p99', quantile('0.99', m['db_query_latency_ms'])),
        ('db_query_latency_p50', quantile('0.5', m['db_query_latency_ms'])),
        # What users see, from the load balancer (the scrape config maps server/backend names to the variant label).
        ('cohort_lb_user_error_rate',
         'sum by (%s) (rate(%s{%s!="",code="5xx"}[%s])) / %s' % (v, m['lb_responses_total'], v, w, rate(lb_responses))),
        ('cohort_lb_request_share',
         '%s / ignoring (%s) group_left () sum (rate(%s[%s]))' % (rate(lb_responses), v, lb_responses, w)),
        ('cohort_lb_traffic_weight_share',
         'sum by (%s) (%s) / ignoring (%s) group_left () sum (%s)' % (v, lb_weight, v, lb_weight)),
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
    share = selector(spec, 'cohort_lb_traffic_weight_share', spec['candidate'])
    expr = '%s > %s' % (share, format_number(low))
    if high is not None:
        expr = '(%s) <= %s' % (expr, format_number(high))
    return expr


def alert_rules(spec):
    """The alert rules (as a list of dicts): runbook alerts, then one per phase gate."""
    spec = ensure_valid(spec)
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
            gate['title'], PROMQL_OP[alert['op']], threshold_text(alert['threshold'], gate['unit']))
        rules.append({
            'alert': name,
            'expr': expr,
            'for': alert['for'],
            'labels': {'severity': alert['severity'], 'gate': alert['gate'], 'source': 'runbook'},
            'annotations': {
                'summary': summary,
                'description': '%s of {{ $labels.%s }} is %s (threshold %s).'
                               % (gate['title'], spec['metrics']['variant_label'], value, threshold_text(alert['threshold'], gate['unit'])),
            },
        })
    for phase in spec['phase_order']:
        pspec = spec['phases'][phase]
        for gname, gconf in pspec['gates'].items():
            gate = spec['gates'][gname]
            vop = VIOLATION_OP[gate['op']]
            limit = gate_failure_limit(pspec, gconf)
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
                               % (phase, gname, gate['title'], vop, threshold_text(gconf['threshold'], gate['unit']),
                                  gconf['action']),
                    'description': '%s of %s is %s; the %s phase requires %s %s.'
                                   % (gate['title'], spec['candidate'], value, phase, PROMQL_OP[gate['op']],
                                      threshold_text(gconf['threshold'], gate['unit'])),
                },
            })
    return rules


def gate_alert_name(phase, gate):
    """The alert rule of one phase gate (``CanaryGateErrorRate``)."""
    return '%sGate%s' % (camel(phase), camel(gate))


def guard_alerts(spec, phase):
    """The alerts that are rollback triggers of a phase (its gates with action rollback), for the guard."""
    spec = ensure_valid(spec)
    if phase not in spec['phases']:
        raise SpecError('rollout_spec.phases: unknown phase %r (phases: %s)' % (phase, ', '.join(spec['phase_order'])))
    return [gate_alert_name(phase, gname) for gname, gconf in spec['phases'][phase]['gates'].items()
            if gconf['action'] == 'rollback']


def prometheus_alert_rules(spec):
    """A Prometheus rule file (as data) with the alert rules."""
    return {'groups': [{'name': 'cohort_rollout_alerts', 'rules': alert_rules(spec)}]}
