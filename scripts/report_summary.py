"""Print a readable summary of the rollout report (JSON at rollout_report_path).

  python3 scripts/report_summary.py [REPORT]   (default .sandbox/report.json)

Per phase: status, start/end and duration, traffic share, and for every gate its
worst value against its threshold (pass/FAIL), samples taken, failures, no-data
samples; the judge's judgements (one line each: window, score, verdict) and, for the
latest, every metric (class, both medians, effect, p-value, points per side); then the
rollback (reason, durations). Exit status 0; 2 when the report cannot be read.
"""
from __future__ import annotations

import datetime
import json
import os
import sys

PHASES = ('canary', 'ramp', 'rollout')
OPS = {'lt': '<', 'le': '<=', 'gt': '>', 'ge': '>='}


def epoch(text):
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text).replace('Z', '+00:00')).timestamp()
    except ValueError:
        return None


def fmt(value):
    if value is None:
        return 'no data'
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return '%.3g' % value
        return ('%.4f' % value).rstrip('0').rstrip('.')
    return str(value)


def holds(op, value, threshold):
    return {'lt': value < threshold, 'le': value <= threshold, 'gt': value > threshold, 'ge': value >= threshold}[op]


def phase_lines(name, rec):
    start = rec.get('phase_started_at') or rec.get('started_at')
    end = rec.get('phase_ended_at') or rec.get('ended_at')
    took = ''
    if epoch(start) and epoch(end):
        took = ' in %.0f s' % (epoch(end) - epoch(start))
    share = rec.get('shares', {})
    share_text = ', '.join('%s %s' % (k, fmt(v)) for k, v in sorted(share.items())) if share else 'not shifted'
    status = str(rec.get('status', '?')).upper()
    extra = ' (rolled back)' if rec.get('rolled_back') else ''
    forced = ' [FORCED]' if rec.get('forced') else ''
    lines = ['%-8s %s%s%s%s  started %s  traffic: %s' % (name, status, extra, forced, took, start or '-', share_text)]
    gates = rec.get('gates') or {}
    for gname, gate in sorted(gates.items()):
        worst = gate.get('worst')
        op, threshold = gate.get('op'), gate.get('threshold')
        verdict = '-'
        if worst is not None and op in OPS and threshold is not None:
            verdict = 'ok' if holds(op, worst, threshold) else 'FAIL'
        lines.append('    %-16s worst %-10s %s %-10s %-4s  (%d samples: %d pass, %d fail, %d no data)' % (
            gname, fmt(worst), OPS.get(op, op), fmt(threshold), verdict,
            gate.get('passes', 0) + gate.get('failures', 0) + gate.get('inconclusive', 0),
            gate.get('passes', 0), gate.get('failures', 0), gate.get('inconclusive', 0)))
    lines.extend(judge_lines(rec.get('judge')))
    verdict = rec.get('verdict') or {}
    for reason in verdict.get('reasons') or []:
        lines.append('    reason: %s' % reason)
    if rec.get('investigate'):
        lines.append('    investigate: %s' % ', '.join(rec['investigate']))
    return lines


def judge_lines(judge):
    """The phase's judge: one line per judgement, then the metrics of the latest one."""
    if not judge:
        return []
    cfg = judge.get('config') or {}
    lines = ['    judge (%s vs %s, pass >= %s, marginal >= %s): %s' % (
        cfg.get('canary', '?'), cfg.get('baseline', '?'), fmt(cfg.get('pass_score')), fmt(cfg.get('marginal_score')),
        str(judge.get('verdict') or 'not judged').upper())]
    for item in judge.get('judgements') or []:
        window = item.get('window') or {}
        lines.append('      %s %-6s over %4s s: score %-6s %s' % (
            item.get('at', '-'), 'final' if item.get('final') else '', fmt(window.get('seconds')),
            fmt(item.get('score')), str(item.get('verdict', '?')).upper()))
    for name, res in sorted((judge.get('metrics') or {}).items()):
        median = res.get('median') or {}
        points = res.get('points') or {}
        lines.append('      %-16s %-6s%s canary %-10s baseline %-10s effect %-10s p %-8s points %s/%s' % (
            name, res.get('classification', '?'), '!' if res.get('failed') else ' ', fmt(median.get('canary')),
            fmt(median.get('baseline')), fmt(res.get('effect')), fmt(res.get('p_value')),
            points.get('canary', 0), points.get('baseline', 0)))
    return lines


def rollback_lines(rec):
    durations = rec.get('durations') or {}
    lines = ['rollback %s (%s, phase %s) at %s' % (
        str(rec.get('status', '?')).upper(), rec.get('trigger', '?'),
        rec.get('phase') or '-', rec.get('trip_at') or rec.get('started_at'))]
    lines.append('    reason: %s' % rec.get('reason', ''))
    if durations:
        lines.append('    trip -> shares reverted %s s, trip -> complete %s s' % (
            durations.get('trip_to_shares_reverted_s', '?'), durations.get('trip_to_complete_s', '?')))
    lines.append('    traffic now: %s; logs archived: %s' % (
        ', '.join('%s %s' % (k, fmt(v)) for k, v in sorted((rec.get('shares') or {}).items())) or '?',
        ', '.join(rec.get('logs_archived') or []) or 'none'))
    return lines


def summary(report):
    lines = []
    for name in PHASES:
        if name in report:
            lines.extend(phase_lines(name, report[name]))
    if 'rollback' in report:
        lines.extend(rollback_lines(report['rollback']))
    if not lines:
        lines.append('the report has no phase yet')
    return lines


def main(argv):
    path = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                      '.sandbox', 'report.json')
    try:
        with open(path, encoding='utf-8') as handle:
            report = json.load(handle)
    except (OSError, ValueError) as exc:
        sys.stderr.write('cannot read report %s: %s\n' % (path, exc))
        return 2
    sys.stdout.write('Rollout report %s\n' % path)
    sys.stdout.write('\n'.join(summary(report)) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
