"""One duration grammar (module_utils/durations.py) for the rollout spec and metric_gate (issue 17, item 12)."""
import copy
import os

import pytest
import yaml

from ansible_collections.cohort.rollout.plugins.module_utils import gates
from ansible_collections.cohort.rollout.plugins.module_utils import rollout_spec as spec_utils
from ansible_collections.cohort.rollout.plugins.module_utils.durations import (
    DurationError, format_duration, parse_duration, prometheus_duration,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
with open(os.path.join(ROOT, 'playbooks', 'group_vars', 'all', 'rollout_spec.yml')) as _f:
    DEFAULTS = yaml.safe_load(_f)['rollout_spec_defaults']

ACCEPTED = [(30, 30), (2.5, 2.5), ('30', 30), ('30s', 30), ('5m', 300), ('2h', 7200), ('7d', 604800),
            ('1h30m', 5400), ('250ms', 0.25), (' 1w ', 604800), ('1.5h', 5400), ('1y', 31536000), ('1h 30m', 5400)]
REJECTED = ['5 minutes', 'm5', '', 'abc', True, None, [1], 'nan', 'inf', -5, '-5s', '2 hours', float('nan')]


@pytest.mark.parametrize('value,seconds', ACCEPTED)
def test_accepted_everywhere_alike(value, seconds):
    assert parse_duration(value) == seconds
    assert gates.parse_duration(value, 'x') == seconds
    spec = spec_utils.rollout_spec(copy.deepcopy(DEFAULTS), {'phases': {'rollout': {'bake': value}}})
    assert spec['phases']['rollout']['bake_seconds'] == seconds


@pytest.mark.parametrize('value', REJECTED)
def test_rejected_everywhere_alike(value):
    with pytest.raises(DurationError):
        parse_duration(value, 'x')
    with pytest.raises(gates.GateSpecError):
        gates.parse_duration(value, 'x')
    with pytest.raises(spec_utils.SpecError) as err:
        spec_utils.rollout_spec(copy.deepcopy(DEFAULTS), {'phases': {'rollout': {'bake': value}}})
    assert 'rollout_spec.phases.rollout.bake' in str(err.value)


def test_negative_is_named_as_such():
    with pytest.raises(DurationError) as err:
        parse_duration(-1, 'interval')
    assert err.value.negative and 'interval must be zero or more' in str(err.value)


@pytest.mark.parametrize('seconds', [0, 0.25, 30, 90, 5400, 7560, 604800])
def test_written_forms_parse_back(seconds):
    assert parse_duration(prometheus_duration(seconds)) == seconds
    assert parse_duration(format_duration(seconds)) == seconds
