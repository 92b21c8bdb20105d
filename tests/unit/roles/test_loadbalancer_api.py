"""Unit tests of the weights API program's pure parts (roles/loadbalancer/files/traffic_api.py)."""
from __future__ import annotations

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SPEC = importlib.util.spec_from_file_location('traffic_api', os.path.join(ROOT, 'roles', 'loadbalancer', 'files', 'traffic_api.py'))
api = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(api)


def test_percentile_nearest_rank():
    values = list(range(1, 1001))
    assert api.percentile(values, 0.5) == 500
    assert api.percentile(values, 0.99) == 990
    assert api.percentile(values, 0.999) == 999
    assert api.percentile([], 0.5) is None
    assert api.percentile([7], 0.999) == 7


def test_latency_window_parses_haproxy_lines_and_expires():
    window = api.LatencyWindow(window=60)
    for i in range(100):
        window.add_line('cohort-lb analyzers original-a 200 %d\n' % (i + 1), now=1000.0)
    window.add_line('cohort-lb analyzers ultra_fast-b 503 40', now=1000.0)
    window.add_line('cohort-lb analyzers <NOSRV> 503 1', now=1000.0)
    window.add_line('garbage', now=1000.0)
    window.add_line('cohort-lb analyzers original-a two 3', now=1000.0)
    assert window.dropped == 2
    summary = window.summary(now=1010.0)
    assert summary[None]['samples'] == 102
    assert summary['original']['p50'] == 50 and summary['original']['p99'] == 99
    assert summary['ultra_fast']['samples'] == 1 and summary['ultra_fast']['p999'] == 40
    empty = {'p50': None, 'p99': None, 'p999': None, 'samples': 0, 'unit': 'ms', 'measure': 'haproxy Ta (total active time)'}
    assert window.summary(now=1100.0)[None] == empty


def test_rate_is_none_without_requests():
    assert api.rate(0, 0) is None
    assert api.rate(1, 100) == pytest.approx(0.01)


def test_token_never_from_argv(monkeypatch, tmp_path):
    monkeypatch.delenv('LB_API_TOKEN', raising=False)
    args = type('Args', (), {'token_file': None})()
    with pytest.raises(SystemExit):
        api.read_token(args)
    monkeypatch.setenv('LB_API_TOKEN', 'from-env-token')
    assert api.read_token(args) == 'from-env-token'
    path = tmp_path / 'token'
    path.write_text('from-file-token\n')
    args.token_file = str(path)
    assert api.read_token(args) == 'from-file-token'
