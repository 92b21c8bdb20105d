# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout spec filters: thin wrappers, the logic lives in module_utils.

Filters (FQCN cohort.rollout.<name>):

* ``rollout_spec(defaults, overrides)``   deep-merge, validate and normalise the spec (module_utils/rollout_spec.py).
* ``gate_checks(spec, phase)``            the checks of one phase for cohort.rollout.metric_gate.
* ``gate_min_requests(spec, phase)``      its ``min_requests`` (too little candidate traffic = inconclusive).
* ``judge_config(spec, phase)``           the phase's baseline-vs-canary judge for metric_gate (or None).
* ``guard_alerts(spec, phase)``           the alerts that are rollback triggers of a phase (the rollout guard's).
* ``prometheus_recording_rules(spec)``    the runbook's gauges as recording rules (module_utils/prometheus_rules.py).
* ``prometheus_alert_rules(spec)``        the runbook alerts plus one alert per phase gate.
* ``grafana_dashboard(spec, ...)``        the runbook's dashboard (module_utils/dashboard.py).

Documentation: one YAML file per filter beside this file (rollout_spec.yml, gate_checks.yml, ...).
"""
from __future__ import annotations

import functools

from ansible.errors import AnsibleFilterError

from ansible_collections.cohort.rollout.plugins.module_utils import dashboard, prometheus_rules
from ansible_collections.cohort.rollout.plugins.module_utils import rollout_spec as spec_utils


class SpecError(AnsibleFilterError):
    """A rollout spec that does not validate; the message names every bad path."""


def _filter(func):
    """Turn module_utils' SpecError (a ValueError) into an Ansible filter error with the same text."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except spec_utils.SpecError as exc:
            raise SpecError(str(exc))
    return wrapper


rollout_spec = _filter(spec_utils.rollout_spec)
gate_checks = _filter(spec_utils.gate_checks)
gate_min_requests = _filter(spec_utils.gate_min_requests)
judge_config = _filter(spec_utils.judge_config)
guard_alerts = _filter(prometheus_rules.guard_alerts)
prometheus_recording_rules = _filter(prometheus_rules.prometheus_recording_rules)
prometheus_alert_rules = _filter(prometheus_rules.prometheus_alert_rules)
grafana_dashboard = _filter(dashboard.grafana_dashboard)


class FilterModule(object):
    """cohort.rollout rollout spec filters."""

    def filters(self):
        return {
            'rollout_spec': rollout_spec,
            'gate_checks': gate_checks,
            'gate_min_requests': gate_min_requests,
            'judge_config': judge_config,
            'guard_alerts': guard_alerts,
            'prometheus_recording_rules': prometheus_recording_rules,
            'prometheus_alert_rules': prometheus_alert_rules,
            'grafana_dashboard': grafana_dashboard,
        }
