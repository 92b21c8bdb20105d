# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The baseline-vs-canary judge (Kayenta's method): pure functions, no HTTP and no Ansible.

For each metric, the baseline's and the canary's points over the same window are compared
with a two-sided Mann-Whitney U test (scipy.stats.mannwhitneyu) and an allowed effect:

* ``nodata``  fewer than ``min_points`` finite points on either side (NaN, Inf and missing
  steps are dropped first): never a pass;
* ``high`` / ``low``  the difference is significant (p < 1 - confidence) AND the canary's centre
  (median, or mean for sparse series such as error rates) is above / below the baseline's by
  more than the allowed effect: ``max(effect * |baseline centre|, effect_abs)``;
* ``pass``  otherwise.

A ``high`` fails a metric whose direction is ``increase`` or ``either``, a ``low`` one whose
direction is ``decrease`` or ``either``. The score is the weight of the metrics that passed
(not failed, not nodata) over the total weight, 0-100. The verdict:

1. a failed ``critical`` metric: ``fail``; a ``critical`` metric with no data: ``nodata``;
2. score >= pass_score: ``pass``;
3. even counting every nodata metric as passed, score < marginal_score: ``fail``;
4. some metric has no data: ``nodata`` (it might pass with data; never a pass without);
5. score >= marginal_score: ``marginal``, else ``fail``.

``pass`` lets the phase advance; ``fail`` fails it (rollback); ``marginal`` and ``nodata``
are inconclusive (the phase does not advance).
"""

from __future__ import annotations

import math
import re
import statistics

try:
    from scipy import stats as _scipy_stats
    HAS_SCIPY = True
    SCIPY_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - exercised where scipy is absent
    _scipy_stats = None
    HAS_SCIPY = False
    SCIPY_IMPORT_ERROR = _exc

from ansible_collections.cohort.rollout.plugins.module_utils.durations import DurationError, parse_duration
from ansible_collections.cohort.rollout.plugins.module_utils.times import iso

DIRECTIONS = ('increase', 'decrease', 'either')  # which change is bad
STATISTICS = ('median', 'mean')
CLASSES = ('pass', 'high', 'low', 'nodata')
VERDICTS = ('pass', 'marginal', 'nodata', 'fail')
VARIANT_PLACEHOLDER = '$variant'
DEFAULTS = dict(confidence=0.98, pass_score=95.0, marginal_score=75.0, min_points=5, effect=0.1, effect_abs=0.0,
                direction='increase', statistic='median', weight=1.0, critical=False)

METRIC_OPTIONS = dict(
    name=dict(type='str', required=True),
    query=dict(type='str', required=True),
    direction=dict(type='str', default=DEFAULTS['direction']),
    effect=dict(type='float', default=DEFAULTS['effect']),
    effect_abs=dict(type='float', default=DEFAULTS['effect_abs']),
    statistic=dict(type='str', default=DEFAULTS['statistic']),
    weight=dict(type='float', default=DEFAULTS['weight']),
    critical=dict(type='bool', default=DEFAULTS['critical']),
)
# metric_gate's ``judge`` option (the action plugin validates with it; the doc module declares it).
JUDGE_OPTIONS = dict(
    baseline=dict(type='str', required=True),
    canary=dict(type='str', required=True),
    interval=dict(type='raw'),
    step=dict(type='raw', required=True),
    confidence=dict(type='float', default=DEFAULTS['confidence']),
    pass_score=dict(type='float', default=DEFAULTS['pass_score'], no_log=False),  # a score, not a password
    marginal_score=dict(type='float', default=DEFAULTS['marginal_score']),
    min_points=dict(type='int', default=DEFAULTS['min_points']),
    metrics=dict(type='list', elements='dict', required=True, options=METRIC_OPTIONS),
)


class JudgeSpecError(ValueError):
    """The judge's configuration is invalid; nothing has been queried or changed."""


def require_scipy():
    if not HAS_SCIPY:
        raise JudgeSpecError('the judge needs scipy on the controller (pip install scipy; requirements.txt pins it): %s'
                             % SCIPY_IMPORT_ERROR)


