#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the cohort.rollout.metric_gate action plugin (plugins/action/metric_gate.py)."""

from __future__ import annotations

DOCUMENTATION = r'''
---
module: metric_gate
short_description: Bake a rollout phase under Prometheus metric gates, fail-closed
description:
  - Samples every check every O(interval) for O(duration) after O(initial_delay), prints one line per
    sample on the controller as it is taken (also under ansible-runner and AWX), records every sample and the
    verdict in the rollout report, and fails the task unless the verdict is C(passed).
  - Runs on the controller as an action plugin; nothing is executed on the target host.
  - A check's value comes from a Prometheus instant query that must return exactly one series, or from a
    number at a dotted O(checks[].path) in a JSON document (O(checks[].source=json), e.g. the load balancer's
    C(GET /metrics)).
  - No data is never a pass. An empty result, NaN, +/-Inf, several series, an HTTP error, a timeout or a refused
    connection is an B(inconclusive) sample. More inconclusive samples of one check than O(inconclusive_limit)
    ends the bake as C(inconclusive); so does a check that never returned data, too little traffic
    (O(min_requests)) or reaching O(max_runtime).
  - A check whose failing samples exceed its O(checks[].failure_limit) trips the gate at once; the task returns
    immediately (it does not wait out the bake) and its message names the gate, the value, the threshold and the
    time of the sample.
  - The checks of one sample are queried concurrently, with a deadline of min(O(interval), O(timeout)); a check
    without an answer by then is inconclusive (C(timeout)). A hung Prometheus therefore fails the bake within
    (O(inconclusive_limit) + 1) intervals whatever the number of checks.
  - Before any waiting every PromQL query is run once; an invalid query fails the task with Prometheus's own
    error text, and an unreachable Prometheus fails it as C(inconclusive).
  - In check mode the gate is B(rehearsed) - the checks are evaluated over the past O(duration) with range
    queries (step O(interval)) and the task reports, per gate, how many samples would have failed and how many
    had no data. Nothing is written and the task does not fail on a would-be failure.
version_added: 0.1.0
author:
  - cohort.rollout contributors (@cohort)
options:
  prometheus_url:
    description:
      - Base URL of Prometheus, e.g. V(http://127.0.0.1:9090) (a path prefix is allowed).
      - Required when any check has O(checks[].source=prometheus) or O(min_requests) is set.
    type: str
  prometheus_username:
    description: User for HTTP basic auth to Prometheus.
    type: str
  prometheus_password:
    description: Password for HTTP basic auth to Prometheus.
    type: str
  prometheus_token:
    description: Bearer token for Prometheus. Mutually exclusive with O(prometheus_username).
    type: str
  validate_certs:
    description: Verify TLS certificates (Prometheus and JSON sources).
    type: bool
    default: true
  ca_path:
    description: CA bundle (PEM) used to verify TLS certificates.
    type: path
  timeout:
    description: Timeout in seconds of every HTTP request; a request that times out is an inconclusive sample.
    type: float
    default: 10.0
  checks:
    description: The gates. At least one.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the gate, unique; letters, digits and the characters C(_), C(.), C(:) and C(-).
        type: str
        required: true
      source:
        description: Where the value comes from.
        type: str
        choices: [prometheus, json]
        default: prometheus
      query:
        description: PromQL returning exactly one series (source V(prometheus)).
        type: str
      url:
        description: URL of a JSON document (source V(json)).
        type: str
      path:
        description: Dotted path to a number in that document, e.g. V(latency.p99) or V(pools.0.rate) (source V(json)).
        type: str
      headers:
        description: Extra HTTP headers for the JSON URL. Never logged (they may hold credentials).
        type: dict
        default: {}
      token:
        description: Bearer token sent to the JSON URL in an C(Authorization) header.
        type: str
      op:
        description: The comparison that must hold for a sample to pass, value C(op) threshold.
        type: str
        required: true
        choices: [ge, gt, le, lt]
      threshold:
        description: The threshold.
        type: float
        required: true
      failure_limit:
        description: How many failing samples are tolerated over the whole bake; one more trips the gate.
        type: int
        default: 0
      sustain:
        description:
          - Seconds or a duration string. When set, the check trips only when its consecutive failing samples
            cover this window (more than ceil(sustain / interval) failing samples in a row), as an alert's
            C(for:) does; a passing or inconclusive sample ends the run. Isolated failures never add up.
          - Use either O(checks[].sustain) or O(checks[].failure_limit), not both.
        type: raw
        default: 0
      inconclusive_limit:
        description: Per-check override of O(inconclusive_limit).
        type: int
  interval:
    description:
      - Time between samples, seconds or a duration string (V(30s), V(5m), V(2h), V(7d), V(1h30m)).
      - Must be greater than zero and not longer than O(duration).
    type: raw
    required: true
  duration:
    description:
      - Length of the bake (seconds or a duration string). Samples are taken at the start of the bake and then
        every O(interval) up to O(duration), that is C(floor(duration/interval) + 1) samples.
    type: raw
    required: true
  initial_delay:
    description: Wait before the first sample (seconds or a duration string), e.g. for rate windows to fill.
    type: raw
    default: 0
  inconclusive_limit:
    description:
      - How many inconclusive samples each check tolerates; one more ends the bake as C(inconclusive) (failed).
      - The default V(0) is fail-closed, like Argo Rollouts; raise it to ride out scrape hiccups on long bakes.
    type: int
    default: 0
  min_requests:
    description:
      - The canary's request count over the bake and the minimum that makes a verdict meaningful. Evaluated at
        the end; fewer requests (or no data) make the verdict C(inconclusive).
    type: dict
    suboptions:
      query:
        description: PromQL returning one number, e.g. V(sum(increase(cohort_discovery_requests_total{variant="ultra_fast"}[2h]\))).
        type: str
        required: true
      threshold:
        description: Minimum value of O(min_requests.query).
        type: float
        required: true
  phase:
    description: Name of the phase (V(canary), V(ramp), ...); the key of its record in the report.
    type: str
    required: true
  report_path:
    description:
      - Rollout report (JSON) on the controller. The phase record is written at the start, after every sample
        and at the end, atomically (mode 0600); other phases and other keys of this phase are kept.
      - Not written in check mode. Omit to write no report.
    type: path
  max_runtime:
    description:
      - Cap on the task's wall time (seconds or a duration string). Reaching it ends the bake as C(inconclusive).
      - Defaults to O(initial_delay) + O(duration) + max(60s, O(interval)).
    type: raw
  extra_report:
    description: Keys deep-merged into this phase's record in the report, for example the phase's weights.
    type: dict
    default: {}
  validate_only:
    description:
      - Check the arguments and run every query once (gates, O(min_requests), and for O(judge) one query per metric
        and side), then return without baking. The phase role does this before it changes anything.
    type: bool
    default: false
  judge:
    description:
      - Judge the canary against the baseline over the same window (Kayenta's method), during the bake every
        O(judge.interval) and once at its end. Per metric, a range query for each side over
        [first sample, now] with O(judge.step), a two-sided Mann-Whitney U test (C(scipy.stats.mannwhitneyu))
        at O(judge.confidence), and an allowed effect; each metric is C(pass), C(high), C(low) or C(nodata).
      - The score is the weight of the metrics that passed over the total weight (0-100). A failed
        O(judge.metrics[].critical) metric fails the judge whatever the score; C(nodata) is never a pass.
      - During the bake a C(fail) judgement trips the bake at once (a hopeless score); at the end C(pass) lets the
        phase pass (if the gates passed too), C(fail) fails it, C(marginal) and C(nodata) make it C(inconclusive).
      - Needs scipy on the controller. See docs/gates.md.
    type: dict
    suboptions:
      baseline:
        description: Variant value of the baseline, put in place of C($variant) in each query.
        type: str
        required: true
      canary:
        description: Variant value of the canary.
        type: str
        required: true
      interval:
        description: How often to judge during the bake (seconds or a duration); defaults to O(interval).
        type: raw
      step:
        description: Step of the range queries (seconds or a duration), the same for both sides.
        type: raw
        required: true
      confidence:
        description: Confidence of the test; a difference is significant when p < 1 - confidence. Within (0, 1).
        type: float
        default: 0.98
      pass_score:
        description: Score (0-100) at or above which the judgement is C(pass).
        type: float
        default: 95.0
      marginal_score:
        description: Score at or above which a judgement that did not pass is C(marginal) (inconclusive), below C(fail).
        type: float
        default: 75.0
      min_points:
        description: Fewest finite points per side for a metric to be judged; fewer is C(nodata). At least 3.
        type: int
        default: 5
      metrics:
        description: The metrics to compare.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: Name of the metric in the report.
            type: str
            required: true
          query:
            description: PromQL with C($variant), selecting one series per side.
            type: str
            required: true
          direction:
            description: Which change is bad - C(increase) (latency, errors, memory), C(decrease) (cache hit rate), C(either).
            type: str
            default: increase
          effect:
            description: Allowed change of the canary's centre, relative to the baseline's (0.1 = 10%). At least 0.
            type: float
            default: 0.1
          effect_abs:
            description: Allowed change in the metric's unit (2 = 2 ms for a latency); the larger allowance wins.
            type: float
            default: 0.0
          statistic:
            description: Centre compared for the effect - C(median), or C(mean) for sparse series such as error rates.
            type: str
            default: median
          weight:
            description: Weight in the score. At least 0; the weights must not sum to 0.
            type: float
            default: 1.0
          critical:
            description: A failure of this metric fails the judge whatever the score.
            type: bool
            default: false
  revert:
    description:
      - Traffic to restore the moment the bake does not pass (C(failed), C(inconclusive), or an error during the
        bake), before the task returns. The controller calls the load balancer's weights API
        (C(POST /config/traffic-weights), the same client as M(cohort.rollout.traffic_weights) with C(driver=http)).
      - This makes the traffic safe in the time of one HTTP call after the trip, instead of after the next Ansible
        task; the phase role still runs its rollback afterwards (which then finds the shares already reverted).
      - A failed revert is a warning and C(revert.ok) is false; it never turns a failed bake into a pass.
      - Not used in check mode.
    type: dict
    suboptions:
      api_url:
        description: Base URL of the weights API, for example C(http://127.0.0.1:18090).
        type: str
        required: true
      api_token:
        description: Bearer token of the weights API.
        type: str
      shares:
        description: "Shares to set, for example C({\"original\": 1, \"ultra_fast\": 0}); checked before the bake."
        type: dict
        required: true
      validate_certs:
        description: Verify the TLS certificate of O(revert.api_url).
        type: bool
        default: true
      timeout:
        description: Seconds to wait for the API.
        type: float
        default: 5.0
      generation:
        description: The rollout guard's arm generation, sent as C(X-Rollout-Generation) (refused when fenced off).
        type: int
  guard:
    description:
      - The rollout guards armed by the phase. Their lease is renewed at the start of the bake and before every
        sample. A guard that cannot be reached is a warning (it reverts the traffic when the lease expires); a
        renewal refused because the generation was fenced off (the guard reverted, or a rollback ran) stops the bake
        at once as C(failed) with C(fenced=true), and the task touches the traffic no more (no O(revert)).
    type: dict
    suboptions:
      urls:
        description: Base URL of the guard of each load balancer host.
        type: list
        elements: str
        required: true
      token:
        description: Bearer token of the guards.
        type: str
      generation:
        description: The generation the phase armed.
        type: int
        required: true
      lease_seconds:
        description: The lease to renew each time (default - the one the phase armed).
        type: float
      validate_certs:
        description: Verify TLS certificates.
        type: bool
        default: true
      timeout:
        description: Seconds to wait for a guard's answer.
        type: float
        default: 2.0
attributes:
  action:
    support: full
    description: An action plugin; it runs on the controller.
  check_mode:
    support: full
    description: Rehearsal over past data with range queries; nothing is written.
  diff_mode:
    support: none
    description: Nothing to diff; the report is a record, not managed state.
  platform:
    support: full
    platforms: all
    description: Runs on the controller whatever the target platform.
notes:
  - >-
    Each sample prints a line such as
    C([canary 14:02:05 3/25] error_rate=0.0021 <0.01 ok | latency_p99_ms=none <200 no data).
  - The report is strict JSON (no NaN); a non-finite or missing value is C(null) with a C(note).
seealso:
  - name: Gate semantics
    description: docs/gates.md in this collection.
    link: https://example.invalid/cohort/rollout/docs/gates.md
'''

