"""Unit tests of the cache_warm module: argument handling and refusals, with Redis faked out."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.cohort.rollout.plugins.modules import cache_warm

BASE = dict(redis_url='redis://127.0.0.1:1/0', redis_password='hunter2-never-shown', db='/nonexistent.db')


@pytest.fixture
def no_redis(monkeypatch):
    """Fail the test if the module tries to connect."""
    calls = []

    def connect(*args, **kwargs):
        calls.append(args)
        raise AssertionError('connect() must not be reached')
    monkeypatch.setattr(cache_warm, 'connect', connect)
    return calls


def run(args, capsys, check=False):
    with patch_module_args(dict(BASE, _ansible_check_mode=check, **args)):
        with pytest.raises(SystemExit):
            cache_warm.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize('args,words', [
    (dict(ttl=0), 'ttl must be'),
    (dict(ttl=-1), 'ttl must be'),
    (dict(batch_size=0), 'batch_size must be'),
    (dict(batch_size=-3), 'batch_size must be'),
    (dict(fresh_ttl=7200), 'fresh_ttl must be'),
    (dict(timeout=0), 'timeout must be'),
    (dict(source='list', learner_sets=[]), 'learner_sets is empty'),
    (dict(source='list', learner_sets=[[1, 2], []]), 'learner_sets[1]'),
    (dict(source='list', learner_sets=[[1, 'x']]), "'x'"),
    (dict(source='list', learner_sets=[[0, 1]]), 'learner_sets[0] holds 0'),
    (dict(source='load_pattern', path='/tmp/x'), 'path only applies to source=file'),
    (dict(source='list', learner_sets=[[1]], pool_size=5), 'pool_size only applies'),
    (dict(source='load_pattern', pool_size=0), 'pool_size must be >= 1'),
])
def test_refused_before_connecting(args, words, capsys, no_redis):
    result = run(args, capsys)
    assert result['failed'] is True
    assert words in result['msg']
    assert result['keys_written'] == 0
    assert 'hunter2' not in json.dumps(result)
    assert no_redis == []


def test_missing_required_arguments(capsys, no_redis):
    result = run(dict(source='file'), capsys)
    assert result['failed'] and 'path' in result['msg']


def test_file_validated_whole_before_anything(tmp_path, capsys, no_redis):
    path = tmp_path / 'sets.jsonl'
    path.write_text('[1, 2, 3]\n\n[4, 5]\n[6, "seven"]\n')
    result = run(dict(source='file', path=str(path)), capsys)
    assert result['failed'] and 'line 4' in result['msg']
    path.write_text('[1, 2]\nnot json\n')
    result = run(dict(source='file', path=str(path)), capsys)
    assert result['failed'] and 'line 2 is not JSON' in result['msg']
    path.write_text('\n\n')
    result = run(dict(source='file', path=str(path)), capsys)
    assert result['failed'] and 'no learner sets' in result['msg']
    result = run(dict(source='file', path=str(tmp_path / 'missing.jsonl')), capsys)
    assert result['failed'] and 'not a file' in result['msg']


def test_file_source_streams_lines(tmp_path):
    path = tmp_path / 'sets.jsonl'
    path.write_text('[3, 1]\n\n[2]\n')
    reader = cache_warm.read_sets_file(str(path))
    assert next(reader) == [3, 1]
    assert next(reader) == [2]
    with pytest.raises(StopIteration):
        next(reader)


def test_load_pattern_uses_the_load_generators_pool():
    from cohort_analyzer import loadpattern
    params = dict(source='load_pattern', pool_size=None, seed=None, n_learners=None, min_set_size=None,
                  max_set_size=None)
    assert cache_warm.learner_set_source(params) == loadpattern.learner_sets()
    params.update(pool_size=5, seed=3, n_learners=1000, min_set_size=2, max_set_size=4)
    assert cache_warm.learner_set_source(params) == loadpattern.learner_sets(
        pool_size=5, seed=3, n_learners=1000, min_size=2, max_size=4)