def _finite_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def normalize_judge(judge, label='judge'):
    """Validate a judge configuration; return the normalised copy or raise JudgeSpecError naming every problem."""
    errors = []
    if not isinstance(judge, dict):
        raise JudgeSpecError('%s must be a mapping, got %r' % (label, judge))
    out = dict(DEFAULTS)
    out.update((k, v) for k, v in judge.items() if v is not None and k != 'metrics')
    for key in ('baseline', 'canary'):
        if not isinstance(out.get(key), str) or not out[key].strip():
            errors.append('%s.%s must be a variant name, got %r' % (label, key, out.get(key)))
    if out.get('baseline') == out.get('canary') and out.get('baseline'):
        errors.append('%s.canary must differ from %s.baseline (%r)' % (label, label, out['baseline']))
    for key, required in (('step', True), ('interval', False)):
        value = out.get(key)
        if value in (None, ''):
            if required:
                errors.append('%s.%s is required' % (label, key))
            out[key] = None
            continue
        try:
            seconds = parse_duration(value, '%s.%s' % (label, key))
        except DurationError as exc:
            errors.append(str(exc))
            continue
        if seconds <= 0:
            errors.append('%s.%s must be greater than zero, got %r' % (label, key, value))
        out[key] = seconds
    confidence = out.get('confidence')
    if not _finite_number(confidence) or not 0 < confidence < 1:
        errors.append('%s.confidence must be within (0, 1), got %r' % (label, confidence))
    for key in ('pass_score', 'marginal_score'):
        if not _finite_number(out.get(key)) or not 0 <= out[key] <= 100:
            errors.append('%s.%s must be within [0, 100], got %r' % (label, key, out.get(key)))
    if _finite_number(out.get('pass_score')) and _finite_number(out.get('marginal_score')) \
            and out['marginal_score'] > out['pass_score']:
        errors.append('%s.marginal_score (%g) must not be above pass_score (%g)'
                      % (label, out['marginal_score'], out['pass_score']))
    min_points = out.get('min_points')
    if isinstance(min_points, bool) or not isinstance(min_points, int) or min_points < 3:
        errors.append('%s.min_points must be an integer >= 3, got %r' % (label, min_points))

    metrics = judge.get('metrics')
    norm_metrics = []
    if not isinstance(metrics, list) or not metrics:
        errors.append('%s.metrics must list at least one metric, got %r' % (label, metrics))
        metrics = []
    names = set()
    for index, metric in enumerate(metrics):
        path = '%s.metrics[%d]' % (label, index)
        if not isinstance(metric, dict):
            errors.append('%s must be a mapping, got %r' % (path, metric))
            continue
        m = dict((k, DEFAULTS[k]) for k in ('direction', 'effect', 'effect_abs', 'statistic', 'weight', 'critical'))
        m.update((k, v) for k, v in metric.items() if v is not None)
        name = m.get('name')
        if not isinstance(name, str) or not re.match(r'^[A-Za-z0-9_.:-]+$', name):
            errors.append('%s.name must be a name of letters, digits and _ . : -, got %r' % (path, name))
        elif name in names:
            errors.append('%s: duplicate metric name %r' % (path, name))
        else:
            path = '%s.metrics.%s' % (label, name)
        names.add(name)
        query = m.get('query')
        if not isinstance(query, str) or not query.strip():
            errors.append('%s.query must be PromQL, got %r' % (path, query))
        elif VARIANT_PLACEHOLDER not in query:
            errors.append('%s.query must contain %s (replaced by the baseline and the canary), got %r'
                          % (path, VARIANT_PLACEHOLDER, query))
        if m['direction'] not in DIRECTIONS:
            errors.append('%s.direction must be one of %s, got %r' % (path, ', '.join(DIRECTIONS), m['direction']))
        if m['statistic'] not in STATISTICS:
            errors.append('%s.statistic must be one of %s, got %r' % (path, ', '.join(STATISTICS), m['statistic']))
        for key in ('effect', 'effect_abs'):
            if not _finite_number(m[key]) or m[key] < 0:
                errors.append('%s.%s must be a number >= 0, got %r' % (path, key, m[key]))
        if not _finite_number(m['weight']) or m['weight'] < 0:
            errors.append('%s.weight must be a number >= 0, got %r' % (path, m['weight']))
        if not isinstance(m['critical'], bool):
            errors.append('%s.critical must be a boolean, got %r' % (path, m['critical']))
        norm_metrics.append(m)
    if norm_metrics and all(_finite_number(m['weight']) for m in norm_metrics) \
            and sum(m['weight'] for m in norm_metrics) <= 0:
        errors.append('%s.metrics: the weights sum to 0; at least one metric needs a positive weight' % label)
    if errors:
        raise JudgeSpecError('; '.join(errors))
    out['metrics'] = norm_metrics
    return out


