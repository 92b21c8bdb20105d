"""Unit tests of cohort.rollout.traffic_weights: the HTTP layer and the socket client are faked."""
from __future__ import annotations

import io
import json

import pytest
from ansible.module_utils.six.moves.urllib.error import HTTPError
from ansible.module_utils.testing import patch_module_args

from ansible_collections.cohort.rollout.plugins.module_utils import traffic
from ansible_collections.cohort.rollout.plugins.module_utils import http_json
from ansible_collections.cohort.rollout.plugins.modules import traffic_weights


def run(args, capsys, check=False):
    with patch_module_args(dict(args, _ansible_check_mode=check, _ansible_diff=True)):
        with pytest.raises(SystemExit):
            traffic_weights.main()
    return json.loads(capsys.readouterr().out)


class FakeSocket:
    weights = {}

    def __init__(self, path, timeout=10):
        self.path = path

    def get_weights(self, backend):
        return dict(FakeSocket.weights)

    def set_weights(self, backend, updates):
        FakeSocket.weights.update(dict(updates))

    def save_state(self, path):
        pass


@pytest.fixture()
def fake_socket(monkeypatch):
    FakeSocket.weights = {'original-a': 1, 'original-b': 1, 'original-c': 1, 'ultra_fast-d': 0}
    monkeypatch.setattr(traffic_weights, 'HAProxySocket', FakeSocket)
    return FakeSocket


def test_haproxy_driver_check_apply_again(fake_socket, capsys):
    args = dict(shares={'original': 0.99, 'ultra_fast': 0.01}, socket='/x.sock')
    check = run(args, capsys, check=True)
    assert check['changed'] and fake_socket.weights['ultra_fast-d'] == 0
    assert check['diff']['before']['shares'] == {'original': 1.0, 'ultra_fast': 0.0}
    applied = run(args, capsys)
    assert applied['changed'] and applied['weights'] == {'original-a': 33, 'original-b': 33, 'original-c': 33, 'ultra_fast-d': 1}
    assert run(args, capsys)['changed'] is False


@pytest.mark.parametrize('shares,msg', [
    ({'original': 0.5, 'ultra_fast': 0.6}, 'sum to 1'),
    ({'original': 'nan', 'ultra_fast': 1}, 'finite'),
    ({'original': 0.5, 'turbo': 0.5}, 'unknown pool'),
])
def test_haproxy_driver_bad_input_fails_and_changes_nothing(fake_socket, capsys, shares, msg):
    before = dict(fake_socket.weights)
    out = run(dict(shares=shares, socket='/x.sock'), capsys)
    assert out['failed'] and msg in out['msg']
    assert fake_socket.weights == before


def test_haproxy_driver_empty_pool(monkeypatch, capsys):
    FakeSocket.weights = {'original-a': 1}
    monkeypatch.setattr(traffic_weights, 'HAProxySocket', FakeSocket)
    out = run(dict(shares={'original': 0.9, 'ultra_fast': 0.1}, socket='/x.sock'), capsys)
    assert out['failed'] and 'has no servers' in out['msg'] and FakeSocket.weights == {'original-a': 1}


class FakeResponse(io.BytesIO):
    pass


def test_http_driver_sends_token_and_check_flag(monkeypatch, capsys):
    calls = []
    answer = {'changed': True, 'requested': {'original': 0.9, 'ultra_fast': 0.1}, 'error': 0.0,
              'before': {'weights': {'original-a': 1, 'ultra_fast-b': 0}, 'shares': {'original': 1.0, 'ultra_fast': 0.0}},
              'after': {'weights': {'original-a': 9, 'ultra_fast-b': 1}, 'shares': {'original': 0.9, 'ultra_fast': 0.1}}}

    def fake_open_url(url, data=None, headers=None, method=None, validate_certs=None, timeout=None):
        calls.append(dict(url=url, data=json.loads(data), headers=headers, method=method, validate_certs=validate_certs))
        return FakeResponse(json.dumps(answer).encode())

    monkeypatch.setattr(http_json, 'open_url', fake_open_url)
    args = dict(driver='http', api_url='https://lb:8090/', api_token='s3cret-token', shares={'original': 0.9, 'ultra_fast': 0.1})
    out = run(args, capsys, check=True)
    assert calls[0]['url'] == 'https://lb:8090/config/traffic-weights?check=true'
    assert calls[0]['headers']['Authorization'] == 'Bearer s3cret-token'
    assert calls[0]['validate_certs'] is True and calls[0]['method'] == 'POST'
    assert calls[0]['data'] == {'original': 0.9, 'ultra_fast': 0.1}
    assert out['changed'] and out['weights'] == {'original-a': 9, 'ultra_fast-b': 1}
    assert 's3cret-token' not in json.dumps(out)


def test_http_driver_maps_4xx_to_a_failure(monkeypatch, capsys):
    def fake_open_url(url, **kwargs):
        raise HTTPError(url, 400, 'Bad Request', {}, io.BytesIO(b'{"error": "pool \'ultra_fast\' has no servers"}'))

    monkeypatch.setattr(http_json, 'open_url', fake_open_url)
    out = run(dict(driver='http', api_url='http://lb', api_token='t' * 8, shares={'original': 0.9, 'ultra_fast': 0.1}), capsys)
    assert out['failed'] and '400' in out['msg'] and 'has no servers' in out['msg']


def test_http_driver_requires_api_url(capsys):
    out = run(dict(driver='http', shares={'original': 1, 'ultra_fast': 0}), capsys)
    assert out['failed'] and 'api_url' in out['msg']


def test_bad_shares_fail_before_any_call(monkeypatch, capsys):
    monkeypatch.setattr(http_json, 'open_url', lambda *a, **k: pytest.fail('no call expected'))
    out = run(dict(driver='http', api_url='http://lb', shares={'original': -0.5, 'ultra_fast': 1.5}), capsys)
    assert out['failed'] and 'negative' in out['msg']


@pytest.mark.parametrize('sizes', [(1, 1), (3, 1), (2, 5), (12, 12)])
@pytest.mark.parametrize('fast', [0.01, 0.1, 0.37, 1.0, 0.0])
def test_module_sets_the_weights_of_the_shared_math(monkeypatch, capsys, sizes, fast):
    """Whatever the layout, the module applies exactly what module_utils/traffic.py computes (the one
    weight math, shared with the weights API and the guard), and reads back its realised shares."""
    servers = ['original-%d' % i for i in range(sizes[0])] + ['ultra_fast-%d' % i for i in range(sizes[1])]
    FakeSocket.weights = dict.fromkeys(servers, 1)
    monkeypatch.setattr(traffic_weights, 'HAProxySocket', FakeSocket)
    shares = {'original': 1 - fast, 'ultra_fast': fast}
    out = run(dict(shares=shares, socket='/x.sock'), capsys)
    expected = traffic.compute_weights(shares, servers)
    assert out['weights'] == expected and FakeSocket.weights == expected
    assert out['shares'] == traffic.shares_of(expected)
    assert out['error'] == traffic.plan(shares, expected)['error'] < 0.01
