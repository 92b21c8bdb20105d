# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin cohort.rollout.metric_gate: bake a phase under metric gates, on the controller.

Documentation: plugins/modules/metric_gate.py (``ansible-doc cohort.rollout.metric_gate``).
The logic lives in module_utils/gates.py (pure), the HTTP client in
module_utils/prometheus.py and the report writer in module_utils/report.py.
Nothing runs on the target host.
"""

from __future__ import annotations

import os
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.cohort.rollout.plugins.module_utils import gates, guard_api, times
from ansible_collections.cohort.rollout.plugins.module_utils import judge as judge_utils
from ansible_collections.cohort.rollout.plugins.module_utils.arguments import ArgumentError, validate_args
from ansible_collections.cohort.rollout.plugins.module_utils.merge import deep_merge
from ansible_collections.cohort.rollout.plugins.module_utils.prometheus import (
    HttpGetter, PrometheusClient, PrometheusError, range_values, series_count, series_values, single_value,
)
from ansible_collections.cohort.rollout.plugins.module_utils.report import (
    ReportError, update_phase,
)
from ansible_collections.cohort.rollout.plugins.module_utils.traffic import ApplyError, TrafficError, check_shares
from ansible_collections.cohort.rollout.plugins.module_utils.weights_api import post_shares

display = Display()


class Sampler(object):
    """Turns a check into (value, note) through the Prometheus client or a JSON URL."""

    def __init__(self, params, transport=None):
        self.transport = transport
        self.client = None
        if params.get('prometheus_url'):
            self.client = PrometheusClient(
                params['prometheus_url'], username=params.get('prometheus_username'),
                password=params.get('prometheus_password'), token=params.get('prometheus_token'),
                validate_certs=params['validate_certs'], ca_path=params.get('ca_path'),
                timeout=params['timeout'], transport=transport)
        self.params = params

    def json_getter(self, check):
        return HttpGetter(token=check.get('token'), headers=check.get('headers'),
                          validate_certs=self.params['validate_certs'], ca_path=self.params.get('ca_path'),
                          timeout=self.params['timeout'], transport=self.transport)

    def instant(self, query):
        try:
            return single_value(self.client.query(query))
        except PrometheusError as exc:
            return None, exc.short() + ': ' + exc.message[:160]

    def __call__(self, check):
        if check['source'] == 'json':
            try:
                doc = self.json_getter(check).get_json(check['url'])
            except PrometheusError as exc:
                return None, exc.short()
            return gates.json_path_value(doc, check['path'])
        return self.instant(check['query'])

    def requests(self, query):
        return self.instant(query)

    def range_series(self, query, start, end, step):
        """(values, note) of a range query that must select one series; errors are a note, not an exception."""
        try:
            return series_values(self.client.query_range(query, start, end, step))
        except PrometheusError as exc:
            return [], exc.short() + ': ' + exc.message[:160]

    def judge(self, cfg, start, end):
        """One judgement over [start, end] (module_utils/judge.judge_window)."""
        return judge_utils.judge_window(self.range_series, cfg, start, end)


class ActionModule(ActionBase):
    """Bake a phase under metric gates (see the module documentation)."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(gates.ARGUMENT_SPEC)

    # Tests substitute these (a fake transport and clock); None = the real ones.
    transport = None
    clock = None

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        try:
            params = validate_args('metric_gate', self._task.args, gates.ARGUMENT_SPEC,
                                   mutually_exclusive=gates.MUTUALLY_EXCLUSIVE,
                                   required_together=gates.REQUIRED_TOGETHER)
        except ArgumentError as exc:
            raise AnsibleActionFail(str(exc))
        try:
            spec = gates.normalize_spec(params)
            if params.get('revert'):
                check_shares(params['revert']['shares'])
        except (gates.GateSpecError, TrafficError) as exc:
            raise AnsibleActionFail('metric_gate: invalid arguments: %s' % exc)
        try:
            sampler = Sampler(params, transport=self.transport)
        except ValueError as exc:
            raise AnsibleActionFail('metric_gate: invalid arguments: %s' % exc)

        # Every PromQL query is checked with one instant query before any waiting.
        problem = self._validate_queries(spec, sampler)
        if problem:
            result.update(failed=True, changed=False, verdict=problem[0], reasons=[problem[1]], msg=problem[1],
                          samples=[], checks={}, phase=spec['phase'], ended_epoch=round(time.time(), 3))
            if not self._task.check_mode and not params['validate_only']:
                self._revert(params.get('revert'), spec['phase'], result)
            return result
        if params['validate_only']:
            result.update(changed=False, failed=False, phase=spec['phase'],
                          msg='metric_gate: the arguments and every query of phase %s are valid' % spec['phase'])
            return result

        if self._task.check_mode:
            result.update(self._rehearse(spec, sampler))
            return result

        report_path = params.get('report_path')
        extra = params.get('extra_report') or {}
        warnings = []

        def on_update(record):
            if not report_path:
                return
            data = gates.ensure_json_safe(dict(record))
            if extra:
                data = deep_merge(data, extra)
            try:
                update_phase(report_path, spec['phase'], data)
            except ReportError as exc:
                if record.get('status') == 'running' and not record.get('samples'):
                    raise AnsibleActionFail('metric_gate: cannot write the report before the bake: %s' % exc)
                if not warnings:
                    warnings.append('metric_gate: report not updated: %s' % exc)
                    display.warning(warnings[-1])

        fenced = []
        controller = os.getppid()  # this worker's ansible-playbook process
        bake = gates.Bake(
            spec, sampler, emit=display.display, clock=self.clock,
            requests_sampler=(lambda: sampler.requests(spec['min_requests']['query'])) if spec['min_requests'] else None,
            on_update=on_update,
            judge_runner=(lambda start, end: sampler.judge(spec['judge'], start, end)) if spec['judge'] else None,
            before_sample=lambda: self._renew(params.get('guard'), spec['phase'], fenced, controller))
        try:
            outcome = bake.run()
        except Exception:
            self._revert(params.get('revert'), spec['phase'], {})
            raise
        result.update(outcome)
        if fenced:
            # Superseded or rolled back: the guard (or a rollback) already owns the traffic; touch nothing.
            # fenced_by tells the phase's rescue whether it still has a rollback to complete (guard).
            result.update(fenced=True, fenced_by=fenced[0])
        elif outcome['verdict'] != 'passed':
            self._revert(params.get('revert'), spec['phase'], result)
        if report_path:
            result['report_path'] = report_path
        if warnings:
            result['warnings'] = warnings
        return result

    @staticmethod
    def _renew(guard, phase, fenced, controller):
        """Renew the guard's lease on every load balancer; a text (stop the bake) when it was fenced off.

        A guard that cannot be reached is a warning: if that lasts, the guard reverts when the lease expires,
        and the next renewal is then refused as fenced. A worker whose ansible-playbook process is gone
        (ansible-core detaches workers into their own session, so they outlive it) renews nothing: it stops,
        touches no traffic, and lets the lease run out, so that the guard reverts.
        """
        if not guard:
            return None
        if os.getppid() != controller:
            fenced.append('controller_gone')
            return ('phase %s: the ansible-playbook process (pid %d) is gone; this orphaned worker stops without '
                    'renewing the lease, the rollout guard reverts the traffic when it expires' % (phase, controller))
        for url in guard['urls']:
            try:
                guard_api.renew(url, guard['generation'], token=guard.get('token'),
                                lease_seconds=guard.get('lease_seconds'), validate_certs=guard['validate_certs'],
                                timeout=guard['timeout'])
            except guard_api.GuardRefused as exc:
                if exc.status == 409:
                    by, why = guard_api.fence_cause(url, guard['generation'], token=guard.get('token'),
                                                    validate_certs=guard['validate_certs'], timeout=guard['timeout'])
                    fenced.append(by)
                    message = ('phase %s fenced: %s; the rollout guard refused to renew generation %d (%s); the '
                               'traffic belongs to the guard or to a rollback now, this run stops' % (
                                   phase, why, guard['generation'], exc.message))
                    display.display('[%s] %s' % (phase, message))
                    return message
                display.warning('metric_gate: lease not renewed at %s: %s' % (url, exc.message))
            except guard_api.GuardError as exc:
                display.warning('metric_gate: lease not renewed (the guard reverts if this lasts): %s' % exc)
        return None

    @staticmethod
    def _revert(revert, phase, result):
        """The bake did not pass: put the traffic back through the weights API at once (option ``revert``).

        Runs before the task returns, so that the traffic is safe in the time of one HTTP call rather
        than after the next Ansible task starts. A failure here is reported, not raised: the play's
        rescue reverts again through the rollback role.
        """
        if not revert:
            return
        try:
            answer = post_shares(revert['api_url'], revert['shares'], token=revert.get('api_token'),
                                 validate_certs=revert['validate_certs'], timeout=revert['timeout'],
                                 generation=revert.get('generation'))
        except (TrafficError, ApplyError) as exc:
            result['revert'] = dict(ok=False, error=str(exc))
            display.warning('metric_gate: could not revert the traffic: %s' % exc)
            return
        result['reverted_at'] = round(time.time(), 3)
        result['revert'] = dict(ok=True, changed=bool(answer['changed']),
                                shares=(answer.get('after') or {}).get('shares'))
        display.display('[%s] traffic reverted by the gate: shares %s' % (phase, result['revert']['shares']))

    @staticmethod
    def _validate_queries(spec, sampler):
        """(verdict, message) when a query is invalid or Prometheus cannot be reached; else None."""
        queries = [(c['name'], c['query']) for c in spec['checks'] if c['source'] == 'prometheus']
        if spec['min_requests']:
            queries.append(('min_requests', spec['min_requests']['query']))
        judge = spec['judge']
        for metric in (judge or {}).get('metrics', []):
            for side in ('baseline', 'canary'):
                queries.append(('judge metric %s (%s)' % (metric['name'], side),
                                judge_utils.metric_query(metric, judge[side]), side))
        for item in queries:
            name, query = item[0], item[1]
            side = item[2] if len(item) > 2 else None
            try:
                data = sampler.client.query(query)
            except PrometheusError as exc:
                if exc.error_type in ('bad_data',):
                    what = name if side else 'gate %s' % name
                    return 'failed', 'metric_gate: query of %s is invalid, Prometheus says: %s (query: %s)' % (
                        what, exc.message, query)
                if exc.error_type in ('timeout', 'connection', 'tls'):
                    return 'inconclusive', ('metric_gate: Prometheus unreachable before the bake (%s: %s); '
                                            'no gate can be judged' % (exc.error_type, exc.message))
                # Other answers (execution errors, HTTP 5xx) are judged per sample.
                continue
            if side is None:
                continue
            count = series_count(data)
            # One series per side. The canary may not be scraped yet (no series); the baseline must be.
            if count > 1 or (count == 0 and side == 'baseline'):
                return 'failed', ('metric_gate: query of %s selects %d series, not one per side (query: %s)'
                                  % (name, count, query))
        return None

    def _rehearse(self, spec, sampler):
        """Check mode: evaluate the checks over the past window with range queries; touch nothing."""
        now = (self.clock or gates.RealClock()).wall()
        stamps = gates.rehearsal_timestamps(now, spec['duration'], spec['interval'])
        per_gate = {}
        for check in spec['checks']:
            if check['source'] != 'prometheus':
                per_gate[check['name']] = dict(samples=0, would='not rehearsable',
                                               note='source json has no history to replay')
                display.display('[%s rehearsal] %s: source json has no history, not rehearsed'
                                % (spec['phase'], check['name']))
                continue
            try:
                data = sampler.client.query_range(check['query'], stamps[0], stamps[-1], spec['interval'])
                mapped = range_values(data, stamps)
                points = [(ts, mapped[ts][0], mapped[ts][1]) for ts in stamps]
            except PrometheusError as exc:
                points = [(ts, None, exc.short()) for ts in stamps]
            summary = gates.rehearse_check(check, points)
            summary.update(op=check['op'], threshold=check['threshold'], query=check['query'],
                           failure_limit=check['failure_limit'], inconclusive_limit=check['inconclusive_limit'])
            per_gate[check['name']] = summary
            display.display('[%s rehearsal] %s %s %g: %d samples, %d pass, %d fail, %d no data, worst %s -> %s'
                            % (spec['phase'], check['name'], gates.OPS[check['op']][0], check['threshold'],
                               summary['samples'], summary['passed'], summary['failed'], summary['no_data'],
                               gates.fmt_value(summary['worst']), summary['would']))
        min_requests = None
        if spec['min_requests']:
            value, note = sampler.requests(spec['min_requests']['query'])
            status, cnote = gates.classify(value, 'ge', spec['min_requests']['threshold'])
            min_requests = dict(value=value if status != 'inconclusive' else None,
                                threshold=spec['min_requests']['threshold'], status=status,
                                note=note or cnote)
        outcomes = [g['would'] for g in per_gate.values() if g['would'] != 'not rehearsable']
        judgement = None
        if spec['judge']:
            judgement = sampler.judge(spec['judge'], stamps[0], stamps[-1])
            judgement['final'] = True
            display.display(judge_utils.summary_line(spec['phase'] + ' rehearsal', judgement, final=True))
            outcomes.append(judge_utils.phase_outcome(judgement['verdict']))
        if 'failed' in outcomes:
            would = 'failed'
        elif 'inconclusive' in outcomes or (min_requests and min_requests['status'] != 'pass'):
            would = 'inconclusive'
        elif outcomes:
            would = 'passed'
        else:
            would = 'not rehearsable'
        no_data_gates = sorted(n for n, g in per_gate.items() if g.get('no_data'))
        rehearsal = dict(
            window=dict(start=times.iso(stamps[0]), end=times.iso(stamps[-1]), step=spec['interval'],
                        samples=len(stamps)),
            gates=per_gate, min_requests=min_requests, would=would, gates_with_no_data=no_data_gates,
        )
        if judgement is not None:
            rehearsal['judge'] = judgement
        outcome = {'passed': 'passed', 'failed': 'failed'}.get(would, 'been ' + would)
        display.display('[%s rehearsal] over %s..%s the bake would have %s'
                        % (spec['phase'], rehearsal['window']['start'], rehearsal['window']['end'], outcome))
        return dict(changed=False, failed=False, rehearsal=gates.ensure_json_safe(rehearsal),
                    phase=spec['phase'], msg='rehearsal of phase %s: the bake would have %s' % (spec['phase'], outcome))