def metric_query(metric, variant):
    """The PromQL of one metric for one variant."""
    return metric['query'].replace(VARIANT_PLACEHOLDER, variant)


def finite_points(values):
    """(finite floats, number dropped): None, NaN and +-Inf are not data."""
    kept = [float(v) for v in values if v is not None and not isinstance(v, bool) and math.isfinite(float(v))]
    return kept, len(values) - len(kept)


def centre(values, statistic):
    return statistics.median(values) if statistic == 'median' else statistics.fmean(values)


def compare(baseline, canary, direction='increase', effect=0.1, effect_abs=0.0, confidence=0.98, min_points=5,
            statistic='median'):
    """Classify one metric from the baseline's and the canary's points (lists of numbers, None or NaN allowed).

    Returns a dict: classification, failed (bool), both medians and means, the centres compared, the
    effect (absolute and relative), the allowed effect, U (the canary's), the p-value, points per side,
    points dropped per side, and a note.
    """
    base, base_dropped = finite_points(list(baseline))
    can, can_dropped = finite_points(list(canary))
    out = dict(points=dict(baseline=len(base), canary=len(can)),
               dropped=dict(baseline=base_dropped, canary=can_dropped),
               median=dict(baseline=statistics.median(base) if base else None,
                           canary=statistics.median(can) if can else None),
               mean=dict(baseline=statistics.fmean(base) if base else None,
                         canary=statistics.fmean(can) if can else None),
               statistic=statistic, u=None, p_value=None, effect=None, effect_relative=None, allowed_effect=None)
    if len(base) < min_points or len(can) < min_points:
        out.update(classification='nodata', failed=False,
                   note='too few points: baseline %d, canary %d (min_points %d; %d + %d not finite or missing)'
                        % (len(base), len(can), min_points, base_dropped, can_dropped))
        return out
    require_scipy()
    result = _scipy_stats.mannwhitneyu(can, base, alternative='two-sided')
    u, p = float(result.statistic), float(result.pvalue)
    if math.isnan(p):  # every point equal on both sides: no evidence of a difference
        p = 1.0
    c_base, c_can = centre(base, statistic), centre(can, statistic)
    diff = c_can - c_base
    allowed = max(effect * abs(c_base), effect_abs)
    if c_base != 0:
        relative = diff / abs(c_base)
    else:
        relative = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    significant = p < 1 - confidence
    if significant and diff > allowed:
        classification = 'high'
    elif significant and diff < -allowed:
        classification = 'low'
    else:
        classification = 'pass'
    failed = (classification == 'high' and direction in ('increase', 'either')) or \
             (classification == 'low' and direction in ('decrease', 'either'))
    if classification == 'pass':
        note = 'no significant difference beyond %s' % _num(allowed) if significant else \
            'p=%s >= %s: not significant' % (_num(p), _num(1 - confidence))
    else:
        note = '%s %s than baseline by %s (allowed %s), p=%s' % (statistic, 'higher' if diff > 0 else 'lower',
                                                                 _num(abs(diff)), _num(allowed), _num(p))
    out.update(classification=classification, failed=failed, u=u, p_value=p, effect=diff,
               effect_relative=relative if math.isfinite(relative) else None, allowed_effect=allowed, note=note)
    return out


def _num(value):
    return '%.4g' % value