EXAMPLES = r'''
- name: Bake the canary for 2 hours under the runbook's gates
  cohort.rollout.metric_gate:
    prometheus_url: "{{ prometheus_url }}"
    phase: canary
    report_path: "{{ rollout_report_path }}"
    interval: 5m
    duration: 2h
    initial_delay: 1m
    inconclusive_limit: 1
    checks:
      - name: error_rate
        query: cohort_discovery_error_rate{variant="ultra_fast"}
        op: lt
        threshold: 0.01
      - name: latency_p99_ms
        query: cohort_discovery_latency_p99{variant="ultra_fast"}
        op: lt
        threshold: 200
      - name: memory_bytes
        query: max(process_memory_usage_bytes{variant="ultra_fast"})
        op: lt
        threshold: 1073741824
      - name: lb_error_rate
        source: json
        url: "{{ lb_api_url }}/metrics"
        path: errorRate
        token: "{{ lb_api_token }}"
        op: lt
        threshold: 0.01
    min_requests:
      query: sum(increase(cohort_discovery_requests_total{variant="ultra_fast"}[2h]))
      threshold: 100
    extra_report:
      weights:
        original: 0.99
        ultra_fast: 0.01

- name: Rehearse the ramp gates over the last 4 hours (check mode, nothing written)
  cohort.rollout.metric_gate:
    prometheus_url: "{{ prometheus_url }}"
    phase: ramp
    interval: 5m
    duration: 4h
    checks:
      - name: error_rate
        query: cohort_discovery_error_rate{variant="ultra_fast"}
        op: lt
        threshold: 0.005
  check_mode: true
  register: ramp_rehearsal
'''

