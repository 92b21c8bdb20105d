# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout's state in one document, and as one screen of text (playbooks/status.yml).

Pure functions: the action plugin ``cohort.rollout.rollout_status`` gathers the inputs (the
load balancer's answer, the lock query of each load balancer host, the probe of each
candidate host, the report) and this module judges and formats them. Nothing here does I/O.
"""

from __future__ import annotations

import math
import re

from ansible_collections.cohort.rollout.plugins.module_utils.times import epoch_or_none

STATUS_ARGUMENT_SPEC = dict(
    report_path=dict(type='path', required=True),
    lb_api_url=dict(type='str', default=''),
    lb_api_token=dict(type='str', no_log=True),
    validate_certs=dict(type='bool', default=True),
    timeout=dict(type='float', default=5.0),
    locks=dict(type='list', elements='raw', default=[]),
    candidates=dict(type='dict', default={}),
    baseline=dict(type='str', required=True),
    candidate=dict(type='str', required=True),
    phases=dict(type='list', elements='str', default=['canary', 'ramp', 'rollout']),
    format=dict(type='str', default='text', choices=['text', 'json']),
    output=dict(type='path'),
    copies=dict(type='list', elements='dict', default=[]),
)
OPS = {'lt': '<', 'le': '<=', 'gt': '>', 'ge': '>='}
TERMINAL = ('passed', 'failed', 'inconclusive')


def fmt(value):
    if value is None:
        return 'no data'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return '%.3g' % value
        return ('%.4f' % value).rstrip('0').rstrip('.')
    return str(value)


def pct(share):
    try:
        return '%s%%' % fmt(round(float(share) * 100, 3))
    except (TypeError, ValueError):
        return '?'


def shares_view(answer, error=None):
    """What the load balancer says: {ok, shares, weights} or {ok: False, error}."""
    if error or not isinstance(answer, dict) or not isinstance(answer.get('shares'), dict):
        return dict(ok=False, error=error or 'the weights API answer has no shares: %r' % (answer,))
    return dict(ok=True, shares=answer['shares'], weights=answer.get('weights') or {})


def lock_view(results):
    """One entry per load balancer host from rollout_lock state=query results (a loop's results)."""
    out = []
    for res in results or []:
        if not isinstance(res, dict):
            continue
        host = res.get('item') or res.get('_ansible_delegated_vars', {}).get('ansible_host') or '?'
        if res.get('failed') or res.get('unreachable'):
            out.append(dict(host=host, ok=False, error=res.get('msg') or 'lock not readable'))
            continue
        entry = dict(host=host, ok=True, held=bool(res.get('held')), path=res.get('path'))
        if res.get('holder'):
            holder = res['holder']
            entry.update(holder=dict((k, holder.get(k)) for k in ('id', 'controller', 'pid', 'user', 'phase',
                                                                  'acquired_at', 'expires_at') if k in holder),
                         stale=bool(res.get('stale')), expired=bool(res.get('expired')),
                         holder_alive=res.get('holder_alive'))
        out.append(entry)
    return out


def candidate_view(probes):
    """{host: probe} from the candidate hosts' own HTTP probe (ansible.builtin.uri of /readyz on the host)."""
    out = []
    for host in sorted(probes or {}):
        probe = probes[host] if isinstance(probes[host], dict) else {}
        status = probe.get('status')
        body = probe.get('json') if isinstance(probe.get('json'), dict) else {}
        if probe.get('skipped'):
            state, detail = 'unknown', 'not probed (%s)' % (probe.get('skip_reason') or 'skipped')
        elif probe.get('unreachable'):
            state, detail = 'unknown', 'host unreachable: %s' % (probe.get('msg') or '')
        elif status == 200:
            state, detail = 'running', 'ready (%s)' % (body.get('variant') or 'variant not said')
        elif isinstance(status, int) and status > 0:
            state, detail = 'running', 'answers HTTP %s: %s' % (status, body.get('reason') or body.get('status') or '')
        elif not probe:
            state, detail = 'unknown', 'no probe result'
        else:
            msg = probe.get('msg') or ''
            found = re.search(r'<\w+ error (.*)>', msg)  # "Request failed: <... error [Errno 111] Connection refused>"
            reason = found.group(1) if found else msg[:200]
            state, detail = 'stopped', 'nothing answers at %s (%s)' % (probe.get('url') or '?', reason)
        out.append(dict(host=host, state=state, detail=detail.strip(), url=probe.get('url')))
    return out


def phase_view(report, phases):
    """Per phase of the report: status, times, share, samples, first reason, latest sample of each gate."""
    out = []
    for name in phases:
        rec = report.get(name) if isinstance(report, dict) else None
        if not isinstance(rec, dict):
            continue
        verdict = rec.get('verdict') if isinstance(rec.get('verdict'), dict) else {}
        samples = rec.get('samples') if isinstance(rec.get('samples'), list) else []
        gates = rec.get('gates') if isinstance(rec.get('gates'), dict) else {}
        latest = {}
        for sample in reversed(samples):
            values = sample.get('values') if isinstance(sample, dict) else None
            if not isinstance(values, dict):
                continue
            for gate, entry in values.items():
                if gate in latest or not isinstance(entry, dict):
                    continue
                info = gates.get(gate) if isinstance(gates.get(gate), dict) else {}
                latest[gate] = dict(value=entry.get('value'), status=entry.get('status'), note=entry.get('note'),
                                    at=sample.get('at'), n=sample.get('n'), op=info.get('op'),
                                    threshold=info.get('threshold'))
        shares = rec.get('shares') if isinstance(rec.get('shares'), dict) else {}
        out.append(dict(
            phase=name, status=rec.get('status') or 'unknown',
            started_at=rec.get('phase_started_at') or rec.get('started_at'),
            ended_at=rec.get('phase_ended_at') or rec.get('ended_at'),
            shares=shares, samples=len(samples),
            planned_samples=(rec.get('gate_config') or {}).get('sample_count')
            if isinstance(rec.get('gate_config'), dict) else None,
            rolled_back=bool(rec.get('rolled_back')), reasons=list(verdict.get('reasons') or []),
            latest=latest))
    return out


def rollback_view(report):
    rec = report.get('rollback') if isinstance(report, dict) else None
    if not isinstance(rec, dict):
        return None
    durations = rec.get('durations') if isinstance(rec.get('durations'), dict) else {}
    return dict(status=rec.get('status'), trigger=rec.get('trigger'), phase=rec.get('phase'), reason=rec.get('reason'),
                started_at=rec.get('started_at'), ended_at=rec.get('ended_at'),
                trip_to_shares_reverted_s=durations.get('trip_to_shares_reverted_s'),
                trip_to_complete_s=durations.get('trip_to_complete_s'))


def build_status(report, report_problems, shares, locks, candidates, baseline, candidate, phases, report_path,
                 html=None, now=None):
    """The status document, with a one-line summary and the warnings that need a human."""
    phase_list = phase_view(report or {}, phases)
    rollback = rollback_view(report or {})
    warnings = list(report_problems or [])
    running = [p for p in phase_list if p['status'] == 'running']
    held = [lock for lock in locks if lock.get('held')]
    cand_share = shares.get('shares', {}).get(candidate) if shares.get('ok') else None
    cand_running = [c for c in candidates if c['state'] == 'running']
    if not shares.get('ok'):
        warnings.append('the load balancer did not say its shares: %s' % shares.get('error'))
    for lock in locks:
        if not lock.get('ok'):
            warnings.append('lock on %s not readable: %s' % (lock['host'], lock.get('error')))
        elif lock.get('held') and lock.get('stale'):
            warnings.append('the rollout lock on %s is STALE (holder %s): a run died; rollback.yml -e '
                            'rollout_break_lock=true' % (lock['host'], lock.get('holder', {}).get('id')))
    if running and not held:
        warnings.append('phase %s is "running" in the report but no run holds the lock: that run died '
                        '(see rollback.yml)' % running[0]['phase'])
    if cand_share and cand_share > 0 and candidates and not cand_running:
        warnings.append('%s gets %s of the traffic but no %s analyzer answers' % (candidate, pct(cand_share),
                                                                                  candidate))
    # The headline: what a person wants first.
    last_start = max([epoch_or_none(p['started_at']) or 0 for p in phase_list] or [0])
    if rollback and (epoch_or_none(rollback.get('started_at')) or 0) >= last_start and rollback.get('status'):
        reason = str(rollback.get('reason') or '')
        headline = 'ROLLED BACK (%s, %s) at %s: %s' % (
            rollback.get('trigger'), rollback.get('phase') or 'no phase',
            rollback.get('ended_at') or rollback.get('started_at'), reason if len(reason) <= 90 else reason[:87] + '...')
    elif running:
        phase = running[0]
        headline = 'phase %s RUNNING: sample %s of %s' % (phase['phase'], phase['samples'],
                                                          phase['planned_samples'] or '?')
    elif phase_list:
        last = sorted(phase_list, key=lambda p: epoch_or_none(p['started_at']) or 0)[-1]
        headline = 'last phase %s %s' % (last['phase'], str(last['status']).upper())
        if last['phase'] == phases[-1] and last['status'] == 'passed':
            headline = 'rollout COMPLETE: every phase passed'
    else:
        headline = 'no rollout recorded in the report'
    if shares.get('ok'):
        headline += '; traffic now %s' % ', '.join('%s %s' % (k, pct(v)) for k, v in sorted(shares['shares'].items()))
    return dict(headline=headline, report_path=report_path, report_readable=report is not None,
                shares=shares, locks=locks, candidate=dict(pool=candidate, hosts=candidates),
                baseline=baseline, phases=phase_list, rollback=rollback, html=html or {}, warnings=warnings)


def render_text(status):
    """One screen of text."""
    lines = ['ROLLOUT STATUS  %s' % status['headline']]
    shares = status['shares']
    if shares.get('ok'):
        lines.append('traffic (load balancer): %s' % ', '.join(
            '%s %s' % (k, pct(v)) for k, v in sorted(shares['shares'].items())))
    else:
        lines.append('traffic (load balancer): UNKNOWN - %s' % shares.get('error'))
    for lock in status['locks']:
        if not lock.get('ok'):
            lines.append('lock on %s: UNREADABLE - %s' % (lock['host'], lock.get('error')))
        elif not lock.get('held'):
            lines.append('lock on %s: free' % lock['host'])
        else:
            holder = lock.get('holder', {})
            lines.append('lock on %s: held by %s@%s pid %s, phase %s, since %s%s' % (
                lock['host'], holder.get('user'), holder.get('controller'), holder.get('pid'), holder.get('phase'),
                holder.get('acquired_at'), ' - STALE' if lock.get('stale') else ''))
    hosts = status['candidate']['hosts']
    if not hosts:
        lines.append('candidate %s: no host in the inventory' % status['candidate']['pool'])
    for host in hosts:
        lines.append('candidate %s on %s: %s, %s' % (
            status['candidate']['pool'], host['host'], host['state'].upper(), host['detail']))
    if not status['report_readable']:
        lines.append('report %s: not readable' % status['report_path'])
    for phase in status['phases']:
        took = ''
        start, end = epoch_or_none(phase['started_at']), epoch_or_none(phase['ended_at'])
        if start and end:
            took = ' in %.0f s' % (end - start)
        lines.append('%-8s %-12s%s  started %s  samples %s%s' % (
            phase['phase'], str(phase['status']).upper() + (' (rolled back)' if phase['rolled_back'] else ''),
            took, phase['started_at'] or '-', phase['samples'],
            ('/%s' % phase['planned_samples']) if phase['planned_samples'] else ''))
        for gate in sorted(phase['latest']):
            sample = phase['latest'][gate]
            word = {'pass': 'ok', 'fail': 'FAIL', 'inconclusive': 'NO DATA'}.get(sample['status'], sample['status'])
            lines.append('    %-16s %-10s %s %-8s %-7s sample %s at %s' % (
                gate, fmt(sample['value']), OPS.get(sample['op'], sample['op'] or '?'), fmt(sample['threshold']), word,
                sample['n'], sample['at']))
        for reason in phase['reasons'][:1]:
            lines.append('    reason: %s' % (reason if len(reason) < 200 else reason[:197] + '...'))
    rollback = status['rollback']
    if rollback:
        lines.append('rollback %s (%s, phase %s) at %s: trip -> shares reverted %s s, trip -> complete %s s' % (
            str(rollback['status']).upper(), rollback['trigger'], rollback['phase'] or '-', rollback['started_at'],
            fmt(rollback['trip_to_shares_reverted_s']), fmt(rollback['trip_to_complete_s'])))
    html = status.get('html') or {}
    if html.get('path'):
        lines.append('HTML report: %s%s' % (html['path'], '' if html.get('current') else ' (%s)' % html.get('note')))
    for warning in status['warnings']:
        lines.append('WARNING: %s' % warning)
    return lines