def score(results, metrics, pass_score=95.0, marginal_score=75.0):
    """(score 0-100, verdict, reasons) from per-metric results {name: compare()} and the metric configs."""
    total = float(sum(m['weight'] for m in metrics))
    passed = sum(m['weight'] for m in metrics if results[m['name']]['classification'] != 'nodata'
                 and not results[m['name']]['failed'])
    nodata_weight = sum(m['weight'] for m in metrics if results[m['name']]['classification'] == 'nodata')
    value = 100.0 * passed / total if total > 0 else 0.0
    best = 100.0 * (passed + nodata_weight) / total if total > 0 else 0.0
    failed = [m['name'] for m in metrics if results[m['name']]['failed']]
    nodata = [m['name'] for m in metrics if results[m['name']]['classification'] == 'nodata']
    critical_failed = [m['name'] for m in metrics if m['critical'] and results[m['name']]['failed']]
    critical_nodata = [m['name'] for m in metrics if m['critical'] and m['name'] in nodata]
    reasons = ['%s %s: %s' % (name, results[name]['classification'], results[name]['note']) for name in failed]
    reasons += ['%s nodata: %s' % (name, results[name]['note']) for name in nodata]
    if critical_failed:
        verdict = 'fail'
        reasons.insert(0, 'critical metric(s) failed: %s' % ', '.join(critical_failed))
    elif critical_nodata:
        verdict = 'nodata'
        reasons.insert(0, 'critical metric(s) without data: %s' % ', '.join(critical_nodata))
    elif value >= pass_score:
        verdict = 'pass'
    elif best < marginal_score:
        verdict = 'fail'
    elif nodata:
        verdict = 'nodata'
    elif value >= marginal_score:
        verdict = 'marginal'
    else:
        verdict = 'fail'
    return round(value, 2), verdict, reasons


def judge(points, config):
    """One judgement. ``points`` maps metric name -> (baseline values, canary values).

    Returns {score, verdict, reasons, metrics: {name: compare() + weight, critical, direction}}.
    """
    results = {}
    for metric in config['metrics']:
        base, can = points.get(metric['name'], ([], []))
        res = compare(base, can, direction=metric['direction'], effect=metric['effect'],
                      effect_abs=metric['effect_abs'], confidence=config['confidence'],
                      min_points=config['min_points'], statistic=metric['statistic'])
        res.update(weight=metric['weight'], critical=metric['critical'], direction=metric['direction'])
        results[metric['name']] = res
    value, verdict, reasons = score(results, config['metrics'], config['pass_score'], config['marginal_score'])
    return dict(score=value, verdict=verdict, reasons=reasons, metrics=results)


def judge_window(range_series, config, start, end):
    """One judgement over [start, end]: per metric and side one range query, same window and step.

    ``range_series(query, start, end, step)`` returns ``(values, note)`` (the Prometheus client's
    range query of one series; errors are a note and no values). A note of either side is kept
    with the metric (``query_notes``) and explains a ``nodata``.
    """
    points = {}
    notes = {}
    for metric in config['metrics']:
        sides = []
        for variant in (config['baseline'], config['canary']):
            values, note = range_series(metric_query(metric, variant), start, max(end, start), config['step'])
            sides.append(values)
            if note:
                notes.setdefault(metric['name'], {})[variant] = note
        points[metric['name']] = tuple(sides)
    judgement = judge(points, config)
    for name, by_variant in notes.items():
        res = judgement['metrics'][name]
        res['query_notes'] = by_variant
        if res['classification'] == 'nodata':
            res['note'] += '; ' + '; '.join('%s: %s' % item for item in sorted(by_variant.items()))
    judgement['window'] = dict(start=iso(start), end=iso(end), seconds=round(end - start, 3),
                               step=config['step'])
    return judgement


def phase_outcome(verdict):
    """What a judge verdict means for the phase: passed, failed or inconclusive."""
    return {'pass': 'passed', 'fail': 'failed'}.get(verdict, 'inconclusive')


def summary_line(phase, judgement, final=False):
    """One terminal line per judgement: score, verdict and each metric's class."""
    parts = []
    for name, res in judgement['metrics'].items():
        mark = res['classification'] + ('!' if res['failed'] else '')
        if res['median']['canary'] is not None and res['median']['baseline'] is not None:
            parts.append('%s=%s (%s vs %s, p=%s)' % (name, mark, _num(res['median']['canary']),
                                                     _num(res['median']['baseline']),
                                                     _num(res['p_value']) if res['p_value'] is not None else '-'))
        else:
            parts.append('%s=%s' % (name, mark))
    window = judgement.get('window') or {}
    return '[%s judge%s%s] score %s -> %s | %s' % (
        phase, ' final' if final else '', (' %ss' % int(window['seconds'])) if window.get('seconds') is not None else '',
        _num(judgement['score']), judgement['verdict'].upper(), ' | '.join(parts))
