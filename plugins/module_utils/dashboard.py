# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runbook's Grafana dashboard from the rollout spec: panels by variant, thresholds drawn from the gates."""

from __future__ import annotations

from ansible_collections.cohort.rollout.plugins.module_utils.rollout_spec import (
    GRAFANA_UNIT, ensure_valid, selector, threshold_text,
)

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
            '%s %s' % (item[1], threshold_text(item[0], unit)) for item in found)
    targets = []
    for ref, variant in zip('AB', (spec['baseline'], spec['candidate'])):
        targets.append({'refId': ref, 'datasource': datasource,
                        'expr': selector(spec, metric, variant), 'legendFormat': variant})
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
    spec = ensure_valid(spec)
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