RETURN = r'''
fenced:
  description: The bake stopped because the rollout guard fenced its generation off (O(guard)).
  returned: when fenced
  type: bool
fenced_by:
  description:
    - Who fenced the generation off, from the guard's state. C(guard) - the guard reverted it (its lease ran out or
      a rollback alert fired); no controller completed that rollback yet. C(rollback) - a rollback (or a disarm after
      one) fenced it off; that rollback owns the traffic and the record. C(superseded) - a later run armed a newer
      generation. C(unknown) - the guard's state could not be read. C(controller_gone) - this worker's
      C(ansible-playbook) process is gone.
  returned: when fenced
  type: str
  choices: [guard, rollback, superseded, unknown, controller_gone]
verdict:
  description: C(passed), C(failed) (a gate tripped, or a query is invalid) or C(inconclusive).
  returned: when not in check mode
  type: str
  sample: failed
reasons:
  description: Why the verdict is not C(passed) (empty when passed).
  returned: when not in check mode
  type: list
  elements: str
  sample: ["gate error_rate tripped in phase canary: error_rate=0.05, not < 0.01 (threshold), sampled at 2026-11-26T14:02:05Z"]
samples:
  description: Every sample taken, with each check's value (null when not finite), status and note.
  returned: when not in check mode
  type: list
  elements: dict
  sample: [{"n": 1, "at": "2026-11-26T14:00:05Z", "values": {"error_rate": {"value": 0.002, "status": "pass"}}}]
checks:
  description: Per gate summary - passes, failures, inconclusive, the worst and the last finite value, op, threshold.
  returned: when not in check mode
  type: dict
  sample: {"error_rate": {"passes": 24, "failures": 0, "inconclusive": 1, "worst": 0.004, "op": "lt", "threshold": 0.01}}
min_requests:
  description: The request count at the end of the bake against its threshold.
  returned: when O(min_requests) is set and the bake ran to the end
  type: dict
  sample: {"value": 5321.0, "threshold": 100.0, "status": "pass"}
phase:
  description: The phase name.
  returned: always
  type: str
  sample: canary
started_at:
  description: Start of the bake, ISO-8601 UTC.
  returned: when not in check mode
  type: str
  sample: "2026-11-26T14:00:00Z"
ended_at:
  description: End of the bake, ISO-8601 UTC.
  returned: when not in check mode
  type: str
  sample: "2026-11-26T16:00:05Z"
ended_epoch:
  description: End of the bake (the trip, when it failed) as seconds since the epoch, to the millisecond.
  returned: when not in check mode
  type: float
  sample: 1795700405.123
waited_s:
  description: Seconds the bake spent sleeping for its schedule (initial delay and between samples), i.e. its wall
    time minus the work of sampling; C(bench/rollback_bench.py) subtracts it to time a deploy's work alone.
  returned: when not in check mode and the bake ran
  type: float
  sample: 25.012
reverted_at:
  description: When the weights API confirmed the O(revert) shares, seconds since the epoch.
  returned: when O(revert) is set, the bake did not pass and the revert succeeded
  type: float
  sample: 1795700405.171
revert:
  description: What the O(revert) call did - C(ok), and C(changed) and the C(shares) now served, or C(error).
  returned: when O(revert) is set and the bake did not pass
  type: dict
  sample: {"ok": true, "changed": true, "shares": {"original": 1.0, "ultra_fast": 0.0}}
report_path:
  description: The report written.
  returned: when O(report_path) is set and not in check mode
  type: str
  sample: /var/lib/rollout/report.json
judge:
  description:
    - The judge's record (also in the report under the phase's C(judge) key) - its configuration, the latest
      judgement's C(verdict), C(score), C(reasons) and per metric C(metrics) (both medians and means, the effect,
      the allowed effect, U, the p-value, points per side, the classification), and every judgement in C(judgements).
  returned: when O(judge) is set and the bake ran
  type: dict
  sample:
    verdict: fail
    score: 55.0
    final: false
    reasons: ["latency_p99_ms high: median higher than baseline by 39.8 (allowed 2), p=1.2e-05"]
    metrics:
      latency_p99_ms: {"classification": "high", "failed": true, "median": {"baseline": 4.9, "canary": 44.7},
                       "p_value": 1.2e-05, "u": 100.0, "points": {"baseline": 10, "canary": 10}}
rehearsal:
  description:
    - Check mode only. The past window, and per gate the number of samples, passes, failures, samples with no data
      (and why), the worst value, the first failing sample, when the gate would have tripped, and what the bake
      would have been (C(would)).
  returned: in check mode
  type: dict
  sample:
    window: {"start": "2026-11-26T12:00:00Z", "end": "2026-11-26T14:00:00Z", "step": 300.0, "samples": 25}
    would: failed
    gates_with_no_data: [latency_p99_ms]
    judge: {"verdict": "pass", "score": 100.0}
    gates:
      error_rate: {"samples": 25, "passed": 22, "failed": 3, "no_data": 0, "would": "failed",
                   "would_trip_at": "2026-11-26T13:15:00Z"}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cohort.rollout.plugins.module_utils.gates import (
    ARGUMENT_SPEC, MUTUALLY_EXCLUSIVE, REQUIRED_TOGETHER,
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE,
                           required_together=REQUIRED_TOGETHER, supports_check_mode=True)
    module.fail_json(msg='cohort.rollout.metric_gate runs on the controller as an action plugin; '
                         'this module file holds its documentation only and does nothing on a target.')


if __name__ == '__main__':
    main()
